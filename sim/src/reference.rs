//! The synchronous references the protocol is measured against: D-PSGD and Epidemic Learning with
//! a global barrier, a parameter server, and ring all-reduce (see [`Method`]).
//!
//! A reference trains exactly what a protocol run of the same scenario trains: the same shards,
//! initial model, trainer seeds and local steps, the same compute model (each node's speed) and
//! the same link model (latency, bandwidth, uplink queues), and it evaluates the same way into
//! the same report. What differs is only how models are combined and when: every round every
//! node trains, the models move, and a global barrier waits for the last of them before the
//! next round starts. A round therefore lasts as long as its slowest node plus its slowest
//! transfer, which is what a synchronous system pays for its exact mixing.
//!
//! The attackers of a scenario do not run here: a reference is the attack-free baseline of the
//! same honest nodes, and on a fixed graph it mixes over the graph the honest nodes induce.

use crate::links::{self, Links};
use crate::pool;
use crate::progress::Progress;
use crate::report::{Report, Row, Summary, peak_rss_bytes};
use crate::scenario::{Method, Scenario};
use crate::simulation::{self, Error, Sampling, assess};
use murmur_learn::data::{Dataset, Shard, Split};
use murmur_learn::train::{Setup as Learning, Trainer};
use murmur_protocol::aggregate::Aggregator;
use murmur_protocol::attack;
use murmur_protocol::engine::{ModelView, Rejection};
use murmur_protocol::topology::{self, Graph, Topology, Weights};
use murmur_protocol::wire;
use std::time::{Duration, Instant};

/// The seeded stream of a reference's own draws (Epidemic Learning's peers, the robust server's
/// bucketing).
const STREAM: u64 = 109;

/// How the nodes' models are combined each round. Nodes are numbered by their position among
/// the honest nodes.
#[derive(Debug)]
enum Mixer {
    /// D-PSGD on a fixed graph: each node sends to `out[i]` and mixes `rows[i]` (weight per
    /// position, its own included).
    Graph {
        out: Vec<Vec<usize>>,
        rows: Vec<Vec<(usize, f64)>>,
    },
    /// Epidemic Learning: each node sends to `s` of its `candidates`, drawn every round.
    Epidemic {
        s: usize,
        candidates: Vec<Vec<usize>>,
    },
    /// A parameter server (its host is the last of the link model) keeping `model`, mixing with
    /// the mean or with `rule`.
    Server {
        model: Vec<f32>,
        rule: Option<Box<Aggregator>>,
        /// Rounds in which the rule refused to mix (the server kept its model).
        skipped: u64,
    },
    /// Ring all-reduce in position order.
    AllReduce,
}

/// A reference run in progress.
struct Reference {
    scenario: Scenario,
    learning: Learning,
    test: Dataset,
    threads: usize,
    /// The nodes that run (the honest ones), in index order.
    nodes: Vec<usize>,
    trainers: Vec<Trainer>,
    compute: Vec<Duration>,
    links: Links,
    mixer: Mixer,
    /// Bytes of one model on the wire: the largest signed update of the model.
    model_bytes: usize,
    now: Duration,
    round: u64,
    bytes_sent: u64,
    transfers: u64,
    samples: u64,
    train_wall: Duration,
    /// Wall time inside training jobs, summed over the jobs.
    train_cpu: Duration,
    eval_wall: Duration,
    started: Instant,
    rows: Vec<Row>,
}

