//! Geometric median by the smoothed Weiszfeld algorithm (Pillutla, Kakade, Harchaoui 2022,
//! "Robust aggregation for federated learning", RFA; Weiszfeld 1937).

use super::kernels;
use super::rows::Rows;

/// Distances and step weights, reused between calls.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    dists: Vec<f64>,
    betas: Vec<f32>,
}

/// Approximate weighted geometric median `argmin_z sum_i w_i ||z - x_i||` by `iterations`
/// smoothed Weiszfeld steps, exactly as ByzFL (`GeometricMedian(nu, T)`) and the RFA code:
/// start at z = 0, then repeat
/// `beta_i = w_i / max(||x_i - z||, nu)`, `z = sum_i beta_i x_i / sum_i beta_i`.
/// The weights `w` play the role of RFA's `alpha`.
///
/// Breakdown point: 1/2 for the exact geometric median (the approximation after T steps is
/// within the smoothing `nu` and the convergence error). Cost: O(T n d): per step, one pass for
/// the distances and one for the weighted sum.
pub(crate) fn geometric_median<R: Rows + ?Sized>(
    rows: &R,
    w: &[f32],
    nu: f32,
    iterations: usize,
    ws: &mut Workspace,
    out: &mut [f32],
) {
    let n = rows.count();
    ws.dists.resize(n, 0.0);
    ws.betas.resize(n, 0.0);
    out.fill(0.0);
    let nu = f64::from(nu);
    for _ in 0..iterations {
        kernels::sq_dists_to(rows, out, &mut ws.dists);
        let mut total = 0.0f64;
        for ((b, &d), &wi) in ws.betas.iter_mut().zip(&ws.dists).zip(w) {
            let beta = f64::from(wi) / d.sqrt().max(nu);
            total += beta;
            *b = beta as f32;
        }
        let inv = (1.0 / total) as f32;
        ws.betas.iter_mut().for_each(|b| *b *= inv);
        kernels::combine(rows, &ws.betas, None, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_the_centre_of_a_symmetric_set_despite_one_outlier() {
        let rows = [
            [1.0f32, 0.0],
            [-1.0, 0.0],
            [0.0, 1.0],
            [0.0, -1.0],
            [100.0, 100.0],
        ];
        let refs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
        let mut ws = Workspace::default();
        let mut out = [0.0; 2];
        geometric_median(&refs[..], &[0.2; 5], 1e-6, 200, &mut ws, &mut out);
        // The outlier pulls the median only by O(1/distance) along its direction.
        assert!(out[0].abs() < 0.5 && out[1].abs() < 0.5, "{out:?}");
        assert!((out[0] - out[1]).abs() < 1e-4);
    }

    #[test]
    fn equal_inputs_give_that_input() {
        let x = [3.0f32, -4.0, 0.5];
        let mut ws = Workspace::default();
        let mut out = [0.0; 3];
        geometric_median(&[&x[..]; 4][..], &[0.25; 4], 0.1, 3, &mut ws, &mut out);
        for k in 0..3 {
            assert!((out[k] - x[k]).abs() < 1e-6);
        }
    }
}
