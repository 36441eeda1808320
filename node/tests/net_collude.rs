//! Two red-team `murmur-node` processes collude through a shared directory
//! (`--attack-knowledge colluding --attack-intel DIR`) among four honest ones on 127.0.0.1: each
//! learns the other as an ally, the second reads the honest updates the first fetched, and the
//! honest nodes still finish their rounds and learn.
//!
//! The second red-team node starts once the first has written what it fetched: then what the
//! second reads cannot be what it fetched itself. (Started together, the two often fetch the same
//! honest updates within one poll of each other, and either may read nothing new.)

mod net_support;

use std::time::Duration;

use net_support::{assert_mean_accuracy, spawn, spawn_network, write_config};

const HONEST: usize = 4;
const NODES: usize = HONEST + 2;
const ROUNDS: u64 = 12;
const WAIT: Duration = Duration::from_secs(600);

#[test]
fn two_red_team_nodes_pool_what_they_fetch_through_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    let intel = dir.path().join("red-team");
    let config = write_config(
        dir.path(),
        NODES,
        &format!(
            "fanout = 3\nwait-for = 3\nround-timeout-ms = 3000\nrounds = {ROUNDS}\n\
             join-timeout-ms = 3000"
        ),
        "[metrics]\neval-every = 12\n",
    );
    let intel_arg = intel.to_str().unwrap().to_owned();
    let red_team = [
        "--attack",
        "sign-flip",
        "--attack-knowledge",
        "colluding",
        "--attack-intel",
        intel_arg.as_str(),
    ];
    let mut nodes = spawn_network(&config, dir.path(), HONEST + 1, |i| {
        if i >= HONEST {
            red_team.map(str::to_owned).to_vec()
        } else {
            Vec::new()
        }
    });
    let first = nodes[HONEST].wait_status(Duration::from_secs(120), |s| s.intel_shared > 0);
    println!(
        "red-team node {HONEST} shared {} before its ally started",
        first.intel_shared
    );
    let mut args = vec!["--bootstrap", nodes[0].addr.as_str()];
    args.extend(red_team);
    let second = spawn(
        &config,
        &dir.path().join(format!("n{}", HONEST + 1)),
        HONEST + 1,
        &args,
    );
    nodes.push(second);
    let mut accuracies = Vec::new();
    for node in nodes.iter_mut().take(HONEST) {
        let done = node.wait(WAIT, |e| e["event"] == "finished");
        accuracies.push(done["accuracy"].as_f64().unwrap());
    }
    let allies = std::fs::read_dir(intel.join("allies")).unwrap().count();
    assert_eq!(allies, 2, "each red-team node announced itself");
    for (i, node) in nodes.iter().enumerate().skip(HONEST) {
        let s = node.wait_status(WAIT, |s| s.attack_allies > 0);
        println!(
            "red-team node {i}: intel shared {} received {}, allies {}, accepted {}",
            s.intel_shared, s.intel_received, s.attack_allies, s.accepted
        );
        assert_eq!(s.attack_allies, 1, "node {i} learned its ally");
        let text = node.prometheus();
        assert!(text.contains("murmur_intel_received_total"), "{text}");
    }
    // What the second read on its first polls is what the first wrote before it started.
    let s = nodes[HONEST + 1].wait_status(Duration::from_secs(60), |s| s.intel_received > 0);
    println!(
        "red-team node {}: read {} updates its ally fetched",
        HONEST + 1,
        s.intel_received
    );
    for (i, node) in nodes.iter().enumerate().take(HONEST) {
        assert_eq!(
            node.status().intel_received,
            0,
            "honest node {i} has no side channel"
        );
    }
    assert_mean_accuracy("", &accuracies, 0.8);
}
