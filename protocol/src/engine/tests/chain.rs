//! The `top-k` codec's chain of increments: copies that follow their sender bit for bit, what
//! a sender answers an asker that missed rounds, and what hostile increments cost.

use super::exchange::train_to;
use super::knowledge::served_at;
use super::setup::started;
use super::*;
use crate::engine::receive::Keep;
use crate::sparse;
use crate::wire::Codec;

/// Large enough for a bundle of every increment a sender keeps to fit the size of one model.
const D: usize = 4096;
/// 4 coordinates an increment.
const PPM: u32 = 976;
/// The coordinates the test models change (the others stay at the initial model's 0).
const CHANGED: usize = 64;

fn chain_config() -> Config {
    let mut c = config(Rule::Mean, 100);
    c.codec = Codec::TopK { ppm: PPM };
    c.fanout = 1;
    c.wait_for = 1;
    c
}

/// A model whose first [`CHANGED`] coordinates differ from one round to the next.
fn model(round: u64) -> Vec<f32> {
    (0..D)
        .map(|i| match i < CHANGED {
            true => ((round as f32 + 1.0) * (i as f32 + 0.5)).sin() * (1.0 + i as f32 / 8.0),
            false => 0.0,
        })
        .collect()
}

/// `e` trains `round` to `params` and, with no answer, mixes alone at its deadline.
fn round_alone(e: &mut Engine, round: u64, params: Vec<f32>) {
    let now = Duration::from_secs(round);
    train_to(e, now, round, params);
    e.handle(now + Duration::from_millis(500), Input::Tick)
        .unwrap();
    drain(e);
}

/// What `e` serves `asker` at `now`, whose copy of its estimate is of round `have`.
fn ask(e: &mut Engine, now: Duration, asker: &Identity, have: Option<u64>) -> Arc<[u8]> {
    served_at(e, now, asker, 1, have)
}

fn estimate(e: &Engine) -> &[f32] {
    &e.chain.as_ref().expect("top-k").estimate
}

/// A receiver that asks every round gets one increment a round (a few dozen bytes, not the
/// model) and holds a copy bit-identical to the sender's estimate; one that asks after 7 rounds
/// gets the 7 increments in one bundle, and one that asks after more rounds than the sender
/// keeps gets a snapshot; both end bit-identical too. When the model stops changing, the
/// estimate reaches it exactly: what was not sent is sent later (error feedback).
#[test]
fn copies_follow_their_sender_bit_for_bit_whatever_rounds_they_miss() {
    let c = chain_config();
    let (s_id, a_id, b_id) = (toy::identity(0), toy::identity(1), toy::identity(2));
    let sender = s_id.public();
    let mut s = started(
        toy::setup(0, &c, D, 0),
        &[toy::identity(1), toy::identity(2)],
    );
    let mut a = started(toy::setup(1, &c, D, 0), &[toy::identity(0)]);
    let mut b = started(toy::setup(2, &c, D, 0), &[toy::identity(0)]);
    let k = sparse::count(D, PPM);
    assert_eq!(k, 4);
    let increment_bytes = wire::update_len_bound(sparse::payload_len(k));
    let full = wire::max_update_len(D);
    for round in 1..=40u64 {
        // The model stops changing after round 24.
        round_alone(&mut s, round, model(round.min(24)));
        let now = Duration::from_secs(round) + Duration::from_millis(600);
        let bytes = ask(&mut s, now, &a_id, a.have(&sender));
        assert!(
            bytes.len() < increment_bytes + 8,
            "round {round}: {} bytes for one increment",
            bytes.len()
        );
        let got = a
            .check(sender, &bytes, (0, u64::MAX), true, Keep::Params)
            .unwrap();
        assert_eq!(got.round, round);
        assert_eq!(got.params, estimate(&s), "round {round}: a's copy");
        if matches!(round, 3 | 10 | 30) {
            let bytes = ask(&mut s, now, &b_id, b.have(&sender));
            let got = b
                .check(sender, &bytes, (0, u64::MAX), true, Keep::Params)
                .unwrap();
            assert_eq!(got.params, estimate(&s), "round {round}: b's copy");
            match round {
                // 7 increments, far less than a model.
                10 => assert!(
                    bytes.len() < 7 * (increment_bytes + 4) + 3 && bytes.len() < full / 2,
                    "{} bytes",
                    bytes.len()
                ),
                // 20 rounds missed, 16 kept: the estimate whole.
                30 => assert!(bytes.len() > D * 4, "{} bytes", bytes.len()),
                _ => {}
            }
        }
    }
    // 16 rounds of 4 coordinates since the model stopped changing: all 64 sent (each to within
    // the rounding of `e + (x - e)`).
    let gap = |v: &[f32]| {
        v.iter()
            .zip(model(24))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    };
    assert!(gap(estimate(&s)) < 1e-6, "{}", gap(estimate(&s)));
    // Asked again with nothing new, it serves the newest increment, which changes nothing.
    let bytes = ask(&mut s, Duration::from_secs(50), &a_id, a.have(&sender));
    let got = a
        .check(sender, &bytes, (0, u64::MAX), true, Keep::Params)
        .unwrap();
    assert_eq!(got.round, 40);
    assert_eq!(got.params, estimate(&s));
}

