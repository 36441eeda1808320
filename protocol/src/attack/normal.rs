//! The standard normal distribution: its CDF, its inverse, and ALIE's `z` from `n` and `f`.
//!
//! Written out here because `std` has no `erf` and the crate takes no numerics dependency.

use std::f64::consts::PI;

/// Acklam's rational approximation: central region numerator.
const A: [f64; 6] = [
    -3.969_683_028_665_376e1,
    2.209_460_984_245_205e2,
    -2.759_285_104_469_687e2,
    1.383_577_518_672_69e2,
    -3.066_479_806_614_716e1,
    2.506_628_277_459_239,
];
/// Central region denominator.
const B: [f64; 5] = [
    -5.447_609_879_822_406e1,
    1.615_858_368_580_409e2,
    -1.556_989_798_598_866e2,
    6.680_131_188_771_972e1,
    -1.328_068_155_288_572e1,
];
/// Tail region numerator.
const C: [f64; 6] = [
    -7.784_894_002_430_293e-3,
    -3.223_964_580_411_365e-1,
    -2.400_758_277_161_838,
    -2.549_732_539_343_734,
    4.374_664_141_464_968,
    2.938_163_982_698_783,
];
/// Tail region denominator.
const D: [f64; 4] = [
    7.784_695_709_041_462e-3,
    3.224_671_290_700_398e-1,
    2.445_134_137_142_996,
    3.754_408_661_907_416,
];
/// Below this probability Acklam's tail formula applies.
const P_LOW: f64 = 0.024_25;

/// The probability `alie_z` clamps to, so that `z` stays finite (|z| <= 4.75).
const ALIE_P_CLAMP: f64 = 1e-6;

/// Standard normal density.
fn density(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

/// The standard normal CDF, `Phi(x) = P(Z <= x)`, to about 1e-15 relative accuracy.
///
/// For `|x| <= 3` the power series `Phi(x) = 1/2 + phi(x) * sum_k x^(2k+1) / (2k+1)!!` (all terms
/// of one sign, no cancellation inside the sum); beyond, the tail by the continued fraction
/// `Q(x) = phi(x) / (x + 1/(x + 2/(x + 3/(x + ...))))`, evaluated backwards.
pub fn normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x.abs() <= 3.0 {
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        let mut k = 1.0;
        while term.abs() > 1e-17 * sum.abs() && k < 400.0 {
            term *= x2 / (2.0 * k + 1.0);
            sum += term;
            k += 1.0;
        }
        0.5 + density(x) * sum
    } else {
        let t = x.abs();
        if t > 40.0 {
            return if x > 0.0 { 1.0 } else { 0.0 };
        }
        let mut frac = t;
        for k in (1..=300).rev() {
            frac = t + f64::from(k) / frac;
        }
        let tail = density(t) / frac;
        if x > 0.0 { 1.0 - tail } else { tail }
    }
}

/// The inverse of the standard normal CDF (the probit function): `z` with `Phi(z) = p`.
///
/// Acklam's rational approximation (relative error below 1.2e-9) followed by one Halley step
/// against [`normal_cdf`], which brings it to about 1e-15. Upper-half probabilities use the
/// symmetry `Phi^{-1}(p) = -Phi^{-1}(1 - p)`, where `1 - p` is exact. Returns `-inf` for `p <= 0`,
/// `+inf` for `p >= 1` and NaN for NaN.
pub fn inverse_normal_cdf(p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p > 0.5 {
        return -inverse_lower(1.0 - p);
    }
    inverse_lower(p)
}

/// The probit for `0 < p <= 1/2`.
fn inverse_lower(p: f64) -> f64 {
    let x = if p < P_LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // One Halley step on f(x) = Phi(x) - p.
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * PI).sqrt() * (0.5 * x * x).exp();
    x - u / (1.0 + 0.5 * x * u)
}

