//! Measurements behind `murmur-node bench-train`: training throughput per backend, model and
//! batch size; the cost of flattening and writing back parameters; a full-MNIST training run.

use std::time::{Duration, Instant};

use super::{ConfigError, Eval, Setup, Spec, Trainer, optim};
use crate::data::{self, Dataset, InputShape, Shard, Split};
use crate::model::{self, Arch, Net};

/// Training throughput of one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    /// Backend measured.
    pub backend: super::Backend,
    /// Model config.
    pub model: model::Spec,
    /// Model parameters.
    pub params: usize,
    /// Batch size.
    pub batch: usize,
    /// Steps timed (after one warm-up call).
    pub steps: usize,
    /// Training samples per second.
    pub samples_per_sec: f64,
}

/// A learning setup for `model` on `data` with SGD (lr 0.05, momentum 0.9).
pub fn setup(
    backend: super::Backend,
    model: model::Spec,
    data: &Dataset,
    batch: usize,
) -> Result<Setup, ConfigError> {
    let spec = Spec {
        model,
        data: data::Spec::default(),
        partition: data::Partition::Iid,
        optimizer: optim::Spec::default(),
        batch_size: batch,
        local_steps: 1,
        outer: None,
        backend,
    };
    spec.validate(&Split {
        train: data.clone(),
        test: data.clone(),
    })
}

/// Trains on `data` in rounds of `round` steps until `min_time` has passed (after a warm-up
/// round) and reports samples per second.
pub fn throughput(
    backend: super::Backend,
    model: model::Spec,
    data: &Dataset,
    batch: usize,
    min_time: Duration,
) -> Result<Throughput, ConfigError> {
    let setup = setup(backend, model.clone(), data, batch)?;
    let mut trainer = Trainer::new(&setup, Shard::all(data.clone()), 0, 1)?;
    let round = 10;
    trainer.train_steps(round);
    let (mut steps, mut samples, mut elapsed) = (0, 0, Duration::ZERO);
    while elapsed < min_time {
        let r = trainer.train_steps(round);
        steps += r.steps;
        samples += r.samples;
        elapsed += r.elapsed;
    }
    Ok(Throughput {
        backend,
        model,
        params: setup.arch.num_params(),
        batch,
        steps,
        samples_per_sec: samples as f64 / elapsed.as_secs_f64(),
    })
}

/// Evaluation throughput of one model on one data set, by both forward passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalThroughput {
    /// Model parameters.
    pub params: usize,
    /// Samples per evaluation.
    pub samples: usize,
    /// Samples per second through the product that skips zero inputs, or `None` when it does
    /// not apply (the data is not mostly zero, or the model has convolutions).
    pub skipping_zeros: Option<f64>,
    /// Samples per second through burn's dense product.
    pub dense: f64,
}

/// Evaluates the initial `model` on `data` (the flex backend) by both forward passes in turn,
/// each for at least `min_time / 2` after one untimed call, so that the machine's other load
/// weighs on both alike.
pub fn eval_throughput(
    model: model::Spec,
    data: &Dataset,
    min_time: Duration,
) -> Result<EvalThroughput, ConfigError> {
    let arch = Arch::new(&model, data.shape(), data.classes())?;
    let params = arch.init(1);
    let device = super::Backend::Flex.device()?;
    let sparse = super::skips_zeros(&arch, &params, data, &device);
    let skipping = |rows| super::sparse::evaluate(&arch, &params, data, rows);
    let dense = || super::evaluate_dense(&arch, &params, data, &device);
    let timed = |f: &dyn Fn() -> Eval| {
        let start = Instant::now();
        std::hint::black_box(f());
        start.elapsed()
    };
    let (mut t_sparse, mut t_dense) = (Duration::ZERO, Duration::ZERO);
    let (mut n_sparse, mut n_dense) = (0usize, 0usize);
    if let Some(rows) = sparse {
        skipping(rows);
    }
    dense();
    // At least once, so that a zero `min_time` still gives figures.
    loop {
        if let Some(rows) = sparse {
            t_sparse += timed(&|| skipping(rows));
            n_sparse += data.len();
        }
        t_dense += timed(&dense);
        n_dense += data.len();
        if t_dense >= min_time / 2 && (sparse.is_none() || t_sparse >= min_time / 2) {
            break;
        }
    }
    Ok(EvalThroughput {
        params: arch.num_params(),
        samples: data.len(),
        skipping_zeros: sparse.map(|_| n_sparse as f64 / t_sparse.as_secs_f64()),
        dense: n_dense as f64 / t_dense.as_secs_f64(),
    })
}

