//! Building a simulation from a scenario: data, shards, trainers, identities, engines,
//! connections, attackers, and the scheduled events (splits, churn, evaluations).

use super::world::World;
use super::{Error, Scheduled, Simulation};
use crate::links::{self, Links, stream};
use crate::report::Window;
use crate::scenario::{Attackers, Scenario};
use murmur_learn::data::{Dataset, Shard, Split};
use murmur_learn::train::{Setup as Learning, Trainer};
use murmur_protocol::attack;
use murmur_protocol::cluster::{Cluster, Gossip};
use murmur_protocol::engine::{Adversary, Setup};
use murmur_protocol::members::Members;
use murmur_protocol::sign::PeerKey;
use murmur_protocol::sign::{Identity, RunId};
use murmur_protocol::topology::{Graph, Topology, Weights};
use rand::RngCore;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The tag of time-scheduled evaluations: the first entry of the schedule.
pub(super) const EVAL_TAG: u64 = 0;

/// A duration of `ms` milliseconds (a scenario's times).
pub(super) fn ms(ms: f64) -> Duration {
    Duration::from_secs_f64(ms / 1e3)
}

/// The identity of node `i` of a run with `seed`.
pub(crate) fn identity(seed: u64, i: usize) -> Identity {
    let mut secret = [0u8; 32];
    stream::rng(seed, stream::IDENTITY, i as u64).fill_bytes(&mut secret);
    Identity::from_secret(secret)
}

/// Which group of attackers each node belongs to, if any: explicit `nodes` first, then `count`
/// drawn by the seed among the nodes left (joiners excluded: they are honest by definition).
pub(crate) fn assign_attackers(s: &Scenario) -> Vec<Option<&Attackers>> {
    let mut out: Vec<Option<&Attackers>> = vec![None; s.nodes];
    for a in &s.attackers {
        for &i in a.nodes.iter().flatten() {
            out[i] = Some(a);
        }
    }
    let eligible = s.nodes - s.churn.joiners;
    let mut free: Vec<usize> = (0..eligible).filter(|&i| out[i].is_none()).collect();
    free.shuffle(&mut links::rng(s.seed, stream::ATTACKERS, 0));
    let mut free = free.into_iter();
    for a in s.attackers.iter().filter(|a| a.nodes.is_none()) {
        for i in free.by_ref().take(a.count) {
            out[i] = Some(a);
        }
    }
    out
}

/// The process each node runs in: its own index, or, for the identities of a Sybil attacker
/// ([`Attackers::identities`] above 1), the first node of its run of `identities` nodes of its
/// group, in node order.
pub(crate) fn processes(attacks: &[Option<&Attackers>]) -> Vec<usize> {
    let mut process: Vec<usize> = (0..attacks.len()).collect();
    let mut done = vec![false; attacks.len()];
    for i in 0..attacks.len() {
        let Some(group) = attacks[i].filter(|a| a.identities > 1 && !done[i]) else {
            continue;
        };
        let members: Vec<usize> = (i..attacks.len())
            .filter(|&j| attacks[j].is_some_and(|b| std::ptr::eq(b, group)))
            .collect();
        for chunk in members.chunks(group.identities) {
            for &j in chunk {
                process[j] = chunk[0];
                done[j] = true;
            }
        }
    }
    process
}

/// Each node's place among the identities of its process ([`processes`]), in node order: 0
/// but for a Sybil's second identity and after.
pub(crate) fn places(process: &[usize]) -> Vec<u64> {
    let mut taken = vec![0u64; process.len()];
    process
        .iter()
        .map(|&p| {
            taken[p] += 1;
            taken[p] - 1
        })
        .collect()
}

/// Virtual time of each node's training job of a round: `local-steps x step-ms x` its speed
/// factor.
pub(crate) fn compute_times(s: &Scenario, learning: &Learning) -> Vec<Duration> {
    let step = Duration::from_secs_f64(s.compute.step_ms / 1e3);
    links::speed_factors(&s.compute, s.nodes, s.seed)
        .iter()
        .map(|&k| step.mul_f64(k * learning.local_steps as f64))
        .collect()
}

