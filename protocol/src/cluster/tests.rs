//! The cluster's own behaviour: connections and faults, bans, gossip relaying, restarts and
//! late joins, on the toy world.

use super::toy::{self, Quadratic};
use super::*;
use crate::aggregate::{self, Rule};
use crate::attack::{Attack, Knowledge, NonFinite};
use crate::engine::{Adversary, Config};

const DIM: usize = 3;

fn config(rounds: u64) -> Config {
    Config {
        fanout: 2,
        wait_for: 2,
        round_timeout_ms: 200,
        rounds: Some(rounds),
        aggregation: aggregate::Config {
            rule: Rule::Mean,
            pre: Vec::new(),
        },
        outlier_factor: 0.0,
        ..Config::default()
    }
}

/// `n` toy nodes linked as `edges`, none started.
fn cluster(
    n: usize,
    edges: &[(usize, usize)],
    config: &Config,
    gossip: Gossip,
) -> Cluster<Quadratic> {
    let targets = toy::targets(n, DIM, 1.0, 1.0, 5);
    let mut c = Cluster::new(Quadratic::new(targets), 5, gossip);
    for i in 0..n {
        c.add(toy::setup(i, config, DIM, 5)).unwrap();
    }
    for &(a, b) in edges {
        c.link(a, b);
    }
    c
}

fn line(n: usize) -> Vec<(usize, usize)> {
    (1..n).map(|i| (i - 1, i)).collect()
}

fn steps(c: &mut Cluster<Quadratic>, limit: Duration) -> Vec<Step> {
    std::iter::from_fn(|| c.step(limit)).collect()
}

#[test]
fn links_come_up_and_go_down_with_faults_and_heal() {
    let mut c = cluster(
        4,
        &[(0, 1), (1, 2), (2, 3), (0, 3)],
        &config(5),
        Gossip::default(),
    );
    c.start(&[0, 1, 2, 3], false);
    let key = |c: &Cluster<Quadratic>, i: usize| c.engine(i).id();
    let peers = |c: &Cluster<Quadratic>, i: usize| c.engine(i).connected();
    assert_eq!(peers(&c, 0).len(), 2);
    c.cut(0, 1);
    assert!(!c.connected(0, 1));
    assert!(!peers(&c, 0).contains(&key(&c, 1)) && !peers(&c, 1).contains(&key(&c, 0)));
    c.isolate(2);
    assert!(peers(&c, 2).is_empty() && peers(&c, 3) == vec![key(&c, 0)]);
    c.heal();
    assert_eq!(peers(&c, 2).len(), 2);
    assert!(c.connected(0, 1));
    c.partition(vec![0, 0, 1, 1]);
    assert_eq!(c.peers_of(0), vec![1]);
    assert_eq!(c.peers_of(3), vec![2]);
    c.heal();
    c.set_drop(1.0);
    steps(&mut c, Duration::from_secs(1));
    assert_eq!(c.counters().delivered, 0, "everything lost");
    assert!(c.counters().dropped > 0);
}

/// A message on its way when its connection goes down (a cut, an isolation, a partition, its
/// sender leaving) is dropped, not delivered: the two nodes have no other link, so nothing at all
/// arrives once the connection is down.
#[test]
fn messages_on_their_way_are_dropped_when_their_connection_goes_down() {
    type Fault = fn(&mut Cluster<Quadratic>);
    let faults: [(&str, Fault); 4] = [
        ("cut", |c| c.cut(0, 1)),
        ("isolate", |c| c.isolate(1)),
        ("partition", |c| c.partition(vec![0, 1])),
        ("leave", |c| c.leave(1)),
    ];
    for (name, fault) in faults {
        let mut c = cluster(2, &line(2), &config(50), Gossip::default());
        c.start(&[0, 1], false);
        let mut limit = Duration::ZERO;
        let on_the_way = |c: &Cluster<Quadratic>| {
            c.queue
                .events()
                .filter(|e| matches!(e, Event::Deliver { .. }))
                .count()
        };
        while on_the_way(&c) == 0 {
            limit += Duration::from_millis(1);
            assert!(limit < Duration::from_secs(10), "{name}: no message sent");
            steps(&mut c, limit);
        }
        let (delivered, dropped) = (c.counters().delivered, c.counters().dropped);
        let in_flight = on_the_way(&c) as u64;
        fault(&mut c);
        steps(&mut c, limit + Duration::from_secs(5));
        assert_eq!(c.counters().delivered, delivered, "{name}: delivered after");
        assert!(
            c.counters().dropped >= dropped + in_flight,
            "{name}: the {in_flight} messages on their way were not all dropped"
        );
    }
}

