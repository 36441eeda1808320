//! The discrete-event loop in virtual time.
//!
//! Every node is a protocol [`Engine`] (the same state machine a real node runs) and a burn
//! [`Trainer`] (the same trainer). The loop owns the clock and the network: it pops the earliest
//! event (ordered by time, then by scheduling sequence), feeds it to one engine, and turns that
//! engine's outputs into new events: [`Output::Train`] into a training job finishing after the
//! compute model's time, [`Output::Send`] and [`Output::Broadcast`] into deliveries after the
//! network model's time, the engine's timer ([`Engine::poll_timeout`]) into a tick. It makes no
//! protocol decision.
//!
//! Training is lazy and parallel. When an engine asks to train, its parameters are already fixed
//! (the last [`Output::SetModel`]), and nothing reaches the trainer until the job's result is
//! delivered, so the result cannot depend on what happens during its virtual compute time. The
//! loop therefore only queues the job; when it reaches the earliest pending `TrainDone` event it
//! runs every queued job at once on the worker threads and delivers the results in event order.
//! Which jobs share a batch is decided by the event order alone, and each result depends only on
//! its own trainer, so a run is the same bits for any number of threads.

mod build;
mod churn;
mod measure;

use crate::network::Links;
use crate::pool::{self, Trained};
use crate::progress::Progress;
use crate::report::{Row, Window};
use crate::scenario::Scenario;
use murmur_learn::data::Dataset;
use murmur_learn::train::{Setup as Learning, Trainer};
use murmur_protocol::engine::{self, Engine, Input, Output, Setup};
use murmur_protocol::sign::PeerKey;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
}

/// Something scheduled to happen at a virtual time.
#[derive(Debug)]
pub(crate) enum Event {
    /// A message arrives at `to`.
    Deliver {
        to: usize,
        from: usize,
        bytes: Arc<[u8]>,
        gossip: bool,
    },
    /// Node `node`'s local training for `round` is done (if it is still the same incarnation).
    TrainDone { node: usize, round: u64, epoch: u64 },
    /// Node `node`'s engine timer.
    Tick { node: usize, epoch: u64 },
    /// A time-scheduled evaluation point.
    Eval,
    /// Partition `k` starts (`Some`) or the partition in force heals (`None`).
    Partition(Option<usize>),
    /// Node leaves the network.
    Leave(usize),
    /// Node joins (a late joiner) or comes back (after leaving).
    Join(usize),
}

#[derive(Debug)]
pub(crate) struct Entry {
    at: Duration,
    seq: u64,
    event: Event,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The event queue: a min-heap on (time, sequence).
#[derive(Debug, Default)]
pub(crate) struct Queue {
    heap: BinaryHeap<std::cmp::Reverse<Entry>>,
    seq: u64,
}

/// One simulated node.
#[derive(Debug)]
pub(crate) struct Node {
    key: PeerKey,
    /// How its engine was first set up (identity, run, config, adversary).
    setup: Setup,
    engine: Engine,
    trainer: Trainer,
    byzantine: bool,
    online: bool,
    /// Incarnation: bumped when the node leaves, so its stale events are ignored.
    epoch: u64,
    /// The timer deadline already queued.
    armed: Option<Duration>,
    finished: bool,
    /// Rounds completed by its engine.
    completed: u64,
    /// Counts of its earlier engines (before a restart).
    carried: engine::Stats,
}

/// Running counters of a simulation.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counters {
    pub events: u64,
    pub delivered: u64,
    pub train_jobs: u64,
    pub train_batches: u64,
    pub samples: u64,
    /// Wall time inside training jobs, summed over jobs.
    pub train_cpu: Duration,
    /// Wall time of the training batches (what the loop waited for).
    pub train_wall: Duration,
    pub eval_wall: Duration,
}

/// A simulation in progress. Built by [`crate::run`].
#[derive(Debug)]
pub(crate) struct Simulation {
    pub scenario: Scenario,
    pub learning: Learning,
    test: Dataset,
    nodes: Vec<Node>,
    index: BTreeMap<PeerKey, usize>,
    peers: Vec<Vec<usize>>,
    compute: Vec<Duration>,
    links: Links,
    queue: Queue,
    now: Duration,
    threads: usize,
    /// Training jobs queued and not yet run: (node, epoch).
    jobs: Vec<(usize, u64)>,
    results: BTreeMap<(usize, u64), Trained>,
    honest_online: usize,
    honest_finished: usize,
    pending_churn: usize,
    next_eval_round: Option<u64>,
    /// Online honest nodes that have not completed `next_eval_round` rounds.
    behind: usize,
    window: Window,
    pub rows: Vec<Row>,
    pub counters: Counters,
    started: Instant,
    events_at_eval: u64,
}

