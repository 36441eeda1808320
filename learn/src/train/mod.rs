//! Local training: a synchronous [`Trainer`] usable from any thread, and a [`Worker`] that runs
//! one on a dedicated thread behind bounded channels.
//!
//! A trainer owns its parameters (one flat `Vec<f32>`, see [`crate::model`]), its optimiser
//! state, a [`Shard`] of a shared dataset and a seeded batch generator. Each local step builds
//! the model on the burn device from the flat parameters, computes the mean cross-entropy of one
//! batch, back-propagates, and applies the optimiser to the flat vector ([`optim`]). Between
//! calls it holds no burn state, so an idle trainer costs its parameters and optimiser state
//! plus its shard's index list, not the dataset.
//!
//! Determinism: with the same seed, config, node index and sequence of calls, a trainer
//! produces the same bits on any thread (batch order from ChaCha8, see
//! [`crate::data::stream`]; model initialisation from [`Arch::init`]; burn's CPU backends are
//! single-threaded here).

pub mod bench;
mod config;
pub mod optim;
mod sparse;
mod worker;

use std::time::{Duration, Instant};

use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

pub use config::{Backend, ConfigError, Setup, Spec};
pub use worker::{Command, Reply, Worker, WorkerGone};

use crate::data::{Dataset, Shard, stream};
use crate::model::{Arch, ModelError, Net};
use optim::{LrSchedule, Outer, Rule, State};

/// What a call to [`Trainer::train_steps`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Steps taken (0 if the shard is empty).
    pub steps: usize,
    /// Samples processed (steps x batch size, or fewer for a shard smaller than a batch).
    pub samples: usize,
    /// Mean training loss over the steps (NaN if no step was taken).
    pub mean_loss: f32,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Wall time spent.
    pub elapsed: Duration,
}

