//! The per-round exchange: what a node asks for, what it accepts of the answers and why, when it
//! mixes, what it does with pushes, and how it answers others.

use super::*;

/// An engine that has trained round 1 and asked each of `peers` (all drawn: the fanout is their
/// number, and so is `wait-for`) for its model. Returns it with the time it trained at.
pub(super) fn asking(rule: Rule, peers: &[Identity]) -> Engine {
    asking_with(rule, peers, DIM)
}

/// [`asking`] with a model of `dim` parameters.
pub(super) fn asking_with(rule: Rule, peers: &[Identity], dim: usize) -> Engine {
    let mut c = config(rule, 100);
    c.fanout = peers.len().max(1);
    c.wait_for = peers.len().max(1);
    let mut e = Engine::new(toy::setup(0, &c, dim, 0)).unwrap();
    let start = Input::Start {
        resume: Resume::default(),
        join: false,
    };
    e.handle(Duration::ZERO, start).unwrap();
    for p in peers {
        e.handle(Duration::ZERO, Input::PeerUp { peer: p.public() })
            .unwrap();
    }
    train(&mut e, Duration::ZERO, 1, 0.0);
    e
}

pub(super) fn train(e: &mut Engine, now: Duration, round: u64, value: f32) -> Vec<Output> {
    train_to(e, now, round, vec![value; e.dim()])
}

/// `e`'s training of `round` ends with `params`; returns what it does then.
pub(super) fn train_to(e: &mut Engine, now: Duration, round: u64, params: Vec<f32>) -> Vec<Output> {
    let input = Input::Trained {
        round,
        params,
        samples: 1,
    };
    e.handle(now, input).unwrap();
    drain(e)
}

pub(super) fn answer(
    e: &mut Engine,
    now: Duration,
    from: &Identity,
    bytes: Arc<[u8]>,
) -> Vec<Output> {
    let input = Input::Fetched {
        peer: from.public(),
        update: Some(bytes),
    };
    e.handle(now, input).unwrap();
    drain(e)
}

pub(super) fn asked(out: &[Output]) -> Vec<(PeerKey, Option<u64>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Fetch { peer, round, .. } => Some((*peer, *round)),
            _ => None,
        })
        .collect()
}

pub(super) fn penalised(out: &[Output], who: PeerKey, why: Rejection) -> bool {
    out.iter().any(|o| {
        matches!(o, Output::Penalize { peer, reason, .. } | Output::Ban { peer, reason }
            if *peer == who && *reason == why)
    })
}

#[test]
fn a_node_asks_the_peers_it_draws_for_the_round_it_trained() {
    let peers: Vec<Identity> = (1..=6).map(toy::identity).collect();
    let mut c = config(Rule::Mean, 100);
    c.fanout = 3;
    let mut e = Engine::new(toy::setup(0, &c, DIM, 4)).unwrap();
    let start = Input::Start {
        resume: Resume::default(),
        join: false,
    };
    e.handle(Duration::ZERO, start).unwrap();
    for p in &peers {
        e.handle(Duration::ZERO, Input::PeerUp { peer: p.public() })
            .unwrap();
    }
    let out = train(&mut e, Duration::ZERO, 1, 0.0);
    let fetches = asked(&out);
    assert_eq!(fetches.len(), 3, "{out:?}");
    assert!(fetches.iter().all(|(_, r)| *r == Some(1)));
    assert!(
        out.iter().any(|o| matches!(o, Output::Broadcast { .. })),
        "the update is announced"
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::Send { .. })),
        "nothing is pushed"
    );
    assert!(e.last_update().is_some(), "signed, and served when asked");
}

