//! Restarts and late joiners. A node killed with SIGKILL mid-run and restarted resumes from
//! its checkpoint (the round continues) and rejoins; a node that joins a run in progress starts
//! from the median of models fetched from its peers, not from the initial model. A peer that
//! stops answering is found out by ping and reported down.

mod net_support;

use std::time::Duration;

use murmur_learn::checkpoint::Checkpoint;
use murmur_node::config::Config;
use net_support::{spawn, write_config};

const WAIT: Duration = Duration::from_secs(300);

/// Rounds without end: the run goes on while a node is killed, restarted or joins.
fn engine() -> String {
    "fanout = 2\nwait-for = 2\nround-timeout-ms = 2000".into()
}

#[test]
fn a_killed_node_resumes_from_its_checkpoint_and_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        3,
        &format!("{}\ncheckpoint-every = 2\njoin-timeout-ms = 3000", engine()),
        "[metrics]\neval-every = 2\n",
    );
    let n0 = spawn(&config, &dir.path().join("n0"), 0, &[]);
    let boot = n0.addr.clone();
    let _n1 = spawn(&config, &dir.path().join("n1"), 1, &["--bootstrap", &boot]);
    let mut n2 = spawn(&config, &dir.path().join("n2"), 2, &["--bootstrap", &boot]);
    let saved = n2.wait(WAIT, |e| {
        e["event"] == "checkpoint" && e["round"].as_u64().unwrap() >= 6
    });
    let saved = saved["round"].as_u64().unwrap();
    let data = n2.kill();

    let mut n2 = spawn(&config, &data, 2, &["--bootstrap", &boot]);
    let started = n2.wait(WAIT, |e| e["event"] == "started");
    println!("checkpoint at round {saved}; restarted: {started}");
    // It read its checkpoint; it starts from it, or, if its peers went more than
    // `max-staleness` rounds on while it was down (models move by pull: two nodes alone do not
    // wait for the third), from theirs. Either way past every round it signed.
    assert!(
        started["checkpoint"].as_u64().is_some_and(|c| c >= saved),
        "{started}"
    );
    assert!(
        started["start"] == "checkpoint" || started["start"] == "caught-up",
        "{started}"
    );
    let round = started["round"].as_u64().unwrap();
    assert!(round >= saved, "resumed at {round}, checkpoint was {saved}");
    // It rejoins: it mixes updates from its peers in rounds after the restart.
    let later = n2.wait(WAIT, |e| {
        e["event"] == "eval" && e["model"] == "mixed" && e["round"].as_u64().unwrap() >= round + 4
    });
    let s = n2.status();
    println!(
        "after restart: {later}; peers {} accepted {}",
        s.peers, s.accepted
    );
    assert!(s.peers >= 1 && s.accepted > 0, "rejoined: {s:?}");
    // Signing past every round it had signed before, it never equivocated.
    let s0 = n0.status();
    assert_eq!(s0.bans, 0, "node 0 banned someone: {s0:?}");
    assert_eq!(s0.rejected.get("equivocation").copied().unwrap_or(0), 0);
    // SIGTERM: a checkpoint of the last completed round, then a clean exit.
    let last = n2.status().round;
    assert!(n2.terminate(WAIT), "a clean exit on SIGTERM");
    let run = Config::read(&config).unwrap().run_id(None);
    let ckpt = Checkpoint::load(&data.join("checkpoint.safetensors"), &run).unwrap();
    println!(
        "round {last} when stopped; final checkpoint at round {}",
        ckpt.round
    );
    assert!(
        ckpt.round + 1 >= last,
        "checkpoint {} for round {last}",
        ckpt.round
    );
}

#[test]
fn a_late_joiner_starts_from_the_median_of_its_peers_models() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        4,
        &format!("{}\njoin-peers = 3\njoin-timeout-ms = 3000", engine()),
        "[metrics]\neval-every = 2\n",
    );
    let mut n0 = spawn(&config, &dir.path().join("n0"), 0, &[]);
    let boot = n0.addr.clone();
    let _n1 = spawn(&config, &dir.path().join("n1"), 1, &["--bootstrap", &boot]);
    let _n2 = spawn(&config, &dir.path().join("n2"), 2, &["--bootstrap", &boot]);
    let progressed = n0.wait(WAIT, |e| {
        e["event"] == "eval" && e["model"] == "mixed" && e["round"].as_u64().unwrap() >= 10
    });
    let mut n3 = spawn(&config, &dir.path().join("n3"), 3, &["--bootstrap", &boot]);
    let started = n3.wait(WAIT, |e| e["event"] == "started");
    println!("node 0 at {progressed}; joiner: {started}");
    assert_eq!(started["start"], "joined");
    assert!(started["joined_from"].as_u64().unwrap() >= 2, "{started}");
    assert!(started["round"].as_u64().unwrap() >= 8, "{started}");
    // Its first local model already scores like its peers', far above the initial model's 10%.
    let first = n3.wait(WAIT, |e| e["event"] == "eval");
    println!("joiner's first evaluation: {first}");
    assert!(first["accuracy"].as_f64().unwrap() > 0.6, "{first}");
}

/// A peer whose process stops (SIGSTOP: its sockets stay open and its kernel acknowledges data,
/// but nothing answers) is found cut when its pings go unanswered: the node closes the connection
/// and reports the peer down, rather than keeping a dead peer for the hour of the idle timeout.
#[test]
fn a_peer_that_stops_answering_is_reported_down_by_ping() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        2,
        &engine(),
        "ping-interval-ms = 1000\nping-timeout-ms = 5000\n",
    );
    let mut n0 = spawn(&config, &dir.path().join("n0"), 0, &[]);
    let n1 = spawn(
        &config,
        &dir.path().join("n1"),
        1,
        &["--bootstrap", &n0.addr],
    );
    let id = n1.addr.rsplit('/').next().unwrap().to_owned();
    n0.wait(WAIT, |e| {
        e["event"] == "peer_up" && e["peer"] == id.as_str()
    });
    n1.signal("STOP");
    let down = n0.wait(Duration::from_secs(60), |e| {
        e["event"] == "peer_down" && e["peer"] == id.as_str()
    });
    n1.signal("CONT");
    println!("{down}");
    let reason = down["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("ping failed"),
        "reported down for: {reason}"
    );
    assert_eq!(n0.status().peers, 0);
}
