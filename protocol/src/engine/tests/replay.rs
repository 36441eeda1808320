//! What the replay window and the announcements catch: replays, stale and far-off rounds,
//! equivocation whichever of its two halves comes first, gossip judged on its author, and the
//! floors forgotten senders leave.

use super::exchange::{answer, asking, penalised, train};
use super::*;

#[test]
fn replayed_equivocating_lagging_and_far_ahead_answers() {
    let peers: Vec<Identity> = (1..=4).map(toy::identity).collect();
    let run = toy::run_id();
    let mut e = asking(Rule::Mean, &peers);
    let t = Duration::from_millis(10);
    // Round 1: every peer answers with an update of round 3.
    for p in &peers {
        answer(&mut e, t, p, update(p, run, 3, &[1.0; DIM]));
    }
    assert_eq!(e.stats().accepted, 4);
    // Caught up to round 3 (the median), it trains round 3 and asks again.
    assert_eq!(e.round(), 3);
    let now = Duration::from_millis(20);
    train(&mut e, now, 3, 0.0);
    // The same update again: a peer that has not signed a newer one serves it again.
    let out = answer(
        &mut e,
        now,
        &peers[0],
        update(&peers[0], run, 3, &[1.0; DIM]),
    );
    assert!(
        !penalised(&out, peers[0].public(), Rejection::Duplicate),
        "{out:?}"
    );
    // An older one is a replay.
    let out = answer(
        &mut e,
        now,
        &peers[1],
        update(&peers[1], run, 2, &[1.0; DIM]),
    );
    assert!(
        penalised(&out, peers[1].public(), Rejection::Stale),
        "{out:?}"
    );
    // Another model for round 3: proof of equivocation, banned and broadcast.
    let out = answer(
        &mut e,
        now,
        &peers[2],
        update(&peers[2], run, 3, &[2.0; DIM]),
    );
    assert!(out.contains(&Output::Ban {
        peer: peers[2].public(),
        reason: Rejection::Equivocation
    }));
    let evidence = out
        .iter()
        .find_map(|o| match o {
            Output::Broadcast { bytes } => Some(bytes.clone()),
            _ => None,
        })
        .expect("evidence broadcast");
    assert_eq!(
        Equivocation::decode(&evidence).unwrap().offender(),
        peers[2].public()
    );
    // Far ahead: counted, not mixed, no points.
    let out = answer(
        &mut e,
        now,
        &peers[3],
        update(&peers[3], run, 5000, &[1.0; DIM]),
    );
    assert_eq!(rejected(&e, Rejection::Ahead), 1);
    assert!(!out.iter().any(|o| matches!(o, Output::Penalize { .. })));
    assert_eq!(e.round(), 4, "mixed round 3, training round 4");

    // Another node connected to the equivocator, that never saw the conflict, bans on the
    // evidence alone.
    let mut other = lone_engine(Rule::Mean);
    other
        .handle(
            t,
            Input::PeerUp {
                peer: peers[2].public(),
            },
        )
        .unwrap();
    drain(&mut other);
    let relay = toy::identity(5).public();
    let gossip = Input::GossipReceived {
        author: relay,
        relayer: relay,
        message: 1,
        bytes: evidence,
    };
    other.handle(t, gossip).unwrap();
    assert!(other.is_banned(&peers[2].public()));
    assert!(!other.is_banned(&relay));

    // Far behind: counted as lagging, no points.
    let mut e = asking(Rule::Mean, &peers[..1]);
    for round in 1..=6 {
        let now = Duration::from_secs(round);
        e.handle(now, Input::Tick).unwrap(); // nobody answers: the deadline mixes
        train(&mut e, now, round + 1, 0.0);
    }
    assert_eq!(e.round(), 7);
    let out = answer(
        &mut e,
        Duration::from_secs(7),
        &peers[0],
        update(&peers[0], run, 2, &[1.0; DIM]),
    );
    assert_eq!(rejected(&e, Rejection::Lagging), 1);
    assert!(!out.iter().any(|o| matches!(o, Output::Penalize { .. })));
}