#[test]
fn every_bad_answer_is_rejected_by_reason_and_penalised() {
    let peers: Vec<Identity> = (1..=7).map(toy::identity).collect();
    let mut e = asking(Rule::Mean, &peers);
    let t = Duration::from_millis(10);
    let good = [1.0; DIM];
    let run = toy::run_id();
    let nan = [1.0, f32::NAN, 1.0, 1.0, 1.0];
    let cases: Vec<(usize, Arc<[u8]>, Rejection)> = vec![
        (
            0,
            update(&peers[0], RunId::derive(b"another run"), 1, &good),
            Rejection::WrongRun,
        ),
        (
            1,
            update(&peers[1], run, 1, &[1.0; DIM + 1]),
            Rejection::WrongDimension,
        ),
        (2, update(&peers[2], run, 1, &nan), Rejection::NonFinite),
        (
            3,
            update(&toy::identity(9), run, 1, &good),
            Rejection::Impersonation,
        ),
        (
            4,
            vec![0u8; e.max_update_bytes() + 1].into(),
            Rejection::Oversize,
        ),
        (5, vec![1u8; 10].into(), Rejection::Malformed),
    ];
    for (i, bytes, reason) in cases {
        let out = answer(&mut e, t, &peers[i], bytes);
        assert_eq!(rejected(&e, reason), 1, "{reason}");
        assert!(
            penalised(&out, peers[i].public(), reason),
            "{reason}: {out:?}"
        );
    }
    // A forged signature, two rounds in a row: half the threshold each, then a ban.
    let forger = &peers[6];
    let mut forged = update(forger, run, 1, &good).to_vec();
    forged[40] ^= 1;
    let out = answer(&mut e, t, forger, forged.clone().into());
    assert!(penalised(&out, forger.public(), Rejection::BadSignature));
    assert!(
        out.contains(&Output::Train { round: 2 }),
        "all answered: mixed"
    );
    let out = train(&mut e, t, 2, 0.0);
    assert!(asked(&out).iter().any(|(p, _)| *p == forger.public()));
    let mut forged = update(forger, run, 2, &good).to_vec();
    forged[40] ^= 1;
    let out = answer(&mut e, t, forger, forged.into());
    assert!(out.contains(&Output::Ban {
        peer: forger.public(),
        reason: Rejection::BadSignature
    }));
    assert!(e.is_banned(&forger.public()));
    e.handle(
        t,
        Input::PeerUp {
            peer: forger.public(),
        },
    )
    .unwrap();
    assert!(drain(&mut e).contains(&Output::Ban {
        peer: forger.public(),
        reason: Rejection::BadSignature
    }));
}

/// An answer the transport could not frame (refused on its length or its tag before the engine
/// saw any update) costs its sender what an oversize or malformed update costs: two and the
/// peer is banned, by the reason of the last.
#[test]
fn answers_the_transport_could_not_frame_are_charged_to_their_sender() {
    let peers: Vec<Identity> = (1..=2).map(toy::identity).collect();
    let mut e = asking(Rule::Mean, &peers);
    let t = Duration::from_millis(10);
    for (peer, oversize, reason) in [
        (&peers[0], true, Rejection::Oversize),
        (&peers[1], false, Rejection::Malformed),
    ] {
        let peer = peer.public();
        e.handle(t, Input::Unframed { peer, oversize }).unwrap();
        let out = drain(&mut e);
        assert!(penalised(&out, peer, reason), "{reason}: {out:?}");
        assert!(!e.is_banned(&peer), "{reason}: one strike");
        e.handle(t, Input::Unframed { peer, oversize }).unwrap();
        let out = drain(&mut e);
        assert!(
            out.contains(&Output::Ban { peer, reason }),
            "{reason}: {out:?}"
        );
        assert_eq!(rejected(&e, reason), 2, "{reason}");
    }
}

