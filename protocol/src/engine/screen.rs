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
//! Cost: one pass over the inputs, O(n d), plus sorting n distances. Before ClippedGossip or
//! CS+-RG, which measure the same distances first, the screen measures them as the rule does
//! and hands them over when it changed nothing, so the mix reads its inputs for distances once
//! (`outliers_given`: the verdicts stay those of the screen's own measure, bit for bit).

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
    let reference = dists[median_index(&dists)];
    if reference <= 0.0 {
        // Half the inputs equal the own model (copies, or nothing trained yet): no scale to
        // judge the others by.
        return Vec::new();
    }
    flag(own, dists.into_iter().enumerate(), factor * reference)
}

/// The index of the lower median of `dists`.
fn median_index(dists: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..dists.len()).collect();
    order.sort_by(|&a, &b| dists[a].total_cmp(&dists[b]));
    order[(dists.len() - 1) / 2]
}

/// The outliers among `(index, distance)` pairs, in their order: those beyond `limit`.
fn flag(own: &[f32], measured: impl Iterator<Item = (usize, f64)>, limit: f64) -> Vec<Outlier> {
    let far: Vec<(usize, f64)> = measured.filter(|&(_, d)| d > limit).collect();
    if far.is_empty() {
        return Vec::new();
    }
    // Gross: farther from the own model than the own model is from zero. Late in a long run
    // honest models sit so close together that one a little off is many medians out; none is
    // ever a whole model's length away, as flipped, scaled, noised and shrunk models are.
    let norm = norm(own);
    far.into_iter()
        .map(|(index, d)| Outlier {
            index,
            gross: d > norm,
            scale: limit / d,
        })
        .collect()
}

/// How far apart, relative to it, two measures of one distance can be. [`outliers`] and
/// `aggregate::sq_dists_to` sum the same `f32` squares in lanes of different widths, per block
/// of at most 16,384 coordinates: at most 2,048 terms a lane, so each block sum is within about
/// 1.3e-4 of the exact one (`n` terms: `(n - 1)` units of `f32` rounding), and the blocks add up
/// in `f64`. This leaves several times that.
const MEASURES_AGREE: f64 = 1e-3;

