//! A simulation: the protocol's cluster of engines with burn trainers and the link model
//! plugged in, a schedule of network splits, churn and evaluations, and the report.
//!
//! Every node is a protocol [`Engine`](murmur_protocol::engine::Engine) (the same state machine
//! a real node runs, with its start-up, joins, restarts and bans) and a burn
//! [`Trainer`](murmur_learn::train::Trainer) (the same trainer). The event loop is the protocol's
//! [`Cluster`]: it feeds the engines and carries out their outputs; this module only schedules
//! what the scenario says happens (network splits, nodes leaving and coming back, late joiners,
//! evaluations) and watches the steps the cluster reports. It makes no protocol decision.
//!
//! Training is parallel and in the background: the cluster hands each job to the world as soon
//! as it is queued (at most [`murmur_protocol::cluster::JOBS_PER_BATCH`] waiting to be read
//! back), the world gives it to a worker thread, and the event loop goes on until the job's
//! virtual time comes. Which jobs are handed over when is decided by the event order alone, and
//! each result depends only on its own trainer, so a run is the same bits for any number of
//! threads.

mod build;
mod measure;
mod world;

pub(crate) use build::{assign_attackers, compute_times, fixed_graph, test_set};
pub(crate) use measure::{Sampling, assess};

use crate::pool::EvalSet;
use crate::progress::Progress;
use crate::report::{Restart, Row, Window};
use crate::scenario::Scenario;
use murmur_learn::data::Dataset;
use murmur_learn::train::Setup as Learning;
use murmur_protocol::cluster::{Cluster, Step};
use murmur_protocol::engine;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use world::World;

/// Why a simulation could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The learning config (model, data, partition, optimiser) is unusable.
    #[error("learning: {0}")]
    Learning(#[from] murmur_learn::train::ConfigError),
    /// The engine config is unusable.
    #[error("engine: {0}")]
    Engine(#[from] engine::ConfigError),
    /// The topology cannot be built.
    #[error("topology: {0}")]
    Topology(murmur_protocol::topology::Error),
    /// The topology's graph file cannot be read or is not a valid graph.
    #[error("{0}")]
    Graph(Box<crate::scenario::ScenarioError>),
    /// A reference method cannot run this scenario.
    #[error("method: {0}")]
    Reference(String),
}

/// Evaluation points computed in the background at most (more wait for the oldest).
const MAX_PENDING_POINTS: usize = 4;

/// What the scenario schedules, by tag of [`Cluster::schedule`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scheduled {
    /// A time-scheduled evaluation point.
    Eval,
    /// Split `k` of the scenario starts.
    Split(usize),
    /// The split in force heals.
    Heal,
    /// A node leaves.
    Leave(usize),
    /// A late joiner joins for the first time.
    Join(usize),
    /// A node that left comes back (a restarted process).
    Restart(usize),
}

/// A simulation in progress. Built by [`crate::run`].
#[derive(Debug)]
pub(crate) struct Simulation {
    pub scenario: Scenario,
    pub learning: Learning,
    test: Dataset,
    cluster: Cluster<World>,
    byzantine: Vec<bool>,
    /// Byzantine nodes that never run (`Attackers::absent`).
    absent: Vec<bool>,
    schedule: Vec<Scheduled>,
    honest_online: usize,
    honest_finished: usize,
    finished: Vec<bool>,
    /// Nodes coming back whose start is not reported yet.
    restarting: Vec<bool>,
    /// Each node's completed round.
    completed: Vec<u64>,
    /// Joins and restarts still to come.
    pending_churn: usize,
    next_eval_round: Option<u64>,
    /// Online honest nodes that have not completed `next_eval_round` rounds.
    behind: usize,
    window: Window,
    pub rows: Vec<Row>,
    pub restarts: Vec<Restart>,
    /// Bans of honest peers by honest nodes, ended or not; bans that ended.
    honest_bans_total: u64,
    unbans: u64,
    /// Mixes honest nodes skipped.
    skipped_mixes: u64,
    eval_wall: Duration,
    started: Instant,
    events_at_eval: u64,
    /// Rows not yet reported, in order, with the tags of their evaluations when these run in
    /// the background and the model each figure is of (see [`measure::Prepared`]).
    pending: VecDeque<(usize, Option<measure::InBackground>)>,
    /// What evaluations in the background run on (built at the first).
    eval_set: Option<Arc<EvalSet>>,
}

/// What a paused run ([`crate::run_pausing`]) calls in its pauses, and how often.
pub struct Pause<'a> {
    /// Wall time of the run between two pauses.
    pub every: Duration,
    /// Called in each pause.
    pub hook: &'a mut dyn FnMut(),
}

