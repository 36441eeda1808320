//! A node on a slow uplink (`uplink-mbps`): which fetches it refuses as busy, and what an asker
//! does with a refusal.

use super::exchange::{asked, train};
use super::*;

/// Whether `out` serves `request` a model (`Some(true)`), refuses it as busy (`Some(false)`),
/// or neither.
fn served(out: &[Output], request: u64) -> Option<bool> {
    out.iter().find_map(|o| match o {
        Output::Serve {
            request: r,
            update: Some(_),
            ..
        } if *r == request => Some(true),
        Output::Busy { request: r, .. } if *r == request => Some(false),
        _ => None,
    })
}

/// `c` with a round timeout of 2 s and an uplink that carries the model in 0.2 s
/// (`uplink-mbps` set from the update's size): an answer must have left within 0.5 s.
fn with_slow_uplink(mut c: Config) -> Config {
    c.round_timeout_ms = 2000;
    let mut probe = lone_engine_with(&c);
    train(&mut probe, Duration::ZERO, 1, 1.0);
    let len = probe.last_update().expect("signed").len();
    c.uplink_mbps = Some(len as f64 * 8.0 / 0.2e6);
    c
}

/// A node trained on round 1 on a slow uplink (see [`with_slow_uplink`]), with `weights` for
/// a fixed graph.
fn slow_uplink(weights: BTreeMap<PeerKey, f64>) -> Engine {
    let c = with_slow_uplink(config(Rule::Mean, 10));
    let mut setup = toy::setup(0, &c, DIM, 0);
    setup.weights = weights;
    let mut e = super::setup::started(setup, &[]);
    train(&mut e, Duration::ZERO, 1, 1.0);
    e
}

/// `from`'s fetch of round 1 (signed: answered at once) at `ms`.
fn fetch(e: &mut Engine, ms: u64, from: usize, request: u64) -> Option<bool> {
    fetch_round(e, ms, from, request, Some(1))
}

fn fetch_round(
    e: &mut Engine,
    ms: u64,
    from: usize,
    request: u64,
    round: Option<u64>,
) -> Option<bool> {
    let input = Input::FetchRequested {
        from: toy::identity(from).public(),
        request,
        round,
        have: None,
    };
    e.handle(Duration::from_millis(ms), input).unwrap();
    served(&drain(e), request)
}

/// With `uplink-mbps`, a fetch whose answer would not have left the uplink within a quarter of
/// a round timeout is refused as busy; an idle uplink always serves; it serves again as the uplink
/// drains; a peer's repeat fetch is served only by an idle uplink, a joiner's first always. On a fixed
/// graph, and without `uplink-mbps`, every fetch is served.
#[test]
fn a_node_whose_uplink_is_full_refuses_fetches_as_busy_and_serves_as_it_drains() {
    let mut e = slow_uplink(BTreeMap::new());
    assert_eq!(fetch(&mut e, 0, 1, 1), Some(true), "idle: leaves at 0.2 s");
    assert_eq!(fetch(&mut e, 0, 2, 2), Some(true), "leaves at 0.4 s");
    assert_eq!(fetch(&mut e, 0, 3, 3), Some(false), "would leave at 0.6 s");
    assert_eq!(fetch(&mut e, 100, 5, 4), Some(true), "leaves 0.5 s after");
    assert_eq!(
        fetch(&mut e, 100, 4, 5),
        Some(false),
        "would leave 0.7 s after"
    );
    assert_eq!(fetch(&mut e, 5000, 4, 6), Some(true), "drained");
    assert_eq!(e.stats().refused_busy, 2);
    // A peer's second fetch of the round is served only by an idle uplink: peer 6 at 5.1 s
    // (the uplink busy until 5.2 s; its answer leaves at 5.3 s), then again.
    assert_eq!(
        fetch(&mut e, 5100, 6, 7),
        Some(true),
        "a first fetch, in time"
    );
    assert_eq!(
        fetch(&mut e, 5100, 6, 8),
        Some(false),
        "a repeat, the uplink busy"
    );
    // A joiner's first fetch (for whatever the node has) is never refused: it comes once a life,
    // and refusing it would leave the join to the peers that never refuse.
    assert_eq!(fetch_round(&mut e, 5100, 7, 9, None), Some(true));
    assert_eq!(
        fetch(&mut e, 5100, 8, 10),
        Some(false),
        "behind the joiner's"
    );
    assert_eq!(e.stats().refused_busy, 4);

    // However slow, an idle uplink serves: a node whose one model takes longer than the
    // limit still serves one at a time.
    let mut c = config(Rule::Mean, 10);
    c.round_timeout_ms = 2000;
    c.uplink_mbps = Some(1e-4);
    let mut crawling = lone_engine_with(&c);
    train(&mut crawling, Duration::ZERO, 1, 1.0);
    assert_eq!(fetch(&mut crawling, 0, 1, 1), Some(true));
    assert_eq!(fetch(&mut crawling, 0, 2, 2), Some(false));

    // Without `uplink-mbps`, every fetch is served.
    let mut c = config(Rule::Mean, 10);
    c.round_timeout_ms = 2000;
    let mut unset = lone_engine_with(&c);
    train(&mut unset, Duration::ZERO, 1, 1.0);
    for request in 1..=6 {
        assert_eq!(fetch(&mut unset, 0, request as usize, request), Some(true));
    }

    // A fixed graph: the neighbours wait for every answer.
    let table: BTreeMap<PeerKey, f64> = (1..=4).map(|i| (toy::identity(i).public(), 0.2)).collect();
    let mut fixed = slow_uplink(table);
    for request in 1..=4 {
        assert_eq!(fetch(&mut fixed, 0, request as usize, request), Some(true));
    }
    assert_eq!(fixed.stats().refused_busy, 0);
}

