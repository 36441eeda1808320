//! A node's life around its rounds: start, resume, join, catch up, checkpoints, and the
//! caller's mistakes.

use super::*;

fn engine(config: Config) -> Engine {
    Engine::new(toy::setup(0, &config, DIM, 0)).unwrap()
}

fn start(e: &mut Engine, now: Duration, resume: Resume, join: bool) {
    e.handle(now, Input::Start { resume, join }).unwrap();
}

fn trained(e: &mut Engine, now: Duration, round: u64, value: f32) {
    let params = vec![value; DIM];
    e.handle(
        now,
        Input::Trained {
            round,
            params,
            samples: 1,
        },
    )
    .unwrap();
}

#[test]
fn a_restart_resumes_past_its_checkpoint_and_signed_round_with_its_bans() {
    let liar = toy::identity(9).public();
    let mut e = engine(config(Rule::Mean, 100));
    let resume = Resume {
        checkpoint: Some(7),
        signed: 9,
        bans: vec![(liar, Rejection::BadSignature)],
    };
    start(&mut e, Duration::ZERO, resume.clone(), false);
    assert_eq!(
        drain(&mut e),
        vec![
            Output::Ban {
                peer: liar,
                reason: Rejection::BadSignature
            },
            Output::Started {
                origin: Origin::Checkpoint,
                round: 10,
                model: None,
                peers: 0
            },
            Output::Train { round: 10 },
        ],
        "rounds 8 and 9 were signed before: never again"
    );
    assert!(e.is_banned(&liar));
    assert_eq!(e.banned(), resume.bans);
    assert_eq!(e.stats().bans, 0, "bans of earlier lives are not new");
    e.handle(Duration::ZERO, Input::PeerUp { peer: liar })
        .unwrap();
    assert_eq!(
        drain(&mut e),
        vec![Output::Ban {
            peer: liar,
            reason: Rejection::BadSignature
        }],
        "a banned peer stays out"
    );
    assert_eq!(
        e.handle(
            Duration::ZERO,
            Input::Start {
                resume,
                join: false
            }
        ),
        Err(InputError::AlreadyStarted)
    );

    let mut fresh = engine(config(Rule::Mean, 100));
    start(&mut fresh, Duration::ZERO, Resume::default(), false);
    assert_eq!(fresh.round(), 1);
    let mut signed_only = engine(config(Rule::Mean, 100));
    let resume = Resume {
        signed: 4,
        ..Resume::default()
    };
    start(&mut signed_only, Duration::ZERO, resume, false);
    assert_eq!(
        signed_only.round(),
        5,
        "no checkpoint, but round 4 was signed"
    );
    assert_eq!(signed_only.completed_round(), 4);
}

#[test]
fn training_results_of_another_round_or_size_are_the_callers_errors() {
    let mut e = engine(config(Rule::Mean, 100));
    let early = e.handle(
        Duration::ZERO,
        Input::Trained {
            round: 1,
            params: vec![0.0; DIM],
            samples: 1,
        },
    );
    assert!(
        matches!(early, Err(InputError::UnexpectedTraining { round: 1, .. })),
        "{early:?}"
    );
    start(&mut e, Duration::ZERO, Resume::default(), false);
    drain(&mut e);
    let wrong_round = e.handle(
        Duration::ZERO,
        Input::Trained {
            round: 2,
            params: vec![0.0; DIM],
            samples: 1,
        },
    );
    assert!(
        matches!(
            wrong_round,
            Err(InputError::UnexpectedTraining { round: 2, .. })
        ),
        "{wrong_round:?}"
    );
    let wrong_size = e.handle(
        Duration::ZERO,
        Input::Trained {
            round: 1,
            params: vec![0.0; DIM + 1],
            samples: 1,
        },
    );
    assert_eq!(
        wrong_size,
        Err(InputError::Dimension {
            expected: DIM,
            got: DIM + 1
        })
    );
    assert_eq!(drain(&mut e), vec![], "nothing happened");
    trained(&mut e, Duration::ZERO, 1, 1.0);
    assert!(e.poll_timeout().is_some(), "the right answer is taken");
}

