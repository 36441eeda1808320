//! The red-team node runs each of the adaptive attacks (`opt-alie`, `opt-ipm`, `min-max`,
//! `min-sum`), dissensus, mimic and the protocol attacks (`replay`, `equivocate`, `round-lie`,
//! `junk`, `gossip-abuse`), and `opt-alie` again with free timing (`--attack-free-timing`: it never
//! trains), against four honest `murmur-node` processes on 127.0.0.1, one network per attack:
//! its forgeries are fetched (or its junk refused and its key banned), and the honest nodes
//! finish every round and learn. A second test serves oversize frames, which the transport
//! refuses on their length before the engine sees them, and checks that they are charged all the
//! same. A third runs one red-team process of three Sybil identities (`--attack-identities 3`),
//! a fourth such a process hogging slow uplinks, its identities taking turns, and a fifth such a
//! process against a run that lists its members, one of the three identities among them.

mod net_support;

use std::time::Duration;

use net_support::{
    assert_mean_accuracy, finished_accuracies, rejected_but, spawn, spawn_network, write_config,
};

const HONEST: usize = 4;
const NODES: usize = HONEST + 1;
const ROUNDS: u64 = 12;
const METRICS: &str = "[metrics]\neval-every = 12\n";

/// The `[engine]` keys of every network here: three answers a round, `ROUNDS` rounds.
fn engine() -> String {
    format!(
        "fanout = 3\nwait-for = 3\nround-timeout-ms = 3000\nrounds = {ROUNDS}\n\
         join-timeout-ms = 3000"
    )
}

#[test]
fn each_new_attack_runs_from_a_red_team_node_against_four_honest_ones() {
    for (attack, free_timing) in [
        ("opt-alie", false),
        ("opt-ipm", false),
        ("min-max", false),
        ("min-sum", false),
        ("dissensus", false),
        ("mimic", false),
        ("replay", false),
        ("equivocate", false),
        ("round-lie", false),
        ("junk", false),
        ("gossip-abuse", false),
        ("opt-alie", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), NODES, &engine(), METRICS);
        let mut nodes = spawn_network(&config, dir.path(), NODES, |i| {
            if i == HONEST {
                let mut args = vec!["--attack".into(), attack.into()];
                if free_timing {
                    args.push("--attack-free-timing".into());
                }
                args
            } else {
                Vec::new()
            }
        });
        let accuracies = finished_accuracies(&mut nodes[..HONEST]);
        let red = nodes[HONEST].status();
        println!(
            "{attack} (free timing {free_timing}): red-team node served {} models, sent {} \
             updates, trained {} samples",
            red.served_models, red.updates_sent, red.samples
        );
        assert_eq!(
            red.samples == 0,
            free_timing,
            "{attack}: a red-team node trains unless it has free timing"
        );
        let honest: Vec<_> = nodes.iter().take(HONEST).map(|n| n.status()).collect();
        for (i, s) in honest.iter().enumerate() {
            println!(
                "{attack}: honest node {i}: round {} accepted {} rejected {:?} bans {}",
                s.round, s.accepted, s.rejected, s.bans
            );
            assert_eq!(s.round, ROUNDS, "{attack}: node {i} finished its rounds");
        }
        let refused = |reason: &str| -> u64 {
            honest
                .iter()
                .map(|s| s.rejected.get(reason).copied().unwrap_or(0))
                .sum()
        };
        match attack {
            "junk" => {
                assert!(refused("malformed") > 0, "{attack}: no junk refused");
                // Every node that was served junk banned the server: two strikes.
                for (i, s) in honest.iter().enumerate() {
                    if s.rejected.get("malformed").copied().unwrap_or(0) > 0 {
                        assert!(
                            s.bans > 0,
                            "{attack}: node {i} refused junk but banned no one"
                        );
                    }
                }
            }
            "equivocate" => {
                // Two updates of one round to different askers: the proof travels by gossip
                // and every honest node bans the red-team node, and only it. A node may finish
                // its rounds before the proof reaches it: its status is read until it has.
                // The attacker serves its second update to the askers whose key starts with an
                // odd byte; the keys are drawn afresh each run, and when all four honest ones
                // start with an even byte (1 run in 16) no one is served it and there is
                // nothing to prove.
                let odd = nodes.iter().take(HONEST).any(|n| {
                    let key = murmur_node::identity::load(&n.dir.join("node.key")).unwrap();
                    key.public().0[0] % 2 == 1
                });
                for (i, node) in nodes.iter().take(HONEST).enumerate() {
                    let s = match odd {
                        true => node.wait_status(Duration::from_secs(60), |s| s.bans >= 1),
                        false => node.status(),
                    };
                    assert_eq!(
                        s.bans,
                        u64::from(odd),
                        "{attack}: node {i} banned {} peers (an honest key with an odd first \
                         byte: {odd})",
                        s.bans
                    );
                }
            }
            "gossip-abuse" => {
                // Junk and forged names in gossip: refused, and charged to the red-team node
                // alone, which every honest node bans; no honest node is blamed.
                for (i, node) in nodes.iter().take(HONEST).enumerate() {
                    let s = node.wait_status(Duration::from_secs(60), |s| s.bans >= 1);
                    let refused = s.rejected.get("malformed").copied().unwrap_or(0)
                        + s.rejected.get("bad_signature").copied().unwrap_or(0);
                    assert!(refused > 0, "{attack}: node {i} refused no abuse");
                    assert_eq!(s.bans, 1, "{attack}: node {i} banned {} peers", s.bans);
                }
            }
            _ => {
                assert!(
                    red.served_models > 0,
                    "{attack}: no honest node fetched the red-team node's model"
                );
                assert_eq!(refused("malformed"), 0, "{attack}: valid messages only");
                // The lie is within `max-ahead`: accepted, not refused as ahead.
                assert_eq!(refused("ahead"), 0, "{attack}");
            }
        }
        assert_mean_accuracy(&format!("{attack}: "), &accuracies, 0.8);
    }
}