#[test]
fn unasked_answers_and_pushes_are_not_mixed_and_pushes_cost_points() {
    let peers: Vec<Identity> = (1..=2).map(toy::identity).collect();
    let mut e = asking(Rule::Mean, &peers);
    let stranger = toy::identity(5);
    let t = Duration::from_millis(10);
    let out = answer(
        &mut e,
        t,
        &stranger,
        update(&stranger, toy::run_id(), 1, &[9.0; DIM]),
    );
    assert_eq!(out, vec![], "an answer nobody asked for is ignored");
    let push = Input::UpdateReceived {
        from: stranger.public(),
        bytes: update(&stranger, toy::run_id(), 1, &[9.0; DIM]),
    };
    e.handle(t, push).unwrap();
    let out = drain(&mut e);
    assert!(penalised(&out, stranger.public(), Rejection::Unsolicited));
    assert_eq!(e.stats().accepted, 0);
    // Twenty pushes are a ban (a twentieth of the threshold each).
    for _ in 1..20 {
        let push = Input::UpdateReceived {
            from: stranger.public(),
            bytes: vec![0u8; 4].into(),
        };
        e.handle(t, push).unwrap();
    }
    assert!(e.is_banned(&stranger.public()));
    // The drawn peers' answers are what is mixed: the mean of 0, 1 and 2.
    answer(
        &mut e,
        t,
        &peers[0],
        update(&peers[0], toy::run_id(), 1, &[1.0; DIM]),
    );
    let out = answer(
        &mut e,
        t,
        &peers[1],
        update(&peers[1], toy::run_id(), 1, &[2.0; DIM]),
    );
    let mut keys = vec![peers[0].public(), peers[1].public()];
    keys.sort();
    assert!(out.contains(&Output::Mixed {
        round: 1,
        params: Some(vec![1.0; DIM]),
        peers: keys,
        inputs: 3,
        clipped: 0,
        skipped: false
    }));
}

/// A driver that reads the mix from the engine turns the hand-over off: the output carries no
/// copy, and the engine's model is the mix the copy would have been.
#[test]
fn a_mix_is_copied_into_its_output_unless_the_driver_reads_it_from_the_engine() {
    let peers: Vec<Identity> = (1..=2).map(toy::identity).collect();
    let mut mixes = Vec::new();
    for hand_over in [true, false] {
        let mut e = asking(Rule::Mean, &peers);
        e.hand_over_mixes(hand_over);
        let t = Duration::from_millis(50);
        let mut out = Vec::new();
        for (i, p) in peers.iter().enumerate() {
            let v = [3.0 * (i + 1) as f32; DIM];
            out = answer(&mut e, t, p, update(p, toy::run_id(), 1, &v));
        }
        let params = out.into_iter().find_map(|o| match o {
            Output::Mixed { params, .. } => Some(params),
            _ => None,
        });
        let Some(params) = params else {
            panic!("hand over {hand_over}: no mix");
        };
        assert_eq!(params.is_some(), hand_over);
        mixes.push((params, e.model().to_vec()));
    }
    // Mean of 0, 3 and 6, either way.
    assert_eq!(mixes[0].0.as_deref(), Some(&[3.0; DIM][..]));
    assert_eq!(mixes[0].1, [3.0; DIM]);
    assert_eq!(mixes[1].1, [3.0; DIM]);
}

#[test]
fn mixes_after_wait_for_answers_all_answers_or_the_timeout() {
    let peers: Vec<Identity> = (1..=4).map(toy::identity).collect();
    let mut e = asking(Rule::Mean, &peers);
    assert_eq!(e.poll_timeout(), Some(Duration::from_millis(200)));
    let t = Duration::from_millis(50);
    for (i, p) in peers.iter().enumerate().take(3) {
        let v = [5.0 * (i + 1) as f32; DIM];
        answer(&mut e, t, p, update(p, toy::run_id(), 1, &v));
    }
    assert_eq!(e.round(), 1, "three of four: still collecting");
    e.handle(Duration::from_millis(200), Input::Tick).unwrap();
    let out = drain(&mut e);
    // Mean of 0, 5, 10, 15.
    assert!(
        out.iter().any(|o| matches!(o, Output::Mixed { round: 1, params, inputs: 4, skipped: false, .. } if params.as_deref() == Some(&[7.5; DIM][..]))),
        "{out:?}"
    );
    assert_eq!(out.last(), Some(&Output::Train { round: 2 }));
    // A peer with nothing to give counts as answered: no waiting for the timeout.
    train(&mut e, t, 2, 0.0);
    for p in &peers {
        let input = Input::Fetched {
            peer: p.public(),
            update: None,
        };
        e.handle(Duration::from_millis(60), input).unwrap();
    }
    let out = drain(&mut e);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Mixed {
                round: 2,
                skipped: true,
                ..
            }
        )),
        "nothing received: a skipped mix, reported as such: {out:?}"
    );
}