impl StepReport {
    /// Training throughput in samples per second of wall time.
    pub fn samples_per_sec(&self) -> f64 {
        self.samples as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Quality of a model on a dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eval {
    /// Fraction of samples whose highest logit is the label's, in [0, 1].
    pub accuracy: f64,
    /// Mean cross-entropy (natural log).
    pub loss: f64,
    /// Samples evaluated.
    pub samples: usize,
}

/// Samples per forward pass in [`evaluate`].
const EVAL_CHUNK: usize = 1000;

/// One node's learner. See the module documentation.
#[derive(Debug)]
pub struct Trainer {
    arch: Arch,
    device: Device,
    params: Vec<f32>,
    rule: Rule,
    schedule: LrSchedule,
    state: State,
    /// The outer optimiser, and the model the current round started from (its anchor; empty
    /// without an outer optimiser).
    outer: Option<Outer>,
    anchor: Vec<f32>,
    shard: Shard,
    batch_size: usize,
    rng: ChaCha8Rng,
    /// The shard's indices in this epoch's order; `cursor` is the next unused position.
    order: Vec<u32>,
    cursor: usize,
    /// Whether [`Trainer::release`] freed the parameters and optimiser state.
    released: bool,
    /// Whether the optimiser flushes subnormal moments ([`Rule::update`]): from the
    /// first look at the moments, one every [`SUBNORMAL_LOOK_EVERY`] jobs, that finds one.
    flush: bool,
    /// Jobs run, for those looks.
    jobs: u64,
}

/// Jobs between two looks for subnormal moments: a look reads the whole optimiser state, so
/// it is rare enough to cost a job of one step little, and a trainer slowed by subnormal
/// moments runs at most this many jobs so.
const SUBNORMAL_LOOK_EVERY: u64 = 16;

impl Trainer {
    /// A trainer for node `node` of a run with `seed`: parameters from [`Arch::init`], zero
    /// optimiser state, batches drawn from `shard` with stream [`stream::BATCHES`]`/node`.
    pub fn new(setup: &Setup, shard: Shard, node: u32, seed: u64) -> Result<Self, ConfigError> {
        Self::with_params(setup, shard, node, seed, setup.arch.init(seed))
    }

    /// A trainer as [`Trainer::new`] builds it, but without parameters or optimiser state until
    /// it is given a model ([`Trainer::set_params`], or a mix): for a driver that holds the
    /// initial model already (each of the simulator's engines holds its own), so that the
    /// initial parameters are neither drawn again nor held twice, and nothing of a model's
    /// size is allocated before the node's first job. Given the initial model, it trains to the
    /// same bits as a trainer from [`Trainer::new`]. A trainer with an outer optimiser steps from
    /// its round's starting model, and a mix given before any model would have none to step
    /// from: it is built as [`Trainer::new`] builds it.
    pub fn awaiting_model(
        setup: &Setup,
        shard: Shard,
        node: u32,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        if setup.outer.is_some() {
            return Self::new(setup, shard, node, seed);
        }
        Self::with_params(setup, shard, node, seed, Vec::new())
    }

    /// A trainer from `params`; without them (empty), released: its optimiser state is made
    /// when it is given a model ([`Trainer::revive`]).
    fn with_params(
        setup: &Setup,
        shard: Shard,
        node: u32,
        seed: u64,
        params: Vec<f32>,
    ) -> Result<Self, ConfigError> {
        let device = setup.backend.device()?.autodiff();
        let mut state = State::new(&setup.rule, params.len());
        let anchor = match setup.outer {
            Some(_) => {
                state.outer = vec![0.0; params.len()];
                params.clone()
            }
            None => Vec::new(),
        };
        let order = shard.indices.to_vec();
        let params_empty = params.is_empty();
        Ok(Self {
            outer: setup.outer,
            anchor,
            arch: setup.arch.clone(),
            device,
            params,
            rule: setup.rule,
            schedule: setup.schedule,
            state,
            shard,
            batch_size: setup.batch_size,
            rng: stream::rng(seed, stream::BATCHES, node),
            cursor: order.len(),
            order,
            released: params_empty,
            flush: false,
            jobs: 0,
        })
    }

    /// The model architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Current parameters, in flat order.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Copies the current parameters into `out` (reusing its allocation).
    pub fn params_into(&self, out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(&self.params);
    }

    /// Hands the parameters over, leaving none: a simulator whose engine holds the trained
    /// model until the mix keeps one copy, not two. The trainer takes no step until
    /// [`Trainer::adopt_mix`], [`Trainer::apply_mix`] or [`Trainer::set_params`] gives it a
    /// model again.
    pub fn take_params(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.params)
    }

    /// Frees the parameters and the optimiser state of a trainer that trains no more (in the
    /// simulator, a node that finished its rounds). Given a model again
    /// ([`Trainer::set_params`], or a mix, which then becomes the model whole: there is no
    /// round start for an outer optimiser to step from), it trains on with its optimiser state
    /// from zero.
    pub fn release(&mut self) {
        self.params = Vec::new();
        self.anchor = Vec::new();
        self.state = State {
            m: Vec::new(),
            v: Vec::new(),
            outer: Vec::new(),
            step: self.state.step,
        };
        self.released = true;
    }

    /// Restores a released trainer's optimiser state (zero) before it takes a model again.
    fn revive(&mut self) {
        if std::mem::take(&mut self.released) {
            let dim = self.arch.num_params();
            let step = self.state.step;
            self.state = State::new(&self.rule, dim);
            self.state.step = step;
            if self.outer.is_some() {
                self.state.outer = vec![0.0; dim];
                self.anchor = vec![0.0; dim];
            }
        }
    }

    /// Whether the trainer has an outer optimiser: then a mix is a target it steps towards,
    /// not the model it continues from (see [`Trainer::apply_mix`]).
    pub fn has_outer(&self) -> bool {
        self.outer.is_some()
    }

    /// [`Trainer::apply_mix`] that keeps `mixed`'s buffer rather than copying it.
    pub fn adopt_mix(&mut self, mixed: Vec<f32>) -> Result<(), ModelError> {
        if self.released {
            return self.set_params(&mixed);
        }
        self.arch.check_len(&mixed)?;
        if self.outer.is_some() {
            return self.apply_mix(&mixed);
        }
        self.params = mixed;
        Ok(())
    }

    /// Replaces the parameters (a model to start from: a join, a checkpoint). The optimiser
    /// state is kept; with an outer optimiser the next round starts from `params`.
    pub fn set_params(&mut self, params: &[f32]) -> Result<(), ModelError> {
        self.arch.check_len(params)?;
        self.revive();
        self.params.clear();
        self.params.extend_from_slice(params);
        if self.outer.is_some() {
            self.anchor.copy_from_slice(params);
        }
        Ok(())
    }

    /// Continues from a round's mix: the mix replaces the parameters, or, with an outer
    /// optimiser, the outer step from the round's starting model towards the mix gives them
    /// (see [`Outer::step`]).
    pub fn apply_mix(&mut self, mixed: &[f32]) -> Result<(), ModelError> {
        // Without an outer optimiser, or released (no round start to step from), the mix is
        // the model.
        let Some(outer) = self.outer.filter(|_| !self.released) else {
            return self.set_params(mixed);
        };
        self.arch.check_len(mixed)?;
        outer.step(&mut self.anchor, &mut self.state.outer, mixed);
        self.params.clear();
        self.params.extend_from_slice(&self.anchor);
        Ok(())
    }

    /// The optimiser state (for checkpoints).
    pub fn optimizer_state(&self) -> &State {
        &self.state
    }

    /// Replaces the optimiser state (from a checkpoint).
    pub fn set_optimizer_state(&mut self, state: State) -> Result<(), ModelError> {
        let dim = self.arch.num_params();
        let mut fresh = State::new(&self.rule, dim);
        if self.outer.is_some() {
            fresh.outer = vec![0.0; dim];
        }
        for (found, expected) in [
            (&state.m, &fresh.m),
            (&state.v, &fresh.v),
            (&state.outer, &fresh.outer),
        ] {
            if found.len() != expected.len() {
                return Err(ModelError::Length {
                    expected: expected.len(),
                    found: found.len(),
                });
            }
        }
        self.state = state;
        Ok(())
    }

    /// The node's shard.
    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// The next batch of sample indices: consecutive positions of a per-epoch shuffle, the
    /// order reshuffled whenever it runs out. A shard smaller than the batch size gives
    /// batches of the whole shard.
    fn next_batch(&mut self) -> Vec<u32> {
        let b = self.batch_size.min(self.order.len());
        let mut batch = Vec::with_capacity(b);
        while batch.len() < b {
            if self.cursor == self.order.len() {
                self.order.shuffle(&mut self.rng);
                self.cursor = 0;
            }
            let take = (b - batch.len()).min(self.order.len() - self.cursor);
            batch.extend_from_slice(&self.order[self.cursor..self.cursor + take]);
            self.cursor += take;
        }
        batch
    }

    /// Takes `steps` optimiser steps on batches of the shard.
    pub fn train_steps(&mut self, steps: usize) -> StepReport {
        self.run_steps(None, steps)
    }

    /// [`Trainer::set_params`] with `start`, then [`Trainer::train_steps`], to the same bits
    /// but without copying `start` in first: the first step reads it and writes its result into
    /// the trainer's own parameters (for a driver whose trainer starts from a model held
    /// elsewhere, the simulator's engine's mix). With an outer optimiser, or no step to take,
    /// it copies `start` in first all the same.
    pub fn train_steps_from(
        &mut self,
        start: &[f32],
        steps: usize,
    ) -> Result<StepReport, ModelError> {
        if self.outer.is_some() || steps == 0 || self.shard.is_empty() {
            self.set_params(start)?;
            return Ok(self.train_steps(steps));
        }
        self.arch.check_len(start)?;
        self.revive();
        Ok(self.run_steps(Some(start), steps))
    }

    /// Takes `steps` optimiser steps, the first from `from` if given (see
    /// [`Trainer::train_steps_from`]), else from the trainer's parameters.
    fn run_steps(&mut self, mut from: Option<&[f32]>, steps: usize) -> StepReport {
        let start = Instant::now();
        let mut report = StepReport {
            steps: 0,
            samples: 0,
            mean_loss: f32::NAN,
            lr: self.schedule.at(self.state.step),
            elapsed: Duration::ZERO,
        };
        if self.shard.is_empty() {
            report.elapsed = start.elapsed();
            return report;
        }
        let mut loss_sum = 0.0f64;
        let classes = self.arch.classes;
        let dim = self.arch.input.len();
        for _ in 0..steps {
            let batch = self.next_batch();
            let b = batch.len();
            let mut x = Vec::with_capacity(b * dim);
            let mut y = vec![0f32; b * classes];
            for (row, &i) in batch.iter().enumerate() {
                x.extend_from_slice(self.shard.data.row(i as usize));
                y[row * classes + self.shard.data.label(i as usize) as usize] = 1.0;
            }
            let net = Net::from_flat(&self.arch, from.unwrap_or(&self.params), &self.device)
                .expect("parameters have the architecture's length");
            let x = Tensor::<2>::from_data(TensorData::new(x, [b, dim]), &self.device);
            let y = Tensor::<2>::from_data(TensorData::new(y, [b, classes]), &self.device);
            let loss = Net::cross_entropy(net.forward(x), y);
            let mut grads = loss.backward();
            loss_sum += f64::from(loss.into_scalar::<f32>());

            let lr = self.schedule.at(self.state.step);
            self.state.step += 1;
            let t = self.state.step;
            let (rule, state, flush, step_lr) =
                (&self.rule, &mut self.state, self.flush, lr as f32);
            match from.take() {
                None => net.for_each_grad(&mut grads, &mut self.params, |offset, p, g| {
                    if flush {
                        rule.update::<true>(state, offset, p, g, step_lr, t)
                    } else {
                        rule.update::<false>(state, offset, p, g, step_lr, t)
                    }
                }),
                Some(from) => {
                    let (params, len) = (&mut self.params, from.len());
                    params.clear();
                    params.reserve_exact(len);
                    net.for_each_grad_at(&mut grads, |offset, g| {
                        let from = &from[offset..offset + g.len()];
                        if flush {
                            rule.update_into::<true>(state, offset, from, params, g, step_lr, t)
                        } else {
                            rule.update_into::<false>(state, offset, from, params, g, step_lr, t)
                        }
                    });
                    debug_assert_eq!(params.len(), len, "every tensor updated, in flat order");
                }
            }
            report.steps += 1;
            report.samples += b;
            report.lr = lr;
        }
        report.mean_loss = (loss_sum / report.steps.max(1) as f64) as f32;
        self.jobs += 1;
        if !self.flush && self.jobs.is_multiple_of(SUBNORMAL_LOOK_EVERY) {
            self.flush = optim::holds_subnormal(&self.state);
        }
        report.elapsed = start.elapsed();
        report
    }

    /// Accuracy and loss of the current parameters on `data`.
    pub fn evaluate(&self, data: &Dataset) -> Eval {
        evaluate(
            &self.arch,
            &self.params,
            data,
            &self.device.clone().without_autodiff(),
        )
    }
}

/// Accuracy and mean cross-entropy of the model `params` on `data`, computed on `device`
/// (forward only). Ties between logits count as wrong unless the label's logit comes first.
///
/// On the CPU backend a dense model (no convolutions) with finite parameters, on data whose
/// features are mostly zero, is evaluated by a product that skips the zero inputs (see
/// `sparse.rs`): the same figures up to the order of the sums, for a fraction of the work.
/// Otherwise burn's forward pass runs on chunks of `EVAL_CHUNK` (1,000) samples.
///
/// # Panics
/// If `params` is not the architecture's length or `data`'s samples are not its input's.
pub fn evaluate(arch: &Arch, params: &[f32], data: &Dataset, device: &Device) -> Eval {
    Evaluation::new()
        .part(arch, params, data, device, usize::MAX)
        .expect("every sample in one part")
}

/// An evaluation ([`evaluate`]) taken a part at a time, so that a thread evaluating in the
/// background can take more urgent work between two parts. The parts continue one sum over the
/// samples in their order: the figures are the same bits as [`evaluate`]'s, however the samples
/// are split. A model the path that skips zero inputs does not take is evaluated in one part.
pub struct Evaluation {
    path: Path,
    /// Samples evaluated so far.
    next: usize,
    correct: usize,
    loss: f64,
}

/// How an [`Evaluation`] computes: decided by its first part.
enum Path {
    Undecided,
    /// Skipping zero inputs, the model's layers by columns (see `sparse.rs`).
    Sparse(Vec<sparse::Columns>),
}

impl std::fmt::Debug for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluation")
            .field("next", &self.next)
            .field("correct", &self.correct)
            .field("loss", &self.loss)
            .finish_non_exhaustive()
    }
}

