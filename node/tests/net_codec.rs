//! Four `murmur-node` processes on 127.0.0.1 with `codec = "int8"`, or with `top-k` increments,
//! learn about as well as four with `f32` payloads and send a fraction of the bytes for each
//! model they serve: the same config, seed and partitions, run one network after the other.
//!
//! Bytes are compared per model served, not in total: how many rounds a network mixes depends on
//! when its processes come up (a node that starts its rounds before its peers are up catches up
//! with them by skipping rounds), which is timing, not the codec. One `f32` network that mixed 13
//! times a node against 19 for `int8` sent 2.65x the bytes in total, and 3.9x per model served.

mod net_support;

use std::sync::OnceLock;
use std::time::Duration;

use net_support::{spawn, write_config};

const NODES: usize = 4;
const ROUNDS: u64 = 20;

/// Runs a network in `codec` (a TOML value); returns the nodes' mean final accuracy and their
/// bytes sent per model served.
fn network(codec: &str) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        NODES,
        &format!(
            "codec = {codec}\nfanout = 3\nwait-for = 3\nround-timeout-ms = 3000\n\
             rounds = {ROUNDS}\njoin-timeout-ms = 3000"
        ),
        "[metrics]\neval-every = 20\n",
    );
    // A model of 9,610 parameters, so that a message's signed header (about 250 bytes) does not
    // hide what the payload codec saves.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("hidden = [32]", "hidden = [128]")).unwrap();
    let mut nodes = vec![spawn(&config, &dir.path().join("n0"), 0, &[])];
    let boot = nodes[0].addr.clone();
    for i in 1..NODES {
        let args = ["--bootstrap", boot.as_str()];
        nodes.push(spawn(&config, &dir.path().join(format!("n{i}")), i, &args));
    }
    let mut accuracy = 0.0;
    for (i, node) in nodes.iter_mut().enumerate() {
        let done = node.wait(Duration::from_secs(600), |e| e["event"] == "finished");
        let acc = done["accuracy"].as_f64().unwrap();
        println!(
            "{codec}: node {i} round {} accuracy {acc:.4}",
            done["round"]
        );
        accuracy += acc / NODES as f64;
    }
    let (mut bytes, mut served) = (0, 0);
    for (i, node) in nodes.iter().enumerate() {
        let s = node.status();
        println!(
            "{codec}: node {i} accepted {} mixes {} bytes out {} served {}",
            s.accepted, s.mixes, s.bytes_out, s.served_models
        );
        assert_eq!(s.round, ROUNDS, "{codec}: node {i} finished its rounds");
        let rejected: u64 = s.rejected.values().sum();
        assert_eq!(rejected, 0, "{codec}: node {i} rejected honest updates");
        bytes += s.bytes_out;
        served += s.served_models;
    }
    assert!(served > 0, "{codec}: no model served");
    (accuracy, bytes as f64 / served as f64)
}

/// The `f32` network, run once for both tests.
fn f32_network() -> (f64, f64) {
    static F32: OnceLock<(f64, f64)> = OnceLock::new();
    *F32.get_or_init(|| network("\"f32\""))
}

#[test]
fn int8_payloads_learn_as_f32_does_with_a_quarter_of_the_bytes() {
    let (f32_acc, f32_bytes) = f32_network();
    let (int8_acc, int8_bytes) = network("\"int8\"");
    let ratio = f32_bytes / int8_bytes;
    println!(
        "f32: accuracy {f32_acc:.4}, {f32_bytes:.0} bytes out per model served; int8: accuracy \
         {int8_acc:.4}, {int8_bytes:.0}; ratio {ratio:.2}"
    );
    assert!(
        int8_acc >= f32_acc - 0.03,
        "int8 accuracy {int8_acc:.4} against {f32_acc:.4} in f32"
    );
    assert!(
        ratio >= 3.5,
        "bytes out per model served, f32 / int8 = {ratio:.2}"
    );
}

/// Every node asks the same three peers every round, so each answer is one increment (the
/// 16-byte fetch names the round of the asker's copy): far fewer bytes, a little accuracy.
/// Four runs: bytes 10.1x-10.4x fewer, accuracy 0.5-0.8 points below f32 (in total bytes, with
/// as many mixes as f32).
#[test]
fn top_k_increments_cut_the_bytes_over_libp2p() {
    let (f32_acc, f32_bytes) = f32_network();
    let (acc, bytes) = network("{ kind = \"top-k\", fraction = 0.02 }");
    let ratio = f32_bytes / bytes;
    println!(
        "f32: accuracy {f32_acc:.4}, {f32_bytes:.0} bytes out per model served; top-k 2%: \
         accuracy {acc:.4}, {bytes:.0}; ratio {ratio:.2}"
    );
    assert!(
        acc >= f32_acc - 0.03,
        "top-k accuracy {acc:.4} against {f32_acc:.4} in f32"
    );
    assert!(
        ratio >= 8.0,
        "bytes out per model served, f32 / top-k = {ratio:.2}"
    );
}
