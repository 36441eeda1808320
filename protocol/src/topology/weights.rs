//! Mixing matrices and their spectral gap.

use super::{Error, Graph, eigen};

/// A dense `n x n` mixing matrix, row-major: row `i` holds the weights node `i` gives to itself
/// and to the nodes it receives from, `x_i <- sum_j W_ij x_j`. Rows built here sum to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    n: usize,
    w: Vec<f64>,
}

impl Weights {
    /// Uniform averaging of what a node receives: `W_ii = W_ij = 1 / (d_i + 1)` for each
    /// in-neighbour `j` of `i`, where `d_i` is the in-degree. Row-stochastic for every graph;
    /// doubly stochastic when in- and out-degrees are all equal (ring, torus, exponential,
    /// random-regular, complete). The exponential graph of 16 gets the 1/5 weights of Ying et al.
    pub fn uniform(graph: &Graph) -> Weights {
        let n = graph.len();
        let mut w = vec![0.0; n * n];
        for i in 0..n {
            let from = graph.in_neighbours(i);
            let share = 1.0 / (from.len() as f64 + 1.0);
            w[i * n + i] = share;
            for &j in from {
                w[i * n + j] = share;
            }
        }
        Weights { n, w }
    }

    /// Metropolis-Hastings weights of an undirected graph: `W_ij = 1 / (1 + max(d_i, d_j))` for
    /// each edge, the diagonal taking the rest of the row. Symmetric and doubly stochastic, with
    /// no knowledge beyond the neighbours' degrees (Xiao and Boyd, "Fast linear iterations for
    /// distributed averaging", 2004). Fails with [`Error::Asymmetric`] on a directed graph.
    pub fn metropolis_hastings(graph: &Graph) -> Result<Weights, Error> {
        if !graph.is_symmetric() {
            return Err(Error::Asymmetric);
        }
        let n = graph.len();
        let mut w = vec![0.0; n * n];
        for i in 0..n {
            let di = graph.out_neighbours(i).len();
            let mut rest = 1.0;
            for &j in graph.out_neighbours(i) {
                let wij = 1.0 / (1.0 + di.max(graph.out_neighbours(j).len()) as f64);
                w[i * n + j] = wij;
                rest -= wij;
            }
            w[i * n + i] = rest;
        }
        Ok(Weights { n, w })
    }

    /// A matrix from its rows, row-major. Fails with [`Error::Shape`] unless
    /// `values.len() == n * n`. Entries are not checked; see [`Weights::is_row_stochastic`].
    pub fn from_rows(n: usize, values: Vec<f64>) -> Result<Weights, Error> {
        if values.len() != n * n {
            return Err(Error::Shape {
                expected: n * n,
                got: values.len(),
            });
        }
        Ok(Weights { n, w: values })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the matrix has no nodes.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// `W_ij`. Panics if `i` or `j` is not below [`Weights::len`].
    pub fn get(&self, i: usize, j: usize) -> f64 {
        assert!(i < self.n && j < self.n, "index out of range");
        self.w[i * self.n + j]
    }

    /// Row `i`: the weights node `i` gives to every node.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.w[i * self.n..(i + 1) * self.n]
    }

    /// Whether all entries are non-negative and every row sums to 1 within `tol`.
    pub fn is_row_stochastic(&self, tol: f64) -> bool {
        self.w.iter().all(|&x| x >= -tol)
            && (0..self.n).all(|i| (self.row(i).iter().sum::<f64>() - 1.0).abs() <= tol)
    }

    /// Whether the matrix is row-stochastic and every column also sums to 1, within `tol`.
    pub fn is_doubly_stochastic(&self, tol: f64) -> bool {
        self.is_row_stochastic(tol)
            && (0..self.n).all(|j| {
                ((0..self.n).map(|i| self.w[i * self.n + j]).sum::<f64>() - 1.0).abs() <= tol
            })
    }

    /// Whether `|W_ij - W_ji| <= tol` for all pairs.
    pub fn is_symmetric(&self, tol: f64) -> bool {
        let n = self.n;
        (0..n).all(|i| (i + 1..n).all(|j| (self.w[i * n + j] - self.w[j * n + i]).abs() <= tol))
    }

