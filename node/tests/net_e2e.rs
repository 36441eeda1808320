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

/// Four processes whose `engine.uplink-mbps` says 0.1 Mbit/s: each 9.9 KB model takes 0.8 s
/// on that uplink, longer than a quarter of the 2 s round timeout, so a node serves one fetch
/// at a time and refuses the others as busy (the `Busy` frame), and each refused asker draws the
/// peer it had not asked (fanout 2 of 3). The network still finishes its rounds and learns, no
/// node refuses an honest update but as too old to mix (`lagging`), and the metrics count the
/// refusals and the draws.
#[test]
fn a_node_on_a_slow_uplink_refuses_as_busy_and_its_askers_draw_another_peer() {
    const N: usize = 4;
    const R: u64 = 12;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        N,
        &format!(
            "fanout = 2\nwait-for = 2\nround-timeout-ms = 2000\nrounds = {R}\n\
             uplink-mbps = 0.1\njoin-timeout-ms = 3000"
        ),
        &format!("[metrics]\neval-every = {R}\n"),
    );
    let mut nodes = spawn_network(&config, dir.path(), N, |_| Vec::new());
    let accuracies = net_support::finished_accuracies(&mut nodes);
    let (mut refused, mut redrawn) = (0, 0);
    for (i, node) in nodes.iter().enumerate() {
        let s = node.status();
        println!(
            "node {i}: round {} mixes {} served {} refused as busy {} drawn again {} rejected {:?}",
            s.round, s.mixes, s.served_models, s.refused_busy, s.redrawn, s.rejected
        );
        assert_eq!(s.round, R, "node {i} finished its rounds");
        // A model that arrives too old to mix (`lagging`, no penalty) can happen on an uplink
        // this slow; any other refusal of an honest peer's update is a fault.
        assert_eq!(
            net_support::rejected_but(&s, &["lagging"]),
            0,
            "node {i} rejected honest updates: {:?}",
            s.rejected
        );
        refused += s.refused_busy;
        redrawn += s.redrawn;
    }
    assert!(
        refused > 0 && redrawn > 0,
        "{refused} refused, {redrawn} drawn again"
    );
    let text = nodes[0].prometheus();
    for name in [
        "murmur_fetches_refused_busy_total",
        "murmur_fetches_redrawn_total",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    net_support::assert_mean_accuracy("slow uplinks: ", &accuracies, 0.85);
}