/// With `last-fraction`, the increments of the last training round on carry that fraction:
/// the copy still follows its sender bit for bit, an increment of the wrong size for its round
/// is refused, and a sender keeps no more of the larger increments than one bundle of a model's
/// bytes can carry (an asker from before them gets the estimate whole).
#[test]
fn the_last_rounds_increments_carry_the_last_fraction() {
    let mut c = chain_config();
    c.rounds = Some(5);
    // 16 coordinates from round 5 on, against 4 before.
    c.last_fraction = Some(0.003906);
    c.validate().unwrap();
    let (s_id, a_id) = (toy::identity(0), toy::identity(1));
    let sender = s_id.public();
    let mut s = started(toy::setup(0, &c, D, 0), std::slice::from_ref(&a_id));
    let mut a = started(toy::setup(1, &c, D, 0), std::slice::from_ref(&s_id));
    let (k, k_last) = (sparse::count(D, PPM), 16);
    let bound = |k| wire::update_len_bound(sparse::payload_len(k)) + 8;
    let mut sizes = Vec::new();
    for round in 1..=5u64 {
        round_alone(&mut s, round, model(round));
        let now = Duration::from_secs(round) + Duration::from_millis(600);
        let bytes = ask(&mut s, now, &a_id, a.have(&sender));
        let size = if round < 5 { bound(k) } else { bound(k_last) };
        assert!(bytes.len() < size, "round {round}: {} bytes", bytes.len());
        sizes.push(bytes.len());
        let got = a
            .check(sender, &bytes, (0, u64::MAX), true, Keep::Params)
            .unwrap();
        assert_eq!((got.round, got.params.as_slice()), (round, estimate(&s)));
    }
    // 12 more coordinates of 8 bytes in the last round.
    assert_eq!(sizes[4] - sizes[3], 8 * (k_last - k), "{sizes:?}");

    // A peer's increments of the wrong size for their rounds: refused, the copy unchanged.
    let p = toy::identity(3);
    let peer = p.public();
    let mut e = started(toy::setup(1, &c, D, 0), std::slice::from_ref(&p));
    let sign = |round: u64, payload: &[u8]| -> Vec<u8> {
        wire::encode_update(&p, toy::run_id(), round, 1, c.codec, payload).0
    };
    let indices = |n: u32| (0..n).map(|i| 3 * i).collect::<Vec<u32>>();
    let of =
        |base, round, n: u32| sign(round, &increment(base, &indices(n), &vec![1.0; n as usize]));
    let check = |e: &mut Engine, bytes: &[u8]| {
        e.check(peer, &Arc::from(bytes), (0, u64::MAX), true, Keep::Params)
            .map(|c| c.round)
    };
    assert_eq!(check(&mut e, &of(0, 1, 16)), Err(Rejection::WrongDimension));
    assert_eq!(check(&mut e, &of(0, 1, 4)), Ok(1));
    assert_eq!(check(&mut e, &of(1, 5, 4)), Err(Rejection::WrongDimension));
    assert_eq!(e.have(&peer), Some(1));
    assert_eq!(check(&mut e, &of(1, 5, 16)), Ok(5));

    // Two increments of a quarter of the coordinates are more than a model's bytes: an asker
    // that missed both gets the estimate whole.
    let quarter = sparse::count(D, crate::codec::MAX_TOP_K_PPM);
    let mut chain =
        crate::engine::chain::Chain::new(k, Some((5, quarter)), wire::max_update_len(D), 4);
    chain.restart(4, &model(4));
    for round in 5..=6 {
        let base = chain.round.unwrap();
        let payload = chain.increment(round, &model(round));
        assert_eq!(
            (quarter, payload.len()),
            (1024, sparse::payload_len(quarter))
        );
        let signed = wire::encode_update(&s_id, toy::run_id(), round, 1, c.codec, &payload).0;
        chain.record(base, round, signed.into());
    }
    // The sender keeps no more than one bundle can carry: the newest alone.
    assert_eq!(chain.kept(), 1);
    assert!(matches!(
        chain.answer(Some(5)),
        crate::engine::chain::Answer::Increments(_)
    ));
    assert!(matches!(
        chain.answer(Some(4)),
        crate::engine::chain::Answer::Snapshot
    ));
}