/// The test set an evaluation uses: the first `eval.test-samples` of `test`, or all of it.
pub(crate) fn test_set(test: Dataset, s: &Scenario) -> Dataset {
    match s.eval.test_samples {
        Some(k) if k < test.len() => test.select(&(0..k as u32).collect::<Vec<_>>()),
        _ => test,
    }
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

/// The graph of a fixed topology (`None` for peer sampling): read from its file, or built from
/// the seed.
pub(crate) fn fixed_graph(s: &Scenario) -> Result<Option<Graph>, Error> {
    match s.topology {
        Topology::Sample { s: 0 } => Err(Error::Topology(
            murmur_protocol::topology::Error::SampleSize,
        )),
        Topology::Sample { .. } => Ok(None),
        Topology::File { .. } => s.graph().map_err(|e| Error::Graph(Box::new(e))),
        ref t => {
            let mut rng = links::rng(s.seed, stream::CONNECTIONS, u64::MAX);
            Graph::build(t, s.nodes, &mut rng)
                .map(Some)
                .map_err(Error::Topology)
        }
    }
}

/// Per-node out-neighbours: the connection set for peer sampling, the graph's out-neighbours
/// for a fixed topology.
fn neighbours(s: &Scenario, graph: Option<&Graph>) -> Vec<Vec<usize>> {
    match graph {
        None => links::connections(s.nodes, s.network.max_connections, s.seed),
        Some(g) => (0..s.nodes).map(|i| g.out_neighbours(i).to_vec()).collect(),
    }
}

/// The mixing matrix of a fixed graph: the weights its edge-list file gives, if it gives them;
/// otherwise Metropolis-Hastings on an undirected graph, uniform on a directed one (doubly
/// stochastic when in- and out-degrees are all equal, as on the exponential graph).
fn graph_matrix(s: &Scenario, g: &Graph) -> Result<Weights, Error> {
    if let Some((_, Some(w))) = s.edge_list().map_err(|e| Error::Graph(Box::new(e)))? {
        return Ok(w);
    }
    Ok(Weights::metropolis_hastings(g).unwrap_or_else(|_| Weights::uniform(g)))
}

/// Each node's static mixing weights on a fixed graph, by in-neighbour (see [`graph_matrix`]).
/// Empty for peer sampling.
fn mixing_weights(
    s: &Scenario,
    graph: Option<&Graph>,
) -> Result<Vec<BTreeMap<PeerKey, f64>>, Error> {
    let Some(g) = graph else {
        return Ok(vec![BTreeMap::new(); s.nodes]);
    };
    let w = graph_matrix(s, g)?;
    Ok((0..s.nodes)
        .map(|i| {
            g.in_neighbours(i)
                .iter()
                .map(|&j| (identity(s.seed, j).public(), w.get(i, j)))
                .collect()
        })
        .collect())
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
            .any(|a| a.running().is_some_and(attack::Attack::flips_labels))
            .then(|| flipped(&split.train));
        let graph = fixed_graph(s)?;
        let peers = neighbours(s, graph.as_ref());
        let tables = mixing_weights(s, graph.as_ref())?;
        let keys: Vec<PeerKey> = (0..n).map(|i| identity(s.seed, i).public()).collect();
        let allies: BTreeSet<PeerKey> = (0..n)
            .filter(|&i| attacks[i].is_some())
            .map(|i| keys[i])
            .collect();
        let all_weights: BTreeMap<PeerKey, BTreeMap<PeerKey, f64>> = if graph.is_some() {
            keys.iter().copied().zip(tables.iter().cloned()).collect()
        } else {
            BTreeMap::new()
        };
        let mut weights = tables.into_iter();
        let process = processes(&attacks);
        let place = places(&process);
        let model = learning.arch.init(s.seed);
        let run = RunId::derive(format!("murmur-sim {} seed {}", s.name, s.seed).as_bytes());
        // One key per participant: each honest node's, and each attacker process's first.
        let members = s.allowlist.then(|| {
            Arc::new(Members::new(
                (0..n).filter(|&i| place[i] == 0).map(|i| keys[i]),
            ))
        });
        let mut trainers = Vec::with_capacity(n);
        let mut setups = Vec::with_capacity(n);
        let mut byzantine = Vec::with_capacity(n);
        let mut absent = Vec::with_capacity(n);
        for (i, (shard, attack)) in shards.into_iter().zip(attacks.iter().copied()).enumerate() {
            let shard = match (&attack, &flipped_data) {
                (Some(a), Some(data)) if a.running().is_some_and(attack::Attack::flips_labels) => {
                    Shard {
                        data: data.clone(),
                        indices: shard.indices,
                    }
                }
                _ => shard,
            };
            // Each engine holds the initial model: a trainer takes it from its engine when its
            // first job runs (`World::train`), rather than drawing and holding a second copy.
            trainers.push(
                Trainer::awaiting_model(&learning, shard, i as u32, s.seed)
                    .map_err(Error::Learning)?,
            );
            let mut config = s.engine.clone();
            config.rounds = s.rounds;
            // On a fixed graph a node mixes with every neighbour, each round: it asks them all
            // and waits for them all (or the round timeout). Mixing the first answers to arrive
            // would weight every mix towards the same low-latency neighbours, and under non-IID
            // data the network would settle on their data (docs/results.md, "Dumbbell").
            if !matches!(s.topology, Topology::Sample { .. }) {
                config.fanout = peers[i].len().max(1);
                // At least the fanout: a node mixes once every drawn peer has answered, so a
                // larger `wait-for` also waits for all (and keeps the rule's check on the
                // scenario's `wait-for` for nodes of small degree).
                config.wait_for = config.wait_for.max(config.fanout);
            }
            if let Topology::Sample { s } = s.topology {
                config.fanout = s;
            }
            byzantine.push(attack.is_some());
            absent.push(attack.is_some_and(|a| a.absent));
            setups.push(Setup {
                identity: identity(s.seed, i),
                run,
                config,
                model: model.clone(),
                seed: s.seed,
                adversary: attack.and_then(|a| {
                    Some(Adversary {
                        n: Some(n),
                        f: Some(f),
                        push: a.push,
                        free_timing: a.free_timing,
                        hog: a.hog,
                        hog_turn: a.hog_in_turn.then_some((place[i], a.identities as u64)),
                        knowledge: a.knowledge,
                        aim: a.aim,
                        // Attackers that pool what they know know each other, and the graph.
                        allies: if a.knowledge.is_own() {
                            BTreeSet::new()
                        } else {
                            allies.clone()
                        },
                        graph: if a.knowledge.is_own() {
                            BTreeMap::new()
                        } else {
                            all_weights.clone()
                        },
                        ..Adversary::new(a.running()?.clone())
                    })
                }),
                weights: weights.next().expect("one table per node"),
                members: members.clone(),
            });
        }
        // A Sybil process's identities share its CPU: each training takes that many times as
        // long (they run one after the other).
        let compute: Vec<Duration> = compute_times(s, &learning)
            .into_iter()
            .zip(&attacks)
            .map(|(t, a)| t.mul_f64(a.map_or(1, |a| a.identities) as f64))
            .collect();
        let links = Links::new(&s.network, n, s.seed).with_processes(&process);
        let world = World::new(trainers, compute, links, learning.local_steps, threads);
        let gossip = Gossip {
            mesh: s.network.gossip_peers,
            hops: s.network.gossip_hops,
            ..Gossip::default()
        };
        let seed = links::rng(s.seed, stream::NETWORK, 0).next_u64();
        let mut cluster = Cluster::new(world, seed, gossip);
        for setup in setups {
            cluster.add(setup).map_err(Error::Engine)?;
        }
        for (i, out) in peers.iter().enumerate() {
            for &j in out {
                cluster.link(i, j);
            }
        }
        cluster.set_drop(s.network.loss);
        let test = test_set(split.test, s);
        let mut sim = Simulation {
            learning,
            test,
            cluster,
            finished: vec![false; n],
            restarting: vec![false; n],
            completed: vec![0; n],
            honest_online: 0,
            honest_finished: 0,
            byzantine,
            absent,
            schedule: vec![Scheduled::Eval],
            pending_churn: 0,
            next_eval_round: scenario.eval.every_rounds,
            behind: 0,
            window: Window::default(),
            rows: Vec::new(),
            restarts: Vec::new(),
            honest_bans_total: 0,
            unbans: 0,
            skipped_mixes: 0,
            eval_wall: Duration::ZERO,
            pending: VecDeque::new(),
            eval_set: None,
            started: Instant::now(),
            events_at_eval: u64::MAX,
            scenario,
        };
        sim.schedule_start();
        Ok(sim)
    }

    /// Schedules `event` at `at` virtual milliseconds.
    fn at(&mut self, at: f64, event: Scheduled) {
        let tag = self.schedule.len() as u64;
        self.schedule.push(event);
        self.cluster.schedule(ms(at), tag);
    }

    /// Starts the nodes online at the beginning and schedules splits, churn and evaluations.
    fn schedule_start(&mut self) {
        let n = self.cluster.len();
        let c = self.scenario.churn.clone();
        // Absent attackers never start (see `Attackers::absent`).
        let first: Vec<usize> = (0..n - c.joiners).filter(|&i| !self.absent[i]).collect();
        self.honest_online = first.iter().filter(|&&i| !self.byzantine[i]).count();
        let splits = self.scenario.network.splits.clone();
        for (k, p) in splits.iter().enumerate() {
            self.at(p.start_ms, Scheduled::Split(k));
            self.at(p.heal_ms, Scheduled::Heal);
        }
        for i in n - c.joiners..n {
            self.at(c.join_ms, Scheduled::Join(i));
            self.pending_churn += 1;
        }
        if c.leave_fraction > 0.0 {
            let mut rng = links::rng(self.scenario.seed, stream::CHURN, 0);
            let mut honest: Vec<usize> = first
                .iter()
                .copied()
                .filter(|&i| !self.byzantine[i])
                .collect();
            honest.shuffle(&mut rng);
            let count = (c.leave_fraction * honest.len() as f64).round() as usize;
            let mut chosen = honest[..count].to_vec();
            chosen.sort_unstable();
            for i in chosen {
                let at = if c.leave_until_ms > c.leave_from_ms {
                    rand::Rng::random_range(&mut rng, c.leave_from_ms..c.leave_until_ms)
                } else {
                    c.leave_from_ms
                };
                self.cluster.keep_checkpoints(i);
                self.at(at, Scheduled::Leave(i));
                self.at(at + c.downtime_ms, Scheduled::Restart(i));
                self.pending_churn += 1;
            }
        }
        if let Some(every) = self.scenario.eval.every_ms {
            self.cluster.schedule(ms(every), EVAL_TAG);
        }
        self.cluster.start(&first, false);
        self.recount_behind();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each run of `identities` nodes of a Sybil group, in node order, is one process, named by
    /// its first node; honest nodes and single-identity attackers are their own.
    #[test]
    fn sybil_identities_are_grouped_into_processes_in_node_order() {
        let group = |nodes: Vec<usize>, identities| Attackers {
            count: 0,
            nodes: Some(nodes),
            attack: Some(attack::Attack::SignFlip),
            absent: false,
            push: false,
            free_timing: false,
            hog: false,
            hog_in_turn: false,
            knowledge: Default::default(),
            aim: Default::default(),
            identities,
        };
        let sybil = group(vec![7, 1, 5, 3], 2);
        let lone = group(vec![6], 1);
        let mut attacks: Vec<Option<&Attackers>> = vec![None; 9];
        for i in [1, 3, 5, 7] {
            attacks[i] = Some(&sybil);
        }
        attacks[6] = Some(&lone);
        assert_eq!(processes(&attacks), vec![0, 1, 2, 1, 4, 5, 6, 5, 8]);
        // Their turns (`hog-in-turn`): their places in their processes.
        assert_eq!(
            places(&processes(&attacks)),
            vec![0, 0, 0, 1, 0, 0, 0, 1, 0]
        );
    }
}
