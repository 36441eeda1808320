//! A toy world for the protocol's own multi-node tests: node `i` minimises `|x - c_i|^2` by
//! gradient steps, training takes a fixed time and every link a fixed latency. The honest optimum
//! of the network is the mean of the honest `c_i`.

use super::{Cluster, Gossip, Step, World};
use crate::engine::{Adversary, Config, ModelView, Setup};
use crate::sign::{Identity, RunId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// The toy objective and its clock. See the module documentation.
#[derive(Debug)]
pub(crate) struct Quadratic {
    /// Node `i`'s optimum.
    pub targets: Vec<Vec<f32>>,
    params: Vec<Vec<f32>>,
    jobs: Vec<u64>,
    pub compute: Duration,
    /// Node `i` trains for `compute + slower[i]` (none if the list is short).
    pub slower: Vec<Duration>,
    pub latency: Duration,
    pub local_steps: usize,
    pub lr: f32,
}

impl Quadratic {
    pub fn new(targets: Vec<Vec<f32>>) -> Self {
        let dim = targets[0].len();
        Quadratic {
            params: vec![vec![0.0; dim]; targets.len()],
            jobs: vec![0; targets.len()],
            targets,
            compute: Duration::from_millis(100),
            slower: Vec::new(),
            latency: Duration::from_millis(10),
            local_steps: 2,
            lr: 0.1,
        }
    }
}

impl Quadratic {
    /// Training jobs node `i` has run.
    pub fn jobs(&self, i: usize) -> u64 {
        self.jobs[i]
    }

    /// The model node `i` trains from (empty once it finished, until it is given one).
    pub fn params(&self, i: usize) -> &[f32] {
        &self.params[i]
    }
}

impl World for Quadratic {
    fn train_time(&mut self, node: usize) -> Duration {
        self.compute + self.slower.get(node).copied().unwrap_or_default()
    }

    /// `local_steps` gradient steps with a learning rate that decays with the node's jobs, so
    /// decentralised SGD converges to the exact optimum.
    fn train(&mut self, jobs: &[(usize, ModelView<'_>)]) {
        for &(i, _) in jobs {
            assert!(
                !self.params[i].is_empty(),
                "node {i} trains after it finished, and was given no model since"
            );
            self.jobs[i] += 1;
            let lr = self.lr / (1.0 + self.jobs[i] as f32 / 5.0);
            for _ in 0..self.local_steps {
                for (x, c) in self.params[i].iter_mut().zip(&self.targets[i]) {
                    *x -= lr * 2.0 * (*x - c);
                }
            }
        }
    }

    fn trained(&mut self, node: usize) -> (Vec<f32>, u64) {
        (self.params[node].clone(), self.local_steps as u64)
    }

    fn set_model(&mut self, node: usize, params: &[f32]) {
        self.params[node].clear();
        self.params[node].extend_from_slice(params);
    }

    /// Frees the node's model, as the simulator frees its trainer's.
    fn finished(&mut self, node: usize) {
        self.params[node] = Vec::new();
    }

    fn arrival(&mut self, now: Duration, _from: usize, _to: usize, _bytes: usize) -> Duration {
        now + self.latency
    }
}

pub(crate) fn run_id() -> RunId {
    RunId::derive(b"engine harness")
}

pub(crate) fn identity(i: usize) -> Identity {
    let mut secret = [0u8; 32];
    for (j, b) in secret.iter_mut().enumerate() {
        *b = (i as u8)
            .wrapping_mul(31)
            .wrapping_add(j as u8)
            .wrapping_mul(7)
            ^ 0x5a;
    }
    Identity::from_secret(secret)
}

/// The setup of toy node `i` with a model of `dim` zeros.
pub(crate) fn setup(i: usize, config: &Config, dim: usize, seed: u64) -> Setup {
    Setup {
        identity: identity(i),
        run: run_id(),
        config: config.clone(),
        model: vec![0.0; dim],
        seed,
        adversary: None,
        weights: Default::default(),
        members: None,
    }
}

/// Fully linked nodes with optima `targets`, `adversaries[i]` making node `i` Byzantine, all
/// started at time 0.
pub(crate) fn cluster(
    config: &Config,
    targets: Vec<Vec<f32>>,
    adversaries: Vec<Option<Adversary>>,
    seed: u64,
) -> Cluster<Quadratic> {
    let n = targets.len();
    let dim = targets[0].len();
    let mut c = Cluster::new(Quadratic::new(targets), seed, Gossip::default());
    for (i, adversary) in adversaries.into_iter().enumerate() {
        let setup = Setup {
            adversary,
            ..setup(i, config, dim, seed)
        };
        c.add(setup).expect("valid setup");
    }
    for a in 0..n {
        for b in a + 1..n {
            c.link(a, b);
        }
    }
    let all: Vec<usize> = (0..n).collect();
    c.start(&all, false);
    c
}

/// Runs until every honest node finished, or `limit` virtual time passed.
/// Returns every ban made on the way, as (node, banned peer), ended or not.
pub(crate) fn run(
    c: &mut Cluster<Quadratic>,
    honest: &[usize],
    limit: Duration,
) -> std::collections::BTreeSet<(usize, usize)> {
    let mut finished = vec![false; c.len()];
    let mut bans = std::collections::BTreeSet::new();
    while let Some(step) = c.step(limit) {
        match step {
            Step::Banned { node, peer, .. } => {
                bans.insert((node, peer));
            }
            Step::Finished { node } => {
                finished[node] = true;
                if honest.iter().all(|&i| finished[i]) {
                    break;
                }
            }
            _ => {}
        }
    }
    bans
}

/// Optima around `centre` with spread `spread`, from a seed.
pub(crate) fn targets(n: usize, dim: usize, centre: f32, spread: f32, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            (0..dim)
                .map(|_| centre + spread * (rng.random::<f32>() * 2.0 - 1.0))
                .collect()
        })
        .collect()
}

/// The mean of the optima of `nodes`.
pub(crate) fn optimum(world: &Quadratic, nodes: &[usize]) -> Vec<f32> {
    let dim = world.targets[0].len();
    (0..dim)
        .map(|k| nodes.iter().map(|&i| world.targets[i][k]).sum::<f32>() / nodes.len() as f32)
        .collect()
}

/// The largest distance of the models of `nodes` from `point`.
pub(crate) fn worst_distance(c: &Cluster<Quadratic>, nodes: &[usize], point: &[f32]) -> f32 {
    nodes
        .iter()
        .map(|&i| {
            c.engine(i)
                .model()
                .to_vec()
                .iter()
                .zip(point)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
                .sqrt()
        })
        .fold(0.0, f32::max)
}