/// A node sending non-finite models is banned after two of them by every honest peer; each ban
/// closes the connection, so nothing it sends afterwards reaches the node that banned it, and a
/// heal or its restart does not reconnect them.
#[test]
fn a_ban_closes_the_connection_for_good() {
    let n = 4;
    let edges: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    let mut c = cluster(n, &edges, &config(40), Gossip::default());
    let liar = 3;
    // Rebuild the liar as an attacker.
    let mut attack = toy::setup(liar, &config(40), DIM, 5);
    attack.adversary = Some(Adversary::new(Attack::NonFinite {
        value: NonFinite::Nan,
    }));
    let targets = toy::targets(n, DIM, 1.0, 1.0, 5);
    let mut c2 = Cluster::new(Quadratic::new(targets), 5, Gossip::default());
    for i in 0..n {
        let s = if i == liar {
            attack.clone()
        } else {
            toy::setup(i, &config(40), DIM, 5)
        };
        c2.add(s).unwrap();
    }
    for &(a, b) in &edges {
        c2.link(a, b);
    }
    std::mem::swap(&mut c, &mut c2);
    c.keep_checkpoints(liar);
    c.start(&[0, 1, 2, 3], false);
    let mut bans = Vec::new();
    for s in steps(&mut c, Duration::from_secs(2)) {
        if let Step::Banned { node, peer, .. } = s {
            bans.push((node, peer));
        }
    }
    bans.sort();
    assert_eq!(bans, vec![(0, liar), (1, liar), (2, liar)]);
    for i in 0..3 {
        assert!(!c.connected(i, liar));
        assert!(c.engine(i).is_banned(&c.engine(liar).id()));
    }
    assert!(
        c.engine(liar).connected().is_empty(),
        "its connections closed"
    );
    c.partition(vec![0, 0, 1, 1]);
    c.heal();
    c.leave(liar);
    c.restart(liar);
    steps(&mut c, Duration::from_secs(20));
    for i in 0..3 {
        assert!(!c.connected(i, liar));
    }
    assert_eq!(c.counters().from_banned, 0);
    let nan: u64 = (0..3)
        .map(|i| c.engine(i).stats().rejected[&Rejection::NonFinite])
        .sum();
    assert_eq!(nan, 6, "two models each, then nothing more");
}

#[test]
fn gossip_is_relayed_to_every_node_once_and_not_without_hops() {
    // One round: each of the 5 nodes of a line publishes one announcement.
    for (gossip, expected) in [
        (Gossip::default(), 5 * 4),
        (
            Gossip {
                hops: Some(0),
                ..Gossip::default()
            },
            2 + 3 * 2,
        ),
    ] {
        let mut c = cluster(5, &line(5), &config(1), gossip.clone());
        c.start(&[0, 1, 2, 3, 4], false);
        steps(&mut c, Duration::from_secs(10));
        assert_eq!(c.counters().gossip_delivered, expected, "{gossip:?}");
    }
    // On a ring every message reaches each node twice: the second copy is dropped.
    let ring: Vec<(usize, usize)> = (0..5).map(|i| (i, (i + 1) % 5)).collect();
    let mut c = cluster(5, &ring, &config(1), Gossip::default());
    c.start(&[0, 1, 2, 3, 4], false);
    steps(&mut c, Duration::from_secs(10));
    assert_eq!(c.counters().gossip_delivered, 5 * 4);
    assert!(c.counters().duplicates > 0);
}

