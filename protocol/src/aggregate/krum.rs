//! Krum and multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer 2017, "Machine learning with
//! adversaries: Byzantine tolerant gradient descent").
//!
//! Score. The literature has two definitions of an input's score. This module uses ByzFL's: the
//! **mean** of the squared distances to its n - f - 1 nearest other inputs. (The paper, and
//! the reference code of He, Karimireddy and Jaggi, **sum** the squared distances to the
//! n - f - 2 nearest.) Both select an input among the closest-packed ones; they can differ when
//! scores are close.

use super::kernels;
use super::rows::Rows;

/// Pairwise distances, scores and orderings, reused between calls.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    dist: Vec<f64>,
    scores: Vec<f64>,
    near: Vec<f64>,
    order: Vec<usize>,
    coefs: Vec<f32>,
}

impl Workspace {
    /// Computes every input's score: the mean squared distance to its n - f - 1 nearest others.
    fn score<R: Rows + ?Sized>(&mut self, rows: &R, f: usize, dim: usize) {
        let n = rows.count();
        self.dist.resize(n * n, 0.0);
        kernels::pairwise_sq_dists(rows, dim, &mut self.dist);
        let keep = n - f - 1;
        self.scores.clear();
        for i in 0..n {
            self.near.clear();
            let row = &self.dist[i * n..(i + 1) * n];
            self.near.extend(
                row.iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &d)| d),
            );
            self.near.sort_unstable_by(f64::total_cmp);
            let s: f64 = self.near[..keep].iter().sum();
            self.scores.push(s / keep as f64);
        }
        kernels::argsort(&mut self.order, &self.scores);
    }
}

/// Krum: the input with the smallest score (the first on ties). Needs n ≥ 2f + 3. Weights are
/// ignored.
///
/// Breakdown point: f/n for n ≥ 2f + 3. Cost: O(n² d) for the pairwise distances (one blockwise
/// pass over the inputs) plus O(n² log n) for the scores. Returns the number of inputs discarded
/// (n - 1).
pub(crate) fn krum<R: Rows + ?Sized>(
    rows: &R,
    f: usize,
    ws: &mut Workspace,
    out: &mut [f32],
) -> usize {
    let n = rows.count();
    ws.score(rows, f, out.len());
    out.copy_from_slice(rows.row(ws.order[0]));
    n - 1
}

/// Multi-Krum: the weighted average of the `m` inputs with the smallest scores (ties by index);
/// ByzFL's default m = n - f when `m` is `None`. Weights of the selected inputs are renormalised.
///
/// Breakdown point: f/n for n ≥ 2f + 3 and m ≤ n - f. Cost: as [`krum`], plus O(m d) for the
/// average. Returns the number of inputs discarded (n - m).
pub(crate) fn multi_krum<R: Rows + ?Sized>(
    rows: &R,
    f: usize,
    m: Option<usize>,
    w: &[f32],
    ws: &mut Workspace,
    out: &mut [f32],
) -> usize {
    let n = rows.count();
    let m = m.unwrap_or(n - f).min(n);
    ws.score(rows, f, out.len());
    ws.coefs.clear();
    ws.coefs.resize(n, 0.0);
    let total: f32 = ws.order[..m].iter().map(|&i| w[i]).sum();
    for &i in &ws.order[..m] {
        ws.coefs[i] = w[i] / total;
    }
    kernels::combine(rows, &ws.coefs, None, out);
    n - m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<f32>> {
        vec![
            vec![0.0, 0.0],
            vec![0.1, 0.0],
            vec![0.0, 0.1],
            vec![0.1, 0.1],
            vec![0.05, 0.05],
            vec![50.0, 50.0],
            vec![-40.0, 60.0],
        ]
    }

    #[test]
    fn krum_picks_the_centre_of_the_cluster() {
        let rows = rows();
        let refs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
        let mut ws = Workspace::default();
        let mut out = [9.0; 2];
        assert_eq!(krum(&refs[..], 2, &mut ws, &mut out), 6);
        assert_eq!(out, [0.05, 0.05]);
    }

    #[test]
    fn multi_krum_averages_the_cluster_with_weights() {
        let rows = rows();
        let refs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
        let mut ws = Workspace::default();
        let mut out = [9.0; 2];
        let w = [1.0 / 7.0; 7];
        assert_eq!(multi_krum(&refs[..], 2, None, &w, &mut ws, &mut out), 2);
        assert!((out[0] - 0.05).abs() < 1e-6 && (out[1] - 0.05).abs() < 1e-6);
        // All weight on the first input among the selected ones.
        let w = [0.5, 1e-6, 1e-6, 1e-6, 1e-6, 0.25, 0.25];
        multi_krum(&refs[..], 2, Some(5), &w, &mut ws, &mut out);
        assert!(out[0].abs() < 1e-4 && out[1].abs() < 1e-4);
    }
}