impl std::fmt::Debug for Pause<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pause")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// Virtual time now.
    pub fn now(&self) -> Duration {
        self.cluster.now()
    }

    /// Runs to the end: every online honest node finished its rounds (and no node is still to
    /// come back), or the duration limit, or nothing left to happen. Evaluates on the schedule
    /// and once at the end.
    ///
    /// With a `pause`, calls `pause.hook` between two steps each time `pause.every` of wall time
    /// has passed since the start or the last pause, and once more at the end, the worker threads
    /// held still meanwhile (each ends the task it runs first). The time the pauses take is not
    /// the run's: the wall times reported leave it out. The pauses change nothing else (the same
    /// events in the same order, the same results): the bench times a standalone trainer in
    /// them, so that it sees the machine as the run does.
    pub fn run(&mut self, progress: &mut Progress, mut pause: Option<Pause<'_>>) {
        self.started = Instant::now();
        let mut since_pause = Instant::now();
        // The run's own time includes the wait for its workers' tasks to end: the pause is
        // the hook's alone.
        fn paused(sim: &mut Simulation, since: &mut Instant, pause: &mut Pause<'_>) {
            let took = sim.cluster.world().holding_workers(|| {
                let start = Instant::now();
                (pause.hook)();
                start.elapsed()
            });
            sim.started += took;
            *since = Instant::now();
        }
        let limit = self.scenario.duration_ms.map_or(Duration::MAX, build::ms);
        self.evaluate();
        self.settle(progress, false);
        while !self.done() {
            let Some(step) = self.cluster.step(limit) else {
                break;
            };
            if let Some(p) = &mut pause
                && since_pause.elapsed() >= p.every
            {
                paused(self, &mut since_pause, p);
            }
            let eval = self.on_step(step);
            if eval || self.round_eval_due() {
                self.evaluate();
                // Each point in the background holds copies of its sampled models: a few at most.
                self.settle(progress, self.pending.len() > MAX_PENDING_POINTS);
            } else if self.cluster.counters().events.is_multiple_of(256) {
                self.settle(progress, false);
                progress.tick(
                    &self.scenario,
                    self.now(),
                    self.rows.last().map_or(0, |r| r.round_min),
                );
            }
        }
        if self.events_at_eval != self.cluster.counters().events {
            self.evaluate();
        }
        self.cluster.world().no_more_training();
        self.settle(progress, true);
        if let Some(p) = &mut pause {
            paused(self, &mut since_pause, p);
        }
        progress.finish();
    }

    fn done(&self) -> bool {
        self.scenario.rounds.is_some()
            && self.pending_churn == 0
            && self.honest_finished >= self.honest_online
    }

    /// Follows one step of the cluster; true when a time-scheduled evaluation is due.
    fn on_step(&mut self, step: Step) -> bool {
        match step {
            Step::Scheduled(tag) => return self.scheduled(self.schedule[tag as usize]),
            Step::Started {
                node,
                origin,
                round,
                peers,
                resume,
            } => {
                self.set_completed(node, round.saturating_sub(1));
                if std::mem::take(&mut self.restarting[node]) {
                    self.restarts.push(Restart {
                        node,
                        virtual_s: self.now().as_secs_f64(),
                        checkpoint: resume.checkpoint,
                        signed: resume.signed,
                        origin: origin.as_str(),
                        round,
                        peers,
                    });
                }
            }
            Step::Mixed {
                node,
                completed,
                peers,
                clipped,
                skipped,
                ..
            } => {
                self.set_completed(node, completed);
                if !self.byzantine[node] && skipped {
                    self.skipped_mixes += 1;
                }
                if !self.byzantine[node] && !skipped {
                    self.window.received += peers.len() as u64;
                    self.window.clipped += clipped as u64;
                    self.window.byzantine +=
                        peers.iter().filter(|&&j| self.byzantine[j]).count() as u64;
                }
            }
            Step::Finished { node } => {
                let completed = self.cluster.engine(node).completed_round();
                self.set_completed(node, completed);
                if !std::mem::replace(&mut self.finished[node], true) && !self.byzantine[node] {
                    self.honest_finished += 1;
                }
            }
            Step::Banned { node, peer, .. } => {
                if !self.byzantine[node] && !self.byzantine[peer] {
                    self.honest_bans_total += 1;
                }
            }
            Step::Unbanned { .. } => self.unbans += 1,
        }
        false
    }

    fn scheduled(&mut self, event: Scheduled) -> bool {
        match event {
            Scheduled::Eval => {
                if let Some(every) = self.scenario.eval.every_ms {
                    let at = self.now() + build::ms(every);
                    self.cluster.schedule(at, build::EVAL_TAG);
                }
                return true;
            }
            Scheduled::Split(k) => {
                let sides = self.scenario.network.splits[k].sides;
                let n = self.cluster.len();
                self.cluster
                    .partition((0..n).map(|i| i * sides / n).collect());
            }
            Scheduled::Heal => self.cluster.heal(),
            Scheduled::Leave(i) => {
                if self.cluster.is_online(i) {
                    self.cluster.leave(i);
                    if !self.byzantine[i] {
                        self.honest_online -= 1;
                        if std::mem::take(&mut self.finished[i]) {
                            self.honest_finished -= 1;
                        }
                    }
                }
            }
            Scheduled::Join(i) | Scheduled::Restart(i) => {
                self.pending_churn = self.pending_churn.saturating_sub(1);
                if !self.cluster.is_online(i) {
                    if !self.byzantine[i] {
                        self.honest_online += 1;
                    }
                    match event {
                        Scheduled::Join(_) => self.cluster.start(&[i], true),
                        _ => {
                            self.restarting[i] = true;
                            self.cluster.restart(i);
                        }
                    }
                }
            }
        }
        self.recount_behind();
        false
    }

    fn set_completed(&mut self, node: usize, completed: u64) {
        let before = std::mem::replace(&mut self.completed[node], completed);
        if let Some(target) = self.next_eval_round
            && self.cluster.is_online(node)
            && !self.byzantine[node]
            && before < target
            && completed >= target
        {
            self.behind = self.behind.saturating_sub(1);
        }
    }

    /// Whether every online honest node has reached the next round-based evaluation point; if
    /// so, moves the point on.
    fn round_eval_due(&mut self) -> bool {
        let Some(target) = self.next_eval_round else {
            return false;
        };
        if self.scenario.rounds.is_some_and(|r| target > r) {
            self.next_eval_round = None;
            return false;
        }
        if self.behind > 0 {
            return false;
        }
        let every = self.scenario.eval.every_rounds.expect("round schedule");
        self.next_eval_round = Some(target + every);
        self.recount_behind();
        true
    }

    /// Recounts the online honest nodes that have not reached the next evaluation round.
    fn recount_behind(&mut self) {
        self.behind = match self.next_eval_round {
            Some(target) => (0..self.cluster.len())
                .filter(|&i| {
                    self.cluster.is_online(i) && !self.byzantine[i] && self.completed[i] < target
                })
                .count(),
            None => 0,
        };
    }
}

