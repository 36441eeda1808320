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
use super::kernels::{self, NonFinite};
use super::rows::Rows;

/// How many of ClippedGossip's recent nearest received distances are remembered.
const NEAREST_KEPT: usize = 16;

/// Distances and coefficients, reused between calls, and ClippedGossip's recent nearest received
/// distances.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    dists: Vec<f64>,
    sorted: Vec<f64>,
    coefs: Vec<f32>,
    /// The nearest received distance of each of the last [`NEAREST_KEPT`] mixes that received a
    /// model, oldest first.
    nearest: std::collections::VecDeque<f64>,
    /// Scratch for their median.
    scratch: Vec<f64>,
    /// CS+-RG's (distance, weight) pairs, nearest first.
    pairs: Vec<(f64, f64)>,
    /// The squared distances of the next call's rows to its centre, measured by the caller
    /// (`Aggregator::distances_known`), taken by its first distance pass.
    pub(crate) known: Option<Vec<f64>>,
}

impl Workspace {
    /// Forgets the recent distances (the model was replaced).
    pub(crate) fn forget(&mut self) {
        self.nearest.clear();
    }

    /// The median of the remembered distances (the upper one of an even count), if any.
    fn nearest_median(&mut self) -> Option<f64> {
        self.scratch.clear();
        self.scratch.reserve(NEAREST_KEPT);
        self.scratch.extend(self.nearest.iter().copied());
        self.scratch.sort_unstable_by(f64::total_cmp);
        self.scratch.get(self.scratch.len() / 2).copied()
    }

    fn remember(&mut self, distance: f64) {
        self.nearest
            .reserve(NEAREST_KEPT.saturating_sub(self.nearest.len()));
        if self.nearest.len() == NEAREST_KEPT {
            self.nearest.pop_front();
        }
        self.nearest.push_back(distance);
    }
}

impl Workspace {
    /// The squared distances of the rows to `center` into `self.dists`, checked (see
    /// [`Self::verify`]).
    fn distances_to<R: Rows + ?Sized>(
        &mut self,
        rows: &R,
        center: &[f32],
    ) -> Result<(), NonFinite> {
        match self.known.take() {
            Some(known) if known.len() == rows.count() => self.dists = known,
            _ => {
                self.dists.resize(rows.count(), 0.0);
                kernels::sq_dists_to(rows, center, &mut self.dists);
            }
        }
        self.verify(rows, center)
    }

    /// Checks the squared distances of the first pass from `center`: a finite distance proves
    /// its input finite if the centre is. A non-finite distance is a non-finite centre (which
    /// makes every distance non-finite), a non-finite input, or a finite input so far away that
    /// the distance overflowed; that input is treated as infinitely far and clipped to nothing.
    fn verify<R: Rows + ?Sized>(&self, rows: &R, center: &[f32]) -> Result<(), NonFinite> {
        if self.dists.iter().all(|d| d.is_finite()) {
            return Ok(());
        }
        if !kernels::all_finite(center) {
            return Err(NonFinite::Center);
        }
        for (i, d) in self.dists.iter().enumerate() {
            if !d.is_finite() && !kernels::all_finite(rows.row(i)) {
                return Err(NonFinite::Input);
            }
        }
        Ok(())
    }