    /// The spectral gap `1 - ||W - 11^T/n||_2`: one minus the largest singular value of `W` with
    /// its consensus component removed. It bounds how fast gossip contracts the distance to the
    /// average: `||W x - x_bar|| <= (1 - gap) ||x - x_bar||` for a doubly stochastic `W`, so the
    /// consensus distance shrinks by at least `(1 - gap)^2` per round.
    ///
    /// For a symmetric doubly stochastic matrix this is the usual `1 - max_{i>=2} |lambda_i|`, and
    /// so it is for any normal one (circulants such as the directed exponential graph's uniform
    /// weights), where singular values are the eigenvalues' moduli. For a non-normal matrix it is
    /// the one-step guarantee, smaller than the asymptotic rate, and for a matrix that is not
    /// doubly stochastic it can be negative. Computed as the square root of the largest eigenvalue
    /// of `(W - J)^T (W - J)` by the Jacobi method: O(n^3), for analysis rather than per round.
    /// One node: 1.
    pub fn spectral_gap(&self) -> f64 {
        let n = self.n;
        if n <= 1 {
            return 1.0;
        }
        let j = 1.0 / n as f64;
        let m: Vec<f64> = self.w.iter().map(|x| x - j).collect();
        // G = M^T M, accumulated row by row of M (upper triangle).
        let mut g = vec![0.0; n * n];
        for k in 0..n {
            let row = &m[k * n..(k + 1) * n];
            for (a, &ma) in row.iter().enumerate() {
                if ma == 0.0 {
                    continue;
                }
                for b in a..n {
                    g[a * n + b] += ma * row[b];
                }
            }
        }
        let largest = eigen::symmetric_eigenvalues(&g, n)[0].max(0.0);
        1.0 - largest.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Topology;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::f64::consts::PI;

    fn graph(t: Topology, n: usize) -> Graph {
        Graph::build(&t, n, &mut ChaCha8Rng::seed_from_u64(7)).unwrap()
    }

    #[test]
    fn ring_of_16_gap() {
        let w = Weights::uniform(&graph(Topology::Ring, 16));
        assert!((w.get(0, 15) - 1.0 / 3.0).abs() < 1e-15 && w.get(0, 2) == 0.0);
        assert!(w.is_doubly_stochastic(1e-12) && w.is_symmetric(0.0));
        let gap = w.spectral_gap();
        // Circulant: eigenvalues (1 + 2 cos(2 pi k / 16)) / 3, the largest modulus below 1 at k = 1.
        let exact = 1.0 - (1.0 + 2.0 * (PI / 8.0).cos()) / 3.0;
        assert!((gap - exact).abs() < 1e-12, "gap {gap}, exact {exact}");
        assert!((gap - 0.0507).abs() < 1e-4, "gap {gap}");
        // Metropolis-Hastings on a regular graph is the same matrix.
        let mh = Weights::metropolis_hastings(&graph(Topology::Ring, 16)).unwrap();
        assert!((0..16).all(|i| (0..16).all(|j| (mh.get(i, j) - w.get(i, j)).abs() < 1e-15)));
    }

    #[test]
    fn torus_4x4_gap() {
        let w = Weights::uniform(&graph(Topology::Torus { rows: Some(4) }, 16));
        assert!((w.get(0, 0) - 0.2).abs() < 1e-15);
        let gap = w.spectral_gap();
        assert!((gap - 0.4).abs() < 1e-9, "gap {gap}");
    }

    #[test]
    fn exponential_16_gap() {
        let g = graph(Topology::Exponential, 16);
        let w = Weights::uniform(&g);
        assert!(!w.is_symmetric(1e-12) && w.is_doubly_stochastic(1e-12));
        assert!(
            (w.get(3, 2) - 0.2).abs() < 1e-15 && w.get(3, 4) == 0.0,
            "row 3 mixes what 3 receives"
        );
        let gap = w.spectral_gap();
        // (1 + w^k + w^2k + w^4k + w^8k) / 5 with w = exp(2 pi i / 16) has modulus 3/5 at k = 8.
        assert!((gap - 0.4).abs() < 1e-9, "gap {gap}");
        assert_eq!(Weights::metropolis_hastings(&g), Err(Error::Asymmetric));
        // Ying et al. 2021: 2 / (1 + log2 n) for powers of two.
        for (n, log) in [(8, 3.0), (64, 6.0)] {
            let gap = Weights::uniform(&graph(Topology::Exponential, n)).spectral_gap();
            assert!((gap - 2.0 / (1.0 + log)).abs() < 1e-9, "n={n}: gap {gap}");
        }
    }

    #[test]
    fn complete_and_dumbbell_gaps() {
        let w = Weights::uniform(&graph(Topology::Complete, 12));
        assert!((w.spectral_gap() - 1.0).abs() < 1e-12);
        let db = Weights::metropolis_hastings(&graph(Topology::Dumbbell, 16)).unwrap();
        assert!(db.is_doubly_stochastic(1e-12) && db.is_symmetric(0.0));
        let gap = db.spectral_gap();
        let complete = Weights::metropolis_hastings(&graph(Topology::Complete, 16)).unwrap();
        let torus = Weights::uniform(&graph(Topology::Torus { rows: None }, 16)).spectral_gap();
        assert!(
            gap > 0.0 && gap < 0.05 && gap < torus / 10.0,
            "dumbbell gap {gap}"
        );
        assert!((complete.spectral_gap() - 1.0).abs() < 1e-12);
        assert_eq!(
            Weights::uniform(&graph(Topology::Complete, 1)).spectral_gap(),
            1.0
        );
    }

    #[test]
    fn metropolis_hastings_on_random_graphs() {
        for t in [
            Topology::RandomRegular { degree: 5 },
            Topology::ErdosRenyi { p: 0.1 },
        ] {
            for seed in 0..5 {
                let g = Graph::build(&t, 40, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
                let w = Weights::metropolis_hastings(&g).unwrap();
                assert!(w.is_doubly_stochastic(1e-12), "{t:?} seed {seed}");
                assert!(w.is_symmetric(0.0), "{t:?} seed {seed}");
                for i in 0..40 {
                    for &j in g.out_neighbours(i) {
                        let dmax = g.out_neighbours(i).len().max(g.out_neighbours(j).len());
                        assert_eq!(w.get(i, j), 1.0 / (1.0 + dmax as f64));
                    }
                }
                let gap = w.spectral_gap();
                assert!(gap > 0.0 && gap < 1.0, "{t:?} seed {seed}: gap {gap}");
            }
        }
    }

    #[test]
    fn uniform_weights_on_irregular_graphs_are_row_stochastic_only() {
        let w = Weights::uniform(&graph(Topology::Dumbbell, 9));
        assert!(w.is_row_stochastic(1e-12));
        assert!(!w.is_doubly_stochastic(1e-6));
    }

    #[test]
    fn gap_scales_to_hundreds_of_nodes() {
        // Ring of 200: exact gap 1 - (1 + 2 cos(2 pi / 200)) / 3.
        let w = Weights::uniform(&graph(Topology::Ring, 200));
        let exact = 1.0 - (1.0 + 2.0 * (2.0 * PI / 200.0).cos()) / 3.0;
        assert!((w.spectral_gap() - exact).abs() < 1e-10);
    }

    #[test]
    fn from_rows_checks_shape() {
        assert_eq!(
            Weights::from_rows(2, vec![1.0; 3]),
            Err(Error::Shape {
                expected: 4,
                got: 3
            })
        );
        let w = Weights::from_rows(2, vec![0.5; 4]).unwrap();
        assert!(w.is_doubly_stochastic(0.0) && (w.spectral_gap() - 1.0).abs() < 1e-15);
        // Swap matrix: never mixes, gap 0.
        let swap = Weights::from_rows(2, vec![0.0, 1.0, 1.0, 0.0]).unwrap();
        assert!(swap.spectral_gap().abs() < 1e-12);
    }
}