impl Simulation {
    /// The report of the run so far.
    pub(crate) fn report(&self, threads: usize) -> crate::report::Report {
        use crate::report::{Report, Summary, peak_rss_bytes};
        let c = self.cluster.counters();
        let work = &self.cluster.world().work;
        let rss = peak_rss_bytes();
        let nodes = self.cluster.len();
        let last = self
            .rows
            .last()
            .cloned()
            .expect("the run evaluates at the end");
        Report {
            summary: Summary {
                name: self.scenario.name.clone(),
                method: self.scenario.method.name(),
                seed: self.scenario.seed,
                nodes,
                byzantine: self.byzantine.iter().filter(|b| **b).count(),
                model_params: self.learning.arch.num_params(),
                codec: self.scenario.engine.codec.to_string(),
                bytes_per_node_round: crate::report::bytes_per_node_round(&last, nodes),
                threads,
                virtual_s: self.now().as_secs_f64(),
                wall_s: self.started.elapsed().as_secs_f64(),
                events: c.events,
                delivered: c.delivered,
                gossip_duplicates: c.duplicates,
                from_banned: c.from_banned,
                train_jobs: c.train_jobs,
                train_batches: c.train_batches,
                samples: work.samples,
                train_samples_per_s: work.samples_run as f64 * threads as f64
                    / work.train_cpu.as_secs_f64().max(1e-9),
                train_wall_s: work.train_wall.as_secs_f64(),
                train_cpu_s: work.train_cpu.as_secs_f64(),
                eval_wall_s: self.eval_wall.as_secs_f64(),
                peak_rss_bytes: rss,
                rss_per_node_bytes: rss / nodes.max(1) as u64,
                rejected: last.rejected_by_reason(),
                last,
                restarts: self.restarts.clone(),
                honest_bans_total: self.honest_bans_total,
                unbans: self.unbans,
                skipped_mixes: self.skipped_mixes,
            },
            rows: self.rows.clone(),
            scenario_toml: self.scenario.to_toml(),
            splits: self
                .scenario
                .network
                .splits
                .iter()
                .map(|p| (p.start_ms / 1e3, p.heal_ms / 1e3))
                .collect(),
        }
    }
}