/// Gossip copies a node will surely refuse as seen are counted when sent, not queued, and the
/// run is the same as when they are queued and refused on arrival: every step, every engine's
/// model and counts. Only the events handled differ, and, when a connection goes down with such
/// a copy on its way, which of two counters the copy is in: refused as seen when sent, or
/// dropped with its connection.
#[test]
fn copies_a_node_has_seen_are_not_queued_and_change_nothing() {
    // Every node linked to every other: each message reaches each node from several relayers.
    let n = 6;
    let edges: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    let build = |queue_seen_copies: bool| {
        let mut c = cluster(n, &edges, &config(8), Gossip::default());
        c.queue_seen_copies = queue_seen_copies;
        c.start(&(0..n).collect::<Vec<_>>(), false);
        c
    };
    // When, with every copy queued, a copy its receiver has seen is first on its way.
    let mut probe = build(true);
    let mut at = Duration::ZERO;
    let receiver = loop {
        at += Duration::from_millis(1);
        assert!(
            at < Duration::from_secs(10),
            "no copy of a seen message sent"
        );
        steps(&mut probe, at);
        let seen_on_the_way = probe.queue.events().find_map(|e| match e {
            Event::Deliver {
                to,
                message: Message::Gossip { id, .. },
                ..
            } if probe.members[*to]
                .seen
                .holds_at(*id, at, probe.gossip.seen_for) =>
            {
                Some(*to)
            }
            _ => None,
        });
        if let Some(to) = seen_on_the_way {
            break to;
        }
    };
    for leaves in [false, true] {
        let run = |queue_seen_copies: bool| {
            let mut c = build(queue_seen_copies);
            let mut steps = format!("{:?}", steps(&mut c, at));
            if leaves {
                c.leave(receiver);
            }
            steps += &format!("{:?}", self::steps(&mut c, Duration::from_secs(30)));
            let engines: Vec<String> = (0..n)
                .map(|i| format!("{:?} {:?}", c.engine(i).model(), c.engine(i).stats()))
                .collect();
            (steps, engines, c.counters().clone())
        };
        let (steps_queued, engines_queued, queued) = run(true);
        let (steps, engines, counters) = run(false);
        assert_eq!(steps, steps_queued, "leaves: {leaves}");
        assert_eq!(engines, engines_queued, "leaves: {leaves}");
        assert!(queued.duplicates > 0, "{queued:?}");
        assert!(
            counters.events + counters.duplicates / 3 < queued.events,
            "many duplicates are known when sent: {counters:?} against {queued:?}"
        );
        if leaves {
            assert!(
                counters.dropped < queued.dropped,
                "{counters:?} against {queued:?}"
            );
        }
        assert_eq!(
            Counters {
                events: queued.events,
                dropped: queued.dropped,
                duplicates: queued.duplicates,
                ..counters
            },
            queued,
            "leaves: {leaves}"
        );
        assert_eq!(
            counters.dropped + counters.duplicates,
            queued.dropped + queued.duplicates,
            "leaves: {leaves}"
        );
    }
}

/// An equivocator on a square: the node across the square from it never receives its updates,
/// but bans it on the evidence another node publishes and a third relays.
#[test]
fn evidence_relayed_through_peers_bans_an_equivocator_out_of_reach() {
    let square = [(0, 1), (1, 2), (2, 3), (3, 0)];
    let cfg = config(3);
    let targets = toy::targets(4, DIM, 1.0, 1.0, 5);
    let mut c = Cluster::new(Quadratic::new(targets), 5, Gossip::default());
    for i in 0..4 {
        let mut s = toy::setup(i, &cfg, DIM, 5);
        if i == 1 {
            s.adversary = Some(Adversary::new(Attack::Equivocate));
        }
        c.add(s).unwrap();
    }
    for (a, b) in square {
        c.link(a, b);
    }
    c.start(&[0, 1, 2, 3], false);
    steps(&mut c, Duration::from_secs(10));
    let liar = c.engine(1).id();
    for i in [0, 2, 3] {
        assert!(c.engine(i).is_banned(&liar), "node {i}");
    }
}