/// A drawn peer that refuses as busy is replaced by another draw, among the connected peers not
/// asked this round, at most `fanout` times a round; then, and on a fixed graph (where nobody is
/// drawn in its place), it is asked again later. A refusal from a peer not asked changes
/// nothing.
#[test]
fn a_busy_peer_is_replaced_by_another_draw_at_most_fanout_times_a_round() {
    let peers: Vec<Identity> = (1..=8).map(toy::identity).collect();
    let mut c = config(Rule::Mean, 100);
    c.fanout = 2;
    c.wait_for = 2;
    let start = || Input::Start {
        resume: Resume::default(),
        join: false,
    };
    let mut e = Engine::new(toy::setup(0, &c, DIM, 4)).unwrap();
    e.handle(Duration::ZERO, start()).unwrap();
    for p in &peers {
        e.handle(Duration::ZERO, Input::PeerUp { peer: p.public() })
            .unwrap();
    }
    let first: Vec<PeerKey> = asked(&train(&mut e, Duration::ZERO, 1, 0.0))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(first.len(), 2);
    let busy = |e: &mut Engine, peer: PeerKey| {
        e.handle(Duration::ZERO, Input::Busy { peer }).unwrap();
        asked(&drain(e))
    };
    let stranger = peers
        .iter()
        .map(Identity::public)
        .find(|p| !first.contains(p))
        .unwrap();
    assert!(busy(&mut e, stranger).is_empty(), "not asked: nothing");
    let mut all = first.clone();
    for refuser in [first[0], first[1]] {
        let next = busy(&mut e, refuser);
        assert_eq!(next.len(), 1, "one drawn in its place");
        assert_eq!(next[0].1, Some(1), "for the same round");
        assert!(!all.contains(&next[0].0), "a peer not asked this round");
        all.push(next[0].0);
    }
    assert!(
        busy(&mut e, all[2]).is_empty(),
        "fanout (2) redraws a round at most"
    );
    assert_eq!(e.stats().redrawn, 2);
    // The busy peer that could not be replaced is asked again an eighth of a timeout later
    // (the round timeout is 200 ms).
    assert_eq!(e.poll_timeout(), Some(Duration::from_millis(25)));
    e.handle(Duration::from_millis(25), Input::Tick).unwrap();
    assert_eq!(asked(&drain(&mut e)), vec![(all[2], Some(1))]);
    assert_eq!(e.stats().retried, 1);

    // A fixed graph: the neighbours are the peers to mix with.
    let mut setup = toy::setup(0, &c, DIM, 4);
    setup.weights = peers[..2].iter().map(|p| (p.public(), 0.3)).collect();
    let mut fixed = Engine::new(setup).unwrap();
    fixed.handle(Duration::ZERO, start()).unwrap();
    for p in &peers {
        fixed
            .handle(Duration::ZERO, Input::PeerUp { peer: p.public() })
            .unwrap();
    }
    let drawn = asked(&train(&mut fixed, Duration::ZERO, 1, 0.0));
    assert!(busy(&mut fixed, drawn[0].0).is_empty());
    assert_eq!(fixed.stats().redrawn, 0);
    fixed
        .handle(Duration::from_millis(25), Input::Tick)
        .unwrap();
    assert_eq!(
        asked(&drain(&mut fixed)),
        vec![(drawn[0].0, Some(1))],
        "asked again"
    );
}

