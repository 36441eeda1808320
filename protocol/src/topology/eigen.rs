//! Eigenvalues of a dense symmetric matrix by the cyclic Jacobi method.
//!
//! Used for analysis (spectral gaps), not per round. Each sweep applies a plane rotation to every
//! off-diagonal pair and costs O(n^3); quadratic convergence usually ends it within 6 to 10
//! sweeps, so a few hundred nodes take well under a second in an optimised build. Accurate to a
//! small multiple of machine epsilon times the matrix norm (Demmel and Veselic 1992 for the
//! relative accuracy of Jacobi); the rotation formulas are those of Rutishauser (1966).

/// Sweeps after which the iteration stops even if not converged (it always has by then).
const MAX_SWEEPS: usize = 100;

/// The eigenvalues of the symmetric `n x n` matrix `matrix` (row-major), largest first.
///
/// Only the upper triangle is read. Panics if `matrix.len() != n * n`.
pub fn symmetric_eigenvalues(matrix: &[f64], n: usize) -> Vec<f64> {
    assert_eq!(matrix.len(), n * n, "matrix is not n x n");
    let mut a = vec![0.0; n * n];
    for p in 0..n {
        for q in p..n {
            a[p * n + q] = matrix[p * n + q];
            a[q * n + p] = matrix[p * n + q];
        }
    }
    let norm_sq: f64 = a.iter().map(|x| x * x).sum();
    for sweep in 0..MAX_SWEEPS {
        let off: f64 = (0..n)
            .flat_map(|p| (p + 1..n).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q] * a[p * n + q])
            .sum();
        if off <= f64::EPSILON * f64::EPSILON * norm_sq * 1e-4 || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                rotate(&mut a, n, p, q, sweep);
            }
        }
    }
    let mut values: Vec<f64> = (0..n).map(|i| a[i * n + i]).collect();
    values.sort_by(|x, y| y.total_cmp(x));
    values
}

/// Annihilates `a[p][q]` with one Jacobi rotation in the (p, q) plane.
fn rotate(a: &mut [f64], n: usize, p: usize, q: usize, sweep: usize) {
    let apq = a[p * n + q];
    if apq == 0.0 {
        return;
    }
    let (app, aqq) = (a[p * n + p], a[q * n + q]);
    // After a few sweeps, an element negligible next to both diagonal entries is set to zero.
    let g = 100.0 * apq.abs();
    if sweep > 3 && app.abs() + g == app.abs() && aqq.abs() + g == aqq.abs() {
        a[p * n + q] = 0.0;
        a[q * n + p] = 0.0;
        return;
    }
    let theta = (aqq - app) / (2.0 * apq);
    // t = tan of the rotation angle, the smaller root of t^2 + 2 theta t - 1 = 0.
    let t = if theta.abs() > 1e150 {
        0.5 / theta
    } else {
        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
    };
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;
    for k in 0..n {
        if k == p || k == q {
            continue;
        }
        let akp = a[k * n + p];
        let akq = a[k * n + q];
        let new_p = c * akp - s * akq;
        let new_q = s * akp + c * akq;
        a[k * n + p] = new_p;
        a[p * n + k] = new_p;
        a[k * n + q] = new_q;
        a[q * n + k] = new_q;
    }
    a[p * n + p] = app - t * apq;
    a[q * n + q] = aqq + t * apq;
    a[p * n + q] = 0.0;
    a[q * n + p] = 0.0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::f64::consts::PI;

    #[test]
    fn tridiagonal_toeplitz() {
        // 2 on the diagonal, -1 beside it: eigenvalues 2 - 2 cos(k pi / (n + 1)), k = 1..n.
        let n = 40;
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            m[i * n + i] = 2.0;
            if i + 1 < n {
                m[i * n + i + 1] = -1.0;
                m[(i + 1) * n + i] = -1.0;
            }
        }
        let got = symmetric_eigenvalues(&m, n);
        let mut want: Vec<f64> = (1..=n)
            .map(|k| 2.0 - 2.0 * (k as f64 * PI / (n as f64 + 1.0)).cos())
            .collect();
        want.sort_by(|x, y| y.total_cmp(x));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "got {g}, want {w}");
        }
    }

    #[test]
    fn small_and_degenerate() {
        // [[2, 1], [1, 2]]: 3 and 1.
        assert_eq!(symmetric_eigenvalues(&[2.0, 1.0, 1.0, 2.0], 2).len(), 2);
        let v = symmetric_eigenvalues(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((v[0] - 3.0).abs() < 1e-15 && (v[1] - 1.0).abs() < 1e-15);
        // All-ones 3x3: 3, 0, 0.
        let v = symmetric_eigenvalues(&[1.0; 9], 3);
        assert!((v[0] - 3.0).abs() < 1e-14 && v[1].abs() < 1e-14 && v[2].abs() < 1e-14);
        assert_eq!(symmetric_eigenvalues(&[], 0), Vec::<f64>::new());
        assert_eq!(symmetric_eigenvalues(&[-4.0], 1), vec![-4.0]);
    }

    #[test]
    fn random_matrix_keeps_trace_and_frobenius_norm() {
        let n = 60;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut m = vec![0.0; n * n];
        for p in 0..n {
            for q in p..n {
                let x = rng.random_range(-1.0..1.0);
                m[p * n + q] = x;
                m[q * n + p] = x;
            }
        }
        let v = symmetric_eigenvalues(&m, n);
        let trace: f64 = (0..n).map(|i| m[i * n + i]).sum();
        let frob: f64 = m.iter().map(|x| x * x).sum();
        assert!((v.iter().sum::<f64>() - trace).abs() < 1e-10);
        assert!((v.iter().map(|x| x * x).sum::<f64>() - frob).abs() < 1e-10);
        assert!(v.windows(2).all(|w| w[0] >= w[1]));
    }
}