#[test]
fn a_fetch_for_a_round_not_signed_yet_waits_for_it_or_half_a_timeout() {
    let mut e = lone_engine(Rule::Mean);
    drain(&mut e);
    let asker = toy::identity(3).public();
    let other = toy::identity(4).public();
    let request = |from, request, round| Input::FetchRequested {
        from,
        request,
        round,
        have: None,
    };
    // Round 1 is being trained: a fetch for round 1 waits, one for whatever is answered now.
    e.handle(Duration::ZERO, request(asker, 1, Some(1)))
        .unwrap();
    e.handle(Duration::ZERO, request(other, 2, None)).unwrap();
    assert_eq!(
        drain(&mut e),
        vec![Output::Serve {
            to: other,
            request: 2,
            update: None
        }]
    );
    assert_eq!(
        e.poll_timeout(),
        Some(Duration::from_millis(100)),
        "half of 200 ms"
    );
    let out = {
        let input = Input::Trained {
            round: 1,
            params: vec![3.0; DIM],
            samples: 1,
        };
        e.handle(Duration::from_millis(30), input).unwrap();
        drain(&mut e)
    };
    let served = out.iter().find_map(|o| match o {
        Output::Serve {
            to,
            request: 1,
            update: Some(bytes),
        } if *to == asker => Some(bytes.clone()),
        _ => None,
    });
    let bytes = served.expect("answered once round 1 is signed");
    let u = wire::decode_update(&bytes, e.max_update_bytes()).unwrap();
    assert_eq!(u.header().round, 1);
    assert_eq!(u.params(DIM).unwrap(), vec![3.0; DIM]);
    // A fetch for round 2 while collecting round 1 times out after 100 ms with round 1's.
    e.handle(Duration::from_millis(40), request(asker, 3, Some(2)))
        .unwrap();
    assert_eq!(drain(&mut e), vec![]);
    e.handle(Duration::from_millis(140), Input::Tick).unwrap();
    let out = drain(&mut e);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Serve {
                request: 3,
                update: Some(_),
                ..
            }
        )),
        "{out:?}"
    );
}

/// A node with nobody to ask waits for the round's timeout rather than racing through rounds
/// alone, and a peer that connects meanwhile is drawn and asked at once.
#[test]
fn a_node_alone_waits_and_asks_a_peer_that_connects_in_time() {
    let mut e = asking(Rule::Mean, &[]);
    assert!(e.poll_timeout().is_some(), "waits for peers or the timeout");
    let late = toy::identity(5);
    e.handle(
        Duration::from_millis(10),
        Input::PeerUp {
            peer: late.public(),
        },
    )
    .unwrap();
    assert_eq!(asked(&drain(&mut e)), vec![(late.public(), Some(1))]);
    let bytes = update(&late, toy::run_id(), 1, &[2.0; DIM]);
    let out = answer(&mut e, Duration::from_millis(20), &late, bytes);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Mixed {
                round: 1,
                inputs: 2,
                skipped: false,
                ..
            }
        )),
        "{out:?}"
    );
}

/// A peer gets this node's model a few times a round, then nothing until the next round: the
/// model is the largest thing a node sends.
#[test]
fn a_peer_that_fetches_too_often_gets_nothing_until_the_next_round() {
    let mut e = lone_engine(Rule::Mean);
    drain(&mut e);
    train(&mut e, Duration::ZERO, 1, 1.0);
    let greedy = toy::identity(4).public();
    let served: Vec<bool> = (0..10)
        .map(|request| {
            let input = Input::FetchRequested {
                from: greedy,
                request,
                round: None,
                have: None,
            };
            e.handle(Duration::ZERO, input).unwrap();
            drain(&mut e).iter().any(
                |o| matches!(o, Output::Serve { request: r, update: Some(_), .. } if *r == request),
            )
        })
        .collect();
    assert_eq!(served.iter().filter(|s| **s).count(), 8, "{served:?}");
    assert!(!served[8] && !served[9]);
}

