//! Building a simulation from a scenario: data, shards, trainers, identities, engines,
//! connections, attackers, and the scheduled events (partitions, churn, evaluations).

use super::{Error, Event, Node, Queue, Simulation};
use crate::network::{self, Links, stream};
use crate::scenario::Scenario;
use murmur_learn::data::{Dataset, Shard, Split};
use murmur_learn::train::{Setup as Learning, Trainer};
use murmur_protocol::attack::{self, Attack};
use murmur_protocol::engine::{self, Adversary, Engine, Setup};
use murmur_protocol::sign::{Identity, RunId};
use murmur_protocol::topology::{Graph, Topology};
use rand::RngCore;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::time::Duration;

/// The identity of node `i` of a run with `seed`.
pub(crate) fn identity(seed: u64, i: usize) -> Identity {
    let mut secret = [0u8; 32];
    stream::rng(seed, stream::IDENTITY, i as u64).fill_bytes(&mut secret);
    Identity::from_secret(secret)
}

/// Which attack each node runs, if any: explicit `nodes` first, then `count` drawn by the seed
/// among the nodes left (joiners excluded: they are honest by definition).
pub(crate) fn assign_attackers(s: &Scenario) -> Vec<Option<Attack>> {
    let mut out: Vec<Option<Attack>> = vec![None; s.nodes];
    for a in &s.attackers {
        for &i in a.nodes.iter().flatten() {
            out[i] = Some(a.attack.clone());
        }
    }
    let eligible = s.nodes - s.churn.joiners;
    let mut free: Vec<usize> = (0..eligible).filter(|&i| out[i].is_none()).collect();
    free.shuffle(&mut network::rng(s.seed, stream::ATTACKERS, 0));
    let mut free = free.into_iter();
    for a in s.attackers.iter().filter(|a| a.nodes.is_none()) {
        for i in free.by_ref().take(a.count) {
            out[i] = Some(a.attack.clone());
        }
    }
    out
}

/// A copy of `data` with every label flipped by [`attack::flip_label`].
fn flipped(data: &Dataset) -> Dataset {
    let mut features = Vec::with_capacity(data.len() * data.shape().len());
    let classes = data.classes() as u32;
    let mut labels = Vec::with_capacity(data.len());
    for i in 0..data.len() {
        features.extend_from_slice(data.row(i));
        labels.push(attack::flip_label(data.label(i), classes));
    }
    Dataset::new(features, labels, data.shape(), data.classes())
}

/// Per-node out-neighbours: the connection set for peer sampling, the graph's out-neighbours
/// for a fixed topology.
fn neighbours(s: &Scenario) -> Result<Vec<Vec<usize>>, Error> {
    match s.topology {
        Topology::Sample { s: 0 } => Err(Error::Topology(
            murmur_protocol::topology::Error::SampleSize,
        )),
        Topology::Sample { .. } => Ok(network::connections(
            s.nodes,
            s.network.max_connections,
            s.seed,
        )),
        ref t => {
            let mut rng = network::rng(s.seed, stream::CONNECTIONS, u64::MAX);
            let g = Graph::build(t, s.nodes, &mut rng).map_err(Error::Topology)?;
            Ok((0..s.nodes).map(|i| g.out_neighbours(i).to_vec()).collect())
        }
    }
}

