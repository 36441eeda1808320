//! Vectorisable inner loops shared by the rules, and the view over input rows.
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

/// The rows being aggregated: the caller's slices, or a flat buffer of pre-aggregated rows.
pub(crate) trait Rows {
    /// Number of rows.
    fn count(&self) -> usize;
    /// Row `i`, of the aggregator's dimension.
    fn row(&self, i: usize) -> &[f32];
}

impl Rows for [&[f32]] {
    fn count(&self) -> usize {
        self.len()
    }
    fn row(&self, i: usize) -> &[f32] {
        self[i]
    }
}

/// A rule found a non-finite value while reading its inputs (see the rules that check as they go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonFinite {
    /// In one of the inputs.
    Input,
    /// In the centre the rule measures distances from (the node's own model).
    Center,
}

/// Rows stored one after another in one buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flat<'a> {
    pub data: &'a [f32],
    pub dim: usize,
}

impl Rows for Flat<'_> {
    fn count(&self) -> usize {
        self.data.len() / self.dim
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
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

/// Rows held as signed updates read in place (`f32` little-endian payloads in shared
/// allocations): handles another thread can hold, for [`combine_assisted`].
#[derive(Debug, Clone)]
pub(crate) struct SharedRows(pub Arc<[(Arc<[u8]>, usize)]>);

impl Rows for SharedRows {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn row(&self, i: usize) -> &[f32] {
        let (bytes, payload) = &self.0[i];
        crate::codec::f32_view(&bytes[*payload..]).expect("held only if read in place")
    }
}

impl SharedRows {
    /// `rows` copied into payloads of signed updates of their own, each after a header of 8
    /// bytes, read in place.
    #[cfg(test)]
    pub(crate) fn copied(rows: &[Vec<f32>]) -> SharedRows {
        let held: Vec<(Arc<[u8]>, usize)> = rows
            .iter()
            .map(|r| {
                let bytes: Arc<[u8]> = [0u8; 8]
                    .into_iter()
                    .chain(r.iter().flat_map(|v| v.to_le_bytes()))
                    .collect();
                (bytes, 8)
            })
            .collect();
        SharedRows(held.into())
    }
}

/// Columns `start..end` of `rows`.
struct Columns<'a, R: ?Sized> {
    rows: &'a R,
    start: usize,
    end: usize,
}

impl<R: Rows + ?Sized> Rows for Columns<'_, R> {
    fn count(&self) -> usize {
        self.rows.count()
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.rows.row(i)[self.start..self.end]
    }
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
mod tests {
    use super::*;

