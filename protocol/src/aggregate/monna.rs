//! MoNNA, the average of the inputs nearest to the node's own model (Farhadkhani, Guerraoui,
//! Gupta, Hoang, Pinot, Stephan 2023, "Robust collaborative learning with linear gradient
//! overhead").

use super::kernels::{self, NonFinite};
use super::rows::Rows;

/// Distances, ordering and coefficients, reused between calls.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    dists: Vec<f64>,
    order: Vec<usize>,
    coefs: Vec<f32>,
}

/// MoNNA: the weighted average (weights renormalised) of the n - f inputs nearest to `own`
/// (ties by index), as ByzFL's `MoNNA(f, idx)` with `own` in the role of `vectors[idx]`. The
/// node's own model among the inputs is at distance 0, so it is always selected.
///
/// Breakdown point: f/n for f < n/2, with `own` honest (in a peer-to-peer network the node trusts
/// its own model). Cost: O(n d), two passes (distances, average), plus O(n log n). The distance
/// pass also proves the inputs and `own` finite. Returns the number of inputs discarded (f).
pub(crate) fn monna<R: Rows + ?Sized>(
    rows: &R,
    f: usize,
    w: &[f32],
    own: &[f32],
    ws: &mut Workspace,
    out: &mut [f32],
) -> Result<usize, NonFinite> {
    let n = rows.count();
    ws.dists.resize(n, 0.0);
    kernels::sq_dists_to(rows, own, &mut ws.dists);
    if !ws.dists.iter().all(|d| d.is_finite()) {
        if !kernels::all_finite(own) {
            return Err(NonFinite::Center);
        }
        if kernels::first_non_finite(rows, own.len()).is_some() {
            return Err(NonFinite::Input);
        }
        // Finite inputs whose distance overflowed: infinitely far, selected last.
    }
    kernels::argsort(&mut ws.order, &ws.dists);
    let keep = n - f;
    let total: f32 = ws.order[..keep].iter().map(|&i| w[i]).sum();
    ws.coefs.clear();
    ws.coefs.resize(n, 0.0);
    for &i in &ws.order[..keep] {
        ws.coefs[i] = w[i] / total;
    }
    kernels::combine(rows, &ws.coefs, None, out);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_the_inputs_nearest_to_own() {
        let xs = [[0.0f32], [1.0], [-1.0], [100.0], [2.0]];
        let rows: Vec<&[f32]> = xs.iter().map(|r| &r[..]).collect();
        let mut ws = Workspace::default();
        let mut out = [0.0];
        let w = [0.2; 5];
        assert_eq!(monna(&rows[..], 2, &w, &[0.0], &mut ws, &mut out), Ok(2));
        assert_eq!(out, [0.0]);
        assert_eq!(monna(&rows[..], 1, &w, &[0.0], &mut ws, &mut out), Ok(1));
        assert!((out[0] - 0.5).abs() < 1e-6);
        let nan = [f32::NAN];
        let bad = [&xs[0][..], &nan[..]];
        let r = monna(&bad[..], 0, &[0.5, 0.5], &[0.0], &mut ws, &mut out);
        assert_eq!(r, Err(NonFinite::Input));
    }
}
