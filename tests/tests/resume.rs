//! A restart resumes at the same round in the simulator and in the node: both hand the engine
//! what the node remembers (its checkpoint's round, the highest round it signed, its bans), and
//! the engine decides. The simulator's restarts come from the churn scenario (with a short
//! downtime); the node's from a state directory holding a checkpoint and a signed-round record
//! with the same rounds.

use murmur_learn::checkpoint::Checkpoint;
use murmur_node::config::{Config, Overrides};
use murmur_node::driver::{self, start};
use murmur_protocol::engine::{Input, Origin, Output, Resume};
use murmur_sim::{Options, Scenario};
use std::path::Path;
use std::time::Duration;

/// The round a node with `checkpoint` and `signed` in its state directory starts training.
fn node_resumes_at(checkpoint: u64, signed: u64) -> (Resume, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "[run]\npartitions = 2\n[learning]\nmodel = { kind = \"mlp\", hidden = [16] }\n",
    )
    .unwrap();
    let overrides = Overrides {
        state_dir: Some(dir.path().join("state")),
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        ..Overrides::default()
    };
    let r = Config::read(&path)
        .unwrap()
        .resolve(overrides, &path)
        .unwrap();
    let fresh = start::load(&r, &Default::default()).unwrap();
    assert_eq!(fresh.resume, Resume::default());
    Checkpoint::of(&fresh.trainer, r.run, checkpoint)
        .save(&r.checkpoint_path())
        .unwrap();
    start::write_signed_round(&r.signed_round_path(), signed).unwrap();
    let local = start::load(&r, &Default::default()).unwrap();
    let resume = local.resume.clone();
    let mut engine = driver::engine(&r, &local).unwrap();
    let start = Input::Start {
        resume: resume.clone(),
        join: false,
    };
    engine.handle(Duration::ZERO, start).unwrap();
    match engine.poll() {
        Some(Output::Started {
            origin: Origin::Checkpoint,
            round,
            ..
        }) => (resume, round),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_simulator_and_the_node_resume_at_the_same_round() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/churn.toml");
    let mut s = Scenario::load(&path).unwrap();
    // Back after a few rounds: within max-staleness of their peers, restarted nodes resume from
    // their own checkpoint (after a longer absence they would catch up from their peers).
    s.churn.downtime_ms = 150.0;
    if let Some(seed) = std::env::var("MURMUR_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        s.seed = seed;
    }
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    let report = murmur_sim::run(&s, &options).unwrap();
    let restarts = &report.summary.restarts;
    let from_checkpoint: Vec<_> = restarts
        .iter()
        .filter(|r| r.origin == "checkpoint" && r.checkpoint.is_some())
        .collect();
    assert!(
        !from_checkpoint.is_empty(),
        "seed {}: no restart from a checkpoint: {restarts:?}",
        s.seed
    );
    for r in from_checkpoint {
        let checkpoint = r.checkpoint.unwrap();
        let (resume, round) = node_resumes_at(checkpoint, r.signed);
        assert_eq!(resume.checkpoint, Some(checkpoint));
        assert_eq!(resume.signed, r.signed);
        assert_eq!(
            round, r.round,
            "seed {}: the simulator's node {} resumed at {} from checkpoint {checkpoint} and \
             signed round {}; the node resumes at {round}",
            s.seed, r.node, r.round, r.signed
        );
        assert!(round > r.signed, "never a round signed before");
    }
}
