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

/// The direction a [`min_max`] or [`min_sum`] forgery moves along, away from the honest mean
/// (Shejwalkar and Houmansadr, NDSS 2021, Section IV): the forgery is `mean - gamma * dev`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Perturbation {
    /// The coordinate-wise sample standard deviation of the honest vectors ("inverse standard
    /// deviation", the paper's strongest in most of its settings).
    #[default]
    Std,
    /// The honest mean's unit vector ("inverse unit vector").
    UnitVector,
    /// The sign of the honest mean ("inverse sign").
    Sign,
}

impl Perturbation {
    /// Whether this is the default, [`Perturbation::Std`].
    pub fn is_std(&self) -> bool {
        *self == Perturbation::Std
    }
}

/// The perturbation vector `dev` of `kind` for the vectors `vectors` (updates or models), into
/// `out`. Cost O(k d).
pub fn perturbation(vectors: &[&[f32]], kind: Perturbation, out: &mut [f32]) {
    match kind {
        Perturbation::Std => {
            let mut mu = vec![0.0f32; out.len()];
            mean(vectors, &mut mu);
            alie(vectors, 1.0, out);
            out.iter_mut().zip(&mu).for_each(|(o, m)| *o -= m);
        }
        Perturbation::UnitVector => {
            mean(vectors, out);
            let norm = out
                .iter()
                .map(|&x| f64::from(x).powi(2))
                .sum::<f64>()
                .sqrt();
            let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            out.iter_mut()
                .for_each(|o| *o = (f64::from(*o) * inv) as f32);
        }
        Perturbation::Sign => {
            mean(vectors, out);
            out.iter_mut().for_each(|o| {
                *o = if *o > 0.0 {
                    1.0
                } else if *o < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            });
        }
    }
}

/// Largest `gamma >= 0` with `a * gamma^2 - 2 b gamma + c <= limit`, given that `gamma = 0`
/// satisfies it (`c <= limit`); 0 when `a` is 0 or the inputs are not finite.
fn largest_root(a: f64, b: f64, c: f64, limit: f64) -> f64 {
    if a <= 0.0 || !(a.is_finite() && b.is_finite() && c.is_finite() && limit.is_finite()) {
        return 0.0;
    }
    let disc = b * b - a * (c - limit);
    if disc < 0.0 {
        return 0.0;
    }
    ((b + disc.sqrt()) / a).max(0.0)
}

/// Per honest vector `h_i`, with `a_i = mean - h_i`: `(|a_i|^2, a_i . dev)`, and `|dev|^2`; the
/// squared distance of `mean - gamma dev` to `h_i` is `|a_i|^2 - 2 gamma a_i.dev + gamma^2
/// |dev|^2`. Also the squared distances between honest vectors, row by row.
struct Geometry {
    a2: Vec<f64>,
    adev: Vec<f64>,
    dev2: f64,
    pair2: Vec<Vec<f64>>,
}

fn geometry(honest: &[&[f32]], mu: &[f32], dev: &[f32]) -> Geometry {
    let k = honest.len();
    let mut a2 = vec![0.0; k];
    let mut adev = vec![0.0; k];
    for (i, h) in honest.iter().enumerate() {
        for ((&m, &x), &d) in mu.iter().zip(*h).zip(dev) {
            let a = f64::from(m) - f64::from(x);
            a2[i] += a * a;
            adev[i] += a * f64::from(d);
        }
    }
    let dev2 = dev.iter().map(|&d| f64::from(d).powi(2)).sum();
    let mut pair2 = vec![vec![0.0; k]; k];
    for i in 0..k {
        for j in (i + 1)..k {
            let d2: f64 = honest[i]
                .iter()
                .zip(honest[j])
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                .sum();
            pair2[i][j] = d2;
            pair2[j][i] = d2;
        }
    }
    Geometry {
        a2,
        adev,
        dev2,
        pair2,
    }
}

fn shifted(mu: &[f32], dev: &[f32], gamma: f64, out: &mut [f32]) {
    for ((o, &m), &d) in out.iter_mut().zip(mu).zip(dev) {
        *o = (f64::from(m) - gamma * f64::from(d)) as f32;
    }
}

/// The min-max attack (Shejwalkar and Houmansadr, "Manipulating the Byzantine: Optimizing Model
/// Poisoning Attacks and Defenses for Federated Learning", NDSS 2021, the aggregation-agnostic
/// form): `mean(honest) - gamma * dev` with the largest `gamma` whose distance to every honest
/// vector is at most the largest distance between two honest vectors, so no distance-based rule
/// can tell it from the most distant honest vector. The paper finds `gamma` by a halving search;
/// the condition is a quadratic in `gamma` per honest vector, solved here exactly. Returns
/// `gamma` (0 with fewer than two distinct honest vectors or a zero `dev`). Cost O(k^2 d).
pub fn min_max(honest: &[&[f32]], dev: &[f32], out: &mut [f32]) -> f64 {
    check(honest, out.len());
    let mut mu = vec![0.0f32; out.len()];
    mean(honest, &mut mu);
    let g = geometry(honest, &mu, dev);
    let limit = g.pair2.iter().flatten().copied().fold(0.0f64, f64::max);
    let gamma = (0..honest.len())
        .map(|i| largest_root(g.dev2, g.adev[i], g.a2[i], limit))
        .fold(f64::INFINITY, f64::min);
    let gamma = if gamma.is_finite() { gamma } else { 0.0 };
    shifted(&mu, dev, gamma, out);
    gamma
}