impl Simulation {
    #[allow(clippy::too_many_arguments)]
    fn new(
        scenario: Scenario,
        learning: Learning,
        test: Dataset,
        nodes: Vec<Node>,
        index: BTreeMap<PeerKey, usize>,
        peers: Vec<Vec<usize>>,
        compute: Vec<Duration>,
        links: Links,
        threads: usize,
    ) -> Result<Simulation, Error> {
        let honest_online = nodes.iter().filter(|n| n.online && !n.byzantine).count();
        let next_eval_round = scenario.eval.every_rounds;
        Ok(Simulation {
            scenario,
            learning,
            test,
            nodes,
            index,
            peers,
            compute,
            links,
            queue: Queue::default(),
            now: Duration::ZERO,
            threads: threads.max(1),
            jobs: Vec::new(),
            results: BTreeMap::new(),
            honest_online,
            honest_finished: 0,
            pending_churn: 0,
            next_eval_round,
            behind: 0,
            window: Window::default(),
            rows: Vec::new(),
            counters: Counters::default(),
            started: Instant::now(),
            events_at_eval: u64::MAX,
        })
    }

    /// Virtual time now.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Runs to the end: every online honest node finished its rounds (and no node is still to
    /// come back), or the duration limit, or nothing left to happen. Evaluates on the schedule
    /// and once at the end.
    pub fn run(&mut self, progress: &mut Progress) {
        self.started = Instant::now();
        let limit = self
            .scenario
            .duration_s
            .map_or(Duration::MAX, Duration::from_secs_f64);
        self.evaluate();
        progress.point(self, self.rows.last().expect("evaluated"));
        while let Some(at) = self.queue.peek_time() {
            if at > limit {
                self.now = limit;
                break;
            }
            let (at, event) = self.queue.pop().expect("peeked");
            self.now = at;
            self.counters.events += 1;
            self.handle(event);
            if self.round_eval_due() {
                self.evaluate();
                progress.point(self, self.rows.last().expect("evaluated"));
            } else if self.counters.events.is_multiple_of(256) {
                progress.tick(self);
            }
            if self.done() {
                break;
            }
        }
        if self.events_at_eval != self.counters.events {
            self.evaluate();
            progress.point(self, self.rows.last().expect("evaluated"));
        }
        progress.finish(self);
    }

