//! The simulator's training efficiency: local-training throughput of N simulated nodes against
//! the same trainer run alone in the same process.
//!
//! Both sides train the same model on the same data with the same batch size and local steps.
//! The standalone figure is one [`Trainer`] calling [`Trainer::train_steps`] back to back on one
//! thread, doing what one simulated node does: the scenario's rounds of local steps from the
//! initial model, then the same again from the initial model (only the training is timed). The
//! simulated figure is a full run of a scenario (engines, signing, network, mixing), reported
//! two ways: samples per second inside the training jobs, times the threads (what the training
//! threads achieve when all of them train), and samples per second of the whole run (including
//! everything the simulator does besides training). Per core, each is divided by the threads
//! used.
//!
//! With more than one thread, a second baseline runs one standalone trainer per thread at the
//! same time: what each core of the machine gives when every core trains (shared caches, memory
//! bandwidth and clock limits included).

use crate::{Options, Scenario};
use murmur_learn::data::Shard;
use murmur_learn::train::Trainer;
use std::time::{Duration, Instant};

/// The figures of one efficiency measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Efficiency {
    /// Simulated nodes.
    pub nodes: usize,
    /// Worker threads of the simulation.
    pub threads: usize,
    /// Model parameters.
    pub params: usize,
    /// One trainer alone on one thread, samples/s.
    pub standalone: f64,
    /// One standalone trainer per simulator thread, all at once: samples/s per thread. `None`
    /// with one thread.
    pub standalone_every_core: Option<f64>,
    /// The simulation's training jobs: samples/s of their summed wall time, times the threads.
    pub in_batches: f64,
    /// The whole simulation, samples/s of its wall time.
    pub end_to_end: f64,
    /// `in_batches / threads / standalone`.
    pub batch_ratio_per_core: f64,
    /// `end_to_end / threads / standalone`.
    pub end_to_end_ratio_per_core: f64,
    /// `in_batches / threads / standalone_every_core`.
    pub batch_ratio_every_core: Option<f64>,
}

/// The least, median and greatest of a figure over repeated measurements.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub least: f64,
    /// The middle value (the mean of the middle two of an even count).
    pub median: f64,
    pub greatest: f64,
}

impl Spread {
    /// The spread of `values`; `None` if there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let (first, last) = (*v.first()?, *v.last()?);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Spread {
            least: first,
            median,
            greatest: last,
        })
    }
}