/// Runs `scenario` with its reference method (not [`Method::Protocol`]).
pub(crate) fn run(
    scenario: Scenario,
    learning: Learning,
    split: Split,
    threads: usize,
    progress: &mut Progress,
) -> Result<Report, Error> {
    let mut r = Reference::build(scenario, learning, split, threads)?;
    r.evaluate();
    progress.point(&r.scenario, r.now, r.rows.last().expect("evaluated"));
    let limit = r
        .scenario
        .duration_ms
        .map_or(Duration::MAX, |d| Duration::from_secs_f64(d / 1e3));
    let mut next_time_eval = r
        .scenario
        .eval
        .every_ms
        .map(|ms| Duration::from_secs_f64(ms / 1e3));
    while r.scenario.rounds.is_none_or(|rounds| r.round < rounds) && r.now < limit {
        r.round();
        let by_round = r
            .scenario
            .eval
            .every_rounds
            .is_some_and(|every| r.round.is_multiple_of(every));
        let mut by_time = false;
        while let Some(at) = next_time_eval
            && r.now >= at
        {
            by_time = true;
            next_time_eval =
                Some(at + Duration::from_secs_f64(r.scenario.eval.every_ms.expect("set") / 1e3));
        }
        if by_round || by_time {
            r.evaluate();
            progress.point(&r.scenario, r.now, r.rows.last().expect("evaluated"));
        } else {
            progress.tick(&r.scenario, r.now, r.round);
        }
    }
    if r.rows.last().is_none_or(|row| row.round_min != r.round) {
        r.evaluate();
        progress.point(&r.scenario, r.now, r.rows.last().expect("evaluated"));
    }
    progress.finish();
    Ok(r.report(threads))
}

/// The neighbour lists `neighbours` gives the `n` nodes, restricted to `nodes` and renumbered by
/// position in it.
fn induced<'a>(
    nodes: &[usize],
    n: usize,
    neighbours: impl Fn(usize) -> &'a [usize],
) -> Vec<Vec<usize>> {
    let mut position = vec![None; n];
    for (p, &i) in nodes.iter().enumerate() {
        position[i] = Some(p);
    }
    nodes
        .iter()
        .map(|&i| neighbours(i).iter().filter_map(|&j| position[j]).collect())
        .collect()
}

/// The mixing of D-PSGD on the graph `g` induces on `nodes` (renumbered by position): the
/// weights `given` for the whole graph (an edge list's), each node keeping the weights of the
/// neighbours left out, as the protocol's nodes do with a neighbour that does not answer;
/// otherwise Metropolis-Hastings weights when it is undirected, uniform weights when those are
/// doubly stochastic (a directed regular graph such as the exponential graph of a power of two).
fn graph_mixer(g: &Graph, nodes: &[usize], given: Option<&Weights>) -> Result<Mixer, Error> {
    let out = induced(nodes, g.len(), |i| g.out_neighbours(i));
    if let Some(w) = given {
        let rows = nodes
            .iter()
            .enumerate()
            .map(|(p, &i)| {
                let mut row: Vec<(usize, f64)> =
                    out[p].iter().map(|&q| (q, w.get(i, nodes[q]))).collect();
                let taken: f64 = row.iter().map(|(_, x)| x).sum();
                row.push((p, 1.0 - taken));
                row.sort_by_key(|&(q, _)| q);
                row
            })
            .collect();
        return Ok(Mixer::Graph { out, rows });
    }
    let induced = Graph::from_out_neighbours(out.clone()).map_err(Error::Topology)?;
    let w = match Weights::metropolis_hastings(&induced) {
        Ok(w) => w,
        Err(topology::Error::Asymmetric) => {
            let w = Weights::uniform(&induced);
            if !w.is_doubly_stochastic(1e-9) {
                return Err(Error::Reference(
                    "the honest nodes' graph is directed and its uniform weights are not doubly \
                     stochastic, so synchronous D-PSGD would not keep the average: use an \
                     undirected graph or a regular directed one"
                        .into(),
                ));
            }
            w
        }
        Err(e) => return Err(Error::Topology(e)),
    };
    let rows = (0..nodes.len())
        .map(|i| {
            w.row(i)
                .iter()
                .enumerate()
                .filter(|&(_, &x)| x != 0.0)
                .map(|(j, &x)| (j, x))
                .collect()
        })
        .collect();
    Ok(Mixer::Graph { out, rows })
}