/// An increment of `k` coordinates from `base`, built by hand.
fn increment(base: u64, indices: &[u32], values: &[f32]) -> Vec<u8> {
    let mut p = base.to_le_bytes().to_vec();
    indices
        .iter()
        .for_each(|i| p.extend_from_slice(&i.to_le_bytes()));
    values
        .iter()
        .for_each(|v| p.extend_from_slice(&v.to_le_bytes()));
    p
}

/// Hostile chains: each is refused with its reason and what it costs, and leaves the copy as
/// it was; huge but finite values are a model like any other (the screen and the rule judge
/// it); an increment that does not follow on from the copy is unusable but costs nothing (an
/// honest peer answers from the round it was told, so only a lost race makes one).
#[test]
fn hostile_increments_and_bundles_are_refused_with_their_reason() {
    let c = chain_config();
    let p = toy::identity(3);
    let peer = p.public();
    let mut e = started(toy::setup(1, &c, D, 0), std::slice::from_ref(&p));
    let codec = c.codec;
    let sign = |round: u64, payload: &[u8]| -> Vec<u8> {
        wire::encode_update(&p, toy::run_id(), round, 1, codec, payload).0
    };
    let ok = |base, round| sign(round, &increment(base, &[1, 5, 9, 60], &[1.0; 4]));
    let check = |e: &mut Engine, bytes: &[u8]| {
        e.check(peer, &Arc::from(bytes), (0, u64::MAX), true, Keep::Params)
    };
    let copy = |e: &Engine| e.chain.as_ref().unwrap().copy_of(&peer);
    // The first increment follows on from the run's initial model (round 0).
    assert_eq!(e.have(&peer), Some(0));
    assert_eq!(check(&mut e, &ok(0, 1)).unwrap().round, 1);
    let before = copy(&e);
    let cases: Vec<(Vec<u8>, Rejection)> = vec![
        // Not from the copy's round.
        (ok(0, 2), Rejection::Unchained),
        (ok(5, 6), Rejection::Unchained),
        // An index out of range, indices not increasing.
        (
            sign(2, &increment(1, &[1, 5, 9, D as u32], &[1.0; 4])),
            Rejection::Malformed,
        ),
        (
            sign(2, &increment(1, &[1, 9, 5, 60], &[1.0; 4])),
            Rejection::Malformed,
        ),
        // Not finite.
        (
            sign(2, &increment(1, &[1, 5, 9, 60], &[1.0, f32::NAN, 1.0, 1.0])),
            Rejection::NonFinite,
        ),
        // A snapshot of another size, and a model whole in the increments' codec.
        (
            wire::encode_update(
                &p,
                toy::run_id(),
                2,
                1,
                codec.whole(),
                &wire::encode_params(&[1.0; D + 1]),
            )
            .0,
            Rejection::WrongDimension,
        ),
        (
            sign(2, &wire::encode_params(&[1.0; D])),
            Rejection::WrongDimension,
        ),
        // Another run's codec.
        (
            wire::encode_update(
                &p,
                toy::run_id(),
                2,
                1,
                Codec::F32Le,
                &wire::encode_params(&[1.0; D]),
            )
            .0,
            Rejection::WrongCodec,
        ),
        // Bundles: empty, nested, more parts than a sender keeps.
        (sparse::encode_bundle(&[]), Rejection::Malformed),
        (
            sparse::encode_bundle(&[&sparse::encode_bundle(&[&ok(1, 2)])]),
            Rejection::Malformed,
        ),
        (
            sparse::encode_bundle(&vec![&ok(1, 2)[..]; super::super::chain::HISTORY + 1]),
            Rejection::Malformed,
        ),
    ];
    for (bytes, reason) in cases {
        assert_eq!(check(&mut e, &bytes).map(|c| c.round), Err(reason));
        assert_eq!(copy(&e), before, "{reason}: the copy is unchanged");
    }
    assert_eq!(Rejection::Unchained.penalty(c.ban_threshold), 0);
    // Huge but finite: applied (a model; the screen and the rule judge it).
    let huge = sign(2, &increment(1, &[0, 1, 2, 3], &[1e30; 4]));
    let got = check(&mut e, &huge).unwrap();
    assert_eq!((got.round, got.params[0]), (2, 1e30));
    // A bundle that goes wrong half-way keeps the parts before the bad one.
    let bad = sign(4, &increment(3, &[1, 5, 9, D as u32], &[1.0; 4]));
    let bundle = sparse::encode_bundle(&[&ok(2, 3), &bad]);
    assert_eq!(
        check(&mut e, &bundle).map(|c| c.round),
        Err(Rejection::Malformed)
    );
    assert_eq!(e.have(&peer), Some(3));
    // A snapshot replaces the copy, at any round within bounds.
    let snapshot = wire::encode_update(
        &p,
        toy::run_id(),
        9,
        1,
        codec.whole(),
        &wire::encode_params(&[2.0; D]),
    )
    .0;
    assert_eq!(check(&mut e, &snapshot).unwrap().params, vec![2.0; D]);
    assert_eq!(e.have(&peer), Some(9));
}