/// A red-team node answers every fetch with a frame one byte longer than the largest valid
/// update (`attack = { kind = "junk", form = "oversize" }` in its own config): the honest nodes'
/// transport refuses it on its length before reading it, and the engine still charges it, so
/// every honest node that asked refuses it as `oversize` and bans it.
#[test]
fn oversize_answers_are_refused_on_their_length_and_their_server_banned() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, metrics) = (engine(), METRICS);
    let config = write_config(dir.path(), NODES, &engine, metrics);
    let red_dir = dir.path().join("red");
    std::fs::create_dir_all(&red_dir).unwrap();
    let red_config = write_config(
        &red_dir,
        NODES,
        &engine,
        &format!("{metrics}\n[node]\nattack = {{ kind = \"junk\", form = \"oversize\" }}\n"),
    );
    let mut nodes = spawn_network(&config, dir.path(), HONEST, |_| Vec::new());
    let boot = nodes[0].addr.clone();
    nodes.push(spawn(
        &red_config,
        &dir.path().join(format!("n{HONEST}")),
        HONEST,
        &["--bootstrap", &boot],
    ));
    let red = nodes[HONEST].status().peer_id;
    let accuracies = finished_accuracies(&mut nodes[..HONEST]);
    let mut refused_by = 0;
    for (i, node) in nodes.iter().enumerate().take(HONEST) {
        let s = node.status();
        let oversize = s.rejected.get("oversize").copied().unwrap_or(0);
        println!(
            "honest node {i}: round {} accepted {} rejected {:?} bans {}",
            s.round, s.accepted, s.rejected, s.bans
        );
        assert_eq!(s.round, ROUNDS, "node {i} finished its rounds");
        assert_eq!(
            s.rejected.get("malformed").copied().unwrap_or(0),
            0,
            "node {i}: only oversize frames came"
        );
        if oversize > 0 {
            refused_by += 1;
            assert_eq!(
                s.bans, 1,
                "node {i} refused oversize answers but banned {}",
                s.bans
            );
        }
    }
    assert!(
        refused_by > 0,
        "no honest node refused the answers of the red-team node {red} as oversize"
    );
    assert_mean_accuracy("oversize: ", &accuracies, 0.8);
}