/// When a model that the node at position `p` sends at `at` reaches position `q`.
fn send(
    links: &mut Links,
    nodes: &[usize],
    at: Duration,
    p: usize,
    q: usize,
    bytes: usize,
) -> Duration {
    links.arrival(at, nodes[p], nodes[q], bytes)
}

/// Every node's mix: `x_i = sum_j w_ij x_j` over its row, in f64.
fn combine(rows: &[Vec<(usize, f64)>], models: &[&[f32]]) -> Vec<Vec<f32>> {
    let dim = models.first().map_or(0, |m| m.len());
    rows.iter()
        .map(|row| {
            (0..dim)
                .map(|d| {
                    row.iter()
                        .map(|&(q, w)| w * f64::from(models[q][d]))
                        .sum::<f64>() as f32
                })
                .collect()
        })
        .collect()
}

impl Reference {
    fn build(
        scenario: Scenario,
        learning: Learning,
        split: Split,
        threads: usize,
    ) -> Result<Reference, Error> {
        let s = &scenario;
        let attackers = simulation::assign_attackers(s);
        let nodes: Vec<usize> = (0..s.nodes).filter(|&i| attackers[i].is_none()).collect();
        let shards = Shard::split(&split.train, &learning.spec.partition, s.nodes, s.seed)
            .map_err(|e| Error::Learning(e.into()))?;
        let model = learning.arch.init(s.seed);
        let mut trainers = Vec::with_capacity(nodes.len());
        for (i, shard) in shards.into_iter().enumerate() {
            if attackers[i].is_some() {
                continue;
            }
            let mut t =
                Trainer::new(&learning, shard, i as u32, s.seed).map_err(Error::Learning)?;
            t.set_params(&model)
                .expect("the initial model has the model's dimension");
            trainers.push(t);
        }
        let compute = simulation::compute_times(s, &learning);
        let compute = nodes.iter().map(|&i| compute[i]).collect();
        let mixer = match s.method {
            Method::Protocol => unreachable!("the protocol is run by the simulation"),
            Method::Synchronous => match (&s.topology, simulation::fixed_graph(s)?) {
                (Topology::Sample { s: k }, _) => {
                    let connections =
                        links::connections(s.nodes, s.network.max_connections, s.seed);
                    Mixer::Epidemic {
                        s: *k,
                        candidates: induced(&nodes, s.nodes, |i| &connections[i]),
                    }
                }
                (Topology::File { .. }, Some(g)) => {
                    let listed = s.edge_list().map_err(|e| Error::Graph(Box::new(e)))?;
                    let given = listed.and_then(|(_, w)| w);
                    graph_mixer(&g, &nodes, given.as_ref())?
                }
                (_, Some(g)) => graph_mixer(&g, &nodes, None)?,
                (_, None) => unreachable!("a fixed topology has a graph"),
            },
            Method::ParameterServer => Mixer::Server {
                model: model.clone(),
                rule: None,
                skipped: 0,
            },
            Method::RobustParameterServer => Mixer::Server {
                model: model.clone(),
                rule: Some(Box::new(
                    Aggregator::new(&s.engine.aggregation, model.len())
                        .map_err(|e| Error::Reference(format!("engine.aggregation: {e}")))?,
                )),
                skipped: 0,
            },
            Method::AllReduce => Mixer::AllReduce,
        };
        let test = simulation::test_set(split.test, s);
        Ok(Reference {
            links: Links::new(&s.network, s.nodes + 1, s.seed),
            model_bytes: wire::max_update_len(model.len()),
            test,
            threads: threads.max(1),
            nodes,
            trainers,
            compute,
            mixer,
            now: Duration::ZERO,
            round: 0,
            bytes_sent: 0,
            transfers: 0,
            samples: 0,
            train_wall: Duration::ZERO,
            train_cpu: Duration::ZERO,
            eval_wall: Duration::ZERO,
            started: Instant::now(),
            rows: Vec::new(),
            learning,
            scenario,
        })
    }

