//! Coordinate-wise median and trimmed mean (Yin, Chen, Ramchandran, Bartlett 2018,
//! "Byzantine-robust distributed learning: towards optimal statistical rates").
//!
//! Both are order statistics of each coordinate. They are computed [`WIDTH`] coordinates at a time:
//! the n values of a block are gathered into a small transposed buffer, and a sorting network
//! (Batcher's odd–even merge sort, pruned to the positions the statistic reads; see `sorting`)
//! is applied to all columns at once with branch-free min/max. The sorting network is built once
//! per input count and kept in the workspace.

use super::kernels::NonFinite;
use super::rows::Rows;
use super::sorting::{self, Comparator};

/// Coordinates per block: the columns processed together by one pass of the network.
pub(crate) const WIDTH: usize = 16;

/// Which order statistic a network is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stat {
    /// The middle value (the mean of the two middle values for even n).
    Median,
    /// The mean of the values left after dropping the `f` smallest and `f` largest.
    Trimmed(usize),
    /// What Meamed reads: each of the `f` lowest and `f` highest positions and the middle one
    /// or two, and the sum of the others.
    Meamed(usize),
}

/// The network for the current input count and the transposed block buffer.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    key: Option<(usize, Stat)>,
    net: Vec<Comparator>,
    labels: Vec<u32>,
    block: Vec<[f32; WIDTH]>,
}

impl Workspace {
    /// Builds the pruned network for `n` inputs unless it is already there.
    fn prepare(&mut self, n: usize, stat: Stat) {
        if self.key == Some((n, stat)) {
            return;
        }
        sorting::batcher(n, &mut self.net);
        self.labels.clear();
        self.labels.resize(n, 0);
        match stat {
            Stat::Median => {
                self.labels[(n - 1) / 2] = 1;
                self.labels[n / 2] = 1;
            }
            Stat::Trimmed(f) => self.labels[f..n - f].fill(1),
            Stat::Meamed(f) => {
                self.labels[f..n - f].fill(1);
                for p in (0..f).chain(n - f..n).chain([(n - 1) / 2, n / 2]) {
                    self.labels[p] = 2 + p as u32;
                }
            }
        }
        sorting::prune(&mut self.net, &mut self.labels);
        self.block.clear();
        self.block.resize(n, [0.0; WIDTH]);
        self.key = Some((n, stat));
    }
}

