//! A deterministic test harness: several engines, a virtual clock, fixed link latency and a toy
//! objective. Node `i` minimises `|x - c_i|^2` by gradient steps; the honest optimum of the
//! network is the mean of the honest `c_i`.

use super::{Adversary, Config, Engine, Input, Output, Setup};
use crate::sign::{Identity, PeerKey, RunId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

#[derive(Debug)]
enum Event {
    Input(Input),
    TrainDone { round: u64 },
}

/// N engines and the events between them.
#[derive(Debug)]
pub(crate) struct Harness {
    pub engines: Vec<Engine>,
    pub targets: Vec<Vec<f32>>,
    pub byzantine: Vec<bool>,
    trainer: Vec<Vec<f32>>,
    index: BTreeMap<PeerKey, usize>,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    now: Duration,
    latency: Duration,
    compute: Duration,
    local_steps: usize,
    lr: f32,
    armed: Vec<Option<Duration>>,
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

impl Harness {
    /// `targets[i]` is node i's optimum; `adversaries[i]` makes node i Byzantine.
    pub fn new(
        config: &Config,
        targets: Vec<Vec<f32>>,
        adversaries: Vec<Option<Adversary>>,
        seed: u64,
    ) -> Harness {
        let n = targets.len();
        let dim = targets[0].len();
        let mut engines = Vec::new();
        let mut index = BTreeMap::new();
        for (i, adversary) in adversaries.iter().enumerate() {
            let setup = Setup {
                identity: identity(i),
                run: run_id(),
                config: config.clone(),
                model: vec![0.0; dim],
                round: 0,
                seed: seed.wrapping_mul(1000).wrapping_add(i as u64),
                adversary: adversary.clone(),
            };
            let engine = Engine::new(setup).expect("valid setup");
            index.insert(engine.id(), i);
            engines.push(engine);
        }
        let mut h = Harness {
            byzantine: adversaries.iter().map(Option::is_some).collect(),
            engines,
            targets,
            trainer: vec![vec![0.0; dim]; n],
            index,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            now: Duration::ZERO,
            latency: Duration::from_millis(10),
            compute: Duration::from_millis(100),
            local_steps: 2,
            lr: 0.1,
            armed: vec![None; n],
        };
        let keys: Vec<PeerKey> = h.engines.iter().map(Engine::id).collect();
        for i in 0..n {
            for &k in &keys {
                h.engines[i].handle(Duration::ZERO, Input::PeerUp { peer: k });
            }
            h.drain(i);
        }
        h
    }

    fn push(&mut self, at: Duration, node: usize, event: Event) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((at, self.seq, node)));
    }

    fn drain(&mut self, i: usize) {
        while let Some(out) = self.engines[i].poll() {
            match out {
                Output::Train { round } => {
                    let at = self.now + self.compute;
                    self.push(at, i, Event::TrainDone { round });
                }
                Output::SetModel { params } => self.trainer[i] = params,
                Output::Send { to, bytes } => {
                    if let Some(&j) = self.index.get(&to) {
                        let from = self.engines[i].id();
                        let at = self.now + self.latency;
                        self.push(at, j, Event::Input(Input::UpdateReceived { from, bytes }));
                    }
                }
                Output::Broadcast { bytes } => {
                    let from = self.engines[i].id();
                    for j in 0..self.engines.len() {
                        if j != i {
                            let at = self.now + self.latency;
                            let input = Input::GossipReceived {
                                from,
                                bytes: bytes.clone(),
                            };
                            self.push(at, j, Event::Input(input));
                        }
                    }
                }
                Output::Penalize { .. }
                | Output::Ban { .. }
                | Output::Mixed { .. }
                | Output::Finished => {}
            }
        }
        if let Some(deadline) = self.engines[i].poll_timeout()
            && self.armed[i] != Some(deadline)
        {
            self.armed[i] = Some(deadline);
            self.push(deadline, i, Event::Input(Input::Tick));
        }
    }

    /// One local training job: `local_steps` gradient steps on `|x - c_i|^2` with a learning rate
    /// that decays with the round, so decentralised SGD converges to the exact optimum.
    fn train(&mut self, i: usize, round: u64) -> Vec<f32> {
        let lr = self.lr / (1.0 + round as f32 / 5.0);
        let mut x = self.trainer[i].clone();
        for _ in 0..self.local_steps {
            for (xv, c) in x.iter_mut().zip(&self.targets[i]) {
                *xv -= lr * 2.0 * (*xv - c);
            }
        }
        x
    }

    /// Runs until every honest engine finished or `limit` virtual time passed.
    pub fn run(&mut self, limit: Duration) {
        while let Some(Reverse((at, seq, node))) = self.queue.pop() {
            if at > limit {
                break;
            }
            self.now = at;
            let event = self.events.remove(&seq).expect("event stored");
            let input = match event {
                Event::Input(input) => input,
                Event::TrainDone { round } => {
                    let params = self.train(node, round);
                    Input::Trained {
                        round,
                        params,
                        samples: self.local_steps as u64,
                    }
                }
            };
            self.engines[node].handle(at, input);
            self.drain(node);
            if self.honest().all(|i| self.engines[i].is_finished()) {
                break;
            }
        }
    }

    pub fn honest(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.engines.len()).filter(|i| !self.byzantine[*i])
    }

    /// The mean of the honest nodes' optima.
    pub fn honest_optimum(&self) -> Vec<f32> {
        let honest: Vec<usize> = self.honest().collect();
        let dim = self.targets[0].len();
        (0..dim)
            .map(|k| honest.iter().map(|&i| self.targets[i][k]).sum::<f32>() / honest.len() as f32)
            .collect()
    }

    /// The largest distance of an honest model from `point`.
    pub fn worst_distance(&self, point: &[f32]) -> f32 {
        self.honest()
            .map(|i| {
                let m = self.engines[i].model();
                m.iter()
                    .zip(point)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
                    .sqrt()
            })
            .fold(0.0, f32::max)
    }
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
