//! The outlier screen: received models far out of line with the round's others are pulled in
//! or, when gross, dropped before mixing, and their senders penalised.
//!
//! A robust rule bounds what one round's Byzantine input can do, but a peer that sends a gross
//! outlier every round (a sign-flipped, scaled or noised model) still pulls each receiver by the
//! rule's bound every round, which adds up under non-IID data. The screen measures every received
//! model's distance to the node's own model and compares it with the lower median of those
//! distances: a model more than `factor` times farther than that reference is an outlier. A gross
//! outlier (more than twice `factor` out, and farther than the own model's norm) is dropped
//! from this round's mix and costs its sender [`Rejection::Outlier`](super::Rejection::Outlier)
//! points, so a peer that sends gross outliers round after round is banned (for a while: see
//! `peers`). Any other outlier is pulled in along its direction to `factor` times the reference
//! and mixed: under non-IID data an honest peer whose data differs from every other neighbour's is
//! far from all of them round after round, and dropping its model would take its data out of
//! their training for good (on 4 nodes with Dirichlet(0.1) digits, that cost up to 16 points of
//! accuracy); pulled in, it still counts, by no more than a model at the limit.
//!
//! The reference is the lower median of the received distances, so it stays an honest distance
//! while fewer than half of one round's inputs are Byzantine; with fewer than two received models
//! there is no reference and nothing is screened. Models within `factor` of the reference are left
//! to the rule, which is what it is for.
//!
//! Cost: one pass over the inputs, O(n d), plus sorting n distances.

use crate::aggregate::distance;

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
/// distances to `own`, in increasing index order, each gross when more than twice `factor` out
/// and farther from `own` than `own`'s norm. Empty when `factor` is 0 (screen off) or fewer than
/// two inputs are given.
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
    // Gross: past twice the factor, and farther from the own model than the own model is from
    // zero. Late in a long run honest models sit so close together that one a little off is
    // many medians out; none is ever a whole model's length away, as flipped, scaled and
    // noised models are.
    let norm = distance(own, &vec![0.0; own.len()]);
    (0..inputs.len())
        .filter(|&i| dists[i] > limit)
        .map(|i| Outlier {
            index: i,
            gross: dists[i] > 2.0 * limit && dists[i] > norm,
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
        let own = [0.0f32; 4];
        let a = [1.0f32, 0.0, 0.0, 0.0];
        let b = [0.0f32, 1.2, 0.0, 0.0];
        let c = [0.0f32, 0.0, -0.9, 0.0];
        let far = [0.0f32, 0.0, 0.0, 10.0];
        let inputs: Vec<&[f32]> = vec![&a, &far, &b, &c];
        let flagged = |factor| -> Vec<(usize, bool)> {
            outliers(&own, &inputs, factor)
                .iter()
                .map(|o| (o.index, o.gross))
                .collect()
        };
        assert_eq!(flagged(4.0), vec![(1, true)]);
        assert_eq!(flagged(6.0), vec![(1, false)]);
        let o = outliers(&own, &inputs, 6.0)[0];
        // The reference is 1.0 (the lower median of 0.9, 1.0, 1.2, 10): the limit is 6.
        assert!((o.scale - 0.6).abs() < 1e-9, "{o:?}");
        let mut pulled = far;
        pull_in(&own, &mut pulled, o.scale);
        assert!((distance(&own, &pulled) - 6.0).abs() < 1e-5);
        assert_eq!(pulled[..3], [0.0; 3], "along its own direction");
        // 10 is within 12 times the reference 1.0.
        assert!(outliers(&own, &inputs, 12.0).is_empty());
        assert!(outliers(&own, &inputs, 0.0).is_empty(), "factor 0 is off");
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