/// The min-sum attack (Shejwalkar and Houmansadr, NDSS 2021): as [`min_max`], with the largest
/// `gamma` whose sum of squared distances to the honest vectors is at most the largest such sum
/// of one honest vector to the others. Returns `gamma`. Cost O(k^2 d).
pub fn min_sum(honest: &[&[f32]], dev: &[f32], out: &mut [f32]) -> f64 {
    check(honest, out.len());
    let mut mu = vec![0.0f32; out.len()];
    mean(honest, &mut mu);
    let g = geometry(honest, &mu, dev);
    let limit = g
        .pair2
        .iter()
        .map(|row| row.iter().sum::<f64>())
        .fold(0.0f64, f64::max);
    let k = honest.len() as f64;
    let gamma = largest_root(k * g.dev2, g.adev.iter().sum(), g.a2.iter().sum(), limit);
    shifted(&mu, dev, gamma, out);
    gamma
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

    fn random_models(k: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..k)
            .map(|_| (0..d).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect())
            .collect()
    }

    fn dist(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// The paper's halving search for gamma (Shejwalkar and Houmansadr's reference code:
    /// start at 10, step by half the last failure, stop at a step of 1e-5), on `fits`.
    fn halving_search(fits: impl Fn(f64) -> bool) -> f64 {
        let (mut lamda, mut fail, mut succ) = (10.0f64, 10.0f64, 0.0f64);
        while (succ - lamda).abs() > 1e-5 {
            if fits(lamda) {
                succ = lamda;
                lamda += fail / 2.0;
            } else {
                lamda -= fail / 2.0;
            }
            fail /= 2.0;
        }
        succ
    }

    #[test]
    fn min_max_and_min_sum_agree_with_the_papers_search_and_sit_on_their_bound() {
        let models = random_models(6, 50, 11);
        let honest: Vec<&[f32]> = models.iter().map(Vec::as_slice).collect();
        let mut dev = vec![0.0f32; 50];
        perturbation(&honest, Perturbation::UnitVector, &mut dev);
        let max_pair = (0..6)
            .flat_map(|i| (0..6).map(move |j| (i, j)))
            .map(|(i, j)| dist(&models[i], &models[j]))
            .fold(0.0, f64::max);
        let mut mu = vec![0.0f32; 50];
        mean(&honest, &mut mu);
        let at = |gamma: f64| -> Vec<f32> {
            let mut v = vec![0.0f32; 50];
            shifted(&mu, &dev, gamma, &mut v);
            v
        };
        let worst = |v: &[f32]| honest.iter().map(|h| dist(v, h)).fold(0.0, f64::max);
        let mut out = vec![0.0f32; 50];
        let gamma = min_max(&honest, &dev, &mut out);
        assert!(gamma > 0.1, "gamma {gamma}");
        assert!((worst(&out) - max_pair).abs() < 1e-4 * max_pair);
        assert!(worst(&at(gamma * 1.01)) > max_pair);
        let paper = halving_search(|g| worst(&at(g)) <= max_pair);
        assert!((paper - gamma).abs() < 1e-3, "paper {paper}, exact {gamma}");

        let sum2 = |v: &[f32]| honest.iter().map(|h| dist(v, h).powi(2)).sum::<f64>();
        let max_sum = honest.iter().map(|h| sum2(h)).fold(0.0, f64::max);
        let gamma = min_sum(&honest, &dev, &mut out);
        assert!(gamma > 0.1, "gamma {gamma}");
        assert!((sum2(&out) - max_sum).abs() < 1e-4 * max_sum);
        assert!(sum2(&at(gamma * 1.01)) > max_sum);
        let paper = halving_search(|g| sum2(&at(g)) <= max_sum);
        assert!((paper - gamma).abs() < 1e-3, "paper {paper}, exact {gamma}");
    }

    #[test]
    fn perturbations_and_degenerate_inputs() {
        let honest = honest();
        let mut dev = [0.0f32; 2];
        perturbation(&honest, Perturbation::Std, &mut dev);
        assert_eq!(dev, [2.0, 2.0]);
        perturbation(&honest, Perturbation::UnitVector, &mut dev);
        assert_eq!(dev, [1.0, 0.0]);
        perturbation(&honest, Perturbation::Sign, &mut dev);
        assert_eq!(dev, [1.0, 0.0]);
        // One honest vector: no spread to hide in, so the forgery is that vector.
        let mut out = [9.0f32; 2];
        assert_eq!(min_max(&honest[..1], &[1.0, 1.0], &mut out), 0.0);
        assert_eq!(out, H[0]);
        assert_eq!(min_sum(&honest, &[0.0, 0.0], &mut out), 0.0);
        assert_eq!(out, [3.0, 0.0]);
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