impl Default for Evaluation {
    fn default() -> Self {
        Self::new()
    }
}

impl Evaluation {
    /// An evaluation not started.
    pub fn new() -> Self {
        Evaluation {
            path: Path::Undecided,
            next: 0,
            correct: 0,
            loss: 0.0,
        }
    }

    /// Evaluates `params` on up to `samples` more of `data`'s samples (at least one); the figures
    /// once every sample is. Every part must be given the same model, data and device.
    ///
    /// # Panics
    /// As [`evaluate`].
    pub fn part(
        &mut self,
        arch: &Arch,
        params: &[f32],
        data: &Dataset,
        device: &Device,
        samples: usize,
    ) -> Option<Eval> {
        if let Path::Undecided = self.path {
            arch.check_len(params)
                .expect("parameters have the architecture's length");
            assert_eq!(
                data.shape().len(),
                arch.input.len(),
                "samples of the model's input size"
            );
            match skips_zeros(arch, params, data, device) {
                Some(_) => self.path = Path::Sparse(sparse::columns(arch, params)),
                None => return Some(evaluate_dense(arch, params, data, device)),
            }
        }
        let Path::Sparse(layers) = &self.path else {
            unreachable!("decided above")
        };
        let rows = data.sparse_rows().expect("the path was decided on it");
        let end = self.next.saturating_add(samples.max(1)).min(data.len());
        (self.correct, self.loss) = sparse::forward(
            layers,
            data,
            rows,
            self.next..end,
            (self.correct, self.loss),
        );
        self.next = end;
        (end == data.len()).then(|| Eval::from_sums(self.correct, self.loss, data.len()))
    }
}