    fn done(&self) -> bool {
        self.scenario.rounds.is_some()
            && self.pending_churn == 0
            && self.honest_finished >= self.honest_online
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver {
                to,
                from,
                bytes,
                gossip,
            } => {
                // A node that went offline, or a link cut while the message was in flight.
                if !self.nodes[to].online || self.links.cut(from, to) {
                    self.links.dropped += 1;
                    return;
                }
                self.counters.delivered += 1;
                let from = self.nodes[from].key;
                let input = if gossip {
                    Input::GossipReceived { from, bytes }
                } else {
                    Input::UpdateReceived { from, bytes }
                };
                self.input(to, input);
            }
            Event::TrainDone { node, round, epoch } => {
                if !self.nodes[node].online || self.nodes[node].epoch != epoch {
                    return;
                }
                if !self.results.contains_key(&(node, epoch)) {
                    self.run_jobs();
                }
                let Some(t) = self.results.remove(&(node, epoch)) else {
                    return;
                };
                // The trainer holds the trained parameters: the engine is training, so no
                // `SetModel` reached it since the job ran.
                let params = self.nodes[node].trainer.params().to_vec();
                self.input(
                    node,
                    Input::Trained {
                        round,
                        params,
                        samples: t.samples,
                    },
                );
            }
            Event::Tick { node, epoch } => {
                if self.nodes[node].online && self.nodes[node].epoch == epoch {
                    self.nodes[node].armed = None;
                    self.input(node, Input::Tick);
                }
            }
            Event::Eval => {
                self.evaluate();
                if let Some(every) = self.scenario.eval.every_s {
                    let at = self.now + Duration::from_secs_f64(every);
                    self.queue.push(at, Event::Eval);
                }
            }
            Event::Partition(k) => self.partition(k),
            Event::Leave(i) => self.leave(i),
            Event::Join(i) => self.join(i),
        }
    }

    fn input(&mut self, i: usize, input: Input) {
        self.nodes[i].engine.handle(self.now, input);
        self.drain(i);
    }

    /// Runs every queued training job on the worker threads and keeps the results.
    fn run_jobs(&mut self) {
        let jobs = std::mem::take(&mut self.jobs);
        let mut wanted: BTreeMap<usize, u64> = BTreeMap::new();
        for (node, epoch) in jobs {
            if self.nodes[node].online && self.nodes[node].epoch == epoch {
                wanted.insert(node, epoch);
            }
        }
        let trainers: Vec<&mut Trainer> = self
            .nodes
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| wanted.contains_key(i))
            .map(|(_, n)| &mut n.trainer)
            .collect();
        let start = Instant::now();
        let out = pool::train(trainers, self.learning.local_steps, self.threads);
        self.counters.train_wall += start.elapsed();
        self.counters.train_batches += 1;
        for ((node, epoch), t) in wanted.into_iter().zip(out) {
            self.counters.train_jobs += 1;
            self.counters.samples += t.samples;
            self.counters.train_cpu += t.elapsed;
            self.results.insert((node, epoch), t);
        }
    }

    /// Turns node `i`'s outputs into events, and arms its timer.
    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].engine.poll() {
            match out {
                Output::Train { round } => {
                    let epoch = self.nodes[i].epoch;
                    self.jobs.push((i, epoch));
                    let at = self.now + self.compute[i];
                    self.queue.push(
                        at,
                        Event::TrainDone {
                            node: i,
                            round,
                            epoch,
                        },
                    );
                }
                Output::SetModel { params } => {
                    self.nodes[i]
                        .trainer
                        .set_params(&params)
                        .expect("the engine keeps the model's dimension");
                }
                Output::Send { to, bytes } => {
                    if let Some(&j) = self.index.get(&to) {
                        self.send(i, j, bytes, false);
                    }
                }
                Output::Broadcast { bytes } => {
                    let connected = self.connected(i);
                    for j in self.links.gossip_targets(&connected) {
                        self.send(i, j, bytes.clone(), true);
                    }
                }
                Output::Mixed {
                    inputs, clipped, ..
                } => {
                    if !self.nodes[i].byzantine {
                        self.window.received += inputs.saturating_sub(1) as u64;
                        self.window.clipped += clipped as u64;
                    }
                }
                Output::Finished => {
                    if !self.nodes[i].finished {
                        self.nodes[i].finished = true;
                        if !self.nodes[i].byzantine {
                            self.honest_finished += 1;
                        }
                    }
                }
                Output::Penalize { .. } | Output::Ban { .. } => {}
            }
        }
        let node = &mut self.nodes[i];
        let before = node.completed;
        node.completed = if node.engine.is_finished() {
            node.engine.round()
        } else {
            node.engine.round().saturating_sub(1)
        };
        if let Some(target) = self.next_eval_round
            && node.online
            && !node.byzantine
            && before < target
            && node.completed >= target
        {
            self.behind = self.behind.saturating_sub(1);
        }
        if let Some(deadline) = node.engine.poll_timeout()
            && node.armed != Some(deadline)
        {
            node.armed = Some(deadline);
            let (epoch, at) = (node.epoch, deadline.max(self.now));
            self.queue.push(at, Event::Tick { node: i, epoch });
        }
    }

    fn send(&mut self, from: usize, to: usize, bytes: Arc<[u8]>, gossip: bool) {
        if let Some(at) = self.links.transmit(self.now, from, to, bytes.len()) {
            self.queue.push(
                at,
                Event::Deliver {
                    to,
                    from,
                    bytes,
                    gossip,
                },
            );
        }
    }

    /// Node `i`'s peers that are online and not cut off by a partition.
    fn connected(&self, i: usize) -> Vec<usize> {
        self.peers[i]
            .iter()
            .copied()
            .filter(|&j| self.nodes[j].online && !self.links.cut(i, j))
            .collect()
    }

    /// Tells node `i` and its reachable peers about each other.
    fn connect(&mut self, i: usize) {
        for j in self.connected(i) {
            let (ki, kj) = (self.nodes[i].key, self.nodes[j].key);
            self.nodes[i]
                .engine
                .handle(self.now, Input::PeerUp { peer: kj });
            self.nodes[j]
                .engine
                .handle(self.now, Input::PeerUp { peer: ki });
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
            Some(target) => self
                .nodes
                .iter()
                .filter(|n| n.online && !n.byzantine && n.completed < target)
                .count(),
            None => 0,
        };
    }
}

impl Simulation {
    /// The report of the run so far.
    pub(crate) fn report(&self, threads: usize) -> crate::report::Report {
        use crate::report::{Report, Summary, peak_rss_bytes};
        let c = &self.counters;
        let rss = peak_rss_bytes();
        let last = self
            .rows
            .last()
            .cloned()
            .expect("the run evaluates at the end");
        Report {
            summary: Summary {
                name: self.scenario.name.clone(),
                seed: self.scenario.seed,
                nodes: self.nodes.len(),
                byzantine: self.nodes.iter().filter(|n| n.byzantine).count(),
                model_params: self.learning.arch.num_params(),
                threads,
                virtual_s: self.now.as_secs_f64(),
                wall_s: self.started.elapsed().as_secs_f64(),
                events: c.events,
                delivered: c.delivered,
                train_jobs: c.train_jobs,
                train_batches: c.train_batches,
                samples: c.samples,
                train_samples_per_s: c.samples as f64 / c.train_wall.as_secs_f64().max(1e-9),
                train_wall_s: c.train_wall.as_secs_f64(),
                eval_wall_s: c.eval_wall.as_secs_f64(),
                peak_rss_bytes: rss,
                rss_per_node_bytes: rss / self.nodes.len().max(1) as u64,
                last,
                rejection_reasons: murmur_protocol::engine::Rejection::ALL
                    .iter()
                    .map(|r| r.as_str())
                    .collect(),
            },
            rows: self.rows.clone(),
            scenario_toml: self.scenario.to_toml(),
        }
    }
}