/// A fetch for whatever the node has (a joiner's, once a life) is exempt from the busy rule
/// only as a peer's first fetch of the round: one identity asking for it again and again takes
/// one answer from a busy uplink, as with any repeat, and cannot keep the uplink full ahead of
/// the honest askers.
#[test]
fn asking_again_and_again_for_whatever_the_node_has_takes_one_answer_from_a_busy_uplink() {
    let mut e = slow_uplink(BTreeMap::new());
    assert_eq!(
        fetch_round(&mut e, 0, 1, 1, None),
        Some(true),
        "a joiner's first fetch: leaves at 0.2 s"
    );
    for request in 2..=8 {
        assert_eq!(
            fetch_round(&mut e, 0, 1, request, None),
            Some(false),
            "its repeat {request}, the uplink busy"
        );
    }
    assert_eq!(
        fetch(&mut e, 0, 2, 9),
        Some(true),
        "an asker behind one answer: leaves at 0.4 s"
    );
    assert_eq!(e.stats().refused_busy, 7);
}

/// An attacker that hogs the honest uplinks asks, besides the peers it drew, every other
/// connected peer but its allies, each for the round after the newest it heard of from that
/// peer (its own round when it heard of none), so that the peer holds the request and answers
/// it first when it signs. Without the power it asks only the peers it drew; with a turn
/// (`hog_turn`), only in its rounds.
#[test]
fn a_hogging_attacker_asks_every_peer_it_did_not_draw_for_its_next_round() {
    let mut c = config(Rule::Mean, 100);
    c.fanout = 1;
    c.wait_for = 1;
    let peers: Vec<Identity> = (1..=5).map(toy::identity).collect();
    let ally = peers[4].public();
    let heard = peers[0].public();
    // Without `hog`; every round; in its turn (round 1 of three); out of its turn.
    for (hog, hog_turn, hogs) in [
        (false, None, false),
        (true, None, true),
        (true, Some((1, 3)), true),
        (true, Some((2, 3)), false),
    ] {
        let adversary = Adversary {
            hog,
            hog_turn,
            allies: [ally].into(),
            ..Adversary::new(Attack::SignFlip)
        };
        let setup = Setup {
            adversary: Some(adversary),
            ..toy::setup(0, &c, DIM, 0)
        };
        let mut e = super::setup::started(setup, &peers);
        drain(&mut e);
        // `heard` announces its round 2.
        let payload = encode_params(&[1.0; DIM]);
        let (_, signed) =
            wire::encode_update(&peers[0], toy::run_id(), 2, 1, Codec::F32Le, &payload);
        let gossip = Input::GossipReceived {
            author: heard,
            relayer: heard,
            message: 1,
            bytes: wire::encode_announcement(&signed).into(),
        };
        e.handle(Duration::ZERO, gossip).unwrap();
        drain(&mut e);
        let fetches = asked(&train(&mut e, Duration::ZERO, 1, 0.0));
        let drawn = fetches[0].0;
        assert_eq!(fetches[0].1, Some(1), "the drawn peer, for this round");
        let mut hogged: Vec<(PeerKey, Option<u64>)> = fetches[1..].to_vec();
        hogged.sort();
        let mut expected: Vec<(PeerKey, Option<u64>)> = if hogs {
            peers
                .iter()
                .map(Identity::public)
                .filter(|p| *p != drawn && *p != ally)
                .map(|p| (p, Some(if p == heard { 3 } else { 1 })))
                .collect()
        } else {
            Vec::new()
        };
        expected.sort();
        assert_eq!(hogged, expected, "hog {hog} {hog_turn:?}, drawn {drawn:?}");
        assert_eq!(e.stats().hog_rounds, u64::from(hogs));
    }
    for hog_turn in [(3, 3), (0, 0)] {
        let setup = Setup {
            adversary: Some(Adversary {
                hog: true,
                hog_turn: Some(hog_turn),
                ..Adversary::new(Attack::SignFlip)
            }),
            ..toy::setup(0, &c, DIM, 0)
        };
        let err = Engine::new(setup).unwrap_err().to_string();
        assert!(err.contains("turn"), "{hog_turn:?}: {err}");
    }
    let setup = Setup {
        adversary: Some(Adversary {
            hog_turn: Some((0, 2)),
            ..Adversary::new(Attack::SignFlip)
        }),
        ..toy::setup(0, &c, DIM, 0)
    };
    assert!(Engine::new(setup).is_err(), "a turn without hog");
}