#[test]
fn checkpoints_are_asked_every_n_rounds_and_at_the_end() {
    let mut c = config(Rule::Mean, 7);
    c.checkpoint_every = 3;
    let mut e = engine(c);
    start(&mut e, Duration::ZERO, Resume::default(), false);
    let mut checkpoints = Vec::new();
    let mut now = Duration::ZERO;
    while !e.is_finished() {
        let round = e.round();
        trained(&mut e, now, round, round as f32);
        now += Duration::from_secs(1);
        e.handle(now, Input::Tick).unwrap();
        for out in drain(&mut e) {
            if let Output::Checkpoint { round } = out {
                assert_eq!(e.completed_round(), round.max(e.completed_round()));
                checkpoints.push(round);
            }
        }
    }
    assert_eq!(checkpoints, vec![3, 6, 7]);
    assert_eq!(e.completed_round(), 7);
}

/// A joiner's config: join 3 peers, 4 s to do it.
fn joiner() -> Config {
    Config {
        join_peers: 3,
        join_timeout_ms: 4000,
        ..config(Rule::Mean, 100)
    }
}

fn fetched(out: &[Output]) -> Vec<PeerKey> {
    out.iter()
        .filter_map(|o| match o {
            Output::Fetch { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

#[test]
fn a_joiner_asks_peers_in_a_drawn_order_and_starts_from_the_median() {
    let ids: Vec<Identity> = (1..=12).map(toy::identity).collect();
    let mut lowest_first = 0;
    for seed in 0..8 {
        let mut e = Engine::new(toy::setup(0, &joiner(), DIM, seed)).unwrap();
        for id in &ids {
            e.handle(Duration::ZERO, Input::PeerUp { peer: id.public() })
                .unwrap();
        }
        start(&mut e, Duration::ZERO, Resume::default(), true);
        let asked = fetched(&drain(&mut e));
        assert_eq!(asked.len(), 3, "12 candidates: the draw is at once");
        let lowest = ids.iter().map(Identity::public).min().unwrap();
        lowest_first += usize::from(asked.contains(&lowest));
        if seed > 0 {
            continue;
        }
        let run = toy::run_id();
        let by_key = |k: PeerKey| ids.iter().find(|id| id.public() == k).unwrap();
        // Two honest answers, one from another run (penalised, replaced), then a liar with a
        // huge model and round: the median keeps the honest range.
        let t = Duration::from_millis(10);
        e.handle(
            t,
            Input::Fetched {
                peer: asked[0],
                update: Some(update(by_key(asked[0]), run, 10, &[1.0; DIM])),
            },
        )
        .unwrap();
        e.handle(
            t,
            Input::Fetched {
                peer: asked[1],
                update: Some(update(by_key(asked[1]), run, 12, &[1.2; DIM])),
            },
        )
        .unwrap();
        let other = RunId::derive(b"another run");
        e.handle(
            t,
            Input::Fetched {
                peer: asked[2],
                update: Some(update(by_key(asked[2]), other, 11, &[1.1; DIM])),
            },
        )
        .unwrap();
        let out = drain(&mut e);
        assert!(out.iter().any(|o| matches!(o,
            Output::Penalize { peer, reason: Rejection::WrongRun, .. } if *peer == asked[2])));
        let replacement = fetched(&out);
        assert_eq!(replacement.len(), 1, "room made for another peer: {out:?}");
        assert!(!asked.contains(&replacement[0]));
        e.handle(
            t,
            Input::Fetched {
                peer: replacement[0],
                update: Some(update(by_key(replacement[0]), run, 1000, &[1e6; DIM])),
            },
        )
        .unwrap();
        let out = drain(&mut e);
        assert_eq!(
            out[0],
            Output::Started {
                origin: Origin::Joined,
                round: 13,
                model: Some(vec![1.2; DIM]),
                peers: 3
            },
            "lower median of rounds 10, 12, 1000; coordinate median of the models"
        );
        assert_eq!(out[1], Output::Train { round: 13 });
        assert_eq!(e.model().to_vec(), [1.2; DIM]);
    }
    assert!(
        (1..8).contains(&lowest_first),
        "the lowest key was asked in {lowest_first} of 8 draws of 3 among 12"
    );
}

/// The first nodes of a run have no model to give a joiner: one peer that answers with a signed
/// update of a huge round must not set the joiner's round (its updates would then be refused by
/// every honest peer as too far ahead, for good: the round survives restarts) nor its model. An
/// answer without a model counts as round 0 in the lower median of the rounds. A lone answer of
/// the largest round does not overflow either.
#[test]
fn a_lone_liar_among_peers_without_a_model_sets_no_joiners_round() {
    let ids: Vec<Identity> = (1..=12).map(toy::identity).collect();
    let by_key = |k: PeerKey| ids.iter().find(|id| id.public() == k).unwrap();
    for liar_round in [1_000_000, u64::MAX] {
        let mut e = Engine::new(toy::setup(0, &joiner(), DIM, 5)).unwrap();
        for id in &ids {
            e.handle(Duration::ZERO, Input::PeerUp { peer: id.public() })
                .unwrap();
        }
        start(&mut e, Duration::ZERO, Resume::default(), true);
        let mut liar = None;
        let t = Duration::from_millis(10);
        let started = loop {
            let out = drain(&mut e);
            if let Some(s) = out.iter().find(|o| matches!(o, Output::Started { .. })) {
                break s.clone();
            }
            let asked = fetched(&out);
            assert!(!asked.is_empty(), "{out:?}");
            for peer in asked {
                let update = liar
                    .is_none()
                    .then(|| update(by_key(peer), toy::run_id(), liar_round, &[1e6; DIM]));
                liar.get_or_insert(peer);
                e.handle(t, Input::Fetched { peer, update }).unwrap();
            }
        };
        assert_eq!(
            started,
            Output::Started {
                origin: Origin::Fresh,
                round: 1,
                model: None,
                peers: 0
            },
            "liar at round {liar_round}"
        );
    }
    // The liar alone: the joiner trusts its only answer. It does not overflow, and with no last
    // round configured it finishes there rather than sign the largest round twice (which would
    // be equivocation).
    let endless = Config {
        rounds: None,
        ..joiner()
    };
    let mut e = Engine::new(toy::setup(0, &endless, DIM, 5)).unwrap();
    let peer = ids[0].public();
    e.handle(Duration::ZERO, Input::PeerUp { peer }).unwrap();
    start(&mut e, Duration::ZERO, Resume::default(), true);
    e.handle(Duration::from_secs(1), Input::Tick).unwrap();
    assert_eq!(fetched(&drain(&mut e)), vec![peer]);
    let update = Some(update(&ids[0], toy::run_id(), u64::MAX, &[1.0; DIM]));
    e.handle(Duration::from_secs(1), Input::Fetched { peer, update })
        .unwrap();
    e.handle(Duration::from_secs(4), Input::Tick).unwrap();
    let out = drain(&mut e);
    assert!(
        matches!(
            out[0],
            Output::Started {
                round: u64::MAX,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(out.contains(&Output::Finished), "{out:?}");
    assert!(
        !out.iter().any(|o| matches!(o, Output::Train { .. })),
        "{out:?}"
    );
}

/// An answer without a model votes round 0, so one such answer and one model would make the
/// lower median 0: a joiner that wants one model asks two more peers after such an answer, and
/// starts from their models.
#[test]
fn a_joiner_asks_on_until_models_outnumber_answers_without_one() {
    let ids: Vec<Identity> = (1..=12).map(toy::identity).collect();
    let by_key = |k: PeerKey| ids.iter().find(|id| id.public() == k).unwrap();
    let config = Config {
        join_peers: 1,
        ..joiner()
    };
    let mut e = Engine::new(toy::setup(0, &config, DIM, 2)).unwrap();
    for id in &ids {
        e.handle(Duration::ZERO, Input::PeerUp { peer: id.public() })
            .unwrap();
    }
    start(&mut e, Duration::ZERO, Resume::default(), true);
    let t = Duration::from_millis(10);
    let first = fetched(&drain(&mut e));
    assert_eq!(first.len(), 1);
    e.handle(
        t,
        Input::Fetched {
            peer: first[0],
            update: None,
        },
    )
    .unwrap();
    let more = fetched(&drain(&mut e));
    assert_eq!(more.len(), 2, "two models to outnumber it");
    let model = |peer: PeerKey| Some(update(by_key(peer), toy::run_id(), 10, &[2.0; DIM]));
    e.handle(
        t,
        Input::Fetched {
            peer: more[0],
            update: model(more[0]),
        },
    )
    .unwrap();
    assert!(
        !drain(&mut e)
            .iter()
            .any(|o| matches!(o, Output::Started { .. })),
        "one model against one answer without"
    );
    e.handle(
        t,
        Input::Fetched {
            peer: more[1],
            update: model(more[1]),
        },
    )
    .unwrap();
    let out = drain(&mut e);
    assert_eq!(
        out[0],
        Output::Started {
            origin: Origin::Joined,
            round: 11,
            model: Some(vec![2.0; DIM]),
            peers: 2
        }
    );
}

#[test]
fn a_joiner_with_few_peers_waits_for_the_draw_then_the_deadline_and_starts_fresh() {
    let mut e = Engine::new(toy::setup(0, &joiner(), DIM, 3)).unwrap();
    start(&mut e, Duration::ZERO, Resume::default(), true);
    let a = toy::identity(1).public();
    let b = toy::identity(2).public();
    for peer in [a, b] {
        e.handle(Duration::ZERO, Input::PeerUp { peer }).unwrap();
    }
    assert_eq!(drain(&mut e), vec![], "two candidates: wait for more");
    assert_eq!(
        e.poll_timeout(),
        Some(Duration::from_secs(1)),
        "a quarter of 4 s"
    );
    e.handle(Duration::from_secs(1), Input::Tick).unwrap();
    let mut asked = fetched(&drain(&mut e));
    asked.sort();
    assert_eq!(asked, vec![a.min(b), a.max(b)]);
    assert_eq!(
        e.poll_timeout(),
        Some(Duration::from_secs(4)),
        "the deadline"
    );
    // Neither has a model yet (the first nodes of a run); nobody else connects.
    let t = Duration::from_millis(1100);
    e.handle(
        t,
        Input::Fetched {
            peer: a,
            update: None,
        },
    )
    .unwrap();
    e.handle(t, Input::PeerDown { peer: b }).unwrap();
    assert_eq!(
        drain(&mut e),
        vec![],
        "more peers may connect before the deadline"
    );
    e.handle(Duration::from_secs(4), Input::Tick).unwrap();
    let out = drain(&mut e);
    assert_eq!(
        out[0],
        Output::Started {
            origin: Origin::Fresh,
            round: 1,
            model: None,
            peers: 0
        }
    );
}

#[test]
fn a_restart_catches_up_only_when_its_checkpoint_is_stale() {
    let peer = toy::identity(1);
    for (their_round, origin, first) in [
        (20, Origin::CaughtUp, 21),
        // Within max-staleness (4) of the checkpoint: keep the own model; round 4 was signed.
        (7, Origin::Checkpoint, 5),
    ] {
        let mut e = Engine::new(toy::setup(0, &joiner(), DIM, 1)).unwrap();
        e.handle(
            Duration::ZERO,
            Input::PeerUp {
                peer: peer.public(),
            },
        )
        .unwrap();
        let resume = Resume {
            checkpoint: Some(3),
            signed: 4,
            bans: Vec::new(),
        };
        start(&mut e, Duration::ZERO, resume, true);
        e.handle(Duration::from_secs(1), Input::Tick).unwrap();
        assert_eq!(fetched(&drain(&mut e)), vec![peer.public()]);
        let bytes = update(&peer, toy::run_id(), their_round, &[2.0; DIM]);
        e.handle(
            Duration::from_secs(1),
            Input::Fetched {
                peer: peer.public(),
                update: Some(bytes),
            },
        )
        .unwrap();
        // One answer of the three wanted: the node starts at the deadline.
        e.handle(Duration::from_secs(4), Input::Tick).unwrap();
        let out = drain(&mut e);
        let Output::Started {
            origin: o,
            round,
            model,
            ..
        } = &out[0]
        else {
            panic!("{out:?}");
        };
        assert_eq!((*o, *round), (origin, first), "peers at {their_round}");
        assert_eq!(model.is_some(), origin == Origin::CaughtUp);
    }
}

#[test]
fn an_attacker_believes_the_run_is_its_peers_unless_told() {
    let mut e = engine(config(Rule::Mean, 10));
    for i in 1..=5 {
        e.handle(
            Duration::ZERO,
            Input::PeerUp {
                peer: toy::identity(i).public(),
            },
        )
        .unwrap();
    }
    let guess = Adversary::new(Attack::SignFlip);
    assert_eq!(e.believed_size(&guess), (6, 1));
    let told = Adversary {
        n: Some(16),
        f: Some(3),
        push: false,
        ..guess
    };
    assert_eq!(e.believed_size(&told), (16, 3));
}

/// Updates move by pull: one pushed at a joiner unasked is refused as unsolicited (and not
/// kept), and the same update fetched a moment later is a good answer, not a duplicate.
#[test]
fn a_joiner_refuses_a_pushed_update_and_takes_it_fetched() {
    let peer = toy::identity(1);
    let mut e = Engine::new(toy::setup(0, &joiner(), DIM, 2)).unwrap();
    start(&mut e, Duration::ZERO, Resume::default(), true);
    e.handle(
        Duration::ZERO,
        Input::PeerUp {
            peer: peer.public(),
        },
    )
    .unwrap();
    let bytes = update(&peer, toy::run_id(), 5, &[2.0; DIM]);
    e.handle(
        Duration::from_millis(10),
        Input::UpdateReceived {
            from: peer.public(),
            bytes: bytes.clone(),
        },
    )
    .unwrap();
    drain(&mut e);
    assert_eq!(
        e.stats().rejected.get(&Rejection::Unsolicited),
        Some(&1),
        "{:?}",
        e.stats().rejected
    );
    e.handle(Duration::from_secs(1), Input::Tick).unwrap();
    assert_eq!(fetched(&drain(&mut e)), vec![peer.public()]);
    e.handle(
        Duration::from_secs(1),
        Input::Fetched {
            peer: peer.public(),
            update: Some(bytes),
        },
    )
    .unwrap();
    assert_eq!(drain(&mut e), vec![], "no penalty");
    e.handle(Duration::from_secs(4), Input::Tick).unwrap();
    let out = drain(&mut e);
    assert_eq!(
        out[0],
        Output::Started {
            origin: Origin::Joined,
            round: 6,
            model: Some(vec![2.0; DIM]),
            peers: 1
        }
    );
    assert_eq!(e.stats().rejected.len(), 1, "{:?}", e.stats().rejected);
}

/// A node one round behind the peers it mixes with trains the round they are on next, not the
/// one after: catching up skips no training of its own. Far behind, one catch-up moves it at
/// most `max-staleness` rounds.
#[test]
fn a_node_one_round_behind_does_not_skip_a_round() {
    let mut c = config(Rule::Mean, 100);
    c.fanout = 4;
    let mut e = engine(c);
    start(&mut e, Duration::ZERO, Resume::default(), false);
    let peers: Vec<Identity> = (1..=4).map(toy::identity).collect();
    for p in &peers {
        e.handle(Duration::ZERO, Input::PeerUp { peer: p.public() })
            .unwrap();
    }
    let answer_all = |e: &mut Engine, now: Duration, round: u64| {
        for p in &peers {
            let input = Input::Fetched {
                peer: p.public(),
                update: Some(update(p, toy::run_id(), round, &[1.0; DIM])),
            };
            e.handle(now, input).unwrap();
        }
        drain(e)
    };
    trained(&mut e, Duration::ZERO, 1, 0.0);
    drain(&mut e);
    // Its peers are a round ahead: their answers are of round 2.
    let out = answer_all(&mut e, Duration::from_millis(10), 2);
    assert!(
        out.contains(&Output::Train { round: 2 }),
        "trains round 2 next: {out:?}"
    );
    // Far behind (its peers at round 12): it moves 4 rounds (max-staleness) at once.
    trained(&mut e, Duration::from_millis(20), 2, 0.0);
    drain(&mut e);
    let out = answer_all(&mut e, Duration::from_millis(30), 12);
    assert!(out.contains(&Output::Train { round: 7 }), "{out:?}");
}

/// The catch-up follows the lower median of the rounds mixed (its own included): half of them
/// lying about their round cannot drag a node ahead, only more than half can. With the own round
/// and three answers, two far ahead, the upper median was a liar's round, and the node skipped
/// four rounds of training: two of a node's three answers come from Byzantine peers in about
/// 15% of the rounds of the robustness table (3 attackers of 16, 4 peers drawn).
#[test]
fn half_the_answers_lying_about_their_round_cannot_drag_a_node_ahead() {
    for (liars, next) in [(2, 2), (3, 6)] {
        let mut c = config(Rule::Mean, 100);
        c.fanout = 3;
        c.wait_for = 3;
        let mut e = engine(c);
        start(&mut e, Duration::ZERO, Resume::default(), false);
        let peers: Vec<Identity> = (1..=3).map(toy::identity).collect();
        for p in &peers {
            e.handle(Duration::ZERO, Input::PeerUp { peer: p.public() })
                .unwrap();
        }
        trained(&mut e, Duration::ZERO, 1, 0.0);
        drain(&mut e);
        let mut out = Vec::new();
        for (i, p) in peers.iter().enumerate() {
            let round = if i < 3 - liars { 1 } else { 50 };
            let input = Input::Fetched {
                peer: p.public(),
                update: Some(update(p, toy::run_id(), round, &[1.0; DIM])),
            };
            e.handle(Duration::from_millis(10), input).unwrap();
            out.extend(drain(&mut e));
        }
        assert!(
            out.contains(&Output::Train { round: next }),
            "{liars} of 3 answers at round 50: {out:?}"
        );
    }
}