/// Centered clipping's first centre is the node's own model, not zero: a first mix of models
/// next to the node's own keeps them (before, every input was clipped towards zero, and the
/// model shrank to the radius).
#[test]
fn centered_clipping_starts_from_the_own_model() {
    let peer = toy::identity(1);
    let mut c = config(
        Rule::CenteredClipping {
            tau: 1.0,
            iterations: 1,
        },
        100,
    );
    c.fanout = 1;
    c.wait_for = 1;
    let mut setup = toy::setup(0, &c, DIM, 0);
    setup.model = vec![5.0; DIM];
    let mut e = Engine::new(setup).unwrap();
    let start = Input::Start {
        resume: Resume::default(),
        join: false,
    };
    e.handle(Duration::ZERO, start).unwrap();
    e.handle(
        Duration::ZERO,
        Input::PeerUp {
            peer: peer.public(),
        },
    )
    .unwrap();
    train(&mut e, Duration::ZERO, 1, 5.1);
    answer(
        &mut e,
        Duration::ZERO,
        &peer,
        update(&peer, toy::run_id(), 1, &[5.1; DIM]),
    );
    assert!(
        e.model().to_vec().iter().all(|&x| (x - 5.1).abs() < 0.2),
        "{:?}",
        e.model()
    );
}

/// The outlier screen judges received models against the node's own, which is a fair
/// reference for "gross" only when the node is not behind them: a node that started alone (its
/// join found no peer) while the others ran ahead trains from the initial model, and an honest
/// model rounds ahead can then be farther from it than its own length. Behind the lower median
/// of the received rounds, a node pulls such a model in rather than drop it and charge its
/// sender; it still charges when no more than half of what it received is ahead (one peer
/// claiming a later round dodges nothing), and once caught up.
#[test]
fn a_node_behind_the_models_it_receives_pulls_gross_outliers_in_and_charges_none() {
    let peers: Vec<Identity> = (1..=2).map(toy::identity).collect();
    let (near, far) = (peers[0].public(), peers[1].public());
    for (rounds, charged) in [
        ([1, 1], true),
        ([3, 3], false),
        ([1, 3], true),
        ([3, 1], true),
    ] {
        let mut c = config(Rule::Mean, 100);
        c.outlier_factor = crate::engine::config::DEFAULT_OUTLIER_FACTOR;
        c.fanout = 2;
        c.wait_for = 2;
        let mut e = super::setup::started(toy::setup(0, &c, DIM, 0), &peers);
        drain(&mut e);
        // Own model at norm 2.2; the far one 20 away, more than its length and than the
        // factor times the near one's 1.1.
        train(&mut e, Duration::ZERO, 1, 1.0);
        let mut out = Vec::new();
        for (peer, (round, value)) in peers.iter().zip(rounds.into_iter().zip([1.5, 10.0])) {
            let bytes = update(peer, toy::run_id(), round, &[value; DIM]);
            out.extend(answer(&mut e, Duration::from_millis(10), peer, bytes));
        }
        assert!(
            out.iter().any(|o| matches!(o, Output::Mixed { .. })),
            "rounds {rounds:?}: mixed"
        );
        assert_eq!(
            penalised(&out, far, Rejection::Outlier),
            charged,
            "rounds {rounds:?}"
        );
        assert!(!penalised(&out, near, Rejection::Outlier));
        assert_eq!(
            e.stats().pulled_in,
            u64::from(!charged),
            "rounds {rounds:?}"
        );
        if charged {
            continue;
        }
        // Caught up: the next round's far model, of the node's round, is charged.
        let next = out
            .iter()
            .find_map(|o| match o {
                Output::Train { round } => Some(*round),
                _ => None,
            })
            .expect("the next round starts");
        let mut out = train(&mut e, Duration::from_millis(20), next, 1.0);
        for (peer, value) in peers.iter().zip([1.5, 10.0]) {
            let bytes = update(peer, toy::run_id(), next, &[value; DIM]);
            out.extend(answer(&mut e, Duration::from_millis(30), peer, bytes));
        }
        assert!(penalised(&out, far, Rejection::Outlier), "second mix");
    }
}
