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
//! A second baseline runs the scenario's nodes' trainers (up to [`IN_TURN_MAX`]) on one thread,
//! one job each in turn: what training that many models costs with no simulator around them.
//! A trainer alone keeps its model, optimiser state and shard in the caches from one job to the
//! next; a simulated node's job, like each of these, finds them where the other nodes' jobs
//! pushed them (bench-mnist: about 0.93 of the trainer alone). Against it, the simulator's
//! figures show its own overhead.
//!
//! With more than one thread, a third baseline runs one standalone trainer per thread at the
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
    /// Trainers in the in-turn baseline: the first nodes', up to [`IN_TURN_MAX`].
    pub in_turn: usize,
    /// Those trainers on one thread, one job each in turn as the simulated nodes' jobs come:
    /// samples/s. What training that many models costs without a simulator (each job finds
    /// its model, optimiser state and data out of the caches, as a simulated node's does).
    pub standalone_in_turn: f64,
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
    /// `in_batches / threads / standalone_in_turn`.
    pub batch_ratio_in_turn: f64,
    /// `end_to_end / threads / standalone_in_turn`: the simulator's own overhead per core.
    pub end_to_end_ratio_in_turn: f64,
    /// `in_batches / threads / standalone_every_core`.
    pub batch_ratio_every_core: Option<f64>,
    /// `end_to_end / threads / standalone_every_core`: the whole run per core against what each
    /// core gives when every core trains, which leaves out how much the machine slows when all
    /// its cores work (the ratio against the trainer alone takes that in).
    pub end_to_end_ratio_every_core: Option<f64>,
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
    let ratios: [(&'static str, Ratio); 7] = [
        ("simulator, training jobs, of standalone per core:", |e| {
            Some(e.batch_ratio_per_core)
        }),
        ("simulator, training jobs, with every core busy:", |e| {
            e.batch_ratio_every_core
        }),
        ("simulator, end to end, of standalone per core:", |e| {
            Some(e.end_to_end_ratio_per_core)
        }),
        ("simulator, end to end, with every core busy:", |e| {
            e.end_to_end_ratio_every_core
        }),
        ("simulator, training jobs, of the trainers in turn:", |e| {
            Some(e.batch_ratio_in_turn)
        }),
        ("simulator, end to end, of the trainers in turn:", |e| {
            Some(e.end_to_end_ratio_in_turn)
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

/// The most trainers the in-turn baseline cycles through: the scenario's nodes up to this many
/// (each holds a model and its optimiser state, so a bench of 10,000 nodes would otherwise hold
/// all of theirs twice).
pub const IN_TURN_MAX: usize = 1024;

/// Standalone trainers timed one job at a time in turn, each doing what one simulated node
/// does: `jobs_per_life` jobs of `steps` local steps from its initial model, then the same again
/// from it. Timed in slices ([`Alone::run_for`]; only the training is timed).
struct Alone {
    /// Each trainer and its initial model and optimiser state.
    trainers: Vec<(Trainer, (Vec<f32>, State))>,
    jobs_per_life: u64,
    steps: usize,
    /// Jobs run since the first, by all the trainers.
    jobs: u64,
    samples: usize,
    elapsed: Duration,
}

impl Alone {
    /// `trainers` as they are built, each after one untimed job (the warm-up).
    fn new(trainers: Vec<Trainer>, jobs_per_life: u64, steps: usize) -> Alone {
        let trainers = trainers
            .into_iter()
            .map(|mut t| {
                let initial = (t.params().to_vec(), t.optimizer_state().clone());
                t.train_steps(steps);
                (t, initial)
            })
            .collect();
        Alone {
            trainers,
            jobs_per_life,
            steps,
            jobs: 0,
            samples: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Runs jobs (at least one), the next trainer's each time, until `time` more of training has
    /// been timed.
    fn run_for(&mut self, time: Duration) {
        let until = self.elapsed + time;
        let n = self.trainers.len() as u64;
        while self.elapsed < until || self.jobs == 0 {
            let (trainer, (params, state)) = &mut self.trainers[(self.jobs % n) as usize];
            if (self.jobs / n).is_multiple_of(self.jobs_per_life) {
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
/// trainers alone, and against its nodes' trainers one job each in turn. The run is paused
/// after each `slice` of its wall time, and in each pause each baseline is timed for `slice`
/// (the trainer alone, the trainers in turn, then, with more than one thread, one trainer per
/// thread at once), and once more at the end: each baseline is timed about as long as the run,
/// alternating with it, so that a machine whose speed changes from second to second (other
/// work on it, clock changes) affects both sides alike.
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
    let trainers =
        |nodes: std::ops::Range<usize>| nodes.map(trainer).collect::<Result<Vec<_>, _>>();
    // Each standalone trainer does a simulated node's work: `rounds` jobs of `local_steps`
    // from the initial model, then again from the start. A trainer trained on and on learns its
    // small shard by heart and slows down (bench-mnist: from 110,000 to 54,000 samples/s after
    // 20 s), which would measure the arithmetic of a model no simulated node ever reaches.
    // Every baseline has trainers of its own, so that each does a simulated node's work and
    // nothing more.
    let jobs_per_life = resolved.rounds.unwrap_or(STANDALONE_JOBS).max(1);
    let steps = learning.local_steps;
    let mut one = Alone::new(trainers(0..1)?, jobs_per_life, steps);
    let mut in_turn = Alone::new(
        trainers(0..resolved.nodes.clamp(1, IN_TURN_MAX))?,
        jobs_per_life,
        steps,
    );
    let mut every_core = if threads > 1 {
        (0..threads)
            .map(|i| Ok(Alone::new(trainers(i..i + 1)?, jobs_per_life, steps)))
            .collect::<Result<Vec<_>, crate::Error>>()?
    } else {
        Vec::new()
    };
    let mut hook = || {
        one.run_for(slice);
        in_turn.run_for(slice);
        std::thread::scope(|scope| {
            for a in &mut every_core {
                scope.spawn(move || a.run_for(slice));
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
    let standalone_in_turn = in_turn.rate();
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
        in_turn: in_turn.trainers.len(),
        standalone_in_turn,
        standalone_every_core,
        in_batches,
        end_to_end,
        batch_ratio_per_core: in_batches / n / standalone,
        end_to_end_ratio_per_core: end_to_end / n / standalone,
        batch_ratio_in_turn: in_batches / n / standalone_in_turn,
        end_to_end_ratio_in_turn: end_to_end / n / standalone_in_turn,
        batch_ratio_every_core: standalone_every_core.map(|b| in_batches / n / b),
        end_to_end_ratio_every_core: standalone_every_core.map(|b| end_to_end / n / b),
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
            // Every node's trainer in turn, and the ratios against them.
            assert_eq!(e.in_turn, 6);
            assert!(e.standalone_in_turn > 0.0, "{e:?}");
            assert!(
                (e.end_to_end_ratio_in_turn * threads as f64 * e.standalone_in_turn - e.end_to_end)
                    .abs()
                    < 1e-6 * e.end_to_end
            );
            assert!(
                (e.batch_ratio_per_core * threads as f64 * e.standalone - e.in_batches).abs()
                    < 1e-6 * e.in_batches
            );
            assert_eq!(e.standalone_every_core.is_some(), threads > 1);
            assert_eq!(e.batch_ratio_every_core.is_some(), threads > 1);
            assert_eq!(e.end_to_end_ratio_every_core.is_some(), threads > 1);
            if let (Some(b), Some(r), Some(t)) = (
                e.standalone_every_core,
                e.batch_ratio_every_core,
                e.end_to_end_ratio_every_core,
            ) {
                assert!(b > 0.0 && r > 0.0, "{e:?}");
                assert!(
                    (t * threads as f64 * b - e.end_to_end).abs() < 1e-6 * e.end_to_end,
                    "{e:?}"
                );
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