/// [`outliers`], bit for bit, given the squared distances `sq` of the inputs to `own` as the
/// clipping rules measure them (`aggregate::sq_dists_to`), whose last bits may differ from
/// [`outliers`]' own measure. When by `sq` every input is within the limit by more than the two
/// measures can differ, [`outliers`] flags none either, and the inputs are not read again (the
/// rule can take `sq` for its own pass). Otherwise the median input and those near the limit or
/// beyond are measured again as [`outliers`] measures them (all of them, when another input is
/// so near the median that the two measures could order them differently).
pub(crate) fn outliers_given(
    own: &[f32],
    inputs: &[&[f32]],
    sq: &[f64],
    factor: f64,
) -> Vec<Outlier> {
    debug_assert_eq!(inputs.len(), sq.len());
    let n = inputs.len();
    if factor <= 0.0 || n < 2 {
        return Vec::new();
    }
    let dists: Vec<f64> = sq.iter().map(|d| d.sqrt()).collect();
    if !dists.iter().all(|d| d.is_finite()) {
        return outliers(own, inputs, factor);
    }
    let median = median_index(&dists);
    let reference = dists[median];
    if reference <= 0.0 {
        // A distance is 0 by one measure exactly when it is by the other (a sum of squares
        // rounded to `f32` is 0 only when every square is), and so is the median.
        return Vec::new();
    }
    let limit = factor * reference;
    let near_limit = |d: f64| d * (1.0 + MEASURES_AGREE) > limit * (1.0 - MEASURES_AGREE);
    if !dists.iter().any(|&d| near_limit(d)) {
        return Vec::new();
    }
    // The median input is the same by both measures unless another input is as near it as the
    // measures can differ.
    let apart = |d: f64| (d - reference).abs() > 2.0 * MEASURES_AGREE * d.max(reference);
    if !(0..n).all(|i| i == median || apart(dists[i])) {
        return outliers(own, inputs, factor);
    }
    let limit = factor * distance(own, inputs[median]);
    let measured = (0..n)
        .filter(|&i| near_limit(dists[i]))
        .map(|i| (i, distance(own, inputs[i])));
    flag(own, measured, limit)
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

    /// The screen flags the same inputs, with the same bits, whether it measures the distances
    /// itself or is given the rule's, including inputs placed at its limit to the last bit.
    #[test]
    fn given_the_rules_distances_the_screen_flags_exactly_what_it_flags_alone() {
        use rand::{Rng, SeedableRng};
        let dim = 40_000; // more than two blocks
        // Cases that reach the path measuring again: an input near the limit or beyond.
        let mut near_or_beyond = 0;
        for seed in 0..40u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let own: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() - 0.5).collect();
            let n = rng.random_range(2..8);
            let factor = 2.5;
            let mut inputs: Vec<Vec<f32>> = (0..n)
                .map(|_| {
                    let s = rng.random_range(0.01f32..0.1);
                    own.iter()
                        .map(|&o| o + s * (rng.random::<f32>() - 0.5))
                        .collect()
                })
                .collect();
            // One input moved to the limit by the screen's own measure, a little inside or
            // outside it, or far out.
            let k = rng.random_range(0..n);
            let refs: Vec<&[f32]> = inputs.iter().map(|x| x.as_slice()).collect();
            let mut dists: Vec<f64> = refs.iter().map(|x| distance(&own, x)).collect();
            dists.remove(k);
            dists.sort_by(f64::total_cmp);
            let at = factor * dists[(dists.len() - 1) / 2];
            let target = at * [1.0, 1.0 + 1e-6, 1.0 - 1e-6, 1.0 + 1e-4, 3.0][seed as usize % 5];
            let now = distance(&own, &inputs[k]);
            let scale = (target / now) as f32;
            for (v, &o) in inputs[k].iter_mut().zip(&own) {
                *v = o + (*v - o) * scale;
            }
            if seed % 3 == 0 {
                // A copy: two inputs at one distance, which may be the median.
                let copy = inputs[(k + 1) % n].clone();
                inputs.push(copy);
            }
            let refs: Vec<&[f32]> = inputs.iter().map(|x| x.as_slice()).collect();
            let mut rows = vec![own.as_slice()];
            rows.extend(refs.iter().copied());
            let sq = crate::aggregate::sq_dists_to(&rows, &own);
            let alone = outliers(&own, &refs, factor);
            let given = outliers_given(&own, &refs, &sq[1..], factor);
            assert_eq!(given, alone, "seed {seed}");
            if !alone.is_empty() || target >= at * (1.0 - 1e-4) {
                near_or_beyond += 1;
            }
        }
        assert!(
            near_or_beyond >= 8,
            "{near_or_beyond} cases at or beyond the limit"
        );
    }

    /// Distances that put an input just inside the limit, while the screen's own measure puts
    /// it just outside (the two measures' last bits differ), are not trusted: the screen
    /// measures again and flags it.
    #[test]
    fn an_input_near_the_limit_is_measured_again() {
        let own = [0.0f32; 4];
        let near = [
            [1.0f32, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        let factor = 2.0;
        // Just outside the limit (2) by the screen's own measure.
        let edge = [0.0f32, 0.0, 0.0, 2.0 * (1.0 + 5e-5)];
        let inputs: Vec<&[f32]> = near.iter().map(|x| &x[..]).chain([&edge[..]]).collect();
        let alone = outliers(&own, &inputs, factor);
        assert_eq!(alone.len(), 1);
        // Given distances that put it just inside.
        let inside = 2.0 * (1.0 - 5e-5);
        let sq = [1.0, 1.0, 1.0, inside * inside];
        assert_eq!(outliers_given(&own, &inputs, &sq, factor), alone);
        // Far inside by both: nothing, without measuring again.
        let sq = [1.0, 1.0, 1.0, 1.5 * 1.5];
        let inside_both = [0.0f32, 0.0, 0.0, 1.5];
        let inputs: Vec<&[f32]> = near
            .iter()
            .map(|x| &x[..])
            .chain([&inside_both[..]])
            .collect();
        assert!(outliers_given(&own, &inputs, &sq, factor).is_empty());
    }
}