/// Coordinate-wise median: `out[k]` is the median of the `k`-th coordinates (the mean of the two
/// middle values when n is even, as numpy's `median`). Weights are ignored.
///
/// Breakdown point: 1/2 (fewer than n/2 Byzantine inputs cannot move a coordinate outside the
/// range of the honest values). Cost: O(d · n log² n) comparisons, vectorised over
/// [`WIDTH`] coordinates; one pass over the inputs, which also checks them finite. Returns the
/// number of values discarded per coordinate.
pub(crate) fn median<R: Rows + ?Sized>(
    rows: &R,
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<usize, NonFinite> {
    let n = rows.count();
    ws.prepare(n, Stat::Median);
    let (a, b) = ((n - 1) / 2, n / 2);
    if a == b {
        run(rows, ws, out, |block, o| *o = block[a])?;
        Ok(n - 1)
    } else {
        run(rows, ws, out, |block, o| {
            let (x, y) = (&block[a], &block[b]);
            for k in 0..WIDTH {
                o[k] = 0.5 * x[k] + 0.5 * y[k];
            }
        })?;
        Ok(n - 2)
    }
}

/// Coordinate-wise trimmed mean: per coordinate, drop the `f` largest and `f` smallest values
/// and average the other n - 2f. Needs n ≥ 2f + 1. Weights are ignored.
///
/// Breakdown point: f/n for f < n/2 (tolerates up to f Byzantine inputs). Cost: O(d · n log² n)
/// comparisons in the worst case, fewer after pruning (the network only separates the f extremes
/// on each side), vectorised over [`WIDTH`] coordinates; one pass over the inputs, which also
/// checks them finite. Returns the number of values discarded per coordinate (2f).
pub(crate) fn trimmed_mean<R: Rows + ?Sized>(
    rows: &R,
    f: usize,
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<usize, NonFinite> {
    let n = rows.count();
    debug_assert!(n > 2 * f);
    ws.prepare(n, Stat::Trimmed(f));
    let inv = 1.0 / (n - 2 * f) as f32;
    run(rows, ws, out, |block, o| {
        let mut acc = [0.0f32; WIDTH];
        for x in &block[f..n - f] {
            for k in 0..WIDTH {
                acc[k] += x[k];
            }
        }
        for k in 0..WIDTH {
            o[k] = acc[k] * inv;
        }
    })?;
    Ok(2 * f)
}

/// Mean around the median (Xie, Koyejo, Gupta 2018, "Generalized Byzantine-tolerant SGD"), as
/// ByzFL's `Meamed(f)`: per coordinate, the average of the n - f values nearest to the
/// coordinate's median. Needs n ≥ 2f + 1. Weights are ignored. On a tie between the two ends the
/// lower value is dropped (ByzFL's `argpartition` leaves ties unspecified).
///
/// The n - f nearest values are a window of the sorted column: with the f dropped values split
/// into s from the bottom and f - s from the top, s counts the j < f for which the j-th smallest
/// is at least as far from the median as the (f - j)-th largest. Everything is per-lane
/// arithmetic on the sorted block, without a data-dependent branch.
///
/// Breakdown point: f/n for f < n/2. Cost: a sorting network pruned to the positions read,
/// O(d · n log² n) comparisons, vectorised over [`WIDTH`] coordinates; one pass over the inputs,
/// which also checks them finite. Returns the number of values discarded per coordinate (f).
pub(crate) fn meamed<R: Rows + ?Sized>(
    rows: &R,
    f: usize,
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<usize, NonFinite> {
    let n = rows.count();
    debug_assert!(n > 2 * f);
    ws.prepare(n, Stat::Meamed(f));
    let keep = n - f;
    let inv = 1.0 / keep as f32;
    let (a, b) = ((n - 1) / 2, n / 2);
    run(rows, ws, out, |block, o| {
        let mut med = [0.0f32; WIDTH];
        let mut s = [0.0f32; WIDTH];
        for k in 0..WIDTH {
            med[k] = 0.5 * block[a][k] + 0.5 * block[b][k];
        }
        for j in 0..f {
            let (lo, hi) = (&block[j], &block[n - f + j]);
            for k in 0..WIDTH {
                s[k] += if med[k] - lo[k] >= hi[k] - med[k] {
                    1.0
                } else {
                    0.0
                };
            }
        }
        // Positions f..n-f are inside every candidate window [s, s + n - f), s in 0..=f.
        let mut acc = [0.0f32; WIDTH];
        for v in &block[f..n - f] {
            for k in 0..WIDTH {
                acc[k] += v[k];
            }
        }
        for j in 0..f {
            let (lo, hi) = (&block[j], &block[n - f + j]);
            let j = j as f32;
            for k in 0..WIDTH {
                // Bottom position j is kept when fewer than j + 1 were dropped from the bottom,
                // top position n - f + j when more than j were.
                acc[k] += if j >= s[k] { lo[k] } else { 0.0 };
                acc[k] += if j < s[k] { hi[k] } else { 0.0 };
            }
        }
        for k in 0..WIDTH {
            o[k] = acc[k] * inv;
        }
    })?;
    Ok(f)
}

/// Gathers each block of coordinates, applies the network, and lets `finish` write the block's
/// results. Returns [`NonFinite`] when a gathered value was NaN or infinite (`x * 0` is ±0 for
/// every finite `x`, NaN otherwise; the sum costs no extra memory traffic). The output is
/// meaningless then.
///
/// Built for the baseline, not through `kernels::wide!`: `finish` is a closure, which the AVX2
/// copy called out of line, built for the baseline, once a block, and ran three times slower
/// (`cargo bench -p murmur-protocol --bench aggregate`, median 2.1 GiB/s against 6.6).
fn run<R, F>(rows: &R, ws: &mut Workspace, out: &mut [f32], finish: F) -> Result<(), NonFinite>
where
    R: Rows + ?Sized,
    F: Fn(&[[f32; WIDTH]], &mut [f32; WIDTH]),
{
    let n = rows.count();
    let net = &ws.net[..];
    let block = &mut ws.block[..n];
    let mut check = [0.0f32; WIDTH];
    let (full, tail) = out.as_chunks_mut::<WIDTH>();
    // Backwards: the coordinates a previous forward pass read last are still in the last-level
    // cache.
    if !tail.is_empty() {
        let start = full.len() * WIDTH;
        for (i, col) in block.iter_mut().enumerate() {
            *col = [0.0; WIDTH];
            col[..tail.len()].copy_from_slice(&rows.row(i)[start..]);
            for k in 0..WIDTH {
                check[k] += col[k] * 0.0;
            }
        }
        sorting::apply(net, block);
        let mut o = [0.0; WIDTH];
        finish(block, &mut o);
        tail.copy_from_slice(&o[..tail.len()]);
    }
    for (c, o) in full.iter_mut().enumerate().rev() {
        let start = c * WIDTH;
        for (i, col) in block.iter_mut().enumerate() {
            let src: &[f32; WIDTH] = rows.row(i)[start..start + WIDTH].try_into().unwrap();
            *col = *src;
            for k in 0..WIDTH {
                check[k] += src[k] * 0.0;
            }
        }
        sorting::apply(net, block);
        finish(block, o);
    }
    if check.iter().all(|&c| c == 0.0) {
        Ok(())
    } else {
        Err(NonFinite::Input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn naive(rows: &[Vec<f32>], k: usize, f: Option<usize>) -> f32 {
        let mut col: Vec<f32> = rows.iter().map(|r| r[k]).collect();
        col.sort_by(f32::total_cmp);
        let n = col.len();
        match f {
            None => 0.5 * (col[(n - 1) / 2] + col[n / 2]),
            Some(f) => col[f..n - f].iter().sum::<f32>() / (n - 2 * f) as f32,
        }
    }

    /// Sorts by distance to the median (ties: lower value first to be dropped, i.e. sorts
    /// descending by distance with the lower value first) and averages the n - f nearest.
    fn naive_meamed(rows: &[Vec<f32>], k: usize, f: usize) -> f32 {
        let mut col: Vec<f32> = rows.iter().map(|r| r[k]).collect();
        col.sort_by(f32::total_cmp);
        let n = col.len();
        let med = 0.5 * col[(n - 1) / 2] + 0.5 * col[n / 2];
        let (mut lo, mut hi) = (0, n - 1);
        for _ in 0..f {
            if med - col[lo] >= col[hi] - med {
                lo += 1;
            } else {
                hi -= 1;
            }
        }
        col[lo..=hi].iter().sum::<f32>() / (n - f) as f32
    }

    #[test]
    fn matches_sorting_for_many_shapes() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut ws = Workspace::default();
        for n in 1..=20 {
            for d in [1, 15, 16, 17, 40] {
                let rows: Vec<Vec<f32>> = (0..n)
                    .map(|_| (0..d).map(|_| rng.random_range(-5.0..5.0)).collect())
                    .collect();
                let refs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
                let mut out = vec![0.0; d];
                median(&refs[..], &mut ws, &mut out).unwrap();
                for (k, o) in out.iter().enumerate() {
                    assert!((o - naive(&rows, k, None)).abs() < 1e-6, "n={n} d={d}");
                }
                for f in 0..=(n - 1) / 2 {
                    meamed(&refs[..], f, &mut ws, &mut out).unwrap();
                    for (k, o) in out.iter().enumerate() {
                        let want = naive_meamed(&rows, k, f);
                        assert!((o - want).abs() < 1e-5, "meamed n={n} d={d} f={f}");
                    }
                    trimmed_mean(&refs[..], f, &mut ws, &mut out).unwrap();
                    for (k, o) in out.iter().enumerate() {
                        let want = naive(&rows, k, Some(f));
                        assert!((o - want).abs() < 1e-5, "n={n} d={d} f={f}");
                    }
                }
            }
        }
    }

    #[test]
    fn equal_inputs_and_single_input_are_returned_unchanged() {
        let mut ws = Workspace::default();
        let x: Vec<f32> = (0..33).map(|i| i as f32 - 3.5).collect();
        let mut out = vec![0.0; 33];
        assert_eq!(median(&[&x[..]][..], &mut ws, &mut out), Ok(0));
        assert_eq!(out, x);
        let rows = [&x[..]; 5];
        trimmed_mean(&rows[..], 2, &mut ws, &mut out).unwrap();
        assert_eq!(out, x);
        // A NaN or an infinity anywhere is noticed, even where the statistic would discard it.
        for (pos, bad) in [(0, f32::NAN), (32, f32::INFINITY), (17, f32::NEG_INFINITY)] {
            let mut y = x.clone();
            y[pos] = bad;
            let rows = [&x[..], &x[..], &y[..], &x[..], &x[..]];
            assert_eq!(median(&rows[..], &mut ws, &mut out), Err(NonFinite::Input));
            assert_eq!(
                trimmed_mean(&rows[..], 2, &mut ws, &mut out),
                Err(NonFinite::Input)
            );
        }
    }
}
