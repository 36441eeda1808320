//! Clipping around a centre: centered clipping (Karimireddy, He, Jaggi 2021, "Learning from
//! history for Byzantine robust optimization") and ClippedGossip, its self-centred decentralised
//! form (He, Karimireddy, Jaggi 2022, "Byzantine-robust decentralized learning via
//! ClippedGossip").
//!
//! One clipping step around a centre `v` with radius `tau` is
//! `v + sum_i w_i clip(x_i - v, tau)`, where `clip(z, tau) = z · min(1, tau / ||z||)` and the
//! weights `w` sum to 1. An input farther than `tau` from `v` moves the result by at most
//! `w_i tau`, whatever it contains.

use super::config::Tau;
use super::kernels::{self, BLOCK, Rows};

/// Distances and coefficients, reused between calls.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    dists: Vec<f64>,
    sorted: Vec<f64>,
    coefs: Vec<f32>,
}

impl Workspace {
    /// One clipping step around `center`, in place, with `self.dists` already holding the squared
    /// distances of the rows to `center`. Returns the number of inputs clipped (farther than
    /// `tau`).
    fn step<R: Rows + ?Sized>(
        &mut self,
        rows: &R,
        w: &[f32],
        tau: f64,
        center: &mut [f32],
    ) -> usize {
        let mut clipped = 0;
        self.coefs.clear();
        for (&d, &wi) in self.dists.iter().zip(w) {
            let norm = d.sqrt();
            self.coefs.push(if norm > tau {
                clipped += 1;
                (f64::from(wi) * tau / norm) as f32
            } else {
                wi
            });
        }
        let mut acc = [0.0f32; BLOCK];
        for (b, cb) in center.chunks_mut(BLOCK).enumerate() {
            let start = b * BLOCK;
            let acc = &mut acc[..cb.len()];
            acc.fill(0.0);
            for (i, &a) in self.coefs.iter().enumerate() {
                if a != 0.0 {
                    kernels::axpy_diff(acc, a, &rows.row(i)[start..start + cb.len()], cb);
                }
            }
            kernels::axpy(cb, 1.0, acc);
        }
        clipped
    }
}

/// Centered clipping: `iterations` (L) clipping steps of radius `tau`, starting from the previous
/// aggregate `momentum` (zero before the first call, as ByzFL's `CenteredClipping(m=None)`), which
/// is then replaced by the result. Weighted.
///
/// Breakdown point: below 1/2 with a suitable `tau` (Karimireddy et al. 2021 show robustness for
/// a Byzantine fraction up to about 0.1 with their tau schedule; combined with bucketing it
/// tolerates heterogeneous data). Cost: O(L n d): per step, one pass for the distances and one
/// for the clipped sum. Returns the number of inputs clipped in the last step.
pub(crate) fn centered_clipping<R: Rows + ?Sized>(
    rows: &R,
    w: &[f32],
    tau: f32,
    iterations: usize,
    momentum: &mut [f32],
    ws: &mut Workspace,
    out: &mut [f32],
) -> usize {
    ws.dists.resize(rows.count(), 0.0);
    let mut clipped = 0;
    for _ in 0..iterations {
        kernels::sq_dists_to(rows, momentum, &mut ws.dists);
        clipped = ws.step(rows, w, f64::from(tau), momentum);
    }
    out.copy_from_slice(momentum);
    clipped
}