/// One red-team process holds three keys and joins as three peers (`--attack-identities 3`),
/// each serving junk: the honest nodes meet three peers, refuse each one's junk and ban each
/// key on its own, and no honest one; the identities keep their keys in their own state
/// directories, report events under their identity, and the honest nodes finish and learn.
#[test]
fn a_sybil_process_joins_as_three_peers_each_charged_for_its_own_junk() {
    const SYBILS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), NODES, &engine(), METRICS);
    let mut nodes = spawn_network(&config, dir.path(), NODES, |i| {
        if i == HONEST {
            vec![
                "--attack".into(),
                "junk".into(),
                "--attack-identities".into(),
                SYBILS.to_string(),
            ]
        } else {
            Vec::new()
        }
    });
    // Every identity listens as a peer of its own (the harness took the first one's line).
    let red_dir = nodes[HONEST].dir.clone();
    let peer_of = |addr: &str| addr.rsplit('/').next().unwrap().to_owned();
    let mut red_peers = std::collections::BTreeSet::from([peer_of(&nodes[HONEST].addr)]);
    let mut identities = std::collections::BTreeSet::new();
    while identities.len() < SYBILS - 1 {
        let e = nodes[HONEST].wait(Duration::from_secs(120), |e| e["event"] == "listening");
        identities.insert(e["identity"].as_u64().expect("a Sybil's events name it"));
        red_peers.insert(peer_of(e["addr"].as_str().unwrap()));
    }
    assert_eq!(
        red_peers.len(),
        SYBILS,
        "one peer id per identity: {red_peers:?}"
    );
    let key = |path: std::path::PathBuf| {
        hex::encode(murmur_node::identity::load(&path).unwrap().public().0)
    };
    let mut red_keys = vec![key(red_dir.join("node.key"))];
    red_keys.extend((1..SYBILS).map(|i| key(red_dir.join(format!("identity-{i}/node.key")))));
    let accuracies = finished_accuracies(&mut nodes[..HONEST]);
    let mut banned = std::collections::BTreeSet::new();
    for (i, node) in nodes.iter().enumerate().take(HONEST) {
        let s = node.status();
        let keys = node.banned_keys();
        println!(
            "honest node {i}: round {} accepted {} rejected {:?} banned {keys:?}",
            s.round, s.accepted, s.rejected
        );
        assert_eq!(s.round, ROUNDS, "node {i} finished its rounds");
        for k in &keys {
            assert!(red_keys.contains(k), "node {i} banned {k}, not a Sybil");
        }
        banned.extend(keys);
    }
    println!("Sybil keys {red_keys:?}");
    assert_eq!(
        banned.len(),
        SYBILS,
        "every identity is a peer of its own, banned for its own junk: {banned:?}"
    );
    assert_mean_accuracy("sybil junk: ", &accuracies, 0.8);
}

/// One red-team process of three identities hogs the uplinks of four honest nodes whose
/// `engine.uplink-mbps` says 0.1 Mbit/s (each 9.9 KB model takes 0.8 s to leave), the
/// identities taking turns (`--attack-hog --attack-hog-in-turn --attack-identities 3`): the
/// first identity hogs only in its rounds (one in three), the honest nodes refuse fetches as
/// busy, finish every round, refuse no update but as too old to mix or as an outlier, and
/// learn.
#[test]
fn a_sybil_process_hogs_slow_uplinks_one_identity_a_round() {
    const SYBILS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let engine = format!(
        "fanout = 2\nwait-for = 2\nround-timeout-ms = 2000\nrounds = {ROUNDS}\n\
         uplink-mbps = 0.1\njoin-timeout-ms = 3000"
    );
    let config = write_config(dir.path(), NODES, &engine, METRICS);
    let mut nodes = spawn_network(&config, dir.path(), NODES, |i| {
        if i == HONEST {
            ["--attack", "alie", "--attack-hog", "--attack-hog-in-turn"]
                .map(String::from)
                .into_iter()
                .chain(["--attack-identities".into(), SYBILS.to_string()])
                .collect()
        } else {
            Vec::new()
        }
    });
    let accuracies = finished_accuracies(&mut nodes[..HONEST]);
    let mut refused = 0;
    for (i, node) in nodes.iter().enumerate().take(HONEST) {
        let s = node.status();
        println!(
            "honest node {i}: round {} mixes {} served {} refused as busy {} rejected {:?}",
            s.round, s.mixes, s.served_models, s.refused_busy, s.rejected
        );
        assert_eq!(s.round, ROUNDS, "node {i} finished its rounds");
        // ALIE's forgeries are valid updates, which the outlier screen may refuse; one too old
        // to mix (`lagging`, no penalty) can come on an uplink this slow.
        assert_eq!(
            rejected_but(&s, &["lagging", "outlier"]),
            0,
            "node {i} rejected updates: {:?}",
            s.rejected
        );
        refused += s.refused_busy;
    }
    assert!(refused > 0, "no honest node refused a fetch as busy");
    // The first identity's turns are the rounds divisible by three: four of the twelve at
    // most (fewer if it joined late). Hogging every round, it hogged in nine (one run).
    let red = nodes[HONEST].wait_status(Duration::from_secs(120), |s| s.round >= ROUNDS);
    println!(
        "red-team identity 0: round {} hogged in {} rounds",
        red.round, red.attack_hog_rounds
    );
    assert!(
        (1..=ROUNDS / SYBILS as u64).contains(&red.attack_hog_rounds),
        "identity 0 hogged in {} rounds",
        red.attack_hog_rounds
    );
    assert_mean_accuracy("sybil hog in turn: ", &accuracies, 0.8);
}