#[test]
fn an_announcement_that_arrives_first_still_catches_equivocation() {
    let peers = [toy::identity(1)];
    let mut e = asking(Rule::Mean, &peers);
    let t = Duration::ZERO;
    let from = peers[0].public();
    let run = toy::run_id();
    let payload = encode_params(&[1.0; DIM]);
    let (_, signed) = wire::encode_update(&peers[0], run, 1, 1, Codec::F32Le, &payload);
    let ann: Arc<[u8]> = wire::encode_announcement(&signed).into();
    let gossip = Input::GossipReceived {
        author: from,
        relayer: from,
        message: 1,
        bytes: ann,
    };
    e.handle(t, gossip).unwrap();
    assert!(!e.is_banned(&from));
    answer(&mut e, t, &peers[0], update(&peers[0], run, 1, &[2.0; DIM]));
    assert!(
        e.is_banned(&from),
        "the update conflicts with the announcement"
    );
    assert_eq!(rejected(&e, Rejection::Equivocation), 1);
}

/// Gossip is judged on its author: junk relayed by an honest peer costs the author (by its
/// authenticated key) and is rejected, so the gossip layer does not forward it; an announcement
/// published by anyone but its signer is impersonation; a new announcement is accepted and a
/// repeated one ignored.
#[test]
fn gossip_verdicts_name_and_penalise_the_author_only() {
    let mut e = lone_engine(Rule::Mean);
    drain(&mut e);
    let (author, relayer) = (toy::identity(1), toy::identity(2));
    let verdict = |e: &mut Engine, from: &Identity, bytes: Arc<[u8]>| {
        let input = Input::GossipReceived {
            author: from.public(),
            relayer: relayer.public(),
            message: 9,
            bytes,
        };
        e.handle(Duration::ZERO, input).unwrap();
        let out = drain(e);
        let v = out.iter().find_map(|o| match o {
            Output::GossipChecked {
                message: 9,
                verdict,
            } => Some(*verdict),
            _ => None,
        });
        (v.expect("a verdict"), out)
    };
    let (v, out) = verdict(&mut e, &author, vec![0xEE, 0, 1].into());
    assert_eq!(v, GossipVerdict::Reject);
    assert!(penalised(&out, author.public(), Rejection::Malformed));
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Penalize { peer, .. } if *peer == relayer.public()))
    );

    let payload = encode_params(&[1.0; DIM]);
    let (_, signed) = wire::encode_update(&author, toy::run_id(), 1, 1, Codec::F32Le, &payload);
    let ann: Arc<[u8]> = wire::encode_announcement(&signed).into();
    let (v, out) = verdict(&mut e, &relayer, ann.clone());
    assert_eq!(
        v,
        GossipVerdict::Reject,
        "published by another than its signer"
    );
    assert!(penalised(&out, relayer.public(), Rejection::Impersonation));
    assert_eq!(
        verdict(&mut e, &author, ann.clone()).0,
        GossipVerdict::Accept
    );
    assert_eq!(verdict(&mut e, &author, ann).0, GossipVerdict::Ignore);

    // An announcement below the author's latest is not remembered, so it must not be forwarded
    // either: otherwise one identity has honest nodes relay any number of distinct messages
    // (every lower round, every digest). Not penalised: gossip may deliver an honest author's
    // rounds out of order.
    let announce = |round: u64, x: f32| {
        let payload = encode_params(&[x; DIM]);
        let (_, signed) =
            wire::encode_update(&author, toy::run_id(), round, 1, Codec::F32Le, &payload);
        Arc::<[u8]>::from(wire::encode_announcement(&signed))
    };
    assert_eq!(
        verdict(&mut e, &author, announce(3, 1.0)).0,
        GossipVerdict::Accept
    );
    for x in [2.0, 3.0, 4.0] {
        let (v, out) = verdict(&mut e, &author, announce(2, x));
        assert_eq!(
            v,
            GossipVerdict::Ignore,
            "round 2 after round 3, digest {x}"
        );
        assert!(
            !out.iter().any(|o| matches!(o, Output::Penalize { .. })),
            "{out:?}"
        );
    }
}