/// With a consensus step the node mixes CHOCO-Gossip's way, `x + γ (R(x̂, x̂_j) - x̂)`; without
/// one, and with one in its last training round, it mixes its model with the copy as with any
/// peer's model.
#[test]
fn a_consensus_step_mixes_the_estimates_and_none_mixes_the_copies_with_the_model() {
    let p = toy::identity(3);
    // (the step, the rounds: 1 makes the first round the last)
    for (step, rounds) in [(None, 100), (Some(0.5), 100), (Some(0.5), 1)] {
        let mut c = chain_config();
        c.consensus_step = step;
        c.rounds = Some(rounds);
        let mut e = started(toy::setup(1, &c, D, 0), std::slice::from_ref(&p));
        // Trained to 8 everywhere: the first increment sends 4 coordinates, so the own
        // estimate is 8 there and 0 (the initial model) elsewhere.
        train_to(&mut e, Duration::ZERO, 1, vec![8.0; D]);
        let sent: Vec<usize> = (0..D).filter(|&i| estimate(&e)[i] == 8.0).collect();
        assert_eq!(sent.len(), 4);
        // The peer's copy: 2 everywhere (a snapshot).
        let snapshot = wire::encode_update(
            &p,
            toy::run_id(),
            1,
            1,
            c.codec.whole(),
            &wire::encode_params(&[2.0; D]),
        )
        .0;
        let out = super::exchange::answer(&mut e, Duration::from_millis(5), &p, snapshot.into());
        let mixed = out
            .iter()
            .find_map(|o| match o {
                Output::Mixed { params, .. } => params.clone(),
                _ => None,
            })
            .expect("mixed");
        // Either way the own estimate is the one its peers hold, unchanged by the mix.
        let kept: Vec<usize> = (0..D).filter(|&i| estimate(&e)[i] == 8.0).collect();
        assert_eq!(
            kept, sent,
            "step {step:?}, {rounds} rounds: the estimate changed"
        );
        for (i, &m) in mixed.iter().enumerate() {
            let want = match step {
                // (8 + 2) / 2.
                None => 5.0,
                _ if rounds == 1 => 5.0,
                // 8 + 0.5 ((x̂ + 2) / 2 - x̂): x̂ = 8 where sent (6.5), 0 elsewhere (8.5).
                Some(_) if sent.contains(&i) => 6.5,
                Some(_) => 8.5,
            };
            assert!(
                (m - want).abs() < 1e-5,
                "step {step:?}, {rounds} rounds, coordinate {i}: {m}"
            );
        }
    }
}