#[test]
fn a_restart_resumes_from_its_checkpoint_and_a_late_joiner_from_its_peers() {
    let mut cfg = config(1000);
    cfg.checkpoint_every = 3;
    cfg.join_peers = 2;
    cfg.join_timeout_ms = 200;
    let n = 5;
    let edges: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    let mut c = cluster(n, &edges, &cfg, Gossip::default());
    c.keep_checkpoints(0);
    c.start(&[0, 1, 2, 3], false);
    steps(&mut c, Duration::from_secs(3));
    let signed = c.engine(0).signed_round();
    c.leave(0);
    c.start(&[4], true);
    c.restart(0);
    let mut started = Vec::new();
    for s in steps(&mut c, Duration::from_secs(5)) {
        if let Step::Started {
            node,
            origin,
            round,
            peers,
            resume,
        } = s
        {
            started.push((node, origin, round, peers, resume));
        }
    }
    let restarted = started.iter().find(|s| s.0 == 0).expect("node 0 started");
    let resume = &restarted.4;
    assert_eq!(resume.signed, signed);
    let checkpoint = resume.checkpoint.expect("a checkpoint was kept");
    assert!(checkpoint % 3 == 0 && checkpoint + 3 > signed, "{resume:?}");
    assert_eq!(restarted.1, Origin::Checkpoint, "peers are not far ahead");
    assert_eq!(restarted.2, checkpoint.max(signed) + 1);
    let joined = started.iter().find(|s| s.0 == 4).expect("node 4 started");
    assert_eq!((joined.1, joined.3), (Origin::Joined, 2));
    assert!(joined.2 > 5, "it starts near its peers' rounds: {joined:?}");
}

/// A node that finished its rounds lets the world free its copy of the model (the engine keeps
/// the model evaluation reads), and a restart gives the world a model again before it trains.
#[test]
fn a_finished_node_frees_the_worlds_model_and_a_restart_gives_one_back() {
    let mut cfg = config(4);
    cfg.checkpoint_every = 2;
    let n = 4;
    let mut c = cluster(n, &line(n), &cfg, Gossip::default());
    c.keep_checkpoints(0);
    c.start(&[0, 1, 2, 3], false);
    let finished = |steps: Vec<Step>| -> Vec<usize> {
        steps
            .into_iter()
            .filter_map(|s| match s {
                Step::Finished { node } => Some(node),
                _ => None,
            })
            .collect()
    };
    let mut done = finished(steps(&mut c, Duration::from_secs(10)));
    done.sort_unstable();
    assert_eq!(done, [0, 1, 2, 3]);
    for i in 0..n {
        assert!(c.world().params(i).is_empty(), "node {i} holds a copy");
        assert_eq!(c.engine(i).model().len(), DIM, "node {i}'s engine keeps it");
    }
    // A restart from the last checkpoint finishes again at once, trained from a model it was
    // given (the toy world refuses to train a freed one).
    c.leave(0);
    c.restart(0);
    assert_eq!(
        c.world().params(0).len(),
        DIM,
        "the restart gave it a model"
    );
    assert_eq!(finished(steps(&mut c, Duration::from_secs(10))), [0]);
    assert!(c.world().params(0).is_empty());
}

