//! What a node's setup changes in the exchange: static graph weights in the mix, the run's
//! payload codec, and the reference model of an attacker that forges in update space.

use super::exchange::{answer, penalised, train};
use super::knowledge::{params, served};
use super::*;

/// An engine built from `setup`, started, with `peers` connected.
pub(super) fn started(setup: Setup, peers: &[Identity]) -> Engine {
    let mut e = Engine::new(setup).unwrap();
    let start = Input::Start {
        resume: Resume::default(),
        join: false,
    };
    e.handle(Duration::ZERO, start).unwrap();
    for p in peers {
        e.handle(Duration::ZERO, Input::PeerUp { peer: p.public() })
            .unwrap();
    }
    e
}

/// On a fixed graph a node mixes with its static weights (Metropolis-Hastings in the
/// simulator): each neighbour's model weighs its `W_ij`, the own model the rest, and a
/// neighbour that does not answer leaves its weight with the node instead of handing it to the
/// others.
#[test]
fn static_graph_weights_weigh_the_mix_and_a_silent_neighbour_leaves_its_share_home() {
    let peers: Vec<Identity> = (1..=2).map(toy::identity).collect();
    let mut c = config(Rule::Mean, 100);
    c.fanout = 2;
    c.wait_for = 2;
    let setup = Setup {
        weights: [(peers[0].public(), 0.5), (peers[1].public(), 0.2)]
            .into_iter()
            .collect(),
        ..toy::setup(0, &c, DIM, 0)
    };
    let mut e = started(setup, &peers);
    let close = |params: &[f32], v: f32| params.iter().all(|x| (x - v).abs() < 1e-4);
    let mixed = |out: &[Output], round: u64| {
        out.iter()
            .find_map(|o| match o {
                Output::Mixed {
                    round: r, params, ..
                } if *r == round => params.clone(),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no mix of round {round}: {out:?}"))
    };
    train(&mut e, Duration::ZERO, 1, 0.0);
    let t = Duration::from_millis(50);
    answer(
        &mut e,
        t,
        &peers[0],
        update(&peers[0], toy::run_id(), 1, &[10.0; DIM]),
    );
    let out = answer(
        &mut e,
        t,
        &peers[1],
        update(&peers[1], toy::run_id(), 1, &[20.0; DIM]),
    );
    // 0.3 x 0 + 0.5 x 10 + 0.2 x 20 = 9 (equal weights would give 10).
    let m = mixed(&out, 1);
    assert!(close(&m, 9.0), "{m:?}");
    // Round 2: only the first neighbour answers before the timeout; the second's 0.2 stays with
    // the node: 0.5 x 0 + 0.5 x 10 = 5 (renormalising over the answers would give 6.25).
    train(&mut e, t, 2, 0.0);
    answer(
        &mut e,
        t,
        &peers[0],
        update(&peers[0], toy::run_id(), 2, &[10.0; DIM]),
    );
    e.handle(Duration::from_secs(60), Input::Tick).unwrap();
    let m = mixed(&drain(&mut e), 2);
    assert!(close(&m, 5.0), "{m:?}");
}

/// An attacker in update space forges relative to the model its round's training started from:
/// with no honest model seen, IPM (epsilon 0.5) on the updates turns its own step, from the
/// initial 1 to a trained 4, back from 1: 1 - 0.5 x 3 = -0.5; on the models it sends -0.5 x 4.
#[test]
fn an_attacker_in_update_space_forges_from_its_model_before_training() {
    let peer = toy::identity(1);
    let mut c = config(Rule::Mean, 100);
    c.fanout = 1;
    c.wait_for = 1;
    let served_after_training = |space: &str| {
        let attack: crate::attack::Attack = serde_json::from_str(&format!(
            r#"{{"kind": "ipm", "epsilon": 0.5, "space": "{space}"}}"#
        ))
        .unwrap();
        let setup = Setup {
            adversary: Some(Adversary {
                n: Some(4),
                f: Some(1),
                ..Adversary::new(attack)
            }),
            model: vec![1.0; DIM],
            ..toy::setup(0, &c, DIM, 0)
        };
        let mut e = started(setup, std::slice::from_ref(&peer));
        train(&mut e, Duration::ZERO, 1, 4.0);
        let bytes = served(&mut e, &peer, 1);
        params(&e, &bytes)
    };
    assert_eq!(served_after_training("update"), vec![-0.5; DIM]);
    assert_eq!(served_after_training("model"), vec![-2.0; DIM]);
}

/// A run's codec is signed in every update: a node in `bf16` mixes `bf16` updates and rejects
/// an `f32` one by reason, at a misconfigured peer's price; its own answers are `bf16`.
#[test]
fn an_update_in_another_codec_is_rejected_by_reason() {
    let peer = toy::identity(1);
    let mut c = config(Rule::Mean, 100);
    c.fanout = 1;
    c.wait_for = 1;
    c.codec = Codec::Bf16Le;
    let mut e = started(toy::setup(0, &c, DIM, 0), std::slice::from_ref(&peer));
    train(&mut e, Duration::ZERO, 1, 0.0);
    let t = Duration::from_millis(50);
    let out = answer(
        &mut e,
        t,
        &peer,
        update(&peer, toy::run_id(), 1, &[1.0; DIM]),
    );
    assert!(
        penalised(&out, peer.public(), Rejection::WrongCodec),
        "{out:?}"
    );
    assert_eq!(rejected(&e, Rejection::WrongCodec), 1);
    // Round 2: the same peer in bf16 is mixed.
    e.handle(Duration::from_secs(60), Input::Tick).unwrap();
    drain(&mut e);
    train(&mut e, t, 2, 0.0);
    let payload = wire::encode_params_as(Codec::Bf16Le, &[1.0; DIM]);
    let (bytes, _) = wire::encode_update(&peer, toy::run_id(), 2, 1, Codec::Bf16Le, &payload);
    let out = answer(&mut e, t, &peer, bytes.into());
    assert!(
        out.iter().any(|o| matches!(o, Output::Mixed { round: 2, params, skipped: false, .. } if params.as_deref() == Some(&[0.5; DIM][..]))),
        "{out:?}"
    );
    // What it serves is bf16.
    let bytes = served(&mut e, &peer, 9);
    let u = wire::decode_update(&bytes, e.max_update_bytes()).unwrap();
    assert_eq!(u.header().codec, Codec::Bf16Le);
}

/// A blockwise codec is signed with its block: a node in `int8` (block 16) rejects `int8` in
/// another block size as a misconfigured peer's, mixes its own codec, and serves its model in
/// it.
#[test]
fn a_blockwise_codec_is_signed_with_its_block_and_rounds_from_the_seed() {
    let peer = toy::identity(1);
    let mut c = config(Rule::Mean, 100);
    c.fanout = 1;
    c.wait_for = 1;
    c.codec = Codec::Int8 { block: 16 };
    let serve_after_training = |seed: u64, other: Codec| {
        let mut e = started(toy::setup(0, &c, DIM, seed), std::slice::from_ref(&peer));
        train(&mut e, Duration::ZERO, 1, 0.3);
        let (bytes, _) = wire::encode_update(
            &peer,
            toy::run_id(),
            1,
            1,
            other,
            &wire::encode_params_as(other, &[1.0; DIM]),
        );
        let out = answer(&mut e, Duration::from_millis(5), &peer, bytes.into());
        let bytes = served(&mut e, &toy::identity(2), 1);
        (e, out, bytes)
    };
    let (e, out, bytes) = serve_after_training(0, Codec::Int8 { block: 32 });
    assert!(
        penalised(&out, peer.public(), Rejection::WrongCodec),
        "{out:?}"
    );
    assert_eq!(rejected(&e, Rejection::WrongCodec), 1);
    let u = wire::decode_update(&bytes, e.max_update_bytes()).unwrap();
    assert_eq!(u.header().codec, Codec::Int8 { block: 16 });
    // 0.3 lies between two levels of the scale 0.3 / 127: every value is the top level.
    assert!(params(&e, &bytes).iter().all(|v| (v - 0.3).abs() < 1e-6));
    let (e, out, _) = serve_after_training(0, Codec::Int8 { block: 16 });
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Mixed { params: Some(params), .. } if params.iter().all(|v| (v - 0.65).abs() < 1e-6))),
        "{out:?}"
    );
    assert_eq!(rejected(&e, Rejection::WrongCodec), 0);
}