    /// One round: every node trains, the models are combined, and the barrier moves the clock
    /// to the last arrival.
    fn round(&mut self) {
        let start = Instant::now();
        let trained = pool::train(
            self.trainers.iter_mut().collect(),
            self.learning.local_steps,
            self.threads,
        );
        self.train_wall += start.elapsed();
        self.train_cpu += trained.iter().map(|t| t.elapsed).sum::<Duration>();
        self.samples += trained.iter().map(|t| t.samples).sum::<u64>();
        let ready: Vec<Duration> = self.compute.iter().map(|&c| self.now + c).collect();
        let mut end = ready.iter().copied().max().unwrap_or(self.now);
        let host = |p: usize, nodes: &[usize]| nodes[p];
        let server = self.scenario.nodes;
        let bytes = self.model_bytes;
        let m = self.nodes.len();
        let dim = self.learning.arch.num_params();
        self.round += 1;
        let mut sent = 0u64;
        let mixed: Vec<Vec<f32>> = {
            let models: Vec<&[f32]> = self.trainers.iter().map(Trainer::params).collect();
            match &mut self.mixer {
                Mixer::Graph { out, rows } => {
                    for (p, to) in out.iter().enumerate() {
                        for &q in to {
                            end =
                                end.max(send(&mut self.links, &self.nodes, ready[p], p, q, bytes));
                            sent += 1;
                        }
                    }
                    combine(rows, &models)
                }
                Mixer::Epidemic { s, candidates } => {
                    let mut rng = links::rng(self.scenario.seed, STREAM, self.round);
                    let mut received: Vec<Vec<usize>> = (0..m).map(|p| vec![p]).collect();
                    for (p, c) in candidates.iter().enumerate() {
                        for q in topology::sample_peers(c, *s, &mut rng) {
                            end =
                                end.max(send(&mut self.links, &self.nodes, ready[p], p, q, bytes));
                            sent += 1;
                            received[q].push(p);
                        }
                    }
                    received
                        .iter()
                        .map(|from| {
                            let inputs: Vec<&[f32]> = from.iter().map(|&q| models[q]).collect();
                            let mut x = vec![0.0; dim];
                            attack::mean(&inputs, &mut x);
                            x
                        })
                        .collect()
                }
                Mixer::Server {
                    model,
                    rule,
                    skipped,
                } => {
                    let mut arrived = Duration::ZERO;
                    for (p, &at) in ready.iter().enumerate() {
                        arrived = arrived.max(self.links.arrival(
                            at,
                            host(p, &self.nodes),
                            server,
                            bytes,
                        ));
                    }
                    let mut next = vec![0.0; dim];
                    match rule {
                        None => attack::mean(&models, &mut next),
                        Some(rule) => {
                            let mut rng = links::rng(self.scenario.seed, STREAM, self.round);
                            if rule
                                .aggregate(model, &models, &[], &mut rng, &mut next)
                                .is_err()
                            {
                                *skipped += 1;
                                next.copy_from_slice(model);
                            }
                        }
                    }
                    *model = next;
                    for p in 0..m {
                        end = end.max(self.links.arrival(
                            arrived,
                            server,
                            host(p, &self.nodes),
                            bytes,
                        ));
                    }
                    sent += 2 * m as u64;
                    vec![model.clone(); m]
                }
                Mixer::AllReduce => {
                    // Reduce-scatter then all-gather: 2(m - 1) steps in lockstep, each node
                    // passing one m-th of the model to the next on the ring.
                    let chunk = bytes.div_ceil(m);
                    let mut t = end;
                    for _ in 0..2 * (m - 1) {
                        let mut step = t;
                        for p in 0..m {
                            let to = host((p + 1) % m, &self.nodes);
                            step = step.max(self.links.arrival(t, host(p, &self.nodes), to, chunk));
                        }
                        t = step;
                    }
                    end = t;
                    self.bytes_sent += (2 * (m - 1) * m * chunk) as u64;
                    let mut x = vec![0.0; dim];
                    attack::mean(&models, &mut x);
                    vec![x; m]
                }
            }
        };
        self.transfers += sent;
        self.bytes_sent += sent * bytes as u64;
        for (t, x) in self.trainers.iter_mut().zip(&mixed) {
            t.set_params(x).expect("a mix keeps the model's dimension");
        }
        self.now = end;
    }

