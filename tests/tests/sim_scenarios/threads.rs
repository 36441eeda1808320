//! The same run with any number of threads: worker threads that train, hash and mix beside the
//! event loop, and pauses that hold them still, change no result.

use super::*;

#[test]
fn rounds_csv_is_identical_with_one_and_two_threads() {
    let seed = seed(11);
    // Everything that draws randomness or reorders events: lossy links with per-link latency,
    // stragglers, a partition, churn with a late joiner, label flipping and equivocation.
    let text = text(
        "rounds = 8",
        r#"
[[attackers]]
count = 1
attack = { kind = "label-flip" }
[[attackers]]
count = 1
attack = { kind = "equivocate" }
[compute]
step-ms = 4.0
speed = { kind = "lognormal", sigma = 0.3 }
stragglers = { fraction = 0.2, slowdown = 3.0 }
[network]
latency = { kind = "lognormal", median-ms = 20.0, sigma = 0.5 }
bandwidth-mbps = 50.0
loss = 0.05
splits = [{ start-ms = 300.0, heal-ms = 800.0 }]
[churn]
leave-fraction = 0.2
leave-from-ms = 200.0
leave-until-ms = 600.0
downtime-ms = 400.0
joiners = 1
join-ms = 500.0
[eval]
every-ms = 250.0
"#,
    );
    let s = scenario(&text, seed);
    let one = run(&s, 1);
    let two = run(&s, 2);
    // Two workers beside the event loop, which also runs the jobs it would wait for.
    let three = run(&s, 3);
    assert!(one.rows.len() > 3, "seed {seed}: too few evaluation points");
    assert!(
        one.summary.train_batches < one.summary.train_jobs,
        "seed {seed}: training jobs were never batched, so threads were not exercised"
    );
    assert_eq!(
        one.rounds_csv(),
        two.rounds_csv(),
        "seed {seed}: rounds.csv differs between 1 and 2 threads"
    );
    assert_eq!(
        one.rounds_csv(),
        three.rounds_csv(),
        "seed {seed}: rounds.csv differs between 1 and 3 threads"
    );
    let last = one.rows.last().unwrap();
    assert!(last.dropped > 0, "seed {seed}: no message was lost or cut");
    let equivocation = murmur_protocol::engine::Rejection::ALL
        .iter()
        .position(|r| *r == murmur_protocol::engine::Rejection::Equivocation)
        .unwrap();
    assert!(
        last.rejected[equivocation] > 0,
        "seed {seed}: the equivocating node was never caught\n{}",
        one.rounds_csv()
    );
}

/// The bench pauses a run to time its baselines (`murmur_sim::run_pausing`): paused after every
/// step, with the workers held still in each pause, a run gives the same rounds, and the time
/// spent in its pauses is not in its wall time.
#[test]
fn a_run_paused_after_every_step_is_the_same_run_and_leaves_the_pauses_out_of_its_time() {
    let seed = seed(13);
    let text = text(
        "rounds = 6",
        r#"
[network]
latency = { kind = "lognormal", median-ms = 20.0, sigma = 0.5 }
bandwidth-mbps = 50.0
[eval]
every-rounds = 2
"#,
    );
    let s = scenario(&text, seed);
    for threads in [1, 2] {
        let plain = run(&s, threads);
        let (mut pauses, mut paused) = (0u64, std::time::Duration::ZERO);
        let mut hook = || {
            // Each pause takes a while, so that a run that counted them would show it.
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_micros(200) {
                std::hint::spin_loop();
            }
            pauses += 1;
            paused += start.elapsed();
        };
        let options = Options {
            threads,
            ..Options::default()
        };
        let started = std::time::Instant::now();
        let report = murmur_sim::run_pausing(
            &s,
            &options,
            murmur_sim::simulation::Pause {
                every: std::time::Duration::ZERO,
                hook: &mut hook,
            },
        )
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let outside = started.elapsed();
        assert_eq!(
            plain.rounds_csv(),
            report.rounds_csv(),
            "seed {seed}: pauses changed the run with {threads} threads"
        );
        // A pause between two steps of the run: each node starting each round is one.
        assert!(
            pauses >= 6 * 10,
            "seed {seed}: {pauses} pauses for 10 nodes and 6 rounds"
        );
        let wall = std::time::Duration::from_secs_f64(report.summary.wall_s);
        assert!(
            wall + paused <= outside,
            "seed {seed}, {threads} threads: wall time {wall:?} and pauses {paused:?} exceed \
             the {outside:?} the call took"
        );
    }
}

/// A model of several blocks mixed by the plain mean, signed as updates long enough to hash in
/// parts: with worker threads, an idle one hashes part of each update and sums part of each
/// mix (`murmur_protocol::assist`), and the runs stay the same bits.
#[test]
fn a_wide_model_mixed_with_a_worker_s_help_is_the_same_run() {
    let seed = seed(12);
    let text = r#"
name = "wide"
seed = 1
nodes = 6
rounds = 4
topology = { kind = "complete" }
[learning]
model = { kind = "mlp", hidden = [1024] }
data = { kind = "digits" }
optimizer = { kind = "sgd", lr = 0.05 }
local-steps = 2
[engine]
aggregation = { rule = "mean" }
outlier-factor = 0
"#;
    let s = scenario(text, seed);
    let one = run(&s, 1);
    assert!(
        one.summary.model_params > 4 * 16_384,
        "seed {seed}: the model is {} parameters, too few to split",
        one.summary.model_params
    );
    for threads in [2, 3] {
        let other = run(&s, threads);
        assert_eq!(
            one.rounds_csv(),
            other.rounds_csv(),
            "seed {seed}: rounds.csv differs between 1 and {threads} threads"
        );
    }
    assert!(
        one.summary.skipped_mixes == 0,
        "seed {seed}: a mix was skipped"
    );
}
