//! murmur-sim: many murmur nodes in one process, in virtual time, under attack.
//!
//! The simulator runs the same protocol [`Engine`](murmur_protocol::engine::Engine) and the same
//! burn [`Trainer`](murmur_learn::train::Trainer) as a real node and replaces only the network and
//! the clock: a discrete-event loop ([`simulation`]) over N engines, a network model
//! ([`links`]: per-link latency, bandwidth and uplink queues, bounded connection sets; the
//! cluster adds losses, splits and gossip relaying), a
//! compute model (per-step time, per-node speed factors, stragglers), churn, and Byzantine nodes
//! that are engines with an [`Adversary`](murmur_protocol::engine::Adversary) from
//! [`murmur_protocol::attack`]. Scenarios are TOML ([`scenario`]); a run produces a
//! [`report::Report`] (`rounds.csv`, `summary.json`, `plot.svg`, the resolved scenario).
//!
//! A run is deterministic: the same scenario and seed give the same `rounds.csv`, byte for byte,
//! whatever the number of worker threads.
//!
//! What it does not do: decide anything the protocol decides. Who to send to, what to accept,
//! how to mix, when a round ends, and what an attacker sends are the engine's.

pub mod bench;
pub mod compare;
pub mod links;
pub mod plot;
mod pool;
pub mod progress;
mod reference;
pub mod report;
pub mod robustness;
pub mod scenario;
pub mod simulation;

pub use progress::Mode;
pub use report::Report;
pub use scenario::{Method, Scenario, ScenarioError};
pub use simulation::Error;

use std::path::PathBuf;

/// How to run a scenario (what does not change the results).
#[derive(Debug, Clone)]
pub struct Options {
    /// Threads for training and evaluation, the event loop's among them (at least 1).
    pub threads: usize,
    /// Progress display.
    pub progress: Mode,
    /// Replaces the directory of file-based datasets (MNIST, Fashion-MNIST) in the scenario.
    pub dataset_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            progress: Mode::Quiet,
            dataset_dir: None,
        }
    }
}

/// Fills in what the scenario leaves to defaults that depend on other keys (the evaluation
/// schedule), and applies `options.dataset_dir`; the result is what the run writes as
/// `scenario.toml`.
pub fn resolve(scenario: &Scenario, options: &Options) -> Scenario {
    let mut s = scenario.clone();
    if s.eval.every_rounds.is_none() && s.eval.every_ms.is_none() {
        match (s.rounds, s.duration_ms) {
            (Some(r), _) => s.eval.every_rounds = Some((r / 10).max(1)),
            (None, Some(d)) => s.eval.every_ms = Some(d / 10.0),
            (None, None) => {}
        }
    }
    if let Some(dir) = &options.dataset_dir {
        s.learning.data.set_dir(dir.clone());
    }
    s
}

/// Runs a scenario to the end and returns its report.
pub fn run(scenario: &Scenario, options: &Options) -> Result<Report, Error> {
    run_with(scenario, options, None)
}

/// [`run`] of a scenario of the protocol, calling `pause.hook` between two steps each time
/// `pause.every` of wall time has passed, and once more at the end, with the worker threads held
/// still (each ends the task it runs first). The wall times reported leave the pauses out;
/// nothing else changes.
pub fn run_pausing(
    scenario: &Scenario,
    options: &Options,
    pause: simulation::Pause<'_>,
) -> Result<Report, Error> {
    run_with(scenario, options, Some(pause))
}

fn run_with(
    scenario: &Scenario,
    options: &Options,
    pause: Option<simulation::Pause<'_>>,
) -> Result<Report, Error> {
    let scenario = resolve(scenario, options);
    if pause.is_some() && !scenario.method.is_protocol() {
        return Err(Error::Reference(format!(
            "scenario {}: only the protocol's simulation can be paused",
            scenario.name
        )));
    }
    let (learning, split) = scenario.learning.load(scenario.seed)?;
    let threads = options.threads.max(1);
    let mut progress = progress::Progress::new(options.progress);
    if !scenario.method.is_protocol() {
        return reference::run(scenario, learning, split, threads, &mut progress);
    }
    let mut sim = simulation::Simulation::build(scenario, learning, split, threads)?;
    sim.run(&mut progress, pause);
    Ok(sim.report(threads))
}
