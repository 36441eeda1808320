//! Vectorisable inner loops shared by the rules, and the view over input rows.
//!
//! Every loop walks fixed-size chunks (`as_chunks`) so the compiler sees the lane count and emits
//! SIMD code without bounds checks. Long reductions are done per [`BLOCK`] in `f32` lanes and
//! summed in `f64`, so a dimension of millions keeps its precision.

/// Lanes of the `f32` accumulators in the reductions.
pub(crate) const LANES: usize = 16;
/// Coordinates processed per block by the multi-row passes: n row slices of this length and the
/// output block stay in the first-level cache.
pub(crate) const BLOCK: usize = 1024;

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

/// True when every value is finite. `x * 0` is ±0 for finite `x` and NaN otherwise, so one sum
/// of those products answers for a whole chunk without a branch.
pub(crate) fn all_finite(x: &[f32]) -> bool {
    let (chunks, rest) = x.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for c in chunks {
        for k in 0..LANES {
            acc[k] += c[k] * 0.0;
        }
    }
    acc.iter().chain(rest).all(|v| v.is_finite())
}

/// Squared euclidean distance of two slices of equal length, in `f32` lanes (use on blocks).
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

/// Squared euclidean norm in `f32` lanes (use on blocks).
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

/// Squared euclidean norm of a whole row, blockwise with an `f64` total.
pub(crate) fn sq_norm_f64(a: &[f32]) -> f64 {
    a.chunks(BLOCK).map(|b| f64::from(sq_norm(b))).sum()
}

/// `out = a * x`.
pub(crate) fn scale_into(out: &mut [f32], a: f32, x: &[f32]) {
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

/// `out += a * x`.
pub(crate) fn axpy(out: &mut [f32], a: f32, x: &[f32]) {
    debug_assert_eq!(out.len(), x.len());
    let (co, ro) = out.as_chunks_mut::<LANES>();
    let (cx, rx) = x.as_chunks::<LANES>();
    for (o, x) in co.iter_mut().zip(cx) {
        for k in 0..LANES {
            o[k] += a * x[k];
        }
    }
    for (o, x) in ro.iter_mut().zip(rx) {
        *o += a * x;
    }
}

/// `out += a * (x - c)`.
pub(crate) fn axpy_diff(out: &mut [f32], a: f32, x: &[f32], c: &[f32]) {
    debug_assert_eq!(out.len(), x.len());
    debug_assert_eq!(out.len(), c.len());
    let (co, ro) = out.as_chunks_mut::<LANES>();
    let (cx, rx) = x.as_chunks::<LANES>();
    let (cc, rc) = c.as_chunks::<LANES>();
    for ((o, x), c) in co.iter_mut().zip(cx).zip(cc) {
        for k in 0..LANES {
            o[k] += a * (x[k] - c[k]);
        }
    }
    for ((o, x), c) in ro.iter_mut().zip(rx).zip(rc) {
        *o += a * (x - c);
    }
}

/// `out = sum_i coefs[i] * rows[i]`, blockwise so that `out` is written once. Rows with a zero
/// coefficient are not read.
pub(crate) fn combine<R: Rows + ?Sized>(rows: &R, coefs: &[f32], out: &mut [f32]) {
    debug_assert_eq!(rows.count(), coefs.len());
    for (b, ob) in out.chunks_mut(BLOCK).enumerate() {
        let start = b * BLOCK;
        let end = start + ob.len();
        let mut first = true;
        for (i, &a) in coefs.iter().enumerate() {
            if a == 0.0 {
                continue;
            }
            let x = &rows.row(i)[start..end];
            if first {
                scale_into(ob, a, x);
                first = false;
            } else {
                axpy(ob, a, x);
            }
        }
        if first {
            ob.fill(0.0);
        }
    }
}

/// `dists[i] = ||rows[i] - center||^2` for every row, in one blockwise pass over the rows.
pub(crate) fn sq_dists_to<R: Rows + ?Sized>(rows: &R, center: &[f32], dists: &mut [f64]) {
    debug_assert_eq!(rows.count(), dists.len());
    dists.fill(0.0);
    for (b, cb) in center.chunks(BLOCK).enumerate() {
        let start = b * BLOCK;
        let end = start + cb.len();
        for (i, d) in dists.iter_mut().enumerate() {
            *d += f64::from(sq_dist(&rows.row(i)[start..end], cb));
        }
    }
}

/// Pairwise squared distances of the rows into `dist` (n × n, row-major, zero diagonal), in one
/// blockwise pass over the rows.
pub(crate) fn pairwise_sq_dists<R: Rows + ?Sized>(rows: &R, dim: usize, dist: &mut [f64]) {
    let n = rows.count();
    debug_assert_eq!(dist.len(), n * n);
    dist.fill(0.0);
    let mut start = 0;
    while start < dim {
        let end = (start + BLOCK / 4).min(dim);
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
        let mut to = [0.0; 2];
        sq_dists_to(&rows[..], &b, &mut to);
        assert!((to[0] - naive).abs() < 1e-3 * naive);
        assert_eq!(to[1], 0.0);
    }

    #[test]
    fn combine_weights_rows_and_skips_zero_coefficients() {
        let a = vec![1.0f32; 3000];
        let b = vec![2.0f32; 3000];
        let rows: [&[f32]; 2] = [&a, &b];
        let mut out = vec![0.0f32; 3000];
        combine(&rows[..], &[0.25, 0.75], &mut out);
        assert!(out.iter().all(|&v| v == 1.75));
        combine(&rows[..], &[0.0, 0.5], &mut out);
        assert!(out.iter().all(|&v| v == 1.0));
    }
}