/// A run that lists its members (`--members`: the four honest keys and the red-team process's
/// first) against a process of three identities serving junk: the two unlisted identities are
/// refused at every connection, so no honest node ever has them as peers or bans them, while the
/// listed one takes part, is refused for its junk and banned; the honest nodes finish and learn.
#[test]
fn a_listed_run_admits_one_identity_of_a_sybil_process() {
    const SYBILS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), NODES, &engine(), METRICS);
    let peer_id =
        |k: &murmur_protocol::Identity| murmur_node::net::keypair(k).public().to_peer_id();
    let listed: Vec<String> = (0..NODES)
        .map(|i| {
            let state = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&state).unwrap();
            let key = murmur_node::identity::create(&state.join("node.key")).unwrap();
            peer_id(&key).to_string()
        })
        .collect();
    let members = dir.path().join("members.txt");
    std::fs::write(&members, listed.join("\n")).unwrap();
    let list = members.to_str().unwrap().to_owned();
    let mut nodes = spawn_network(&config, dir.path(), NODES, |i| {
        let mut args = vec!["--members".to_owned(), list.clone()];
        if i == HONEST {
            args.extend(["--attack", "junk", "--attack-identities", "3"].map(str::to_owned));
        }
        args
    });
    let accuracies = finished_accuracies(&mut nodes[..HONEST]);
    let red = hex::encode(
        murmur_node::identity::load(&nodes[HONEST].dir.join("node.key"))
            .unwrap()
            .public()
            .0,
    );
    let mut banned_by = 0;
    for (i, node) in nodes.iter_mut().enumerate().take(HONEST) {
        let met: std::collections::BTreeSet<String> = node
            .seen()
            .iter()
            .filter(|e| e["event"] == "peer_up")
            .map(|e| e["peer"].as_str().unwrap().to_owned())
            .collect();
        let keys = node.banned_keys();
        println!("honest node {i}: met {met:?}, banned {keys:?}");
        assert_eq!(node.status().round, ROUNDS, "node {i} finished its rounds");
        for p in &met {
            assert!(
                listed.contains(p),
                "node {i} had {p} as a peer, not on the list"
            );
        }
        assert!(keys.iter().all(|k| *k == red), "node {i} banned {keys:?}");
        banned_by += usize::from(keys.contains(&red));
    }
    assert!(
        banned_by > 0,
        "the listed identity took part: some honest node refused its junk and banned it"
    );
    // The unlisted identities ran, and were refused: they never had a peer.
    let red_events = nodes[HONEST].seen();
    let up: Vec<&serde_json::Value> = red_events
        .iter()
        .filter(|e| e["event"] == "peer_up" && e["identity"].as_u64().is_some_and(|i| i > 0))
        .collect();
    assert!(up.is_empty(), "an unlisted identity had peers: {up:?}");
    for i in 1..SYBILS {
        let key = nodes[HONEST].dir.join(format!("identity-{i}/node.key"));
        assert!(
            key.exists(),
            "identity {i} ran (its key is made at its start)"
        );
    }
    assert_mean_accuracy("listed sybil junk: ", &accuracies, 0.8);
}