    /// Evaluates the nodes now and appends a row.
    fn evaluate(&mut self) {
        let start = Instant::now();
        let models: Vec<ModelView> = self
            .trainers
            .iter()
            .map(|t| ModelView::Params(t.params()))
            .collect();
        let a = assess(
            &models,
            &Sampling {
                size: self.scenario.eval.sample,
                seed: self.scenario.seed,
                point: self.rows.len(),
            },
            &self.learning,
            &self.test,
            self.threads,
        );
        self.eval_wall += start.elapsed();
        self.rows.push(Row {
            point: self.rows.len(),
            virtual_s: self.now.as_secs_f64(),
            wall_s: self.started.elapsed().as_secs_f64(),
            round_min: self.round,
            round_mean: self.round as f64,
            round_max: self.round,
            online: self.nodes.len(),
            evaluated: a.evaluated,
            acc_mean: a.acc_mean,
            acc_worst: a.acc_worst,
            acc_best: a.acc_best,
            acc_average: a.acc_average,
            loss_mean: a.loss_mean,
            consensus: a.consensus,
            bytes_sent: self.bytes_sent,
            dropped: 0,
            rejected: vec![0; Rejection::ALL.len()],
            clipped_fraction: 0.0,
            byzantine_share: 0.0,
            bans_of_byzantine: 0,
            bans_of_honest: 0,
            samples: self.samples,
            screen_pulled_in: 0,
            refused_busy: 0,
            redrawn: 0,
            retried: 0,
        });
    }