/// Mean cost of the flat-parameter conversions for one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlatCost {
    /// Parameters.
    pub params: usize,
    /// Reading every parameter tensor into a flat vector ([`Net::flatten_into`]).
    pub flatten: Duration,
    /// Writing a flat vector back into an existing model ([`Net::write_back`]).
    pub write_back: Duration,
    /// Building a model from a flat vector ([`Net::from_flat`], what a training step does).
    pub from_flat: Duration,
}

/// Times flatten / write-back / build for `arch` on `backend`'s autodiff device.
pub fn flat_cost(arch: &Arch, backend: super::Backend, reps: u32) -> Result<FlatCost, ConfigError> {
    let device = backend.device()?.autodiff();
    let params = arch.init(1);
    let mut net = Some(Net::from_flat(arch, &params, &device)?);
    let mut out = Vec::with_capacity(params.len());
    let time = |f: &mut dyn FnMut()| {
        f();
        let start = Instant::now();
        for _ in 0..reps {
            f();
        }
        start.elapsed() / reps
    };
    let flatten = time(&mut || net.as_ref().expect("net").flatten_into(&mut out));
    let write_back = time(&mut || {
        let n = net.take().expect("net");
        net = Some(n.write_back(&params));
    });
    let from_flat = time(&mut || {
        std::hint::black_box(Net::from_flat(arch, &params, &device).expect("len"));
    });
    Ok(FlatCost {
        params: params.len(),
        flatten,
        write_back,
        from_flat,
    })
}

/// Random MNIST-shaped inputs (28x28, 10 classes) for throughput runs without the files.
pub fn mnist_shaped(n: usize, seed: u64) -> Dataset {
    use rand::Rng;
    let mut rng = data::stream::rng(seed, data::stream::SYNTHETIC, 99);
    let shape = InputShape {
        channels: 1,
        height: 28,
        width: 28,
    };
    let features: Vec<f32> = (0..n * shape.len()).map(|_| rng.random::<f32>()).collect();
    let labels = (0..n).map(|_| rng.random_range(0..10)).collect();
    Dataset::new(features, labels, shape, 10)
}

/// One epoch's outcome in [`train_to_accuracy`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f32,
    /// Test-set accuracy and loss after the epoch.
    pub test: Eval,
    /// Training throughput over the epoch.
    pub samples_per_sec: f64,
}

/// Trains one node on the whole training set of `split` for `epochs` epochs, evaluating on
/// the test set after each; `report` is called after every epoch.
pub fn train_to_accuracy(
    setup: &Setup,
    split: &Split,
    epochs: usize,
    seed: u64,
    report: &mut dyn FnMut(&Epoch),
) -> Result<Vec<Epoch>, ConfigError> {
    let mut trainer = Trainer::new(setup, Shard::all(split.train.clone()), 0, seed)?;
    let steps = split.train.len().div_ceil(setup.batch_size);
    let mut out = Vec::new();
    for epoch in 1..=epochs {
        let r = trainer.train_steps(steps);
        let e = Epoch {
            epoch,
            train_loss: r.mean_loss,
            test: trainer.evaluate(&split.test),
            samples_per_sec: r.samples_per_sec(),
        };
        report(&e);
        out.push(e);
    }
    Ok(out)
}