/// ALIE's perturbation size for `n` nodes of which `f` are Byzantine, following Baruch, Baruch and
/// Goldberg, "A Little Is Enough: Circumventing Defenses for Distributed Learning" (NeurIPS 2019),
/// Algorithm 3: `s = floor(n/2 + 1) - f` honest "supporters" are needed for a majority, and
/// `z = Phi^{-1}((n - s) / n)` is the largest shift that keeps the forged value closer to the
/// mean than that many honest values.
///
/// The probability is clamped into `[1e-6, 1 - 1e-6]` so that `z` is finite (|z| <= 4.75) when the
/// paper's assumption `f < n/2 + 1` fails or `n` is tiny; `n = 0` gives 0. (The decentralised code
/// of He, Karimireddy and Jaggi uses `(n - f - s) / (n - f)` instead; set `z` explicitly to
/// reproduce it.)
pub fn alie_z(n: usize, f: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n_f = n as f64;
    let s = (n / 2 + 1) as f64 - f as f64;
    let p = ((n_f - s) / n_f).clamp(ALIE_P_CLAMP, 1.0 - ALIE_P_CLAMP);
    inverse_normal_cdf(p)
}

/// `erf(x)`, for tests of the CDF against the identity `Phi(x) = (1 + erf(x / sqrt 2)) / 2`.
#[cfg(test)]
fn erf(x: f64) -> f64 {
    2.0 * normal_cdf(x * std::f64::consts::SQRT_2) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference quantiles from Wichura's AS241 (Python `statistics.NormalDist().inv_cdf`).
    const QUANTILES: [(f64, f64); 10] = [
        (0.5, 0.0),
        (0.975, 1.959_963_984_540_053_6),
        (0.95, 1.644_853_626_951_471_5),
        (0.72, 0.582_841_507_271_216_2),
        (0.3, -0.524_400_512_708_040_7),
        (0.001, -3.090_232_306_167_813),
        (0.999, 3.090_232_306_167_813),
        (1e-10, -6.361_340_902_404_056),
        (0.024_25, -1.972_961_051_311_884_5),
        (0.975_75, 1.972_961_051_311_884_7),
    ];

    #[test]
    fn inverse_cdf_matches_known_quantiles() {
        for (p, z) in QUANTILES {
            let got = inverse_normal_cdf(p);
            assert!(
                (got - z).abs() <= 1e-12 * z.abs().max(1.0),
                "p={p}: got {got}, want {z}"
            );
        }
    }

    #[test]
    fn cdf_matches_known_values_and_inverts() {
        // Phi(1) and Phi(-4), known to 16 digits.
        assert!((normal_cdf(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
        assert!((normal_cdf(-4.0) - 3.167_124_183_311_992e-5).abs() < 1e-18);
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-15);
        // Above the median Phi(x) is near 1 and its rounding limits the round trip, so only the
        // lower half and a little beyond are checked this tightly.
        for i in -80..=30 {
            let x = f64::from(i) / 10.0;
            let back = inverse_normal_cdf(normal_cdf(x));
            assert!((back - x).abs() < 1e-9, "x={x}: round trip gave {back}");
        }
        // Continuity across the switch from series to continued fraction.
        let below = normal_cdf(-3.0);
        let above = normal_cdf(-3.000_000_001);
        assert!(below > above && below - above < 1e-11);
    }

    #[test]
    fn inverse_cdf_edges() {
        assert_eq!(inverse_normal_cdf(0.0), f64::NEG_INFINITY);
        assert_eq!(inverse_normal_cdf(1.0), f64::INFINITY);
        assert!(inverse_normal_cdf(f64::NAN).is_nan());
        assert!(inverse_normal_cdf(-0.5).is_infinite());
    }

    #[test]
    fn alie_z_follows_baruch() {
        // n = 50, f = 12: s = 14, p = 36/50 = 0.72.
        assert!((alie_z(50, 12) - 0.582_841_507_271_216_2).abs() < 1e-12);
        // n = 10, f = 2: s = 4, p = 0.6.
        assert!((alie_z(10, 2) - 0.253_347_103_135_799_7).abs() < 1e-12);
        // n = 7, f = 2: s = floor(4.5) - 2 = 2, p = 5/7.
        assert!((alie_z(7, 2) - inverse_normal_cdf(5.0 / 7.0)).abs() < 1e-15);
        // More attackers, larger shift.
        assert!(alie_z(50, 20) > alie_z(50, 12));
        // A Byzantine majority still yields a finite z.
        let z = alie_z(10, 9);
        assert!(z.is_finite() && z > 4.0);
        assert_eq!(alie_z(0, 0), 0.0);
    }
}
