//! The forged vectors themselves: pure functions over flat `f32` models.
//!
//! Every function writes `out.len()` coordinates and reads the same number from each input model;
//! statistics are accumulated in `f64`. They panic if an input model's length differs from
//! `out.len()` or if a set of models they average is empty: [`super::Attack::plan`] checks both
//! before calling them.

use super::{NonFinite, Victim};
use rand::Rng;
use std::f64::consts::PI;

fn check(models: &[&[f32]], dim: usize) {
    assert!(
        !models.is_empty(),
        "an attack needs at least one model to work from"
    );
    for m in models {
        assert_eq!(m.len(), dim, "model length differs from the output length");
    }
}

/// Coordinate-wise mean of `models` into `out`.
pub fn mean(models: &[&[f32]], out: &mut [f32]) {
    check(models, out.len());
    let k = models.len() as f64;
    for (c, o) in out.iter_mut().enumerate() {
        let s: f64 = models.iter().map(|m| f64::from(m[c])).sum();
        *o = (s / k) as f32;
    }
}

/// Sign flipping: the negated mean of the honest models, `-mean(honest)`.
///
/// As in ByzFL's `SignFlipping`, after Allen-Zhu et al., "Byzantine-Resilient Non-Convex
/// Stochastic Gradient Descent" (ICLR 2021). Cost O(k d) for k models of d coordinates.
pub fn sign_flip(honest: &[&[f32]], out: &mut [f32]) {
    mean(honest, out);
    out.iter_mut().for_each(|o| *o = -*o);
}

/// Inner product manipulation: `-epsilon * mean(honest)`.
///
/// Xie, Koyejo and Gupta, "Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product
/// Manipulation" (UAI 2020). A small `epsilon` (0.1) slips past distance-based rules while making
/// the aggregate's inner product with the true direction negative; a large one (> 1) reverses it
/// outright. Cost O(k d).
pub fn ipm(honest: &[&[f32]], epsilon: f32, out: &mut [f32]) {
    mean(honest, out);
    let e = f64::from(epsilon);
    out.iter_mut()
        .for_each(|o| *o = (-e * f64::from(*o)) as f32);
}

/// [`ipm`] on the round's updates: `reference - epsilon * mean(honest - reference)`, the honest
/// models' mean step from `reference` turned back and scaled (Xie, Koyejo and Gupta, UAI 2020,
/// define IPM on gradients; a model's update is its gradient step). Cost O(k d).
pub fn ipm_update(honest: &[&[f32]], reference: &[f32], epsilon: f32, out: &mut [f32]) {
    assert_eq!(
        reference.len(),
        out.len(),
        "reference of the model's dimension"
    );
    mean(honest, out);
    let e = f64::from(epsilon);
    for (o, &r) in out.iter_mut().zip(reference) {
        let r = f64::from(r);
        *o = (r - e * (f64::from(*o) - r)) as f32;
    }
}

/// A Little Is Enough: `mean(honest) + z * std(honest)` coordinate-wise, with the sample standard
/// deviation (`ddof = 1`, as ByzFL and the decentralised reference code compute it). With a single
/// model the deviation is taken as 0 and the result is that model.
///
/// Baruch, Baruch and Goldberg, "A Little Is Enough: Circumventing Defenses for Distributed
/// Learning" (NeurIPS 2019); see [`super::alie_z`] for the paper's choice of `z`. Cost O(k d).
pub fn alie(honest: &[&[f32]], z: f64, out: &mut [f32]) {
    check(honest, out.len());
    let k = honest.len() as f64;
    for (c, o) in out.iter_mut().enumerate() {
        let mu = honest.iter().map(|m| f64::from(m[c])).sum::<f64>() / k;
        let sd = if honest.len() > 1 {
            let ss: f64 = honest.iter().map(|m| (f64::from(m[c]) - mu).powi(2)).sum();
            (ss / (k - 1.0)).sqrt()
        } else {
            0.0
        };
        *o = (mu + z * sd) as f32;
    }
}

