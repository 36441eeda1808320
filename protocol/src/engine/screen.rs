//! The outlier screen: received models far out of line with the round's others are pulled in
//! or, when gross, dropped before mixing, and their senders penalised.
//!
//! A robust rule bounds what one round's Byzantine input can do, but a peer that sends a gross
//! outlier every round (a sign-flipped, scaled or noised model) still pulls each receiver by the
//! rule's bound every round, which adds up under non-IID data. The screen measures every received
//! model's distance to the node's own model and compares it with the lower median of those
//! distances: a model more than `factor` times farther than that reference is an outlier. A gross
//! outlier (one also farther from the own model than the own model is from zero) is dropped
//! from this round's mix and costs its sender [`Rejection::Outlier`](super::Rejection::Outlier)
//! points, so a peer that sends gross outliers round after round is banned (for a while: see
//! `peers`). Any other outlier is pulled in along its direction to `factor` times the reference
//! and mixed: under non-IID data an honest peer whose data differs from every other neighbour's is
//! far from all of them round after round, and dropping its model would take its data out of
//! their training for good (on 4 nodes with Dirichlet(0.1) digits, that cost up to 16 points of
//! accuracy); pulled in, it still counts, by no more than a model at the limit.
//!
//! Honest models of one run, however different their data, are never a whole model's length
//! apart; flipped, scaled and noised models are, and so is a model shrunk towards zero
//! (inner-product manipulation in model space: `-epsilon` times the honest mean). Gross outliers
//! used to need twice `factor` as well, and under Dirichlet(0.1) digits the honest spread is so
//! large that a shrunk model was rarely that far out (on one seed it was pulled in 374 times and
//! dropped 6): mixed every round, by three attackers, it cost the honest nodes 19 points.
//!
//! The reference is the lower median of the received distances, so it stays an honest distance
//! while fewer than half of one round's inputs are Byzantine; with fewer than two received models
//! there is no reference and nothing is screened. Models within `factor` of the reference are left
//! to the rule, which is what it is for.
//!
//! Cost: one pass over the inputs, O(n d), plus sorting n distances.

use crate::aggregate::{distance, norm};

/// A received model the screen flagged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outlier {
    /// Its index into the inputs.
    pub index: usize,
    /// Gross: to be dropped and charged.
    pub gross: bool,
    /// What its difference from the own model is scaled by to sit at the limit (below 1).
    pub scale: f64,
}

/// The models more than `factor` times farther from `own` than the lower median of all their
/// distances to `own`, in increasing index order, each gross when also farther from `own` than
/// `own`'s norm. Empty when `factor` is 0 (screen off) or fewer than two inputs are given.
pub(crate) fn outliers(own: &[f32], inputs: &[&[f32]], factor: f64) -> Vec<Outlier> {
    if factor <= 0.0 || inputs.len() < 2 {
        return Vec::new();
    }
    let dists: Vec<f64> = inputs.iter().map(|x| distance(own, x)).collect();
    let mut sorted = dists.clone();
    sorted.sort_by(f64::total_cmp);
    let reference = sorted[(sorted.len() - 1) / 2];
    if reference <= 0.0 {
        // Half the inputs equal the own model (copies, or nothing trained yet): no scale to
        // judge the others by.
        return Vec::new();
    }
    let limit = factor * reference;
    // Gross: farther from the own model than the own model is from zero. Late in a long run
    // honest models sit so close together that one a little off is many medians out; none is
    // ever a whole model's length away, as flipped, scaled, noised and shrunk models are.
    let norm = norm(own);
    (0..inputs.len())
        .filter(|&i| dists[i] > limit)
        .map(|i| Outlier {
            index: i,
            gross: dists[i] > norm,
            scale: limit / dists[i],
        })
        .collect()
}

