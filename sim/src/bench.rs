//! The simulator's training efficiency: local-training throughput of N simulated nodes against
//! the same trainer run alone in the same process.
//!
//! Both sides train the same model on the same data with the same batch size and local steps.
//! The standalone figure is one [`Trainer`] calling [`Trainer::train_steps`] back to back on one
//! thread, doing what one simulated node does: the scenario's rounds of local steps from the
//! initial model, then the same again from the initial model (only the training is timed). It
//! is timed in pauses of the run, the worker threads held still ([`efficiency`]), so that both
//! sides see the machine alike. The
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
use murmur_learn::train::optim::State;
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
    /// The run's wall time (its pauses left out), seconds.
    pub wall_s: f64,
    /// The training jobs' summed wall time in the run, seconds: what its training alone takes.
    pub training_s: f64,
    /// `wall_s / training_s`: how much longer the run takes than its training (the dense-gossip
    /// target of docs/results.md, "Scale", is at most 2).
    pub wall_over_training: f64,
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
    let ratios: [(&'static str, Ratio); 4] = [
        ("simulator, training jobs, of standalone per core:", |e| {
            Some(e.batch_ratio_per_core)
        }),
        ("simulator, training jobs, with every core busy:", |e| {
            e.batch_ratio_every_core
        }),
        ("simulator, end to end, of standalone per core:", |e| {
            Some(e.end_to_end_ratio_per_core)
        }),
        ("simulator, wall time over its training:", |e| {
            Some(e.wall_over_training)
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

/// What one standalone trainer does: what one simulated node does, `jobs_per_life` jobs of
/// `steps` local steps from the initial model, then the same again from the initial model,
/// timed in slices ([`Alone::run_for`]; only the training is timed).
#[derive(Clone, Copy)]
struct Alone {
    jobs_per_life: u64,
    steps: usize,
    /// Jobs run since the first.
    jobs: u64,
    samples: usize,
    elapsed: Duration,
}

impl Alone {
    /// Runs jobs on `trainer` (at least one) until `time` more of training has been timed.
    fn run_for(&mut self, trainer: &mut Trainer, initial: &(Vec<f32>, State), time: Duration) {
        let until = self.elapsed + time;
        while self.elapsed < until || self.jobs == 0 {
            if self.jobs.is_multiple_of(self.jobs_per_life) {
                let (params, state) = initial;
                trainer.set_params(params).expect("its own parameters");
                trainer
                    .set_optimizer_state(state.clone())
                    .expect("its own optimiser state");
            }
            let start = Instant::now();
            self.samples += trainer.train_steps(self.steps).samples;
            self.elapsed += start.elapsed();
            self.jobs += 1;
        }
    }

    /// Samples per second of the training timed.
    fn rate(&self) -> f64 {
        self.samples as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Measures `scenario` (its nodes train; everything else is as configured) against one of its
/// trainers alone. The run is paused after each `slice` of its wall time, and in each pause
/// the standalone trainer is timed for `slice` (then, with more than one thread, one trainer per
/// thread at once for `slice`), and once more at the end: each baseline is timed about as long as
/// the run, alternating with it, so that a machine whose speed changes from second to second
/// (other work on it, clock changes) affects both sides alike.
pub fn efficiency(
    scenario: &Scenario,
    options: &Options,
    slice: Duration,
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
    let trainer = |i: usize| {
        let shard = shards[i % shards.len()].clone();
        Trainer::new(&learning, shard, i as u32, resolved.seed)
    };
    // The trainer timed alone, and (with more threads) one per thread timed at once: trainers
    // of their own, so that each does a simulated node's work and nothing more.
    let mut alone_trainer = trainer(0)?;
    let mut trainers = if threads > 1 {
        (0..threads).map(trainer).collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    // Each standalone trainer does a simulated node's work: `rounds` jobs of `local_steps`
    // from the initial model, then again from the start. A trainer trained on and on learns its
    // small shard by heart and slows down (bench-mnist: from 110,000 to 54,000 samples/s after
    // 20 s), which would measure the arithmetic of a model no simulated node ever reaches.
    let initial = |t: &Trainer| (t.params().to_vec(), t.optimizer_state().clone());
    let alone_initial = initial(&alone_trainer);
    let initials: Vec<(Vec<f32>, State)> = trainers.iter().map(initial).collect();
    let jobs_per_life = resolved.rounds.unwrap_or(STANDALONE_JOBS).max(1);
    let steps = learning.local_steps;
    for t in std::iter::once(&mut alone_trainer).chain(&mut trainers) {
        t.train_steps(steps); // warm-up
    }
    let fresh = Alone {
        jobs_per_life,
        steps,
        jobs: 0,
        samples: 0,
        elapsed: Duration::ZERO,
    };
    let mut one = fresh;
    let mut every_core = vec![fresh; trainers.len()];
    let mut hook = || {
        one.run_for(&mut alone_trainer, &alone_initial, slice);
        std::thread::scope(|scope| {
            for ((a, t), i) in every_core.iter_mut().zip(&mut trainers).zip(&initials) {
                scope.spawn(move || a.run_for(t, i, slice));
            }
        });
    };
    let report = crate::run_pausing(
        scenario,
        options,
        crate::simulation::Pause {
            every: slice,
            hook: &mut hook,
        },
    )?;
    let standalone = one.rate();
    let standalone_every_core = (!every_core.is_empty())
        .then(|| every_core.iter().map(Alone::rate).sum::<f64>() / every_core.len() as f64);
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
        wall_s: s.wall_s,
        training_s: s.train_cpu_s,
        wall_over_training: s.wall_s / s.train_cpu_s.max(1e-9),
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
            // The run does more than train, and its training is part of its wall time.
            assert!(
                e.training_s > 0.0 && e.wall_s > e.training_s / threads as f64,
                "{e:?}"
            );
            assert!(
                (e.wall_over_training * e.training_s - e.wall_s).abs() < 1e-9 * e.wall_s,
                "{e:?}"
            );
        }
    }
}
