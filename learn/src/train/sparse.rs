//! Evaluation of dense models (logistic regression, MLP) on inputs that are mostly zero.
//!
//! burn multiplies a batch by a layer's weights as a dense matrix product. On MNIST four pixels
//! in five are zero, and so are about half of the hidden units after the ReLU, so a product
//! that goes through each sample's non-zero inputs only, `y = b + sum over x_k != 0 of x_k W[k]`,
//! does a fraction of the arithmetic. Leaving out a zero input changes nothing in exact
//! arithmetic; in `f32` the sums are taken in another order than burn's, so a loss differs from
//! burn's in its last digits (the tests compare the two).
//!
//! The order is fixed here, term by term, and the same on every machine: each output sums its
//! terms (in the order of their positions) into two partial sums, term `t` into sum `t % 2`, each
//! a product then an addition (never fused), then adds the two and then the bias. The lanes of a
//! vector only hold different outputs, so the figures do not depend on the vector width the CPU
//! offers (a test compares the widest with scalar code).
//!
//! docs/results.md ("Evaluations that skip zero inputs") gives what it saves.

use super::Eval;
use crate::data::{Dataset, SparseRows};
use crate::model::Arch;

/// Outputs computed together: two 256-bit vectors of `f32` (8 and 32 were measured slower).
const LANES: usize = 16;

/// Samples taken through all layers together, so that a layer's weights stay in cache.
const BLOCK: usize = 64;

/// One layer's weights by columns, `LANES` at a time: output chunk `c`'s weights for input `k`
/// are `cols[c * d_in + k]` (zero past `d_out`), so a chunk's weights lie together.
pub(super) struct Columns {
    cols: Vec<[f32; LANES]>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

impl Columns {
    /// `weight` is `[d_in, d_out]`, row-major (see [`crate::model`]).
    fn new(weight: &[f32], bias: &[f32], d_in: usize, d_out: usize) -> Self {
        let chunks = d_out.div_ceil(LANES);
        let mut cols = vec![[0f32; LANES]; chunks * d_in];
        for (k, row) in weight.chunks_exact(d_out).enumerate() {
            for (o, &w) in row.iter().enumerate() {
                cols[(o / LANES) * d_in + k][o % LANES] = w;
            }
        }
        Self {
            cols,
            bias: bias.to_vec(),
            d_in,
            d_out,
        }
    }
}

/// Sparse rows: sample `s`'s non-zero inputs are `index[starts[s]..starts[s + 1]]`, with
/// `value` alike.
#[derive(Clone, Copy)]
struct Rows<'a> {
    starts: &'a [usize],
    index: &'a [u32],
    value: &'a [f32],
}

/// `out[s * d_out + o] = bias[o] + sum_k x_sk W[k][o]` for each sample `s` of `rows`
/// (`starts.len() - 1` of them). Positions in `rows` must be below `layer.d_in`.
#[inline(always)]
fn product(out: &mut [f32], rows: Rows<'_>, layer: &Columns) {
    let (d_in, d_out) = (layer.d_in, layer.d_out);
    let samples = rows.starts.len() - 1;
    for (c, cols) in layer.cols.chunks_exact(d_in).enumerate() {
        let first = c * LANES;
        let width = LANES.min(d_out - first);
        for s in 0..samples {
            let (lo, hi) = (rows.starts[s], rows.starts[s + 1]);
            let (index, value) = (&rows.index[lo..hi], &rows.value[lo..hi]);
            let mut acc = [[0f32; LANES]; 2];
            for (ks, vs) in index.chunks_exact(2).zip(value.chunks_exact(2)) {
                let (w0, w1) = (&cols[ks[0] as usize], &cols[ks[1] as usize]);
                let (v0, v1) = (vs[0], vs[1]);
                for j in 0..LANES {
                    acc[0][j] += v0 * w0[j];
                    acc[1][j] += v1 * w1[j];
                }
            }
            // The last term of an odd count.
            let last = index.len() & !1;
            if let (Some(&k), Some(&v)) = (index.get(last), value.get(last)) {
                let w = &cols[k as usize];
                for j in 0..LANES {
                    acc[0][j] += v * w[j];
                }
            }
            let row = &mut out[s * d_out + first..][..width];
            for (j, y) in row.iter_mut().enumerate() {
                *y = layer.bias[first + j] + (acc[0][j] + acc[1][j]);
            }
        }
    }
}