/// Gaussian noise: `own + N(0, sigma^2)` independently per coordinate (Box-Muller on `rng`).
/// Deterministic for a given `rng` state. Cost O(d).
pub fn gaussian<R: Rng + ?Sized>(own: &[f32], sigma: f32, rng: &mut R, out: &mut [f32]) {
    check(&[own], out.len());
    let sigma = f64::from(sigma);
    for (pair, src) in out.chunks_mut(2).zip(own.chunks(2)) {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let radius = (-2.0 * (1.0 - rng.random::<f64>()).ln()).sqrt();
        let angle = 2.0 * PI * rng.random::<f64>();
        let noise = [radius * angle.cos(), radius * angle.sin()];
        for ((o, s), n) in pair.iter_mut().zip(src).zip(noise) {
            *o = (f64::from(*s) + sigma * n) as f32;
        }
    }
}

/// The dissensus attack on one honest victim `v`:
/// `x_v - epsilon * (sum_j W_vj (x_j - x_v)) / (sum_b W_vb)`, summing over the victim's good
/// neighbours `j` and its Byzantine neighbours `b`.
///
/// He, Karimireddy and Jaggi, "Byzantine-robust decentralized learning via ClippedGossip" (2022),
/// Section 5. If every Byzantine neighbour of `v` sends this, plain gossip moves `v` by
/// `(1 - epsilon)` times its honest step: `epsilon = 1` freezes the victim at `x_v`, and
/// `epsilon > 1` pushes it away from its neighbours. A victim with no Byzantine weight (zero,
/// negative or not finite) cannot be moved, and `out` is set to `x_v`, as it is when no good
/// neighbour is known. Good models beyond the
/// length of `victim.good_weights` are ignored. Cost O(k d).
pub fn dissensus(victim: &Victim<'_>, epsilon: f32, out: &mut [f32]) {
    check(&[victim.model], out.len());
    // No good neighbour seen (an attacker whose only neighbour is its victim): nothing pulls the
    // victim, and the forgery is the victim's own model.
    for m in victim.good {
        assert_eq!(
            m.len(),
            out.len(),
            "model length differs from the output length"
        );
    }
    let byz = victim.byzantine_weight;
    let scale = if byz > 0.0 && byz.is_finite() {
        f64::from(epsilon) / byz
    } else {
        0.0
    };
    for (c, o) in out.iter_mut().enumerate() {
        let xv = f64::from(victim.model[c]);
        let pull: f64 = victim
            .good
            .iter()
            .zip(victim.good_weights)
            .map(|(m, w)| w * (f64::from(m[c]) - xv))
            .sum();
        *o = (xv - scale * pull) as f32;
    }
}