impl Simulation {
    /// Builds every node of `scenario` with `split` (the loaded data) and `learning` (the
    /// validated learning config). `threads` worker threads train and evaluate.
    pub(crate) fn build(
        scenario: Scenario,
        learning: Learning,
        split: Split,
        threads: usize,
    ) -> Result<Simulation, Error> {
        let s = &scenario;
        let n = s.nodes;
        let shards = Shard::split(&split.train, &learning.spec.partition, n, s.seed)
            .map_err(|e| Error::Learning(e.into()))?;
        let attacks = assign_attackers(s);
        let f = attacks.iter().filter(|a| a.is_some()).count();
        let flipped_data = attacks
            .iter()
            .flatten()
            .any(Attack::flips_labels)
            .then(|| flipped(&split.train));
        let peers = neighbours(s)?;
        let model = learning.arch.init(s.seed);
        let run = RunId::derive(format!("murmur-sim {} seed {}", s.name, s.seed).as_bytes());
        let joiners = n - s.churn.joiners;
        let mut nodes = Vec::with_capacity(n);
        let mut index = BTreeMap::new();
        for (i, (shard, attack)) in shards.into_iter().zip(attacks).enumerate() {
            let shard = match (&attack, &flipped_data) {
                (Some(a), Some(data)) if a.flips_labels() => Shard {
                    data: data.clone(),
                    indices: shard.indices,
                },
                _ => shard,
            };
            let trainer =
                Trainer::new(&learning, shard, i as u32, s.seed).map_err(Error::Learning)?;
            let mut config = s.engine.clone();
            config.rounds = s.rounds;
            match s.topology {
                Topology::Sample { s } => config.fanout = s,
                _ => config.fanout = peers[i].len().max(1),
            }
            let adversary = attack.map(|attack| Adversary { attack, n, f });
            let identity = identity(s.seed, i);
            index.insert(identity.public(), i);
            let setup = Setup {
                identity,
                run,
                config,
                model: model.clone(),
                round: 0,
                seed: network::rng(s.seed, stream::ENGINE, i as u64).next_u64(),
                adversary,
            };
            let engine = Engine::new(setup.clone()).map_err(Error::Engine)?;
            nodes.push(Node {
                key: engine.id(),
                byzantine: setup.adversary.is_some(),
                setup,
                engine,
                trainer,
                online: i < joiners,
                epoch: 0,
                armed: None,
                finished: false,
                completed: 0,
                carried: engine::Stats::default(),
            });
        }
        let speed = network::speed_factors(&s.compute, n, s.seed);
        let step = Duration::from_secs_f64(s.compute.step_ms / 1e3);
        let compute: Vec<Duration> = speed
            .iter()
            .map(|&k| step.mul_f64(k * learning.local_steps as f64))
            .collect();
        let links = Links::new(&s.network, n, s.seed);
        let mut test = split.test;
        if let Some(k) = s.eval.test_samples
            && k < test.len()
        {
            let first: Vec<u32> = (0..k as u32).collect();
            test = test.select(&first);
        }
        let mut sim = Simulation::new(
            scenario, learning, test, nodes, index, peers, compute, links, threads,
        )?;
        sim.schedule_start();
        Ok(sim)
    }

    /// Connects the online nodes, drains their first outputs, and queues the scheduled events.
    fn schedule_start(&mut self) {
        let n = self.nodes.len();
        for i in 0..n {
            if self.nodes[i].online {
                self.connect(i);
            }
        }
        for i in 0..n {
            if self.nodes[i].online {
                self.drain(i);
            }
        }
        let s = &self.scenario;
        let secs = Duration::from_secs_f64;
        let mut events = Vec::new();
        for (k, p) in s.network.partitions.iter().enumerate() {
            events.push((secs(p.start_s), Event::Partition(Some(k))));
            events.push((secs(p.heal_s), Event::Partition(None)));
        }
        let c = &s.churn;
        if c.joiners > 0 {
            for i in n - c.joiners..n {
                events.push((secs(c.join_s), Event::Join(i)));
            }
        }
        if c.leave_fraction > 0.0 {
            let mut rng = network::rng(s.seed, stream::CHURN, 0);
            let mut honest: Vec<usize> = (0..n - c.joiners)
                .filter(|&i| !self.nodes[i].byzantine)
                .collect();
            honest.shuffle(&mut rng);
            let count = (c.leave_fraction * honest.len() as f64).round() as usize;
            let mut chosen = honest[..count].to_vec();
            chosen.sort_unstable();
            for i in chosen {
                let at = if c.leave_until_s > c.leave_from_s {
                    rand::Rng::random_range(&mut rng, c.leave_from_s..c.leave_until_s)
                } else {
                    c.leave_from_s
                };
                events.push((secs(at), Event::Leave(i)));
                events.push((secs(at + c.downtime_s), Event::Join(i)));
            }
        }
        if let Some(every) = s.eval.every_s {
            events.push((secs(every), Event::Eval));
        }
        self.pending_churn = events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Join(_)))
            .count();
        for (at, e) in events {
            self.queue.push(at, e);
        }
        self.recount_behind();
    }
}

/// An event queue ordered by (time, insertion sequence): ties are broken by the order events
/// were scheduled, which is the same in every run.
impl Queue {
    pub(crate) fn push(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        self.heap.push(std::cmp::Reverse(super::Entry {
            at,
            seq: self.seq,
            event,
        }));
    }

    pub(crate) fn pop(&mut self) -> Option<(Duration, Event)> {
        self.heap.pop().map(|std::cmp::Reverse(e)| (e.at, e.event))
    }

    pub(crate) fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|std::cmp::Reverse(e)| e.at)
    }
}
