//! Pre-aggregation steps: maps from the n inputs to new vectors, run before the rule.
//!
//! Each step reads rows and their normalised weights and writes its output rows into a flat
//! buffer (rows one after another) with their weights, still summing to 1.

use rand::Rng;
use rand::seq::SliceRandom;

use super::config::Pre;
use super::kernels;
use super::rows::Rows;

/// Distances, norms and permutations, reused between calls.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    dist: Vec<f64>,
    norms: Vec<f64>,
    order: Vec<usize>,
    coefs: Vec<f32>,
}

/// Runs one step from `rows` (weights `w`) into `dst` (weights `dst_w`). Returns the number of
/// inputs the step clipped.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply<R: Rows + ?Sized, G: Rng + ?Sized>(
    pre: &Pre,
    rows: &R,
    w: &[f32],
    dim: usize,
    rng: &mut G,
    ws: &mut Workspace,
    dst: &mut Vec<f32>,
    dst_w: &mut Vec<f32>,
) -> usize {
    match *pre {
        Pre::Nnm { f } => {
            nnm(rows, w, f, dim, ws, dst, dst_w);
            0
        }
        Pre::Bucketing { s } => {
            bucketing(rows, w, s, dim, rng, ws, dst, dst_w);
            0
        }
        Pre::Clipping { c } => {
            ws.norms.clear();
            ws.norms
                .extend((0..rows.count()).map(|i| kernels::sq_norm_f64(rows.row(i)).sqrt()));
            clip_rows(rows, w, |_| f64::from(c), dim, ws, dst, dst_w)
        }
        Pre::Arc { f } => arc(rows, w, f, dim, ws, dst, dst_w),
    }
}

/// Nearest-neighbour mixing (Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan 2023,
/// "Fixing by mixing: a recipe for optimal Byzantine ML under heterogeneity"): input i becomes the
/// plain average of its n - f nearest inputs (itself included; ties by index), as ByzFL's `NNM`.
/// Weights pass through unchanged.
///
/// Makes the output's spread around the honest mean scale with f/n, so that a following rule
/// (trimmed mean, Krum, geometric median...) reaches the optimal error. Cost: O(n² d) for the
/// distances and O(n (n - f) d) for the averages.
fn nnm<R: Rows + ?Sized>(
    rows: &R,
    w: &[f32],
    f: usize,
    dim: usize,
    ws: &mut Workspace,
    dst: &mut Vec<f32>,
    dst_w: &mut Vec<f32>,
) {
    let n = rows.count();
    let k = n - f;
    ws.dist.resize(n * n, 0.0);
    kernels::pairwise_sq_dists(rows, dim, &mut ws.dist);
    dst.resize(n * dim, 0.0);
    let inv = 1.0 / k as f32;
    for (i, out) in dst.chunks_exact_mut(dim).enumerate() {
        kernels::argsort(&mut ws.order, &ws.dist[i * n..(i + 1) * n]);
        ws.coefs.clear();
        ws.coefs.resize(n, 0.0);
        for &j in &ws.order[..k] {
            ws.coefs[j] = inv;
        }
        kernels::combine(rows, &ws.coefs, None, out);
    }
    dst_w.clear();
    dst_w.extend_from_slice(w);
}

/// Bucketing (Karimireddy, He, Jaggi 2022, "Byzantine-robust learning on heterogeneous datasets
/// via bucketing"): shuffle the inputs with `rng`, split them into ceil(n/s) buckets of `s`
/// consecutive inputs (the last one smaller if s does not divide n), and output each bucket's
/// weighted average with the bucket's total weight (ByzFL's `Bucketing` for equal weights).
///
/// Reduces the heterogeneity a following rule sees, at the price of letting f Byzantine inputs
/// spoil up to f buckets. Cost: O(n d).
#[allow(clippy::too_many_arguments)]
fn bucketing<R: Rows + ?Sized, G: Rng + ?Sized>(
    rows: &R,
    w: &[f32],
    s: usize,
    dim: usize,
    rng: &mut G,
    ws: &mut Workspace,
    dst: &mut Vec<f32>,
    dst_w: &mut Vec<f32>,
) {
    let n = rows.count();
    ws.order.clear();
    ws.order.extend(0..n);
    ws.order.shuffle(rng);
    let buckets = n.div_ceil(s);
    dst.resize(buckets * dim, 0.0);
    dst_w.clear();
    for (bucket, out) in ws.order.chunks(s).zip(dst.chunks_exact_mut(dim)) {
        let total: f32 = bucket.iter().map(|&j| w[j]).sum();
        ws.coefs.clear();
        ws.coefs.resize(n, 0.0);
        for &j in bucket {
            ws.coefs[j] = w[j] / total;
        }
        kernels::combine(rows, &ws.coefs, None, out);
        dst_w.push(total);
    }
}

/// Adaptive robust clipping (Allouah, Guerraoui, Gupta, Jellouli, Rizk, Stephan 2024, "The vital
/// role of gradient clipping in Byzantine-resilient distributed learning"), as ByzFL's `ARC`:
/// the k = floor(2f(n - f)/n) inputs of largest norm (ties by index) are clipped to the largest
/// norm among the other n - k. (k is computed in integers; ByzFL's float product can round one
/// lower in rare cases.) Weights pass through. Cost: O(n d).
fn arc<R: Rows + ?Sized>(
    rows: &R,
    w: &[f32],
    f: usize,
    dim: usize,
    ws: &mut Workspace,
    dst: &mut Vec<f32>,
    dst_w: &mut Vec<f32>,
) -> usize {
    let n = rows.count();
    ws.norms.clear();
    ws.norms
        .extend((0..n).map(|i| kernels::sq_norm_f64(rows.row(i)).sqrt()));
    kernels::argsort(&mut ws.order, &ws.norms);
    let k = 2 * f * (n - f) / n;
    let threshold = ws.norms[ws.order[n - k - 1]];
    // Only the k largest are candidates; a row among them whose norm equals the threshold is
    // left as it is by the comparison in `clip_rows`.
    ws.coefs.clear();
    ws.coefs.resize(n, 0.0);
    for &i in &ws.order[n - k..] {
        ws.coefs[i] = 1.0;
    }
    let marked = std::mem::take(&mut ws.coefs);
    let clipped = clip_rows(
        rows,
        w,
        |i| {
            if marked[i] == 1.0 {
                threshold
            } else {
                f64::INFINITY
            }
        },
        dim,
        ws,
        dst,
        dst_w,
    );
    ws.coefs = marked;
    clipped
}

/// Writes every row scaled to norm at most `radius(i)`, using the norms in `ws.norms`. This is
/// static clipping (ByzFL's `Clipping(c)`) when the radius is the constant `c`: Byzantine inputs
/// can then move a mean by at most `c` times their weight. Returns the number of rows scaled.
fn clip_rows<R: Rows + ?Sized>(
    rows: &R,
    w: &[f32],
    radius: impl Fn(usize) -> f64,
    dim: usize,
    ws: &mut Workspace,
    dst: &mut Vec<f32>,
    dst_w: &mut Vec<f32>,
) -> usize {
    let n = rows.count();
    dst.resize(n * dim, 0.0);
    let mut clipped = 0;
    for (i, out) in dst.chunks_exact_mut(dim).enumerate() {
        let norm = ws.norms[i];
        let r = radius(i);
        let scale = if norm > r {
            clipped += 1;
            (r / norm) as f32
        } else {
            1.0
        };
        kernels::scale_into(out, scale, rows.row(i));
    }
    dst_w.clear();
    dst_w.extend_from_slice(w);
    clipped
}
