//! The simulator's training efficiency: local-training throughput of N simulated nodes against
//! the same trainer run alone in the same process.
//!
//! Both sides train the same model on the same data with the same batch size and local steps.
//! The standalone figure is one [`Trainer`] calling [`Trainer::train_steps`] back to back on one
//! thread. The simulated figure is a full run of a scenario (engines, signing, network, mixing),
//! reported two ways: samples per second of wall time spent in training batches (what the worker
//! threads achieve), and samples per second of the whole run (including everything the
//! simulator does besides training). Per core, each is divided by the threads used.

use crate::{Options, Scenario};
use murmur_node::data::Shard;
use murmur_node::train::Trainer;
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
    /// The simulation's training batches, samples/s of their wall time.
    pub in_batches: f64,
    /// The whole simulation, samples/s of its wall time.
    pub end_to_end: f64,
    /// `in_batches / threads / standalone`.
    pub batch_ratio_per_core: f64,
    /// `end_to_end / threads / standalone`.
    pub end_to_end_ratio_per_core: f64,
}

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
    let shard = shards.into_iter().next().expect("at least one node");
    let mut trainer = Trainer::new(&learning, shard, 0, resolved.seed)?;
    trainer.train_steps(learning.local_steps); // warm-up
    // Timed before and after the simulation, so that a machine shared with other work
    // affects both sides alike.
    let alone = |trainer: &mut Trainer| {
        let (mut samples, start) = (0usize, Instant::now());
        while start.elapsed() < min_time / 2 {
            samples += trainer.train_steps(learning.local_steps).samples;
        }
        (samples, start.elapsed())
    };
    let before = alone(&mut trainer);
    let report = crate::run(scenario, options)?;
    let after = alone(&mut trainer);
    let standalone = (before.0 + after.0) as f64 / (before.1 + after.1).as_secs_f64();
    let s = &report.summary;
    let in_batches = s.train_samples_per_s;
    let end_to_end = s.samples as f64 / s.wall_s.max(1e-9);
    let threads = options.threads.max(1) as f64;
    Ok(Efficiency {
        nodes: s.nodes,
        threads: options.threads.max(1),
        params: s.model_params,
        standalone,
        in_batches,
        end_to_end,
        batch_ratio_per_core: in_batches / threads / standalone,
        end_to_end_ratio_per_core: end_to_end / threads / standalone,
    })
}