/// Answers lying about their round (a lower median of the draw) cannot catch a node with a
/// consensus step up past its last training round: it would finish without the last round's mix
/// of models and keep its own unsent progress whole. Without a step the catch-up is as before.
#[test]
fn lies_about_the_round_cannot_make_a_node_with_a_step_skip_its_last_mix() {
    let peers: Vec<Identity> = (1..=3).map(toy::identity).collect();
    // (the step, the next round expected: the catch-up goes to 5 and stops at the last
    // training round, 3, with a step; without one the node is past its 3 rounds and finishes)
    for (step, next) in [(Some(0.5), Some(3)), (None, None)] {
        let mut c = chain_config();
        c.consensus_step = step;
        c.rounds = Some(3);
        c.fanout = 3;
        c.wait_for = 3;
        let mut e = started(toy::setup(1, &c, D, 0), &peers);
        train_to(&mut e, Duration::ZERO, 1, vec![8.0; D]);
        let mut out = Vec::new();
        for p in &peers {
            let lie = wire::encode_update(
                p,
                toy::run_id(),
                50,
                1,
                c.codec.whole(),
                &wire::encode_params(&[2.0; D]),
            )
            .0;
            out.extend(super::exchange::answer(
                &mut e,
                Duration::from_millis(5),
                p,
                lie.into(),
            ));
        }
        let finished = out.contains(&Output::Finished);
        assert!(
            out.iter().any(|o| matches!(o, Output::Mixed { .. })),
            "step {step:?}: no mix"
        );
        let trains: Vec<u64> = out
            .iter()
            .filter_map(|o| match o {
                Output::Train { round } => Some(*round),
                _ => None,
            })
            .collect();
        match next {
            Some(round) => assert_eq!(
                (trains, finished),
                (vec![round], false),
                "step {step:?}: (rounds trained next, finished)"
            ),
            None => assert!(
                trains.is_empty() && finished,
                "step {step:?}: trains {trains:?}, finished {finished}"
            ),
        }
    }
}

