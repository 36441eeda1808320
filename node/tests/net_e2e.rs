//! Six `murmur-node` processes on 127.0.0.1, each bootstrapping from node 0 only, find each
//! other, train on their partition of the embedded digits and reach at least 90% mean test
//! accuracy, while one of them runs `--attack alie`.

mod net_support;

use std::time::Duration;

use net_support::{spawn_network, write_config};

const NODES: usize = 6;
const ROUNDS: u64 = 40;

#[test]
fn six_processes_bootstrapping_from_one_reach_ninety_percent_despite_alie() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        NODES,
        &format!(
            "fanout = 3\nwait-for = 3\nround-timeout-ms = 3000\nrounds = {ROUNDS}\n\
             aggregation = {{ rule = \"clipped-gossip\", adaptive-f = 1 }}\n\
             checkpoint-every = 10\njoin-timeout-ms = 3000"
        ),
        "[metrics]\neval-every = 10\n",
    );
    let mut nodes = spawn_network(&config, dir.path(), NODES, |i| {
        if i == NODES - 1 {
            vec!["--attack".into(), "alie".into()]
        } else {
            Vec::new()
        }
    });
    let mut accuracies = Vec::new();
    for (i, node) in nodes.iter_mut().enumerate().take(NODES - 1) {
        let done = node.wait(Duration::from_secs(600), |e| e["event"] == "finished");
        let acc = done["accuracy"].as_f64().unwrap();
        println!("node {i}: round {} accuracy {acc:.4}", done["round"]);
        accuracies.push(acc);
    }
    for (i, node) in nodes.iter().enumerate() {
        let s = node.status();
        println!(
            "node {i}: peers {} accepted {} mixes {} rejected {:?} bytes in {} out {}, served {} \
             models in {:.3} s, {} saturated rounds",
            s.peers,
            s.accepted,
            s.mixes,
            s.rejected,
            s.bytes_in,
            s.bytes_out,
            s.served_models,
            s.serve_seconds,
            s.uplink_saturated_rounds
        );
        assert!(
            s.peers >= NODES - 2,
            "node {i} found only {} peers through node 0",
            s.peers
        );
        if i < NODES - 1 {
            assert_eq!(s.round, ROUNDS, "node {i} finished its rounds");
            assert!(s.accepted > 0, "node {i} accepted updates");
            // Its peers fetched its models, and the transport reported each one sent.
            assert!(
                s.served_models > 0,
                "node {i} reported no served model sent"
            );
        }
    }
    let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
    println!("mean accuracy of the 5 honest nodes: {mean:.4}");
    assert!(
        mean >= 0.90,
        "mean accuracy {mean:.4} below 90%: {accuracies:?}"
    );
}