    /// One clipping step around `center` into `out`, with `self.dists` holding the squared
    /// distances of the rows to `center`: `out = (1 - sum_i a_i) center + sum_i a_i x_i` with
    /// `a_i = w_i min(1, tau / ||x_i - center||)`, a convex combination. Returns the number of
    /// inputs clipped (farther than `tau`).
    fn step<R: Rows + ?Sized>(
        &mut self,
        rows: &R,
        w: &[f32],
        tau: f64,
        center: &[f32],
        out: &mut [f32],
    ) -> usize {
        let mut clipped = 0;
        let mut total = 0.0f64;
        self.coefs.clear();
        for (&d, &wi) in self.dists.iter().zip(w) {
            let norm = d.sqrt();
            let a = if norm > tau {
                clipped += 1;
                f64::from(wi) * tau / norm
            } else {
                f64::from(wi)
            };
            total += a;
            self.coefs.push(a as f32);
        }
        let rest = (1.0 - total).max(0.0) as f32;
        kernels::combine(rows, &self.coefs, Some((center, rest)), out);
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
/// for the clipped sum. The first distance pass proves the inputs finite before the state changes.
/// Returns the number of inputs clipped in the last step.
pub(crate) fn centered_clipping<R: Rows + ?Sized>(
    rows: &R,
    w: &[f32],
    tau: f32,
    iterations: usize,
    momentum: &mut [f32],
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<usize, NonFinite> {
    ws.dists.resize(rows.count(), 0.0);
    let mut clipped = 0;
    for t in 0..iterations {
        kernels::sq_dists_to(rows, momentum, &mut ws.dists);
        if t == 0 {
            ws.verify(rows, momentum)?;
        }
        clipped = ws.step(rows, w, f64::from(tau), momentum, out);
        momentum.copy_from_slice(out);
    }
    Ok(clipped)
}

/// ClippedGossip: one clipping step centred on the node's own model,
/// `own + sum_j w_j clip(x_j - own, tau)`. The weights are the node's gossip weights (row of the
/// mixing matrix); inputs equal to `own` contribute `w_j · own`, so passing the node's own model
/// among the inputs gives it its self-weight.
///
/// Radius: [`Tau::Fixed`], or [`Tau::Adaptive`] `{ f }`, computed from the received models only
/// (the inputs at a distance above 0 from `own`: the own model among the inputs, or a copy of
/// it, takes no part). With k received models:
/// - k > f: `tau` is the (f + 1)-th largest distance `||x_j - own||`, so the f farthest
///   received models are clipped (fewer on ties). With f = 1 this is the reference code of He,
///   Karimireddy and Jaggi (`SelfCenteredClipping` with `tau=None`: the second-largest
///   neighbour distance). The radius is capped at twice the median of the nearest received
///   distance of the last 16 mixes (no cap before the first): a node that drew more than f
///   attackers in one round (three among four peers, 0.9% of node-rounds with 3 attackers in 16
///   nodes) would otherwise take the (f + 1)-th farthest attacker's distance as its radius and
///   mix sign-flipped models in full, and once its model sat among theirs, honest models would
///   be the farthest and clipped from then on. Honest rounds rarely reach the cap: their
///   (f + 1)-th largest distance is near their nearest.
/// - 0 < k <= f (a sparse graph, or a round where few models arrived): every received model may
///   be Byzantine, so none sets the radius alone: `tau` is that same cap (before any mix, this
///   mix's nearest). A round whose few answers all came from attackers is clipped to what honest
///   rounds looked like; on a ring, honest neighbours within twice the usual distance count in
///   full.
///
/// Every mix that received a model remembers its nearest received distance (the model's
/// replacement forgets them).
///
/// Breakdown point: not a fixed fraction of the inputs; He et al. 2022 prove convergence when the
/// total gossip weight of a node's Byzantine neighbours is small compared with the spectral gap
/// of the honest nodes' mixing matrix.
/// Cost: O(n d), two passes (distances, clipped sum); the adaptive radius adds O(n log n).
/// The distance pass also proves the inputs and `own` finite (see `Workspace::verify`), so the
/// caller may skip its own finiteness pass. Returns the number of inputs clipped.
pub(crate) fn clipped_gossip<R: Rows + ?Sized>(
    rows: &R,
    w: &[f32],
    own: &[f32],
    tau: Tau,
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<usize, NonFinite> {
    ws.distances_to(rows, own)?;
    let tau = match tau {
        Tau::Fixed(t) => f64::from(t),
        Tau::Adaptive { f } => {
            ws.sorted.clear();
            ws.sorted
                .extend(ws.dists.iter().filter(|&&d| d > 0.0).map(|d| d.sqrt()));
            ws.sorted.sort_unstable_by(|a, b| b.total_cmp(a));
            let k = ws.sorted.len();
            if k == 0 {
                return Ok(ws.step(rows, w, 0.0, own, out)); // every input is the own model
            }
            let nearest = ws.sorted[k - 1];
            let recent = ws.nearest_median().map(|m| 2.0 * m);
            let tau = if k > f {
                recent.map_or(ws.sorted[f], |cap| ws.sorted[f].min(cap))
            } else {
                recent.unwrap_or(nearest)
            };
            ws.remember(nearest);
            tau
        }
    };
    Ok(ws.step(rows, w, tau, own, out))
}

/// CS+-RG (Gaucher, Dieuleveut and Hendrikx 2025, "Unified Breakdown Analysis for Byzantine
/// Robust Gossip"): one clipping step centred on the node's own model, as ClippedGossip, with
/// the radius at the weighted quantile that leaves twice the tolerated Byzantine weight beyond
/// it. Sort the inputs (the own model among them, at distance 0) by distance to `own` and add up
/// their weights from the nearest; the radius is the distance at which that sum reaches
/// `total - 2 b`, where `b` is the weight of the `f` heaviest received inputs (`f` times a
/// neighbour's weight under uniform weights, as the paper's `byz_weights`): the input at which
/// the sum reaches it exactly, or else the one before. So with uniform weights the `2 f`
/// farthest inputs are clipped; with `f` = 0 nothing is; and when `2 b` is half the total or
/// more, the radius is 0 and the node keeps its own model (the paper's breakdown: more
/// Byzantine weight than that cannot be told from the honest).
///
/// Breakdown point: the paper shows it reaches the best breakdown of robust gossip: honest
/// nodes converge while the weight of each node's actual Byzantine neighbours is at most the
/// tolerated `b` and `b` is small against the spectral gap of the honest graph (clipping 2f
/// rather than ClippedGossip's f is what makes that bound tight).
/// Cost: O(n d), two passes (distances, clipped sum), plus sorting n distances. The distance
/// pass proves the inputs and `own` finite, as in [`clipped_gossip`]. Returns the number of
/// inputs clipped.
pub(crate) fn cs_plus<R: Rows + ?Sized>(
    rows: &R,
    w: &[f32],
    own: &[f32],
    f: usize,
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<usize, NonFinite> {
    ws.distances_to(rows, own)?;
    let tau = ws.cs_plus_radius(w, f);
    Ok(ws.step(rows, w, tau, own, out))
}

impl Workspace {
    /// CS+-RG's radius from `self.dists` (squared) and the normalised weights `w`.
    fn cs_plus_radius(&mut self, w: &[f32], f: usize) -> f64 {
        self.pairs.clear();
        self.pairs.reserve(self.dists.len());
        self.pairs.extend(
            self.dists
                .iter()
                .zip(w)
                .map(|(&d, &wi)| (d.sqrt(), f64::from(wi))),
        );
        // The tolerated Byzantine weight: the f heaviest received inputs.
        self.scratch.clear();
        self.scratch.reserve(self.pairs.len());
        self.scratch
            .extend(self.pairs.iter().filter(|p| p.0 > 0.0).map(|p| p.1));
        self.scratch.sort_unstable_by(|a, b| b.total_cmp(a));
        let byzantine: f64 = self.scratch.iter().take(f).sum();
        if byzantine <= 0.0 {
            return f64::INFINITY;
        }
        self.pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = self.pairs.iter().map(|p| p.1).sum();
        let target = total - 2.0 * byzantine;
        // Weights are sums of f32s: "reaches exactly" within their rounding.
        let eps = 1e-6 * total;
        let mut cumulative = 0.0;
        let mut previous = 0.0;
        for &(d, wi) in &self.pairs {
            cumulative += wi;
            if cumulative >= target - eps {
                return if cumulative <= target + eps {
                    d
                } else {
                    previous
                };
            }
            previous = d;
        }
        f64::INFINITY
    }
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
        let clipped =
            clipped_gossip(&rows[..], &w, &own, Tau::Fixed(1.0), &mut ws, &mut out).unwrap();
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
        assert_eq!(c, Ok(2));
        // tau = 3: -4 -> -3, 50 -> 3.
        assert!((out[0] - 0.2 * (1.0 - 2.0 + 3.0 - 3.0 + 3.0)).abs() < 1e-6);
        // The own model among the inputs takes no part in the radius: with it and one received
        // model (f = 2), the radius is twice the median of the remembered nearest distances
        // (the last mix's: 1): 2.
        let far = [10.0f32];
        let rows = [&own[..], &far[..]];
        let c = clipped_gossip(
            &rows[..],
            &[0.5, 0.5],
            &own,
            Tau::Adaptive { f: 2 },
            &mut ws,
            &mut out,
        );
        assert_eq!((c, out[0]), (Ok(1), 1.0));
        // With nothing remembered, the nearest received model counts in full and the others
        // are clipped to its distance.
        ws.forget();
        let near = [-2.0f32];
        let rows = [&own[..], &near[..], &far[..]];
        let c = clipped_gossip(
            &rows[..],
            &[1.0 / 3.0; 3],
            &own,
            Tau::Adaptive { f: 2 },
            &mut ws,
            &mut out,
        );
        // tau = 2: -2 stays, 10 -> 2.
        assert_eq!(c, Ok(1));
        assert!(out[0].abs() < 1e-6, "{out:?}");
    }

    /// Rounds where every answer came from attackers (all far) are clipped to the radius that
    /// honest rounds had, not to the attackers' own distance.
    #[test]
    fn a_round_of_only_far_answers_is_clipped_to_the_recent_radii() {
        let own = [0.0f32];
        let mut ws = Workspace::default();
        let mut out = [0.0; 1];
        let honest = [[1.0f32], [-1.5]];
        for _ in 0..5 {
            let rows = [&own[..], &honest[0][..], &honest[1][..]];
            clipped_gossip(
                &rows[..],
                &[1.0 / 3.0; 3],
                &own,
                Tau::Adaptive { f: 2 },
                &mut ws,
                &mut out,
            )
            .unwrap();
        }
        let bad = [[-40.0f32], [-41.0]];
        let rows = [&own[..], &bad[0][..], &bad[1][..]];
        let c = clipped_gossip(
            &rows[..],
            &[1.0 / 3.0; 3],
            &own,
            Tau::Adaptive { f: 2 },
            &mut ws,
            &mut out,
        );
        // Radius 2 x 1 (the nearer honest distance each time): both clipped to -2.
        assert_eq!(c, Ok(2));
        assert!((out[0] + 4.0 / 3.0).abs() < 1e-5, "{out:?}");
    }

    /// A round where attackers answered more often than `f` (a node that drew three attackers
    /// among four peers) is clipped to the radius honest rounds had: the (f + 1)-th largest
    /// distance is then an attacker's, and the sign-flipped models would count in full.
    #[test]
    fn more_far_answers_than_f_are_clipped_to_the_recent_radii() {
        let own = [10.0f32];
        let mut ws = Workspace::default();
        let mut out = [0.0; 1];
        let honest = [[11.0f32], [8.5], [12.0]];
        for _ in 0..5 {
            let rows = [&own[..], &honest[0][..], &honest[1][..], &honest[2][..]];
            clipped_gossip(
                &rows[..],
                &[0.25; 4],
                &own,
                Tau::Adaptive { f: 2 },
                &mut ws,
                &mut out,
            )
            .unwrap();
        }
        // Three sign-flipped models: without a cap the radius is the third largest distance
        // (20), and the mix lands at -5.
        let bad = [[-10.0f32], [-10.0], [-10.0]];
        let rows = [&own[..], &bad[0][..], &bad[1][..], &bad[2][..]];
        let c = clipped_gossip(
            &rows[..],
            &[0.25; 4],
            &own,
            Tau::Adaptive { f: 2 },
            &mut ws,
            &mut out,
        );
        // Radius 2 x 1 (the nearest honest distance each time): each moves the mix by 0.25 x 2.
        assert_eq!(c, Ok(3));
        assert!((out[0] - 8.5).abs() < 1e-5, "{out:?}");
    }

    /// CS+-RG against the reference code's definition (`cs_plus` in the paper's repository:
    /// `searchsorted` of `total - 2 b` in the cumulative weights, the distance there when the
    /// sum reaches it exactly, else the one before).
    #[test]
    fn cs_plus_clips_beyond_twice_the_tolerated_weight() {
        let own = [0.0f32];
        let xs = [[1.0f32], [-2.0], [3.0], [-10.0]];
        let rows = [&own[..], &xs[0][..], &xs[1][..], &xs[2][..], &xs[3][..]];
        let mut ws = Workspace::default();
        let mut out = [0.0; 1];
        // Uniform 0.2, f = 1: b = 0.2, target 0.6, reached exactly at the second nearest
        // received (distance 2): 3 and -10 are clipped to 2 and -2.
        let c = cs_plus(&rows[..], &[0.2; 5], &own, 1, &mut ws, &mut out);
        assert_eq!(c, Ok(2));
        assert!(
            (out[0] - 0.2 * (1.0 - 2.0 + 2.0 - 2.0)).abs() < 1e-6,
            "{out:?}"
        );
        // f = 0: nothing is clipped, the weighted mean.
        let c = cs_plus(&rows[..], &[0.2; 5], &own, 0, &mut ws, &mut out);
        assert_eq!(c, Ok(0));
        assert!(
            (out[0] - 0.2 * (1.0 - 2.0 + 3.0 - 10.0)).abs() < 1e-6,
            "{out:?}"
        );
        // Weighted: own 0.5, then 0.1 at distance 1, 0.2 at 2, 0.2 at 3; f = 1 tolerates the
        // heaviest received weight, 0.2: target 0.6, reached at distance 1.
        let rows = [&own[..], &xs[0][..], &xs[1][..], &xs[2][..]];
        let c = cs_plus(&rows[..], &[0.5, 0.1, 0.2, 0.2], &own, 1, &mut ws, &mut out);
        assert_eq!(c, Ok(2));
        assert!((out[0] - (0.1 - 0.2 + 0.2)).abs() < 1e-6, "{out:?}");
        // Target between two sums: the distance before. Own 0.3, 0.3 at 1, 0.2 at 2, 0.2 at 3,
        // f = 1 (b = 0.3): target 0.4, first reached (passed) at distance 1: radius 0 (own).
        let c = cs_plus(&rows[..], &[0.3, 0.3, 0.2, 0.2], &own, 1, &mut ws, &mut out);
        assert_eq!((c, out[0]), (Ok(3), 0.0));
        // Two received of equal weight with f = 1: twice the tolerated weight is the whole
        // received weight, and the node keeps its model.
        let rows = [&own[..], &xs[0][..], &xs[1][..]];
        let c = cs_plus(&rows[..], &[1.0 / 3.0; 3], &own, 1, &mut ws, &mut out);
        assert_eq!((c, out[0]), (Ok(2), 0.0));
    }

    #[test]
    fn a_far_but_finite_input_is_clipped_to_nothing_and_a_nan_is_refused() {
        let own = [-3.0e38f32, 0.0];
        let far = [3.0e38f32, 0.0];
        let near = [-3.0e38f32, 1.0];
        let rows = [&near[..], &far[..]];
        let mut ws = Workspace::default();
        let mut out = [0.0; 2];
        let c = clipped_gossip(
            &rows[..],
            &[0.5, 0.5],
            &own,
            Tau::Fixed(1.0),
            &mut ws,
            &mut out,
        );
        assert_eq!(c, Ok(1));
        assert_eq!(out, [-3.0e38, 0.5]);
        let nan = [0.0f32, f32::NAN];
        let rows = [&near[..], &nan[..]];
        let c = clipped_gossip(
            &rows[..],
            &[0.5, 0.5],
            &own,
            Tau::Fixed(1.0),
            &mut ws,
            &mut out,
        );
        assert_eq!(c, Err(NonFinite::Input));
        let c = clipped_gossip(
            &rows[..],
            &[0.5, 0.5],
            &nan,
            Tau::Fixed(1.0),
            &mut ws,
            &mut out,
        );
        assert_eq!(c, Err(NonFinite::Center));
    }

    #[test]
    fn centered_clipping_with_a_huge_radius_is_the_mean_and_keeps_state() {
        let a = [1.0f32, 2.0];
        let b = [3.0f32, 6.0];
        let rows = [&a[..], &b[..]];
        let mut m = [0.0f32; 2];
        let mut ws = Workspace::default();
        let mut out = [0.0; 2];
        centered_clipping(&rows[..], &[0.5, 0.5], 1e9, 1, &mut m, &mut ws, &mut out).unwrap();
        assert_eq!(out, [2.0, 4.0]);
        assert_eq!(m, out);
        // A radius of 1 from the stored centre moves by at most 1 per step.
        let c = [102.0f32, 4.0];
        let rows = [&c[..]];
        centered_clipping(&rows[..], &[1.0], 1.0, 1, &mut m, &mut ws, &mut out).unwrap();
        assert!((out[0] - 3.0).abs() < 1e-6 && (out[1] - 4.0).abs() < 1e-6);
    }
}