/// Eight honest nodes sending 2 of 5 coordinates a round converge to the mean of their optima,
/// with either mix, and no honest increment is ever refused or unusable.
#[test]
fn honest_engines_converge_with_top_k_increments() {
    for seed in 1..=3 {
        for step in [None, Some(0.5)] {
            let mut c = config(Rule::Mean, ROUNDS);
            c.codec = Codec::TopK { ppm: 250_000 };
            c.consensus_step = step;
            let (d, h, honest) = run_with(c, 8, 0, None, seed);
            assert!(d < 0.1, "seed {seed}, step {step:?}: worst distance {d}");
            for &i in &honest {
                let rejected = &h.engine(i).stats().rejected;
                assert!(
                    rejected.keys().all(|r| *r == Rejection::Lagging),
                    "seed {seed}, step {step:?}: honest updates rejected: {rejected:?}"
                );
            }
        }
    }
}

/// An honest node signs a snapshot and an increment for the same round: two headers of one
/// round with different digests. They must not make evidence of equivocation that anyone could
/// gossip to have it banned: a snapshot is signed in the codec's whole-model form, and evidence
/// needs two headers of the same codec.
#[test]
fn a_snapshot_and_an_increment_of_one_round_are_no_evidence_of_equivocation() {
    let c = chain_config();
    let (s_id, a_id) = (toy::identity(0), toy::identity(1));
    let mut s = started(toy::setup(0, &c, D, 0), &[toy::identity(1)]);
    let mut a = started(toy::setup(1, &c, D, 0), &[toy::identity(0)]);
    round_alone(&mut s, 1, model(1));
    let now = Duration::from_secs(2);
    let increment = ask(&mut s, now, &a_id, Some(0));
    let snapshot = ask(&mut s, now, &a_id, None);
    let header = |bytes: &[u8]| {
        let bytes = match sparse::decode_bundle(bytes, usize::MAX, 16) {
            Ok(parts) => parts[0].to_vec(),
            Err(_) => bytes.to_vec(),
        };
        wire::decode_update(&bytes, usize::MAX).unwrap().signed
    };
    let (hi, hs) = (header(&increment), header(&snapshot));
    assert_eq!((hi.header.round, hs.header.round), (1, 1));
    assert_ne!(hi.header.digest, hs.header.digest);
    let framed = crate::evidence::Equivocation { a: hi, b: hs };
    assert!(
        framed.verify().is_err(),
        "a snapshot and an increment prove nothing"
    );
    let input = Input::GossipReceived {
        author: a_id.public(),
        relayer: a_id.public(),
        message: 1,
        bytes: framed.encode().into(),
    };
    a.handle(now, input).unwrap();
    assert!(!a.is_banned(&s_id.public()));
}

/// A copy evicted while the replay window still remembers its peer's rounds is not started
/// again from the run's initial model (the peer would send increments from round 1, which the
/// window refuses as stale and charges): the node asks for a snapshot instead.
#[test]
fn a_node_that_lost_its_copy_asks_for_the_model_whole() {
    let c = chain_config();
    let (s_id, a_id) = (toy::identity(0), toy::identity(1));
    let sender = s_id.public();
    let mut s = started(toy::setup(0, &c, D, 0), &[toy::identity(1)]);
    let mut a = started(toy::setup(1, &c, D, 0), &[toy::identity(0)]);
    for round in 1..=3 {
        round_alone(&mut s, round, model(round));
        let now = Duration::from_secs(round) + Duration::from_millis(600);
        let bytes = ask(&mut s, now, &a_id, a.have(&sender));
        a.check(sender, &bytes, (0, u64::MAX), true, Keep::Params)
            .unwrap();
    }
    a.chain.as_mut().unwrap().forget(&sender);
    assert_eq!(a.have(&sender), None);
    let bytes = ask(&mut s, Duration::from_secs(5), &a_id, a.have(&sender));
    let got = a
        .check(sender, &bytes, (0, u64::MAX), true, Keep::Params)
        .unwrap();
    assert_eq!((got.round, got.params.as_slice()), (3, estimate(&s)));
}