/// Junk gossip stops at the first honest node: it rejects the message, penalises its author
/// and does not forward it, so the honest node beyond never sees it and never blames the honest
/// relayer in between (before, each junk message cost the relayer half the ban threshold).
#[test]
fn junk_gossip_costs_its_author_and_never_the_relayer() {
    let mut c = cluster(3, &line(3), &config(1000), Gossip::default());
    c.start(&[0, 1, 2], false);
    steps(&mut c, Duration::from_millis(300));
    for k in 0..3u8 {
        c.publish(0, vec![0xEE, k, 1, 2, 3].into());
    }
    steps(&mut c, Duration::from_secs(2));
    let (junker, relayer) = (c.engine(0).id(), c.engine(1).id());
    assert!(c.engine(1).is_banned(&junker), "the author is banned");
    assert!(!c.engine(2).is_banned(&relayer), "the relayer is not");
    assert!(
        c.engine(2).stats().rejected.is_empty(),
        "{:?}",
        c.engine(2).stats().rejected
    );
    assert!(c.counters().gossip_refused >= 2, "{:?}", c.counters());
}

/// Two attackers (5, 6) hang off honest node 0 of a five-node honest ring. Knowing only their own
/// mixes they keep no intel; colluding, each knows what either fetched: node 0 alone; omniscient,
/// every honest node, at the round it last signed.
#[test]
fn attackers_learn_what_their_knowledge_allows() {
    let n = 7;
    let mut edges: Vec<(usize, usize)> = (0..5).map(|i| (i, (i + 1) % 5)).collect();
    edges.extend([(0, 5), (0, 6)]);
    for (knowledge, authors) in [
        (Knowledge::Own, vec![]),
        (Knowledge::Colluding, vec![0]),
        (Knowledge::Omniscient, vec![0, 1, 2, 3, 4]),
    ] {
        let targets = toy::targets(n, DIM, 1.0, 1.0, 5);
        let mut c = Cluster::new(Quadratic::new(targets), 5, Gossip::default());
        for i in 0..n {
            let mut s = toy::setup(i, &config(6), DIM, 5);
            if i >= 5 {
                s.adversary = Some(Adversary {
                    knowledge,
                    allies: [5, 6]
                        .map(|j| toy::identity(j).public())
                        .into_iter()
                        .collect(),
                    ..Adversary::new(Attack::Alie { z: Some(1.0) })
                });
            }
            c.add(s).unwrap();
        }
        for &(a, b) in &edges {
            c.link(a, b);
        }
        c.start(&(0..n).collect::<Vec<_>>(), false);
        steps(&mut c, Duration::from_secs(60));
        let keys: Vec<PeerKey> = authors.iter().map(|&i| c.engine(i).id()).collect();
        for a in [5, 6] {
            let known = c.engine(a).known_authors();
            let got: Vec<PeerKey> = known.keys().copied().collect();
            let mut want = keys.clone();
            want.sort();
            assert_eq!(got, want, "{knowledge:?}, attacker {a}");
            if knowledge == Knowledge::Omniscient {
                for (k, round) in known {
                    let i = c.index[&k];
                    assert_eq!(
                        round,
                        c.engine(i).round(),
                        "{knowledge:?}: node {i}'s newest"
                    );
                }
            }
        }
    }
}

/// Checks done once change no verdict: the same run with the engines sharing their signature
/// and digest checks, and with every engine checking alone, ends with the same models and the
/// same counts, while the shared run skipped checks.
#[test]
fn shared_checks_give_the_same_run_as_checking_alone() {
    let n = 10;
    let outcome = |shared: bool| {
        let targets = toy::targets(n, DIM, 1.0, 1.0, 7);
        let mut c = Cluster::new(Quadratic::new(targets), 7, Gossip::default());
        if !shared {
            c.check_alone();
        }
        let mut cfg = config(12);
        cfg.fanout = 4;
        cfg.wait_for = 4;
        for i in 0..n {
            let mut s = toy::setup(i, &cfg, DIM, 7);
            s.adversary = match i {
                8 => Some(Adversary::new(Attack::SignFlip)),
                9 => Some(Adversary {
                    knowledge: Knowledge::Omniscient,
                    ..Adversary::new(Attack::Alie { z: Some(1.0) })
                }),
                _ => None,
            };
            c.add(s).unwrap();
        }
        for a in 0..n {
            for b in a + 1..n {
                c.link(a, b);
            }
        }
        c.start(&(0..n).collect::<Vec<_>>(), false);
        let steps = steps(&mut c, Duration::from_secs(60)).len();
        let hits = c.memo().map_or(0, |m| m.hits());
        let ends: Vec<_> = (0..n)
            .map(|i| {
                let e = c.engine(i);
                let rejected = e.stats().rejected.clone();
                (e.model().to_vec(), e.stats().accepted, rejected)
            })
            .collect();
        (steps, ends, hits)
    };
    let (steps, ends, hits) = outcome(true);
    let (steps_alone, ends_alone, hits_alone) = outcome(false);
    assert_eq!(steps, steps_alone);
    assert_eq!(ends, ends_alone);
    assert!(ends.iter().take(8).all(|(_, accepted, _)| *accepted > 20));
    assert_eq!(hits_alone, 0);
    assert!(hits > 100, "{hits} checks skipped");
}

