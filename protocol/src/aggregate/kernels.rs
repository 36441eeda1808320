//! Vectorisable inner loops shared by the rules.
//!
//! Every loop walks fixed-size chunks (`as_chunks`) so the compiler sees the lane count and emits
//! SIMD code without bounds checks. Long reductions are done per [`BLOCK`] in `f32` lanes and
//! summed in `f64`, so a dimension of millions keeps its precision.
//!
//! Built for the x86-64 baseline, those loops run in 128-bit registers. The kernels here are
//! defined through [`wide!`], which on a processor with AVX2 runs them compiled for AVX2 (256-bit
//! registers): a mix of five MNIST MLPs held in the last-level cache then takes 42 µs rather than
//! 93. Both are the same operations in the same order: Rust neither fuses a multiply with an add
//! nor reorders a floating-point sum, so every result has the same bits on any processor
//! (`the_wide_kernels_give_the_bits_of_the_baseline_ones` checks it). A kernel that takes a
//! closure stays built for the baseline (the median's network, see `median::run`): the AVX2 copy
//! would call the closure out of line.

use super::rows::{Columns, Rows, SharedRows};
use std::sync::{Arc, Mutex};

/// Defines `$name` to run `$body` (an `#[inline(always)]` function of the same arguments,
/// generics in brackets) compiled for AVX2 where the processor has it, else as built.
macro_rules! wide {
    ($(#[$doc:meta])* $vis:vis fn $name:ident [$($gen:tt)*] ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$doc])*
        $vis fn $name<$($gen)*>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                #[target_feature(enable = "avx2")]
                fn avx2<$($gen)*>($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                // SAFETY: `avx2` needs AVX2, and the processor was just found to have it.
                #[allow(unsafe_code)]
                return unsafe { avx2($($arg),*) };
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use wide;

/// Lanes of the `f32` accumulators in the reductions.
pub(crate) const LANES: usize = 16;
/// Coordinates per block in the multi-row passes. The output block (64 KiB) stays in the
/// second-level cache, and each row is read in runs long enough (several pages) for the hardware
/// prefetchers; blocks of one page were measured twice as slow.
pub(crate) const BLOCK: usize = 16384;
/// Coordinates per block of the pairwise distance pass, whose n row slices are reused n times.
const PAIR_BLOCK: usize = 2048;

/// A rule found a non-finite value while reading its inputs (see the rules that check as they go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonFinite {
    /// In one of the inputs.
    Input,
    /// In the centre the rule measures distances from (the node's own model).
    Center,
}

wide! {
    /// True when every value is finite. `x * 0` is ±0 for finite `x` and NaN otherwise, so one
    /// sum of those products answers for a whole chunk without a branch.
    pub(crate) fn all_finite[](x: &[f32]) -> bool => finite_lanes
}

/// [`all_finite`], inlined into the kernel that calls it.
#[inline(always)]
fn finite_lanes(x: &[f32]) -> bool {
    let (chunks, rest) = x.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for c in chunks {
        for k in 0..LANES {
            acc[k] += c[k] * 0.0;
        }
    }
    acc.iter().chain(rest).all(|v| v.is_finite())
}

wide! {
    /// Index of the first row holding a NaN or an infinity. Reads the rows forwards in blocks of
    /// [`BLOCK`] coordinates, the order the rules' backward passes then find in cache.
    pub(crate) fn first_non_finite[R: Rows + ?Sized](rows: &R, dim: usize) -> Option<usize>
        => first_non_finite_in
}

#[inline(always)]
fn first_non_finite_in<R: Rows + ?Sized>(rows: &R, dim: usize) -> Option<usize> {
    // Rows at or after `bad` need no more reading: an earlier one is already known bad.
    let mut bad = rows.count();
    let mut start = 0;
    while start < dim {
        let end = (start + BLOCK).min(dim);
        // Loops rather than closures in the kernels: a closure is a function of its own, which
        // the compiler may leave out of line, built for the baseline.
        for i in 0..bad {
            if !finite_lanes(&rows.row(i)[start..end]) {
                bad = i;
                break;
            }
        }
        start = end;
    }
    (bad < rows.count()).then_some(bad)
}

/// Squared euclidean distance of two slices of equal length, in `f32` lanes (use on blocks).
#[inline(always)]
pub(crate) fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (ca, ra) = a.as_chunks::<LANES>();
    let (cb, rb) = b.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for k in 0..LANES {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        s += d * d;
    }
    s
}

/// [`sq_dist`] from the zero vector, without one: the same sums in the same order, so the same
/// bits (`(x - 0)²` is `x²` for every `x`, `-0` and NaN included). [`sq_norm`] sums the tail
/// after a block's lanes in another order, so its last bits may differ.
#[inline(always)]
pub(crate) fn sq_dist_from_zero(a: &[f32]) -> f32 {
    let (ca, ra) = a.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for x in ca {
        for k in 0..LANES {
            acc[k] += x[k] * x[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for x in ra {
        s += x * x;
    }
    s
}

/// Squared euclidean norm in `f32` lanes (use on blocks).
#[inline(always)]
pub(crate) fn sq_norm(a: &[f32]) -> f32 {
    let (ca, ra) = a.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for x in ca {
        for k in 0..LANES {
            acc[k] += x[k] * x[k];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().map(|x| x * x).sum::<f32>()
}

wide! {
    /// Squared euclidean norm of a whole row, blockwise with an `f64` total.
    pub(crate) fn sq_norm_f64[](a: &[f32]) -> f64 => sq_norm_blocks
}

#[inline(always)]
fn sq_norm_blocks(a: &[f32]) -> f64 {
    // -0 first, as `Iterator::sum` of floats starts.
    let mut s = -0.0;
    for b in a.chunks(BLOCK) {
        s += f64::from(sq_norm(b));
    }
    s
}

wide! {
    /// `out = a * x`.
    pub(crate) fn scale_into[](out: &mut [f32], a: f32, x: &[f32]) => scale_lanes
}

#[inline(always)]
fn scale_lanes(out: &mut [f32], a: f32, x: &[f32]) {
    debug_assert_eq!(out.len(), x.len());
    let (co, ro) = out.as_chunks_mut::<LANES>();
    let (cx, rx) = x.as_chunks::<LANES>();
    for (o, x) in co.iter_mut().zip(cx) {
        for k in 0..LANES {
            o[k] = a * x[k];
        }
    }
    for (o, x) in ro.iter_mut().zip(rx) {
        *o = a * x;
    }
}

/// `out (+)= sum_m a[m] * x[m]` over `M` rows in one sweep (`=` if `overwrite`, else `+=`). The
/// output chunk stays in registers while the `M` rows stream past; eight rows per sweep measured
/// fastest (fewer sweeps re-read the output, more spill registers).
#[inline(always)]
fn sweep<const M: usize>(out: &mut [f32], a: [f32; M], x: [&[f32]; M], overwrite: bool) {
    let (co, ro) = out.as_chunks_mut::<LANES>();
    let len = co.len();
    let xs: [&[[f32; LANES]]; M] = x.map(|r| &r.as_chunks::<LANES>().0[..len]);
    for (c, o) in co.iter_mut().enumerate() {
        let mut acc = if overwrite { [0.0; LANES] } else { *o };
        for m in 0..M {
            let v = &xs[m][c];
            for k in 0..LANES {
                acc[k] += a[m] * v[k];
            }
        }
        *o = acc;
    }
    let start = len * LANES;
    for (k, o) in ro.iter_mut().enumerate() {
        let v: f32 = (0..M).map(|m| a[m] * x[m][start + k]).sum();
        *o = if overwrite { v } else { *o + v };
    }
}

/// Rows per sweep of [`combine`].
const SWEEP: usize = 8;

wide! {
    /// `out = sum_i coefs[i] * rows[i] + b * extra` (the last term when
    /// `extra = Some((extra, b))`), blockwise so that each output block is written while it is in
    /// cache, eight rows per sweep. Rows with a zero coefficient are not read. Returns whether
    /// every value written is finite, each block looked at as soon as it is written (a pass over
    /// the whole output afterwards would read it back from further away: the rows streamed past
    /// since have pushed it out).
    pub(crate) fn combine[R: Rows + ?Sized](
        rows: &R,
        coefs: &[f32],
        extra: Option<(&[f32], f32)>,
        out: &mut [f32],
    ) -> bool => combine_blocks
}

#[inline(always)]
fn combine_blocks<R: Rows + ?Sized>(
    rows: &R,
    coefs: &[f32],
    extra: Option<(&[f32], f32)>,
    out: &mut [f32],
) -> bool {
    debug_assert_eq!(rows.count(), coefs.len());
    let mut finite = true;
    // Backwards: the blocks a previous forward pass read last are still in the last-level cache.
    for (b, ob) in out.chunks_mut(BLOCK).enumerate().rev() {
        let start = b * BLOCK;
        let end = start + ob.len();
        let terms = coefs
            .iter()
            .enumerate()
            .filter(|&(_, &a)| a != 0.0)
            .map(|(i, &a)| (a, &rows.row(i)[start..end]))
            .chain(
                extra
                    .filter(|&(_, a)| a != 0.0)
                    .map(|(x, a)| (a, &x[start..end])),
            );
        let mut first = true;
        let mut a = [0.0f32; SWEEP];
        let mut x: [&[f32]; SWEEP] = [&[]; SWEEP];
        let mut g = 0;
        for (ai, xi) in terms {
            (a[g], x[g]) = (ai, xi);
            g += 1;
            if g == SWEEP {
                sweep(ob, a, x, first);
                first = false;
                g = 0;
            }
        }
        let mut k = 0;
        while k < g {
            if g - k >= 4 {
                sweep::<4>(
                    ob,
                    [a[k], a[k + 1], a[k + 2], a[k + 3]],
                    [x[k], x[k + 1], x[k + 2], x[k + 3]],
                    first,
                );
                k += 4;
            } else if g - k >= 2 {
                sweep::<2>(ob, [a[k], a[k + 1]], [x[k], x[k + 1]], first);
                k += 2;
            } else {
                sweep::<1>(ob, [a[k]], [x[k]], first);
                k += 1;
            }
            first = false;
        }
        if first {
            ob.fill(0.0);
        }
        finite = finite && finite_lanes(ob);
    }
    finite
}

/// [`combine`] without an extra term, its upper blocks computed by another thread if `assist`
/// has one idle (from `shared`, the same rows as `rows` as handles it can hold) and copied in:
/// the same bits, as every block is computed alone in the same way.
pub(crate) fn combine_assisted<R: Rows + ?Sized>(
    rows: &R,
    shared: &SharedRows,
    coefs: &[f32],
    out: &mut [f32],
    assist: &dyn crate::assist::Assist,
) -> bool {
    let len = out.len();
    let blocks = len.div_ceil(BLOCK);
    if blocks < 2 {
        return combine(rows, coefs, None, out);
    }
    debug_assert_eq!(shared.count(), rows.count());
    // The upper blocks to the other thread: its share ends with the partial last block.
    let split = blocks.div_ceil(2) * BLOCK;
    // The other thread's blocks, and whether they are finite.
    type Share = Option<(Vec<f32>, bool)>;
    let done: Arc<Mutex<Share>> = Arc::default();
    let job: crate::assist::Job = {
        let (shared, coefs, done) = (shared.clone(), coefs.to_vec(), Arc::clone(&done));
        Box::new(move || {
            let upper = Columns {
                rows: &shared,
                start: split,
                end: len,
            };
            let mut theirs = vec![0.0; len - split];
            let finite = combine(&upper, &coefs, None, &mut theirs);
            *done.lock().unwrap_or_else(|e| e.into_inner()) = Some((theirs, finite));
        })
    };
    let (lower, upper) = out.split_at_mut(split);
    let mut ours = true;
    assist.join(job, &mut || {
        let cols = Columns {
            rows,
            start: 0,
            end: split,
        };
        ours = combine(&cols, coefs, None, lower);
    });
    let (theirs, finite) = done
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .expect("an assist runs its job before it returns");
    upper.copy_from_slice(&theirs);
    ours && finite
}

/// Squared distances of four slices to `c`, sharing each load of `c`.
#[inline(always)]
fn sq_dist4(x: [&[f32]; 4], c: &[f32]) -> [f32; 4] {
    const L: usize = LANES / 2;
    let (cc, rc) = c.as_chunks::<L>();
    let (c0, r0) = x[0].as_chunks::<L>();
    let (c1, r1) = x[1].as_chunks::<L>();
    let (c2, r2) = x[2].as_chunks::<L>();
    let (c3, r3) = x[3].as_chunks::<L>();
    let mut acc = [[0.0f32; L]; 4];
    for ((((c, x0), x1), x2), x3) in cc.iter().zip(c0).zip(c1).zip(c2).zip(c3) {
        for k in 0..L {
            let d0 = x0[k] - c[k];
            let d1 = x1[k] - c[k];
            let d2 = x2[k] - c[k];
            let d3 = x3[k] - c[k];
            acc[0][k] += d0 * d0;
            acc[1][k] += d1 * d1;
            acc[2][k] += d2 * d2;
            acc[3][k] += d3 * d3;
        }
    }
    let mut s = acc.map(|a| a.iter().sum::<f32>());
    for (j, r) in [r0, r1, r2, r3].iter().enumerate() {
        s[j] += r
            .iter()
            .zip(rc)
            .map(|(x, c)| (x - c) * (x - c))
            .sum::<f32>();
    }
    s
}

wide! {
    /// `dists[i] = ||rows[i] - center||^2` for every row, in one blockwise forward pass over the
    /// rows, four rows at a time.
    pub(crate) fn sq_dists_to[R: Rows + ?Sized](rows: &R, center: &[f32], dists: &mut [f64])
        => sq_dists_in
}

#[inline(always)]
fn sq_dists_in<R: Rows + ?Sized>(rows: &R, center: &[f32], dists: &mut [f64]) {
    let n = rows.count();
    debug_assert_eq!(n, dists.len());
    dists.fill(0.0);
    for (b, cb) in center.chunks(BLOCK).enumerate() {
        let start = b * BLOCK;
        let end = start + cb.len();
        let mut i = 0;
        while i + 4 <= n {
            let x = [0, 1, 2, 3].map(|k| &rows.row(i + k)[start..end]);
            for (d, s) in dists[i..i + 4].iter_mut().zip(sq_dist4(x, cb)) {
                *d += f64::from(s);
            }
            i += 4;
        }
        for (d, i) in dists[i..].iter_mut().zip(i..) {
            *d += f64::from(sq_dist(&rows.row(i)[start..end], cb));
        }
    }
}

wide! {
    /// Pairwise squared distances of the rows into `dist` (n × n, row-major, zero diagonal), in
    /// one blockwise pass over the rows.
    pub(crate) fn pairwise_sq_dists[R: Rows + ?Sized](rows: &R, dim: usize, dist: &mut [f64])
        => pairwise_in
}

#[inline(always)]
fn pairwise_in<R: Rows + ?Sized>(rows: &R, dim: usize, dist: &mut [f64]) {
    let n = rows.count();
    debug_assert_eq!(dist.len(), n * n);
    dist.fill(0.0);
    let mut start = 0;
    while start < dim {
        let end = (start + PAIR_BLOCK).min(dim);
        for i in 0..n {
            let xi = &rows.row(i)[start..end];
            for j in i + 1..n {
                dist[i * n + j] += f64::from(sq_dist(xi, &rows.row(j)[start..end]));
            }
        }
        start = end;
    }
    for i in 0..n {
        for j in i + 1..n {
            dist[j * n + i] = dist[i * n + j];
        }
    }
}

/// Sets `order` to `0..n` sorted by `key` ascending, ties broken by index. Does not allocate
/// once `order` has the capacity.
pub(crate) fn argsort(order: &mut Vec<usize>, key: &[f64]) {
    order.clear();
    order.extend(0..key.len());
    order.sort_unstable_by(|&a, &b| key[a].total_cmp(&key[b]).then(a.cmp(&b)));
}

#[cfg(test)]
mod tests;