    /// Rows of every kind of value: of every sign and scale, subnormals, -0, and (when `bad`) a
    /// NaN and infinities in some rows.
    fn awkward_rows(n: usize, len: usize, bad: bool) -> Vec<Vec<f32>> {
        (0..n)
            .map(|r| {
                (0..len)
                    .map(|i| {
                        let k = (i * 7919 + r * 104_729) % 1009;
                        let v = match k % 11 {
                            0 => -0.0,
                            1 => f32::MIN_POSITIVE / (k as f32 + 2.0),
                            2 => 3.0e37 / (k as f32 + 1.0),
                            _ => (k as f32 - 504.0) * 1.3e-3 * (r as f32 + 1.0),
                        };
                        (i, v)
                    })
                    .map(|(i, v)| match (bad, r, i) {
                        (true, 1, 5) => f32::NAN,
                        (true, 3, i) if i + 1 == len => f32::INFINITY,
                        (true, 4, 0) => f32::NEG_INFINITY,
                        _ => v,
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_wide_kernels_give_the_bits_of_the_baseline_ones() {
        // Each public kernel runs compiled for AVX2 where the processor has it; its `_in`/
        // `_blocks` body, called here directly, runs as built for the baseline. On a processor
        // without AVX2 both are the baseline and the test holds trivially.
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for len in [0, 1, 17, 1000, BLOCK + 10, 2 * BLOCK + 37] {
            for n in [1, 2, 3, 4, 5, 8, 9, 12] {
                for bad in [false, true] {
                    let data = awkward_rows(n + 1, len, bad);
                    let rows: Vec<&[f32]> = data[..n].iter().map(|r| &r[..]).collect();
                    let rows = &rows[..];
                    let center = &data[n];
                    let at = format!("len {len}, n {n}, bad {bad}");
                    let coefs: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 1.5)).collect();
                    for extra in [None, Some((&center[..], 0.25f32))] {
                        let (mut a, mut b) = (vec![7.0; len], vec![7.0; len]);
                        let fa = combine(rows, &coefs, extra, &mut a);
                        let fb = combine_blocks(rows, &coefs, extra, &mut b);
                        assert_eq!((fa, bits(&a)), (fb, bits(&b)), "combine, {at}");
                    }
                    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
                    sq_dists_to(rows, center, &mut a);
                    sq_dists_in(rows, center, &mut b);
                    assert_eq!(bits64(&a), bits64(&b), "sq_dists_to, {at}");
                    let (mut a, mut b) = (vec![0.0; n * n], vec![0.0; n * n]);
                    pairwise_sq_dists(rows, len, &mut a);
                    pairwise_in(rows, len, &mut b);
                    assert_eq!(bits64(&a), bits64(&b), "pairwise, {at}");
                    assert_eq!(
                        first_non_finite(rows, len),
                        first_non_finite_in(rows, len),
                        "{at}"
                    );
                    for r in rows {
                        let (mut a, mut b) = (vec![7.0; len], vec![7.0; len]);
                        scale_into(&mut a, 0.3, r);
                        scale_lanes(&mut b, 0.3, r);
                        assert_eq!(bits(&a), bits(&b), "scale_into, {at}");
                        assert_eq!(all_finite(r), finite_lanes(r), "{at}");
                        assert_eq!(
                            sq_norm_f64(r).to_bits(),
                            sq_norm_blocks(r).to_bits(),
                            "{at}"
                        );
                        let (x, y) = (super::super::norm(r), super::super::norm_blocks(r));
                        assert_eq!(x.to_bits(), y.to_bits(), "norm, {at}");
                        let x = super::super::distance(r, center);
                        let y = super::super::distance_blocks(r, center);
                        assert_eq!(x.to_bits(), y.to_bits(), "distance, {at}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_distance_from_zero_needs_no_zero_row_and_gives_the_same_bits() {
        // Lengths around a block and a lane, values of every sign and scale, -0 and NaN.
        for len in [0, 1, 15, 17, 1000, BLOCK - 1, BLOCK + 10, 3 * BLOCK + 7] {
            let mut x: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 1009) as f32 * if i % 3 == 0 { -1e-3 } else { 37.5 })
                .collect();
            if len > 2 {
                x[1] = -0.0;
            }
            let zero = vec![0.0f32; len];
            let (a, b) = (sq_dist_from_zero(&x), sq_dist(&x, &zero));
            assert_eq!(a.to_bits(), b.to_bits(), "{len}");
            let (a, b) = (super::super::norm(&x), super::super::distance(&x, &zero));
            assert_eq!(a.to_bits(), b.to_bits(), "{len}");
            if len > 0 {
                x[len - 1] = f32::NAN;
                assert!(sq_dist_from_zero(&x).is_nan() && sq_dist(&x, &zero).is_nan());
            }
        }
    }

    #[test]
    fn finiteness_is_detected_anywhere() {
        let mut v = vec![1.0f32; 37];
        assert!(all_finite(&v));
        for (i, bad) in [(3, f32::NAN), (20, f32::INFINITY), (36, f32::NEG_INFINITY)] {
            let keep = v[i];
            v[i] = bad;
            assert!(!all_finite(&v), "missed {bad} at {i}");
            v[i] = keep;
        }
        assert!(all_finite(&[f32::MAX, -f32::MAX, 0.0, -0.0]));
    }

    #[test]
    fn first_non_finite_row_is_found_across_blocks() {
        let good = vec![1.0f32; 2 * BLOCK + 5];
        let mut late = good.clone();
        late[2 * BLOCK + 3] = f32::NAN;
        let mut early = good.clone();
        early[7] = f32::INFINITY;
        let dim = good.len();
        let rows: [&[f32]; 4] = [&good, &late, &early, &good];
        assert_eq!(first_non_finite(&rows[..], dim), Some(1));
        assert_eq!(first_non_finite(&rows[2..], dim), Some(0));
        assert_eq!(first_non_finite(&[&good[..], &good[..]][..], dim), None);
    }

    #[test]
    fn distances_match_naive_sums() {
        let a: Vec<f32> = (0..2500).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..2500).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum();
        let rows: [&[f32]; 2] = [&a, &b];
        let mut d = [0.0; 4];
        pairwise_sq_dists(&rows[..], 2500, &mut d);
        assert!((d[1] - naive).abs() < 1e-3 * naive);
        assert_eq!(d[1], d[2]);
        assert_eq!(d[0], 0.0);
        let many: [&[f32]; 6] = [&a, &b, &a, &a, &b, &a];
        let mut to = [0.0; 6];
        sq_dists_to(&many[..], &b, &mut to);
        for (i, d) in to.iter().enumerate() {
            let want = if i % 3 == 1 { 0.0 } else { naive };
            assert!((d - want).abs() <= 1e-3 * naive, "{i}: {d} vs {want}");
        }
    }

    #[test]
    fn combine_weights_rows_and_skips_zero_coefficients() {
        let a = vec![1.0f32; 3000];
        let b = vec![2.0f32; 3000];
        let rows: [&[f32]; 2] = [&a, &b];
        let mut out = vec![0.0f32; 3000];
        combine(&rows[..], &[0.25, 0.75], None, &mut out);
        assert!(out.iter().all(|&v| v == 1.75));
        combine(&rows[..], &[0.0, 0.5], None, &mut out);
        assert!(out.iter().all(|&v| v == 1.0));
        let c = vec![4.0f32; 3000];
        let seven: Vec<&[f32]> = (0..7)
            .map(|i| if i % 2 == 0 { &a[..] } else { &b[..] })
            .collect();
        for n in 0..=7 {
            let coefs = [0.0625; 7];
            combine(&seven[..n], &coefs[..n], Some((&c, 0.5)), &mut out);
            let want = 2.0 + 0.0625 * seven[..n].iter().map(|r| r[0]).sum::<f32>();
            assert!(out.iter().all(|&v| v == want), "n={n}");
        }
        let many: Vec<&[f32]> = (0..9)
            .map(|i| if i % 2 == 0 { &a[..] } else { &b[..] })
            .collect();
        combine(&many[..], &[0.1; 9], Some((&c, 0.1)), &mut out);
        assert!(out.iter().all(|&v| (v - 1.7).abs() < 1e-6));
    }

    #[test]
    fn a_combine_with_help_is_the_same_bits() {
        use crate::assist::testing::Inline;
        for dim in [
            1000,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK,
            3 * BLOCK + LANES + 3,
            101_770,
        ] {
            for n in [1, 3, 10, 11] {
                let rows: Vec<Vec<f32>> = (0..n)
                    .map(|i| {
                        (0..dim)
                            .map(|j| ((i * 7 + j) % 13) as f32 * 0.37 - 2.0)
                            .collect()
                    })
                    .collect();
                let coefs: Vec<f32> = (0..n).map(|i| 1.0 / (i + 2) as f32).collect();
                let slices: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
                let held = SharedRows::copied(&rows);
                let mut want = vec![0.0f32; dim];
                assert!(combine(&slices[..], &coefs, None, &mut want));
                for first in [true, false] {
                    let mut got = vec![f32::NAN; dim];
                    let finite =
                        combine_assisted(&slices[..], &held, &coefs, &mut got, &Inline { first });
                    assert!(finite, "dim {dim}, {n} rows, job first {first}");
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "dim {dim}, {n} rows, job first {first}");
                }
            }
        }
        // A non-finite value in either thread's share is reported.
        let dim = 4 * BLOCK;
        for at in [1, dim - 1] {
            let mut rows = vec![vec![1.0f32; dim]; 2];
            rows[1][at] = f32::NAN;
            let slices: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            let mut out = vec![0.0f32; dim];
            let finite = combine_assisted(
                &slices[..],
                &SharedRows::copied(&rows),
                &[0.5, 0.5],
                &mut out,
                &Inline { first: true },
            );
            assert!(!finite, "NaN at {at}");
        }
    }

    #[test]
    fn combine_reports_a_non_finite_output_in_any_block() {
        // Two blocks and a tail that is not a whole chunk of lanes.
        let dim = 2 * BLOCK + LANES + 3;
        let big = vec![f32::MAX; dim];
        let one = vec![1.0f32; dim];
        let mut out = vec![0.0f32; dim];
        let rows: [&[f32]; 2] = [&one, &big];
        assert!(combine(&rows[..], &[0.5, 0.5], None, &mut out));
        assert!(all_finite(&out));
        for at in [0, BLOCK - 1, BLOCK, 2 * BLOCK + 1, dim - 1] {
            // Finite rows whose sum overflows at one coordinate, and a NaN in a row.
            let mut over = one.clone();
            over[at] = f32::MAX;
            let rows: [&[f32]; 2] = [&over, &big];
            assert!(!combine(&rows[..], &[1.0, 1.0], None, &mut out), "{at}");
            assert!(!all_finite(&out));
            let mut nan = one.clone();
            nan[at] = f32::NAN;
            let rows: [&[f32]; 2] = [&one, &nan];
            assert!(!combine(&rows[..], &[0.5, 0.5], None, &mut out), "{at}");
            assert!(
                combine(&rows[..], &[1.0, 0.0], None, &mut out),
                "{at}: a row not read"
            );
        }
    }
}