/// The forward pass and the scoring, compiled for the CPU's vector width by [`pulp`].
struct Forward<'a> {
    layers: &'a [Columns],
    data: &'a Dataset,
    rows: &'a SparseRows,
    /// The samples to take, in order.
    range: std::ops::Range<usize>,
    /// The number right and the sum of the losses so far, which the samples add to.
    sums: (usize, f64),
}

impl pulp::WithSimd for Forward<'_> {
    type Output = (usize, f64);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> (usize, f64) {
        let Forward {
            layers,
            data,
            rows,
            range,
            sums,
        } = self;
        let widest = layers.iter().map(|l| l.d_out).max().unwrap_or(0);
        let classes = layers.last().map_or(0, |l| l.d_out);
        let (mut act, mut next) = (vec![0f32; BLOCK * widest], vec![0f32; BLOCK * widest]);
        let (mut starts, mut index, mut value) = (Vec::new(), Vec::new(), Vec::new());
        let (mut correct, mut loss) = sums;
        let mut start = range.start;
        while start < range.end {
            let end = (start + BLOCK).min(range.end);
            let n = end - start;
            let mut input = Rows {
                starts: &rows.starts[start..=end],
                index: &rows.index,
                value: &rows.value,
            };
            for (l, layer) in layers.iter().enumerate() {
                product(&mut next, input, layer);
                std::mem::swap(&mut act, &mut next);
                if l + 1 == layers.len() {
                    break;
                }
                // ReLU, and the units it does not zero as the next layer's sparse input: those
                // above zero, and NaN (a sum that overflowed both ways), which burn's ReLU keeps.
                starts.clear();
                starts.push(0);
                let units = n * layer.d_out;
                index.resize(units, 0);
                value.resize(units, 0.0);
                let mut len = 0;
                for s in 0..n {
                    // Written every time and kept only if the ReLU leaves it: no branch to
                    // mispredict.
                    for (k, &v) in act[s * layer.d_out..(s + 1) * layer.d_out]
                        .iter()
                        .enumerate()
                    {
                        index[len] = k as u32;
                        value[len] = v;
                        len += usize::from(v > 0.0 || v.is_nan());
                    }
                    starts.push(len);
                }
                input = Rows {
                    starts: &starts,
                    index: &index,
                    value: &value,
                };
            }
            for s in 0..n {
                let (l, right) = super::score(
                    &act[s * classes..(s + 1) * classes],
                    data.label(start + s) as usize,
                );
                loss += l;
                correct += usize::from(right);
            }
            start = end;
        }
        (correct, loss)
    }
}

/// The dense model `params`'s layers by columns.
pub(super) fn columns(arch: &Arch, params: &[f32]) -> Vec<Columns> {
    debug_assert!(arch.convs.is_empty(), "dense layers only");
    let layout = arch.layout();
    arch.dense
        .iter()
        .zip(layout.chunks_exact(2))
        .map(|(&(d_in, d_out), slots)| {
            Columns::new(
                &params[slots[0].range()],
                &params[slots[1].range()],
                d_in,
                d_out,
            )
        })
        .collect()
}

/// Accuracy and mean cross-entropy of the dense model `params` (no convolutions) on `data`,
/// whose rows in sparse form are `rows`.
pub(super) fn evaluate(arch: &Arch, params: &[f32], data: &Dataset, rows: &SparseRows) -> Eval {
    let (correct, loss) = forward(&columns(arch, params), data, rows, 0..data.len(), (0, 0.0));
    Eval::from_sums(correct, loss, data.len())
}