#[test]
fn a_nodes_superseded_timers_do_not_pile_up_in_the_queue() {
    // Each node re-arms its timer several times a round (a deadline per round, requests held
    // until it signs); only the tick of the deadline armed last may fire. The queue holds the
    // messages in flight and a few ticks per node, however long the run.
    let n = 8;
    let ring: Vec<(usize, usize)> = (0..n).map(|i| (i, (i + 1) % n)).collect();
    let mut c = cluster(n, &ring, &config(400), Gossip::default());
    // Nodes of different speeds: requests for rounds not signed yet are held, and answers
    // come at different times.
    c.world.slower = (0..n as u64)
        .map(|i| Duration::from_millis(13 * i))
        .collect();
    c.start(&(0..n).collect::<Vec<_>>(), false);
    let (mut most, mut ticks) = (0, 0);
    let mut limit = Duration::ZERO;
    while c.engine(0).round() < 400 && limit < Duration::from_secs(600) {
        limit += Duration::from_millis(20);
        steps(&mut c, limit);
        most = most.max(c.queue.len());
        ticks = ticks.max(
            c.queue
                .events()
                .filter(|e| matches!(e, Event::Tick { .. }))
                .count(),
        );
    }
    assert!(c.engine(0).round() >= 400, "the run finished");
    // A superseded tick waits in the queue for its time (dropped then), so a node may have a
    // few; before, each one that fired re-armed the current deadline once more, and the ticks
    // of 8 nodes grew to about 4,000 over the run.
    assert!(ticks <= 4 * n, "{ticks} ticks queued for {n} nodes");
    assert!(most <= 20 * n, "{most} events queued for {n} nodes");
}

#[test]
fn choosing_the_jobs_to_run_costs_each_job_a_few_looks_however_many_are_queued() {
    // 1,000 nodes queue their first jobs at once; jobs are handed over 64 at a time. Sorting
    // every queued job for each batch looked at each about n / 128 times (100,000 nodes: a fifth
    // of the event loop's time); now a job is looked at when it is handed over, or skipped.
    let n = 1000;
    let ring: Vec<(usize, usize)> = (0..n).map(|i| (i, (i + 1) % n)).collect();
    let mut c = cluster(n, &ring, &config(3), Gossip::default());
    c.start(&(0..n).collect::<Vec<_>>(), false);
    let mut limit = Duration::ZERO;
    while (0..n).any(|i| c.engine(i).round() < 3) && limit < Duration::from_secs(600) {
        limit += Duration::from_millis(100);
        steps(&mut c, limit);
    }
    assert!((0..n).all(|i| c.engine(i).round() >= 3), "the run finished");
    let jobs = c.counters().train_jobs;
    assert!(jobs >= 3 * n as u64, "{jobs} jobs");
    assert!(
        c.jobs_looked_at <= 3 * jobs,
        "{} looks at {jobs} jobs",
        c.jobs_looked_at
    );
}