/// Forgotten senders leave their rounds as the floor of their bucket of the replay window, and
/// Sybils evicted with high rounds raise floors on purpose. An honest peer in such a bucket,
/// whose update the node never saw, is refused (the window cannot tell it from a replay) but
/// not charged: a stale round costs a hard point, and a hundred draws would ban it for good.
#[test]
fn an_update_below_a_floor_others_left_is_refused_but_not_charged() {
    let secret = |i: u32| Identity::from_secret(*blake3::hash(&i.to_le_bytes()).as_bytes());
    let sybils: Vec<Identity> = (0..3).map(secret).collect();
    // The node's own bucket key, as the engine derives it.
    let me = toy::identity(0);
    let key = blake3::derive_key(
        "murmur replay floor buckets v1",
        &me.sign(b"murmur replay floor key", &[]),
    );
    let buckets = crate::replay::Window::keyed(2, key);
    let aimed = buckets.bucket(&sybils[0].public());
    let honest = (100..100_000)
        .map(secret)
        .find(|id| buckets.bucket(&id.public()) == aimed)
        .expect("an identity in the first sybil's bucket");
    let mut c = config(Rule::Mean, 100);
    c.fanout = 2;
    c.wait_for = 2;
    c.max_peers = 2;
    let mut e = Engine::new(toy::setup(0, &c, DIM, 0)).unwrap();
    let t = Duration::ZERO;
    let start = Input::Start {
        resume: Resume::default(),
        join: false,
    };
    e.handle(t, start).unwrap();
    let up = |e: &mut Engine, ids: &[&Identity]| {
        for id in ids {
            e.handle(t, Input::PeerUp { peer: id.public() }).unwrap();
        }
    };
    let run = toy::run_id();
    // Two Sybils answer round 1 from as far ahead as is accepted, then leave; the next
    // evicts the first from the window (it holds two senders), leaving its round as the floor
    // of its bucket, where the honest peer falls.
    up(&mut e, &[&sybils[0], &sybils[1]]);
    train(&mut e, t, 1, 0.0);
    let far = 1 + c.max_ahead;
    for s in &sybils[..2] {
        answer(&mut e, t, s, update(s, run, far, &[1.0; DIM]));
        e.handle(t, Input::PeerDown { peer: s.public() }).unwrap();
    }
    up(&mut e, &[&sybils[2], &honest]);
    // The node caught up towards the Sybils' round, as far as `max-staleness` lets it.
    let round = e.completed_round() + 1;
    train(&mut e, t, round, 0.0);
    answer(
        &mut e,
        t,
        &sybils[2],
        update(&sybils[2], run, far + 1, &[1.0; DIM]),
    );
    let out = answer(&mut e, t, &honest, update(&honest, run, round, &[1.0; DIM]));
    assert_eq!(
        rejected(&e, Rejection::Forgotten),
        1,
        "{:?}",
        e.stats().rejected
    );
    assert_eq!(rejected(&e, Rejection::Stale), 0);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Penalize { .. })),
        "{out:?}"
    );
}

/// The cheap checks come before the payload's hash: a replay of an old round is `stale` even
/// when its payload is corrupt (the node did not spend a hash on it).
#[test]
fn a_stale_answer_is_refused_before_its_payload_is_hashed() {
    let peer = toy::identity(1);
    let mut e = asking(Rule::Mean, std::slice::from_ref(&peer));
    let run = toy::run_id();
    let first = update(&peer, run, 1, &[1.0; DIM]);
    answer(&mut e, Duration::ZERO, &peer, first.clone());
    train(&mut e, Duration::from_secs(1), 2, 0.0);
    let second = update(&peer, run, 2, &[1.0; DIM]);
    answer(&mut e, Duration::from_secs(1), &peer, second);
    train(&mut e, Duration::from_secs(2), 3, 0.0);
    let mut old = first.to_vec();
    *old.last_mut().unwrap() ^= 0xff;
    answer(&mut e, Duration::from_secs(2), &peer, old.into());
    assert_eq!(
        rejected(&e, Rejection::Stale),
        1,
        "{:?}",
        e.stats().rejected
    );
    assert_eq!(rejected(&e, Rejection::Malformed), 0);
}