/// Moves `x` towards `own` so that its difference from `own` is `scale` times what it was.
pub(crate) fn pull_in(own: &[f32], x: &mut [f32], scale: f64) {
    let scale = scale as f32;
    for (v, &o) in x.iter_mut().zip(own) {
        *v = o + (*v - o) * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_only_models_far_beyond_the_median_distance() {
        // Four received models at distances 1.0, 10, 1.2 and 0.9 from the own model, whose norm
        // is `lift` (every model sits `lift` out on a fifth axis, which moves no distance).
        let at = |x: [f32; 4], lift: f32| [x[0], x[1], x[2], x[3], lift];
        let flagged = |factor, lift| -> Vec<(usize, bool)> {
            let own = at([0.0; 4], lift);
            let models = [
                at([1.0, 0.0, 0.0, 0.0], lift),
                at([0.0, 0.0, 0.0, 10.0], lift),
                at([0.0, 1.2, 0.0, 0.0], lift),
                at([0.0, 0.0, -0.9, 0.0], lift),
            ];
            let inputs: Vec<&[f32]> = models.iter().map(|m| m.as_slice()).collect();
            outliers(&own, &inputs, factor)
                .iter()
                .map(|o| (o.index, o.gross))
                .collect()
        };
        // The reference is 1.0 (the lower median of 0.9, 1.0, 1.2, 10). Beyond the limit and
        // farther from the own model than its norm (8): gross.
        assert_eq!(flagged(4.0, 8.0), vec![(1, true)]);
        assert_eq!(flagged(6.0, 8.0), vec![(1, true)]);
        // Within the own model's norm (12): pulled in to the limit, never dropped, however far
        // out (ten times the reference).
        assert_eq!(flagged(4.0, 12.0), vec![(1, false)]);
        assert_eq!(flagged(6.0, 12.0), vec![(1, false)]);
        // 10 is within 12 times the reference.
        assert!(flagged(12.0, 8.0).is_empty());
        assert!(flagged(0.0, 8.0).is_empty(), "factor 0 is off");
        // Pulled in along its own direction, to the limit.
        let own = at([0.0; 4], 12.0);
        let a = at([1.0, 0.0, 0.0, 0.0], 12.0);
        let b = at([0.0, 1.2, 0.0, 0.0], 12.0);
        let c = at([0.0, 0.0, -0.9, 0.0], 12.0);
        let far = at([0.0, 0.0, 0.0, 10.0], 12.0);
        let o = outliers(&own, &[&a, &far, &b, &c], 6.0)[0];
        assert!((o.scale - 0.6).abs() < 1e-9, "{o:?}");
        let mut pulled = far;
        pull_in(&own, &mut pulled, o.scale);
        assert!((distance(&own, &pulled) - 6.0).abs() < 1e-5);
        assert_eq!(pulled[..3], [0.0; 3], "along its own direction");
    }

    /// Inner-product manipulation in model space: `-epsilon` times the honest mean, a model
    /// near zero. Its distance from the own model is about the own model's norm times
    /// `1 + epsilon`, while under non-IID data the honest distances are a sizeable share of that
    /// norm, so it is rarely more than twice the factor out: it is dropped because it is
    /// farther from the own model than zero is.
    #[test]
    fn a_model_near_zero_is_dropped_though_honest_models_are_spread() {
        let own = [3.0f32, 1.0, 2.0, 0.0];
        // Honest models about 0.27 of the own norm (3.74) away: 0.95, 1.04 and 1.12.
        let off = |d: [f32; 4]| -> [f32; 4] { std::array::from_fn(|i| own[i] + 0.6 * d[i]) };
        let h1 = off([-1.0, -1.0, 0.5, 0.5]);
        let h2 = off([0.5, 1.5, -1.0, 0.0]);
        let h3 = off([1.0, 0.0, 1.0, 1.0]);
        let ipm: Vec<f32> = h1
            .iter()
            .zip(&h2)
            .zip(&h3)
            .map(|((a, b), c)| -0.1 * (a + b + c) / 3.0)
            .collect();
        // About 4.1 away: beyond the limit (2.5 x 1.04), within twice it, beyond the own norm.
        let flagged = outliers(&own, &[&h1, &h2, &ipm, &h3], 2.5);
        assert_eq!(flagged.len(), 1, "{flagged:?}");
        assert_eq!((flagged[0].index, flagged[0].gross), (2, true));
    }

    #[test]
    fn lower_median_keeps_two_inputs_judgeable_and_one_is_never_screened() {
        let own = [0.0f32; 2];
        let honest = [1.0f32, 0.0];
        let flipped = [-40.0f32, 0.0];
        let flagged = outliers(&own, &[&honest, &flipped], 4.0);
        assert_eq!(
            (flagged.len(), flagged[0].index, flagged[0].gross),
            (1, 1, true)
        );
        assert!(outliers(&own, &[&flipped], 4.0).is_empty());
    }

    #[test]
    fn a_byzantine_majority_of_one_round_cannot_make_honest_inputs_outliers() {
        // Two far models and one honest: the lower median is a far model's distance, and the
        // honest model is nearer than that, so nothing honest is screened.
        let own = [0.0f32; 2];
        let honest = [1.0f32, 0.0];
        let f1 = [30.0f32, 0.0];
        let f2 = [0.0f32, 30.0];
        assert!(outliers(&own, &[&honest, &f1, &f2], 4.0).is_empty());
    }

    #[test]
    fn copies_of_the_own_model_give_no_scale() {
        let own = [1.0f32; 2];
        let far = [100.0f32; 2];
        assert!(outliers(&own, &[&own, &own, &far], 4.0).is_empty());
    }
}