/// Eight honest nodes in `int8` converge to the mean of their optima, to within a few
/// quantization steps: stochastic rounding adds noise without bias, but the noise does not
/// decay with the step size (in `f32` the same nodes end within 0.05; the optima lie near 5,
/// so a level is 5/127 = 0.04). Differences against a shared reference (CHOCO) remove that floor.
#[test]
fn honest_engines_converge_with_int8_payloads() {
    for seed in 1..=3 {
        let mut c = config(Rule::Mean, ROUNDS);
        c.codec = Codec::Int8 { block: 16 };
        let (d, _, _) = run_with(c, 8, 0, None, seed);
        assert!(d < 0.2, "seed {seed}: worst distance {d}");
    }
}

/// A run that lists its members: a key outside the list is banned when it connects (and kept
/// in no table), never drawn, served nothing, and what it publishes, pushes or answers is
/// refused as `not_member` at no points; the members are drawn and served as before.
#[test]
fn a_key_outside_the_runs_members_is_refused_everything_at_no_points() {
    let members: Vec<Identity> = (1..=2).map(toy::identity).collect();
    let outsider = toy::identity(5);
    let mut c = config(Rule::Mean, 100);
    c.fanout = 3;
    c.wait_for = 2;
    let list = crate::members::Members::new(
        members
            .iter()
            .map(Identity::public)
            .chain([toy::identity(0).public()]),
    );
    let setup = Setup {
        members: Some(Arc::new(list)),
        ..toy::setup(0, &c, DIM, 0)
    };
    let mut all = members.clone();
    all.push(outsider.clone());
    let mut e = started(setup, &[]);
    drain(&mut e);
    let mut out = Vec::new();
    for p in &all {
        e.handle(Duration::ZERO, Input::PeerUp { peer: p.public() })
            .unwrap();
        out.extend(drain(&mut e));
    }
    let o = outsider.public();
    let reason = Rejection::NotMember;
    assert_eq!(out, vec![Output::Ban { peer: o, reason }]);
    assert_eq!(
        e.banned().len(),
        0,
        "no record kept of a key outside the list"
    );
    assert!(e.keeps_out(&o), "the caller keeps it out all the same");
    // Drawn: the two members only, though the fanout is three.
    let asked: BTreeSet<PeerKey> = train(&mut e, Duration::ZERO, 1, 0.0)
        .iter()
        .filter_map(|x| match x {
            Output::Fetch { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(asked, members.iter().map(Identity::public).collect());
    // Served nothing; a member is served the model.
    let ask = |e: &mut Engine, who: &Identity, request| {
        let input = Input::FetchRequested {
            from: who.public(),
            request,
            round: None,
            have: None,
        };
        e.handle(Duration::ZERO, input).unwrap();
        drain(e)
    };
    let to_outsider = ask(&mut e, &outsider, 7);
    assert!(
        matches!(to_outsider[..], [Output::Serve { to, request: 7, update: None }] if to == o),
        "{to_outsider:?}"
    );
    assert!(matches!(
        ask(&mut e, &members[0], 8)[..],
        [Output::Serve {
            update: Some(_),
            ..
        }]
    ));
    // Its gossip is rejected (the layer drops it), its push and its answer are dropped.
    let gossip = Input::GossipReceived {
        author: o,
        relayer: members[0].public(),
        message: 3,
        bytes: Arc::from(&b"anything"[..]),
    };
    e.handle(Duration::ZERO, gossip).unwrap();
    let verdict = drain(&mut e);
    assert_eq!(
        verdict,
        vec![Output::GossipChecked {
            message: 3,
            verdict: GossipVerdict::Reject
        }]
    );
    let forged = update(&outsider, toy::run_id(), 1, &[9.0; DIM]);
    for input in [
        Input::UpdateReceived {
            from: o,
            bytes: forged.clone(),
        },
        Input::Fetched {
            peer: o,
            update: Some(forged),
        },
        Input::PeerDown { peer: o },
    ] {
        e.handle(Duration::ZERO, input).unwrap();
        let out = drain(&mut e);
        assert!(out.is_empty(), "{out:?}");
    }
    // Evidence a member relays against an outsider's equivocation is ignored: acting on it
    // would let anyone fill the bounded ban table with keys made for the purpose.
    let header = |payload: &[u8]| {
        wire::encode_update(&outsider, toy::run_id(), 2, 1, Codec::F32Le, payload).1
    };
    let evidence = Equivocation::new(header(&[1; 4 * DIM]), header(&[2; 4 * DIM])).unwrap();
    let gossip = Input::GossipReceived {
        author: members[0].public(),
        relayer: members[0].public(),
        message: 4,
        bytes: evidence.encode().into(),
    };
    e.handle(Duration::ZERO, gossip).unwrap();
    assert_eq!(
        drain(&mut e),
        vec![Output::GossipChecked {
            message: 4,
            verdict: GossipVerdict::Ignore
        }]
    );
    assert_eq!(e.banned().len(), 0);
    // Counted by reason, at no points: PeerUp, fetch, gossip, push and answer (not PeerDown).
    assert_eq!(rejected(&e, reason), 5);
    assert_eq!(reason.penalty(100), 0);
    // The members' answers make the mix.
    answer(
        &mut e,
        Duration::ZERO,
        &members[0],
        update(&members[0], toy::run_id(), 1, &[2.0; DIM]),
    );
    let out = answer(
        &mut e,
        Duration::ZERO,
        &members[1],
        update(&members[1], toy::run_id(), 1, &[4.0; DIM]),
    );
    assert!(
        out.iter().any(|x| matches!(x, Output::Mixed { round: 1, peers, .. } if !peers.contains(&o) && peers.len() == 2)),
        "{out:?}"
    );
    // A ban of an earlier life on a key now outside the list takes no place in the table.
    let mut again = Engine::new(Setup {
        members: e.members.clone(),
        ..toy::setup(0, &c, DIM, 0)
    })
    .unwrap();
    let resume = Resume {
        bans: vec![
            (o, Rejection::Equivocation),
            (members[1].public(), Rejection::Malformed),
        ],
        ..Resume::default()
    };
    let start = Input::Start {
        resume,
        join: false,
    };
    again.handle(Duration::ZERO, start).unwrap();
    assert_eq!(
        again.banned(),
        vec![(members[1].public(), Rejection::Malformed)]
    );
}