    fn report(&self, threads: usize) -> Report {
        let last = self
            .rows
            .last()
            .cloned()
            .expect("the run evaluates at the end");
        let rss = peak_rss_bytes();
        let skipped = match self.mixer {
            Mixer::Server { skipped, .. } => skipped,
            _ => 0,
        };
        Report {
            summary: Summary {
                name: self.scenario.name.clone(),
                method: self.scenario.method.name(),
                seed: self.scenario.seed,
                nodes: self.scenario.nodes,
                byzantine: self.scenario.nodes - self.nodes.len(),
                model_params: self.learning.arch.num_params(),
                codec: "f32".into(),
                bytes_per_node_round: crate::report::bytes_per_node_round(
                    &last,
                    self.scenario.nodes,
                ),
                threads,
                virtual_s: self.now.as_secs_f64(),
                wall_s: self.started.elapsed().as_secs_f64(),
                events: self.round,
                delivered: self.transfers,
                gossip_duplicates: 0,
                from_banned: 0,
                train_jobs: self.round * self.nodes.len() as u64,
                train_batches: self.round,
                samples: self.samples,
                train_samples_per_s: self.samples as f64 / self.train_wall.as_secs_f64().max(1e-9),
                train_wall_s: self.train_wall.as_secs_f64(),
                train_cpu_s: self.train_cpu.as_secs_f64(),
                eval_wall_s: self.eval_wall.as_secs_f64(),
                peak_rss_bytes: rss,
                rss_per_node_bytes: rss / self.scenario.nodes.max(1) as u64,
                rejected: last.rejected_by_reason(),
                last,
                restarts: Vec::new(),
                honest_bans_total: 0,
                unbans: 0,
                skipped_mixes: skipped,
            },
            rows: self.rows.clone(),
            scenario_toml: self.scenario.to_toml(),
            splits: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::links::stream;

    fn rows(m: &Mixer) -> &[Vec<(usize, f64)>] {
        match m {
            Mixer::Graph { rows, .. } => rows,
            _ => panic!("a graph mixer"),
        }
    }

    /// An edge list's weights: D-PSGD on the honest nodes mixes with them, each node keeping
    /// the weight of a neighbour left out (as a protocol node keeps a silent neighbour's).
    #[test]
    fn d_psgd_mixes_with_an_edge_lists_weights() {
        let text = "0 1 0.25\n1 2 0.5\n2 0 0.125\n";
        let (g, w) = murmur_protocol::topology::parse_weighted_edge_list(text, 3).unwrap();
        let w = w.unwrap();
        let all = graph_mixer(&g, &[0, 1, 2], Some(&w)).unwrap();
        assert_eq!(
            rows(&all)[1],
            vec![(0, 0.25), (1, 0.25), (2, 0.5)],
            "the file's row"
        );
        // Node 2 does not run: nodes 0 and 1 keep its weights.
        let two = graph_mixer(&g, &[0, 1], Some(&w)).unwrap();
        assert_eq!(
            rows(&two),
            &[vec![(0, 0.75), (1, 0.25)], vec![(0, 0.25), (1, 0.75)]]
        );
    }

    #[test]
    fn d_psgd_keeps_the_average_on_the_graph_the_honest_nodes_induce() {
        let mut rng = links::rng(1, stream::CONNECTIONS, 0);
        let ring = Graph::build(&Topology::Ring, 6, &mut rng).unwrap();
        // Node 2 does not run: the others form a path 0-1, 3-4-5-0.
        let nodes = [0, 1, 3, 4, 5];
        let m = graph_mixer(&ring, &nodes, None).unwrap();
        let Mixer::Graph { out, .. } = &m else {
            panic!("a graph mixer")
        };
        assert_eq!(
            out[1],
            vec![0],
            "node 1 sends only to node 0 once node 2 is gone"
        );
        let models: Vec<Vec<f32>> = (0..5).map(|i| vec![i as f32, (i * i) as f32]).collect();
        let refs: Vec<&[f32]> = models.iter().map(Vec::as_slice).collect();
        let mut before = vec![0.0; 2];
        attack::mean(&refs, &mut before);
        let mut x = models.clone();
        for _ in 0..200 {
            let next = {
                let refs: Vec<&[f32]> = x.iter().map(Vec::as_slice).collect();
                combine(rows(&m), &refs)
            };
            x = next;
            let refs: Vec<&[f32]> = x.iter().map(Vec::as_slice).collect();
            let mut now = vec![0.0; 2];
            attack::mean(&refs, &mut now);
            for (a, b) in now.iter().zip(&before) {
                assert!(
                    (a - b).abs() < 1e-4,
                    "the average moved: {now:?} vs {before:?}"
                );
            }
        }
        for xi in &x {
            for (a, b) in xi.iter().zip(&before) {
                assert!((a - b).abs() < 1e-3, "no consensus after 200 mixes: {x:?}");
            }
        }
    }

    #[test]
    fn a_directed_graph_mixes_only_when_its_uniform_weights_keep_the_average() {
        let mut rng = links::rng(1, stream::CONNECTIONS, 0);
        let exp = Graph::build(&Topology::Exponential, 8, &mut rng).unwrap();
        let all: Vec<usize> = (0..8).collect();
        let m = graph_mixer(&exp, &all, None).unwrap();
        for row in rows(&m) {
            assert_eq!(row.len(), 4, "itself and 3 in-neighbours, weight 1/4 each");
            assert!(row.iter().all(|&(_, w)| (w - 0.25).abs() < 1e-12));
        }
        // Without node 7 the graph is no longer regular: refused, with the reason.
        let e = graph_mixer(&exp, &all[..7], None).unwrap_err().to_string();
        assert!(e.contains("doubly stochastic"), "{e}");
    }
}