/// The samples `range` of `data` (whose rows in sparse form are `rows`) through the model of
/// `layers` ([`columns`]): `sums`, the number right and the sum of the losses, with theirs
/// added one sample after another in their order.
pub(super) fn forward(
    layers: &[Columns],
    data: &Dataset,
    rows: &SparseRows,
    range: std::ops::Range<usize>,
    sums: (usize, f64),
) -> (usize, f64) {
    pulp::Arch::new().dispatch(Forward {
        layers,
        data,
        rows,
        range,
        sums,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{InputShape, Shard};
    use crate::model::Spec;
    use crate::train::{Trainer, evaluate_dense};
    use burn::tensor::Device;
    use pulp::WithSimd;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `n` samples of `width` features in (0, 1], each zero with probability `zeros`, the
    /// first sample and the first feature of every sample zero; labels in `0..classes`.
    fn sparse_data(n: usize, width: usize, classes: usize, zeros: f64, seed: u64) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let features: Vec<f32> = (0..n * width)
            .map(|i| {
                if i < width || i % width == 0 || rng.random_bool(zeros) {
                    0.0
                } else {
                    rng.random_range(0.01..1.0)
                }
            })
            .collect();
        let labels = (0..n)
            .map(|_| rng.random_range(0..classes as u32))
            .collect();
        Dataset::new(features, labels, InputShape::tabular(width), classes)
    }

    /// Initial parameters scaled up, so that logits are far apart and no near tie can go either
    /// way with the order of the sums.
    fn params(arch: &Arch, seed: u64) -> Vec<f32> {
        arch.init(seed).into_iter().map(|p| 4.0 * p).collect()
    }

    #[test]
    fn skipping_zero_inputs_gives_burns_figures() {
        let cases = [
            (Spec::LogisticRegression, 37, 3),
            (
                Spec::Mlp {
                    hidden: vec![24, 12],
                },
                50,
                4,
            ),
            (Spec::Mlp { hidden: vec![128] }, 64, 10),
            (Spec::Mlp { hidden: vec![5] }, 9, 2),
        ];
        for (case, (spec, width, classes)) in cases.into_iter().enumerate() {
            for zeros in [0.55, 0.8, 0.99] {
                let data = sparse_data(301, width, classes, zeros, case as u64);
                let arch = Arch::new(&spec, data.shape(), classes).unwrap();
                let params = params(&arch, case as u64);
                let rows = data.sparse_rows().expect("mostly zeros");
                let sparse = evaluate(&arch, &params, &data, rows);
                let dense = evaluate_dense(&arch, &params, &data, &Device::flex());
                let at = format!("{spec:?}, {zeros} zeros: {sparse:?} against {dense:?}");
                assert_eq!(sparse.samples, 301, "{at}");
                assert_eq!(sparse.accuracy, dense.accuracy, "{at}");
                assert!(
                    (sparse.loss - dense.loss).abs() <= 1e-6 * dense.loss,
                    "{at}"
                );
            }
        }
    }

    #[test]
    fn the_figures_do_not_depend_on_the_vector_width() {
        let data = sparse_data(200, 70, 5, 0.7, 9);
        let arch = Arch::new(
            &Spec::Mlp {
                hidden: vec![40, 19],
            },
            data.shape(),
            5,
        )
        .unwrap();
        let params = params(&arch, 9);
        let layers = columns(&arch, &params);
        let rows = data.sparse_rows().unwrap();
        let forward = || Forward {
            layers: &layers,
            data: &data,
            rows,
            range: 0..data.len(),
            sums: (0, 0.0),
        };
        let widest = pulp::Arch::new().dispatch(forward());
        let scalar = forward().with_simd(pulp::Scalar::new());
        assert_eq!(widest.0, scalar.0);
        assert_eq!(widest.1.to_bits(), scalar.1.to_bits());
    }

    #[test]
    fn an_evaluation_in_parts_gives_the_same_bits_however_it_is_split() {
        let data = sparse_data(301, 64, 10, 0.8, 4);
        let arch = Arch::new(&Spec::Mlp { hidden: vec![128] }, data.shape(), 10).unwrap();
        let params = params(&arch, 4);
        let device = Device::flex();
        let whole = crate::train::evaluate(&arch, &params, &data, &device);
        let bits = |e: &Eval| (e.samples, e.accuracy.to_bits(), e.loss.to_bits());
        for part in [1, 7, 64, 100, 300, 301, 10_000] {
            let mut e = crate::train::Evaluation::new();
            let mut parts = 1;
            let got = loop {
                match e.part(&arch, &params, &data, &device, part) {
                    Some(got) => break got,
                    None => parts += 1,
                }
            };
            assert_eq!(parts, 301usize.div_ceil(part), "parts of {part}");
            assert_eq!(bits(&got), bits(&whole), "parts of {part}");
        }
        // A model with a non-finite parameter takes burn's path, in one part.
        let mut nan = params.clone();
        nan[3] = f32::NAN;
        let mut e = crate::train::Evaluation::new();
        let got = e.part(&arch, &nan, &data, &device, 1).expect("one part");
        assert_eq!(got.samples, 301);
        assert_eq!(
            bits(&got),
            bits(&crate::train::evaluate(&arch, &nan, &data, &device))
        );
    }

    /// `n` samples of four classes: class `c`'s features `10c..10c + 10` are non-zero with
    /// probability 0.6, the others with probability 0.05.
    fn learnable(n: usize, seed: u64) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..4)).collect();
        let features: Vec<f32> = labels
            .iter()
            .flat_map(|&c| (0..40).map(move |j| (c, j)))
            .map(|(c, j)| {
                let p = if j / 10 == c { 0.6 } else { 0.05 };
                if rng.random_bool(p) {
                    rng.random_range(0.1..1.0)
                } else {
                    0.0
                }
            })
            .collect();
        Dataset::new(features, labels, InputShape::tabular(40), 4)
    }

    #[test]
    fn a_trained_model_scores_as_with_burn_and_the_trainer_takes_this_path() {
        let (train, test) = (learnable(800, 1), learnable(300, 2));
        let model = Spec::Mlp { hidden: vec![32] };
        let setup =
            crate::train::bench::setup(crate::train::Backend::Flex, model, &train, 32).unwrap();
        let mut trainer = Trainer::new(&setup, Shard::all(train), 0, 1).unwrap();
        trainer.train_steps(300);
        let rows = test.sparse_rows().expect("mostly zeros");
        let sparse = evaluate(&setup.arch, trainer.params(), &test, rows);
        let dense = evaluate_dense(&setup.arch, trainer.params(), &test, &Device::flex());
        assert!(sparse.accuracy > 0.8, "{sparse:?}");
        assert_eq!(
            sparse.accuracy, dense.accuracy,
            "{sparse:?} against {dense:?}"
        );
        assert!((sparse.loss - dense.loss).abs() <= 1e-6 * dense.loss);
        assert_eq!(
            trainer.evaluate(&test),
            sparse,
            "the trainer's device is the CPU backend"
        );
    }

    #[test]
    fn a_hidden_unit_that_overflows_to_nan_is_not_taken_for_zero() {
        // One sample, four inputs of 1; the hidden unit's weights are finite but add up to
        // `inf` in one partial sum and `-inf` in the other: NaN, which burn's ReLU keeps.
        let data = Dataset::new(
            vec![0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            vec![0],
            InputShape::tabular(10),
            2,
        );
        let arch = Arch::new(&Spec::Mlp { hidden: vec![1] }, data.shape(), 2).unwrap();
        let m = f32::MAX;
        let mut params = vec![0.0; arch.num_params()];
        params[1..5].copy_from_slice(&[m, -m, m, -m]);
        params[11..13].copy_from_slice(&[1.0, -1.0]);
        let rows = data.sparse_rows().unwrap();
        let eval = evaluate(&arch, &params, &data, rows);
        assert!(eval.loss.is_nan(), "{eval:?}");
    }

    #[test]
    fn non_finite_parameters_and_dense_data_are_left_to_burn() {
        let data = sparse_data(50, 20, 3, 0.8, 1);
        let arch = Arch::new(&Spec::Mlp { hidden: vec![8] }, data.shape(), 3).unwrap();
        let mut params = params(&arch, 1);
        // A weight of the input that is zero in every sample: skipping it would hide the NaN.
        params[0] = f32::NAN;
        assert!(
            crate::train::evaluate(&arch, &params, &data, &Device::flex())
                .loss
                .is_nan()
        );
        let dense = sparse_data(50, 20, 3, 0.3, 1);
        assert!(dense.sparse_rows().is_none());
        let params = self::params(&arch, 1);
        assert_eq!(
            crate::train::evaluate(&arch, &params, &dense, &Device::flex()),
            evaluate_dense(&arch, &params, &dense, &Device::flex())
        );
    }
}