/// The spread of each ratio over repeated measurements, named as `murmur-sim bench` prints them
/// (the ratio with every core busy only if the measurements have it).
pub fn spreads(runs: &[Efficiency]) -> Vec<(&'static str, Spread)> {
    /// A ratio of one measurement, if it has it.
    type Ratio = fn(&Efficiency) -> Option<f64>;
    let ratios: [(&'static str, Ratio); 3] = [
        ("simulator, training jobs, of standalone per core:", |e| {
            Some(e.batch_ratio_per_core)
        }),
        ("simulator, training jobs, with every core busy:", |e| {
            e.batch_ratio_every_core
        }),
        ("simulator, end to end, of standalone per core:", |e| {
            Some(e.end_to_end_ratio_per_core)
        }),
    ];
    ratios
        .into_iter()
        .filter_map(|(what, ratio)| {
            let values: Vec<f64> = runs.iter().filter_map(ratio).collect();
            Spread::of(&values).map(|s| (what, s))
        })
        .collect()
}

/// Jobs a standalone trainer runs from the initial model before it starts again, when the
/// scenario is bounded by time rather than rounds.
const STANDALONE_JOBS: u64 = 20;

/// Measures `scenario` (its nodes train; everything else is as configured) against one of its
/// trainers alone for at least `min_time`.
pub fn efficiency(
    scenario: &Scenario,
    options: &Options,
    min_time: Duration,
) -> Result<Efficiency, crate::Error> {
    let resolved = crate::resolve(scenario, options);
    let (learning, split) = resolved.learning.load(resolved.seed)?;
    let shards = Shard::split(
        &split.train,
        &learning.spec.partition,
        resolved.nodes,
        resolved.seed,
    )
    .map_err(|e| crate::Error::Learning(e.into()))?;
    let threads = options.threads.max(1);
    let mut trainers = shards
        .into_iter()
        .take(threads)
        .enumerate()
        .map(|(i, shard)| Trainer::new(&learning, shard, i as u32, resolved.seed))
        .collect::<Result<Vec<_>, _>>()?;
    // Each standalone trainer does a simulated node's work: `rounds` jobs of `local_steps`
    // from the initial model, then again from the start. A trainer trained on and on learns its
    // small shard by heart and slows down (bench-mnist: from 110,000 to 54,000 samples/s after
    // 20 s), which would measure the arithmetic of a model no simulated node ever reaches.
    let initial: Vec<(Vec<f32>, _)> = trainers
        .iter()
        .map(|t| (t.params().to_vec(), t.optimizer_state().clone()))
        .collect();
    let jobs_per_life = resolved.rounds.unwrap_or(STANDALONE_JOBS).max(1);
    let steps = learning.local_steps;
    let alone = |(trainer, (params, state)): (&mut Trainer, &(Vec<f32>, _))| {
        let (mut samples, mut elapsed) = (0usize, Duration::ZERO);
        while elapsed < min_time / 2 {
            trainer.set_params(params).expect("its own parameters");
            trainer
                .set_optimizer_state(Clone::clone(state))
                .expect("its own optimiser state");
            for _ in 0..jobs_per_life {
                let start = Instant::now();
                samples += trainer.train_steps(steps).samples;
                elapsed += start.elapsed();
            }
        }
        (samples, elapsed)
    };
    for t in &mut trainers {
        t.train_steps(learning.local_steps); // warm-up
    }
    // One trainer per thread at once; samples/s per thread.
    let every_core = |trainers: &mut [Trainer]| {
        let runs: Vec<(usize, Duration)> = std::thread::scope(|scope| {
            let handles: Vec<_> = trainers
                .iter_mut()
                .zip(&initial)
                .map(|t| scope.spawn(move || alone(t)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a standalone trainer panicked"))
                .collect()
        });
        runs.iter()
            .map(|&(n, d)| n as f64 / d.as_secs_f64())
            .sum::<f64>()
            / runs.len() as f64
    };
    // Timed before and after the simulation, so that a machine shared with other work
    // affects both sides alike.
    let before = alone((&mut trainers[0], &initial[0]));
    let parallel_before = (threads > 1).then(|| every_core(&mut trainers));
    let report = crate::run(scenario, options)?;
    let parallel_after = (threads > 1).then(|| every_core(&mut trainers));
    let after = alone((&mut trainers[0], &initial[0]));
    let standalone = (before.0 + after.0) as f64 / (before.1 + after.1).as_secs_f64();
    let standalone_every_core = parallel_before
        .zip(parallel_after)
        .map(|(a, b)| (a + b) / 2.0);
    let s = &report.summary;
    let in_batches = s.train_samples_per_s;
    let end_to_end = s.samples as f64 / s.wall_s.max(1e-9);
    let n = threads as f64;
    Ok(Efficiency {
        nodes: s.nodes,
        threads,
        params: s.model_params,
        standalone,
        standalone_every_core,
        in_batches,
        end_to_end,
        batch_ratio_per_core: in_batches / n / standalone,
        end_to_end_ratio_per_core: end_to_end / n / standalone,
        batch_ratio_every_core: standalone_every_core.map(|b| in_batches / n / b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_spread_is_the_least_the_median_and_the_greatest() {
        let s = |v: &[f64]| Spread::of(v).map(|s| (s.least, s.median, s.greatest));
        assert_eq!(s(&[]), None);
        assert_eq!(s(&[0.75]), Some((0.75, 0.75, 0.75)));
        assert_eq!(s(&[1.0, 0.25, 0.75]), Some((0.25, 0.75, 1.0)));
        assert_eq!(s(&[0.75, 1.0, 0.25, 0.5]), Some((0.25, 0.625, 1.0)));
    }

    #[test]
    fn two_threads_measure_both_baselines_and_one_thread_only_the_first() {
        let text = r#"
name = "bench-test"
seed = 1
nodes = 6
rounds = 2
topology = { kind = "sample", s = 2 }
[learning]
model = { kind = "mlp", hidden = [16] }
data = { kind = "digits" }
partition = { kind = "iid" }
optimizer = { kind = "sgd", lr = 0.05 }
batch-size = 16
local-steps = 2
[engine]
wait-for = 2
"#;
        let scenario = Scenario::parse(text, Path::new("bench test")).expect("valid scenario");
        let time = Duration::from_millis(100);
        for threads in [1, 2] {
            let options = Options {
                threads,
                ..Options::default()
            };
            let e = efficiency(&scenario, &options, time).expect("the bench runs");
            assert_eq!((e.nodes, e.threads), (6, threads));
            assert!(e.standalone > 0.0 && e.in_batches > 0.0 && e.end_to_end > 0.0);
            assert!(
                (e.batch_ratio_per_core * threads as f64 * e.standalone - e.in_batches).abs()
                    < 1e-6 * e.in_batches
            );
            assert_eq!(e.standalone_every_core.is_some(), threads > 1);
            assert_eq!(e.batch_ratio_every_core.is_some(), threads > 1);
            if let (Some(b), Some(r)) = (e.standalone_every_core, e.batch_ratio_every_core) {
                assert!(b > 0.0 && r > 0.0, "{e:?}");
            }
        }
    }
}