/// Anyone can make keys, have them announce, prove them equivocating and publish the evidence: a
/// flood of it must not push the ban of a peer the node met out of its bounded table, nor into
/// the bans a restart keeps. A connected equivocator's ban survives forty proofs against fresh keys that sort above
/// it (were the lowest key of the table forgotten past `max-peers`, it would be the
/// equivocator's). When bans of peers met fill the table, one of them (drawn) makes room for the
/// next, and the caller is told to let that peer in again.
#[test]
fn evidence_against_fresh_keys_does_not_push_out_the_ban_of_a_peer_met() {
    let run = toy::run_id();
    let mut c = config(Rule::Mean, 100);
    c.max_peers = 4;
    let mut e = lone_engine_with(&c);
    let evidence = |who: &Identity| -> Arc<[u8]> {
        let header = |v: u8| wire::encode_update(who, run, 2, 1, Codec::F32Le, &[v; 4 * DIM]).1;
        Equivocation::new(header(1), header(2))
            .unwrap()
            .encode()
            .into()
    };
    let gossip = |e: &mut Engine, message, bytes| {
        let relayer = toy::identity(1).public();
        let input = Input::GossipReceived {
            author: relayer,
            relayer,
            message,
            bytes,
        };
        e.handle(Duration::ZERO, input).unwrap();
        drain(e)
    };
    // A fresh key announces (relayed by a peer) before its proof comes: a proof against a key
    // never heard of is not even checked.
    let announced = |e: &mut Engine, who: &Identity, message| {
        let ann = wire::encode_announcement(
            &wire::encode_update(who, run, 2, 1, Codec::F32Le, &[1; 4 * DIM]).1,
        );
        let input = Input::GossipReceived {
            author: who.public(),
            relayer: toy::identity(1).public(),
            message,
            bytes: ann.into(),
        };
        e.handle(Duration::ZERO, input).unwrap();
        drain(e);
    };
    // The equivocator: connected, with the lowest key of all here.
    // (The toy identities repeat after 256.)
    let mut fresh: Vec<Identity> = (100..250).map(toy::identity).collect();
    fresh.sort_by_key(Identity::public);
    let cheat = fresh.remove(0);
    let fresh_later_unused = fresh[44].clone();
    let (fresh, later) = (&fresh[..40], &fresh[40..44]);
    e.handle(
        Duration::ZERO,
        Input::PeerUp {
            peer: cheat.public(),
        },
    )
    .unwrap();
    drain(&mut e);
    let out = gossip(&mut e, 1, evidence(&cheat));
    assert!(
        penalised(&out, cheat.public(), Rejection::Equivocation),
        "{out:?}"
    );
    for (i, k) in fresh.iter().enumerate() {
        announced(&mut e, k, 1000 + i as u64);
        let out = gossip(&mut e, 2 + i as u64, evidence(k));
        assert!(
            !out.iter().any(|o| matches!(o, Output::Unban { .. })),
            "a ban of a key never met was reported lifted: {out:?}"
        );
    }
    assert!(
        e.is_banned(&cheat.public()),
        "the equivocator's ban was pushed out"
    );
    assert_eq!(e.banned().len(), 4, "the table stays within max-peers");
    assert_eq!(
        e.bans_kept(),
        vec![(cheat.public(), Rejection::Equivocation)]
    );
    // The caller keeps out the peer met, not the keys that never connected (its block list
    // would grow with every key anyone makes).
    assert!(e.keeps_out(&cheat.public()));
    assert!(fresh.iter().all(|k| !e.keeps_out(&k.public())));
    // It connects again: refused.
    e.handle(
        Duration::ZERO,
        Input::PeerUp {
            peer: cheat.public(),
        },
    )
    .unwrap();
    assert!(penalised(
        &drain(&mut e),
        cheat.public(),
        Rejection::Equivocation
    ));
    // Four more connected equivocators fill the table with bans of peers met, and one more ban
    // of a peer met pushes one of them out: the caller is told to let it in again (its block
    // list stays as short as the table).
    let mut unbanned = Vec::new();
    for (i, k) in later.iter().enumerate() {
        e.handle(Duration::ZERO, Input::PeerUp { peer: k.public() })
            .unwrap();
        drain(&mut e);
        let out = gossip(&mut e, 100 + i as u64, evidence(k));
        assert!(
            penalised(&out, k.public(), Rejection::Equivocation),
            "{out:?}"
        );
        unbanned.extend(out.iter().filter_map(|o| match o {
            Output::Unban { peer } => Some(*peer),
            _ => None,
        }));
    }
    assert_eq!(unbanned.len(), 1, "{unbanned:?}");
    assert!(!e.is_banned(&unbanned[0]));
    assert_eq!(e.bans_kept().len(), 4);
    // The table full of bans of peers met has no room for a key never met: its proof is not
    // recorded, but is still passed on, for the peers it is connected to.
    let stranger = &fresh_later_unused;
    announced(&mut e, stranger, 2000);
    let out = gossip(&mut e, 200, evidence(stranger));
    assert!(!e.is_banned(&stranger.public()));
    assert!(
        out.iter().any(|o| matches!(o, Output::Broadcast { .. }))
            && !out
                .iter()
                .any(|o| matches!(o, Output::Ban { .. } | Output::Unban { .. })),
        "{out:?}"
    );
}