/// A peer that asks every round (an attacker hogging the uplink), when the others ask a round
/// in four, is refused as busy from its second round on: it asks for more than its share, and
/// the uplink is contended (it refused a first fetch for its backlog within the last round
/// timeout), even at the moments the uplink is idle. Held fetches are answered lightest first.
/// An uplink that is not contended serves it as it serves anyone.
#[test]
fn a_peer_that_asks_every_round_is_refused_even_by_an_idle_contended_uplink() {
    let peers: Vec<Identity> = (1..=15).map(toy::identity).collect();
    let mut c = config(Rule::Mean, 100);
    c.fanout = 1;
    c.wait_for = 1;
    let c = with_slow_uplink(c);
    let mut e = super::setup::started(toy::setup(0, &c, DIM, 0), &peers);
    drain(&mut e);
    let hog = 13;
    let mut request = 0;
    let mut ask = |e: &mut Engine, ms: u64, from: usize, round: Option<u64>| {
        request += 1;
        fetch_round(e, ms, from, request, round)
    };
    let mut hog_served = Vec::new();
    // Rounds 10 s apart. In each, three of twelve peers in turn ask at once: two are served,
    // and the third is refused for the backlog (it would leave after 0.6 s), which makes the
    // uplink contended for the round timeout. The hog asks 1 s later, the uplink idle.
    for round in 1..=8u64 {
        let ms = (round - 1) * 10_000;
        train(&mut e, Duration::from_millis(ms), round, 1.0);
        for (k, expected) in [true, true, false].into_iter().enumerate() {
            let turn = 1 + ((round as usize - 1) * 3 + k) % 12;
            assert_eq!(
                ask(&mut e, ms, turn, Some(round)),
                Some(expected),
                "round {round}"
            );
        }
        // Two allies of the hog ask eight times a round, to raise the mean: a round counts
        // once, however often a peer asks in it.
        for ally in [14, 15] {
            for _ in 0..8 {
                ask(&mut e, ms + 500, ally, Some(round));
            }
        }
        // From round 5 the hog asks for whatever the node has, as a joiner does: exempt from
        // a full uplink as a first fetch, but not from its share.
        let hogged = ask(&mut e, ms + 1000, hog, (round < 5).then_some(round));
        assert!(hogged.is_some(), "round {round}: answered or refused");
        if hogged == Some(true) {
            hog_served.push(round);
        }
        e.handle(Duration::from_millis(ms + 5000), Input::Tick)
            .unwrap();
        drain(&mut e);
    }
    assert_eq!(hog_served, vec![1], "against every round without the rule");
    // Held at round 9: the hog asked first, and is refused after the lighter asker's answer,
    // the uplink contended since 79 s.
    e.handle(Duration::from_millis(79_000), Input::Tick)
        .unwrap();
    drain(&mut e);
    for (from, expected) in [(1, true), (2, true), (3, false)] {
        assert_eq!(
            ask(&mut e, 79_000, from, Some(8)),
            Some(expected),
            "peer {from} at 79 s"
        );
    }
    for (from, request) in [(hog, 100), (5, 101)] {
        let input = Input::FetchRequested {
            from: toy::identity(from).public(),
            request,
            round: Some(9),
            have: None,
        };
        e.handle(Duration::from_millis(80_000), input).unwrap();
    }
    let out = train(&mut e, Duration::from_millis(80_000), 9, 1.0);
    assert_eq!(served(&out, 101), Some(true), "{out:?}");
    assert_eq!(served(&out, 100), Some(false), "{out:?}");
    // Round 10: heavy still, but the uplink refused no first fetch for its backlog since 79 s.
    e.handle(Duration::from_millis(85_000), Input::Tick)
        .unwrap();
    drain(&mut e);
    train(&mut e, Duration::from_millis(90_000), 10, 1.0);
    assert!(e.shares.heavy(&toy::identity(hog).public()));
    assert_eq!(
        ask(&mut e, 91_000, hog, Some(10)),
        Some(true),
        "not contended"
    );
}

/// A fetch held across the start of a round (asked for the next round before this node
/// trained it) counts as the asker's fetch of the new round: asking again then is a repeat,
/// served only by an idle uplink, so a held request does not give one identity two answers of
/// a busy uplink in a round.
#[test]
fn a_fetch_held_into_a_new_round_makes_the_next_one_a_repeat() {
    let mut e = slow_uplink(BTreeMap::new());
    // Held until 2.9 s; the round's deadline is at 2 s.
    assert_eq!(
        fetch_round(&mut e, 1900, 1, 1, Some(2)),
        None,
        "held: round 2 is not signed"
    );
    e.handle(Duration::from_millis(2000), Input::Tick).unwrap();
    assert!(drain(&mut e).contains(&Output::Train { round: 2 }));
    assert_eq!(
        fetch_round(&mut e, 2000, 2, 2, Some(1)),
        Some(true),
        "the uplink busy till 2.2 s"
    );
    // Peer 1 asks again: its held request is answered at once as a repeat, the uplink busy.
    let input = Input::FetchRequested {
        from: toy::identity(1).public(),
        request: 3,
        round: Some(2),
        have: None,
    };
    e.handle(Duration::from_millis(2000), input).unwrap();
    assert_eq!(served(&drain(&mut e), 1), Some(false));
}