/// Fills `out` with a non-finite value: the payload a careless aggregator lets poison everything.
pub fn non_finite(value: NonFinite, out: &mut [f32]) {
    out.fill(value.value());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn dissensus_without_good_neighbours_sends_the_victims_model() {
        let x = [1.0f32, -2.0, 3.0];
        let victim = Victim {
            model: &x,
            good: &[],
            good_weights: &[],
            byzantine_weight: 0.5,
        };
        let mut out = [0.0f32; 3];
        dissensus(&victim, 1.5, &mut out);
        assert_eq!(out, x);
    }

    const H: [[f32; 2]; 3] = [[1.0, -2.0], [3.0, 0.0], [5.0, 2.0]];

    fn honest() -> Vec<&'static [f32]> {
        H.iter().map(|r| &r[..]).collect()
    }

    #[test]
    fn mean_based_attacks() {
        let mut out = [0.0; 2];
        sign_flip(&honest(), &mut out);
        assert_eq!(out, [-3.0, 0.0]);
        ipm(&honest(), 0.5, &mut out);
        assert_eq!(out, [-1.5, 0.0]);
        // Sample std of (1, 3, 5) and (-2, 0, 2) is 2 for both.
        alie(&honest(), 1.0, &mut out);
        assert_eq!(out, [5.0, 2.0]);
        alie(&honest()[..1], 3.0, &mut out);
        assert_eq!(out, [1.0, -2.0]);
    }

    #[test]
    #[should_panic(expected = "at least one model")]
    fn mean_of_nothing_panics() {
        mean(&[], &mut [0.0; 2]);
    }

    #[test]
    fn gaussian_has_the_requested_spread_and_is_seeded() {
        let own = vec![1.0f32; 20_001];
        let mut a = vec![0.0; own.len()];
        let mut b = vec![0.0; own.len()];
        gaussian(&own, 2.0, &mut ChaCha8Rng::seed_from_u64(7), &mut a);
        gaussian(&own, 2.0, &mut ChaCha8Rng::seed_from_u64(7), &mut b);
        assert_eq!(a, b);
        let n = a.len() as f64;
        let m = a.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let v = a.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / (n - 1.0);
        assert!((m - 1.0).abs() < 0.05, "mean {m}");
        assert!((v.sqrt() - 2.0).abs() < 0.05, "std {}", v.sqrt());
        gaussian(&own, 0.0, &mut ChaCha8Rng::seed_from_u64(7), &mut a);
        assert!(a.iter().all(|&x| x == 1.0));
    }

    #[test]
    fn dissensus_cancels_plain_gossip_at_epsilon_one() {
        let x_v = [0.5f32, -1.0];
        let good = honest();
        let weights = [0.2, 0.2, 0.1];
        let victim = Victim {
            model: &x_v,
            good: &good,
            good_weights: &weights,
            byzantine_weight: 0.3,
        };
        let mut forged = [0.0; 2];
        dissensus(&victim, 1.0, &mut forged);
        // Victim's gossip step: x_v + sum_j W (x_j - x_v) + W_byz (forged - x_v).
        for c in 0..2 {
            let xv = f64::from(x_v[c]);
            let step: f64 = good
                .iter()
                .zip(weights)
                .map(|(m, w)| w * (f64::from(m[c]) - xv))
                .sum::<f64>()
                + 0.3 * (f64::from(forged[c]) - xv);
            assert!(step.abs() < 1e-6, "coordinate {c} moved by {step}");
        }
        let none = Victim {
            byzantine_weight: 0.0,
            ..victim
        };
        dissensus(&none, 1.0, &mut forged);
        assert_eq!(forged, x_v);
    }

    #[test]
    fn non_finite_fills() {
        let mut out = [0.0f32; 3];
        non_finite(NonFinite::Nan, &mut out);
        assert!(out.iter().all(|x| x.is_nan()));
        non_finite(NonFinite::NegInf, &mut out);
        assert!(out.iter().all(|&x| x == f32::NEG_INFINITY));
    }

    proptest::proptest! {
        #[test]
        fn dissensus_at_epsilon_one_is_a_fixed_point_of_gossip(
            x_v in proptest::collection::vec(-10.0f32..10.0, 3),
            good in proptest::collection::vec(proptest::collection::vec(-10.0f32..10.0, 3), 1..6),
            raw in proptest::collection::vec(0.01f64..1.0, 6),
            byz in 0.01f64..1.0,
        ) {
            let good: Vec<&[f32]> = good.iter().map(Vec::as_slice).collect();
            let weights = &raw[..good.len()];
            let victim = Victim { model: &x_v, good: &good, good_weights: weights, byzantine_weight: byz };
            let mut forged = [0.0f32; 3];
            dissensus(&victim, 1.0, &mut forged);
            for c in 0..3 {
                let xv = f64::from(x_v[c]);
                let honest_step: f64 =
                    good.iter().zip(weights).map(|(m, w)| w * (f64::from(m[c]) - xv)).sum();
                let step = honest_step + byz * (f64::from(forged[c]) - xv);
                // f32 rounding of the forged value, amplified by nothing larger than 1.
                proptest::prop_assert!(step.abs() < 1e-4 * (1.0 + honest_step.abs()), "step {step}");
            }
        }
    }
}