/// `data`'s sparse rows if [`evaluate`] takes the path that skips zero inputs: a dense model
/// with finite parameters, on the CPU backend, on data that is mostly zero.
fn skips_zeros<'a>(
    arch: &Arch,
    params: &[f32],
    data: &'a Dataset,
    device: &Device,
) -> Option<&'a crate::data::SparseRows> {
    let eligible =
        arch.convs.is_empty() && *device == Device::flex() && params.iter().all(|p| p.is_finite());
    eligible.then(|| data.sparse_rows()).flatten()
}

/// [`evaluate`] by burn's dense forward pass.
fn evaluate_dense(arch: &Arch, params: &[f32], data: &Dataset, device: &Device) -> Eval {
    let net =
        Net::from_flat(arch, params, device).expect("parameters have the architecture's length");
    let dim = arch.input.len();
    let classes = arch.classes;
    let (mut correct, mut loss) = (0usize, 0f64);
    let mut start = 0;
    while start < data.len() {
        let end = (start + EVAL_CHUNK).min(data.len());
        let mut x = Vec::with_capacity((end - start) * dim);
        for i in start..end {
            x.extend_from_slice(data.row(i));
        }
        let x = Tensor::<2>::from_data(TensorData::new(x, [end - start, dim]), device);
        let logits = net.forward(x).into_data();
        let logits = crate::model::f32s(&logits);
        for (row, i) in (start..end).enumerate() {
            let (l, right) = score(
                &logits[row * classes..(row + 1) * classes],
                data.label(i) as usize,
            );
            loss += l;
            correct += usize::from(right);
        }
        start = end;
    }
    Eval::from_sums(correct, loss, data.len())
}

impl Eval {
    /// The figures of `samples` samples, `correct` of them right, whose losses add up to `loss`.
    fn from_sums(correct: usize, loss: f64, samples: usize) -> Self {
        let n = samples.max(1) as f64;
        Eval {
            accuracy: correct as f64 / n,
            loss: loss / n,
            samples,
        }
    }
}

/// One sample's cross-entropy from its logits `z`, and whether its label's logit is the first
/// highest.
#[inline(always)]
fn score(z: &[f32], label: usize) -> (f64, bool) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = f64::from(max)
        + z.iter()
            .map(|&v| f64::from(v - max).exp())
            .sum::<f64>()
            .ln();
    let best = z
        .iter()
        .enumerate()
        .fold(0, |best, (k, &v)| if v > z[best] { k } else { best });
    (lse - f64::from(z[label]), best == label)
}