/// Anyone can make keys and prove them equivocating; a proof against a key this node has never
/// heard of (not connected, nothing of it announced or accepted) names no one it could mix, so it
/// is ignored before either signature is checked: a flood of such proofs costs each node no
/// signature check, no ban-table slot and no relaying (gossip forwards only what is accepted).
/// The same proof is acted on once the key has announced, and a proof whose signatures do not
/// verify, against a key heard of, costs its author; once the key is banned, proofs against it
/// are ignored unchecked again.
#[test]
fn evidence_against_a_key_never_heard_of_is_ignored_unchecked() {
    let run = toy::run_id();
    let mut e = lone_engine_with(&config(Rule::Mean, 100));
    let relayer = toy::identity(1).public();
    let stranger = toy::identity(9);
    let header = |v: u8| wire::encode_update(&stranger, run, 2, 1, Codec::F32Le, &[v; 4 * DIM]).1;
    let proof: Arc<[u8]> = Equivocation::new(header(1), header(2))
        .unwrap()
        .encode()
        .into();
    let mut forged = Equivocation::new(header(1), header(2)).unwrap();
    forged.b.signature[0] ^= 1;
    let forged: Arc<[u8]> = forged.encode().into();
    let gossip = |e: &mut Engine, author: PeerKey, message, bytes| {
        let input = Input::GossipReceived {
            author,
            relayer,
            message,
            bytes,
        };
        e.handle(Duration::ZERO, input).unwrap();
        drain(e)
    };
    let verdict = |out: &[Output]| {
        out.iter().find_map(|o| match o {
            Output::GossipChecked { verdict, .. } => Some(*verdict),
            _ => None,
        })
    };
    for (message, bytes) in [(1, proof.clone()), (2, forged.clone())] {
        let out = gossip(&mut e, relayer, message, bytes);
        assert_eq!(verdict(&out), Some(GossipVerdict::Ignore), "{out:?}");
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Broadcast { .. } | Output::Ban { .. })),
            "{out:?}"
        );
    }
    assert!(!e.is_banned(&stranger.public()));
    assert_eq!(rejected(&e, Rejection::BadSignature), 0, "not checked");
    // It announces: now heard of, so a forged proof costs its author and a valid one bans it.
    let ann: Arc<[u8]> = wire::encode_announcement(&header(1)).into();
    let out = gossip(&mut e, stranger.public(), 3, ann);
    assert_eq!(verdict(&out), Some(GossipVerdict::Accept), "{out:?}");
    let out = gossip(&mut e, relayer, 4, forged.clone());
    assert_eq!(verdict(&out), Some(GossipVerdict::Reject), "{out:?}");
    assert!(penalised(&out, relayer, Rejection::BadSignature), "{out:?}");
    let out = gossip(&mut e, relayer, 5, proof.clone());
    assert_eq!(verdict(&out), Some(GossipVerdict::Accept), "{out:?}");
    assert!(e.is_banned(&stranger.public()));
    // Banned now: proofs against it, replayed or forged, are ignored unchecked.
    for (message, bytes) in [(6, proof), (7, forged)] {
        let out = gossip(&mut e, relayer, message, bytes);
        assert_eq!(verdict(&out), Some(GossipVerdict::Ignore), "{out:?}");
    }
    assert_eq!(rejected(&e, Rejection::BadSignature), 1, "only message 4");
}