/// ClippedGossip: one clipping step centred on the node's own model,
/// `own + sum_j w_j clip(x_j - own, tau)`. The weights are the node's gossip weights (row of the
/// mixing matrix); inputs equal to `own` contribute `w_j · own`, so passing the node's own model
/// among the inputs gives it its self-weight.
///
/// Radius: [`Tau::Fixed`], or [`Tau::Adaptive`] `{ f }`: `tau` is the (f + 1)-th largest distance
/// `||x_j - own||` over the inputs (the largest when there are at most f inputs), so exactly the
/// f farthest inputs are clipped (fewer on ties). With f = 1 this is the reference code of He,
/// Karimireddy and Jaggi (`SelfCenteredClipping` with `tau=None`: the second-largest neighbour
/// distance). The node's own model among the inputs counts as a distance of 0.
///
/// Breakdown point: depends on the topology; He et al. 2022 prove convergence when the total
/// gossip weight of Byzantine neighbours is small compared with the spectral gap of the honest
/// graph, for any fraction of Byzantine nodes in a neighbourhood that a fixed `tau` can bound.
/// Cost: O(n d), two passes (distances, clipped sum); the adaptive radius adds O(n log n).
/// Returns the number of inputs clipped.
pub(crate) fn clipped_gossip<R: Rows + ?Sized>(
    rows: &R,
    w: &[f32],
    own: &[f32],
    tau: Tau,
    ws: &mut Workspace,
    out: &mut [f32],
) -> usize {
    let n = rows.count();
    out.copy_from_slice(own);
    ws.dists.resize(n, 0.0);
    kernels::sq_dists_to(rows, own, &mut ws.dists);
    let tau = match tau {
        Tau::Fixed(t) => f64::from(t),
        Tau::Adaptive { f } => {
            ws.sorted.clear();
            ws.sorted.extend(ws.dists.iter().map(|d| d.sqrt()));
            ws.sorted.sort_unstable_by(|a, b| b.total_cmp(a));
            ws.sorted[f.min(n - 1)]
        }
    };
    ws.step(rows, w, tau, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_gossip_bounds_the_pull_of_a_far_input() {
        let own = [0.0f32, 0.0];
        let far = [300.0f32, 400.0]; // distance 500
        let near = [0.5f32, 0.0];
        let rows = [&own[..], &near[..], &far[..]];
        let w = [0.5, 0.25, 0.25];
        let mut ws = Workspace::default();
        let mut out = [0.0; 2];
        let clipped = clipped_gossip(&rows[..], &w, &own, Tau::Fixed(1.0), &mut ws, &mut out);
        assert_eq!(clipped, 1);
        // near: 0.25 * (0.5, 0); far clipped to (0.6, 0.8): 0.25 * (0.6, 0.8)
        assert!(
            (out[0] - 0.275).abs() < 1e-6 && (out[1] - 0.2).abs() < 1e-6,
            "{out:?}"
        );
    }

    #[test]
    fn adaptive_radius_clips_exactly_the_f_farthest() {
        let own = [0.0f32];
        let xs: Vec<[f32; 1]> = [1.0f32, -2.0, 3.0, -4.0, 50.0]
            .iter()
            .map(|&v| [v])
            .collect();
        let rows: Vec<&[f32]> = xs.iter().map(|r| &r[..]).collect();
        let w = [0.2; 5];
        let mut ws = Workspace::default();
        let mut out = [0.0; 1];
        let c = clipped_gossip(
            &rows[..],
            &w,
            &own,
            Tau::Adaptive { f: 2 },
            &mut ws,
            &mut out,
        );
        assert_eq!(c, 2);
        // tau = 3: -4 -> -3, 50 -> 3.
        assert!((out[0] - 0.2 * (1.0 - 2.0 + 3.0 - 3.0 + 3.0)).abs() < 1e-6);
        // With a single input there is nothing to clip against.
        let c = clipped_gossip(
            &rows[..1],
            &[1.0],
            &own,
            Tau::Adaptive { f: 1 },
            &mut ws,
            &mut out,
        );
        assert_eq!((c, out[0]), (0, 1.0));
    }

    #[test]
    fn centered_clipping_with_a_huge_radius_is_the_mean_and_keeps_state() {
        let a = [1.0f32, 2.0];
        let b = [3.0f32, 6.0];
        let rows = [&a[..], &b[..]];
        let mut m = [0.0f32; 2];
        let mut ws = Workspace::default();
        let mut out = [0.0; 2];
        centered_clipping(&rows[..], &[0.5, 0.5], 1e9, 1, &mut m, &mut ws, &mut out);
        assert_eq!(out, [2.0, 4.0]);
        assert_eq!(m, out);
        // A radius of 1 from the stored centre moves by at most 1 per step.
        let c = [102.0f32, 4.0];
        let rows = [&c[..]];
        centered_clipping(&rows[..], &[1.0], 1.0, 1, &mut m, &mut ws, &mut out);
        assert!((out[0] - 3.0).abs() < 1e-6 && (out[1] - 4.0).abs() < 1e-6);
    }
}
