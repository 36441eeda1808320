//! Concrete communication graphs and their construction.

use super::{Error, MAX_TRIES, Topology};
use rand::Rng;
use std::collections::{BTreeSet, VecDeque};

/// A directed graph on nodes `0..n`: an edge `i -> j` means `i` sends its model to `j`. Neighbour
/// lists are sorted, free of duplicates and never contain the node itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    out: Vec<Vec<usize>>,
    inn: Vec<Vec<usize>>,
}

impl Graph {
    /// Builds `topology` on `n` nodes, drawing from `rng` for the random kinds (and only for
    /// them). [`Topology::Sample`] builds the complete graph: its edges are the candidates of the
    /// per-round draw.
    ///
    /// Fewest nodes: 1 for complete and sample, 4 for dumbbell, 2 otherwise. Random kinds are
    /// redrawn until connected, at most [`MAX_TRIES`] times.
    pub fn build<R: Rng + ?Sized>(
        topology: &Topology,
        n: usize,
        rng: &mut R,
    ) -> Result<Graph, Error> {
        let min = match topology {
            Topology::Complete | Topology::Sample { .. } => 1,
            Topology::Dumbbell => 4,
            _ => 2,
        };
        if n < min {
            return Err(Error::TooFewNodes {
                topology: topology.name(),
                n,
                min,
            });
        }
        let out = match *topology {
            Topology::Ring => (0..n).map(|i| vec![(i + n - 1) % n, (i + 1) % n]).collect(),
            Topology::Torus { rows } => torus(n, rows)?,
            Topology::Exponential => exponential(n),
            Topology::RandomRegular { degree } => return random_regular(n, degree, rng),
            Topology::ErdosRenyi { p } => return erdos_renyi(n, p, rng),
            Topology::Dumbbell => dumbbell(n),
            Topology::Complete => complete(n),
            Topology::Sample { s } => {
                if s == 0 {
                    return Err(Error::SampleSize);
                }
                complete(n)
            }
            Topology::File { .. } => return Err(Error::FileNotRead),
        };
        Graph::from_out_neighbours(out)
    }

    /// A graph from explicit out-neighbour lists (one per node). Lists are sorted, deduplicated
    /// and stripped of self-loops; a neighbour index not below the number of lists is an error.
    pub fn from_out_neighbours(mut out: Vec<Vec<usize>>) -> Result<Graph, Error> {
        let n = out.len();
        let mut inn = vec![Vec::new(); n];
        for (i, list) in out.iter_mut().enumerate() {
            list.sort_unstable();
            list.dedup();
            list.retain(|&j| j != i);
            if let Some(&j) = list.iter().find(|&&j| j >= n) {
                return Err(Error::Neighbour {
                    node: i,
                    neighbour: j,
                    n,
                });
            }
            for &j in list.iter() {
                inn[j].push(i);
            }
        }
        // Filled in increasing i, so already sorted.
        Ok(Graph { out, inn })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The nodes `i` sends to, sorted. Panics if `i` is not a node.
    pub fn out_neighbours(&self, i: usize) -> &[usize] {
        &self.out[i]
    }

    /// The nodes `i` receives from, sorted. Panics if `i` is not a node.
    pub fn in_neighbours(&self, i: usize) -> &[usize] {
        &self.inn[i]
    }

    /// Number of directed edges.
    pub fn edges(&self) -> usize {
        self.out.iter().map(Vec::len).sum()
    }

    /// Whether every edge `i -> j` has its reverse `j -> i` (an undirected graph).
    pub fn is_symmetric(&self) -> bool {
        self.out == self.inn
    }

    /// Whether every node reaches every other along directed edges. The empty graph is not.
    pub fn is_strongly_connected(&self) -> bool {
        !self.is_empty() && reaches_all(&self.out) && reaches_all(&self.inn)
    }
}

/// Breadth-first search from node 0.
fn reaches_all(adjacency: &[Vec<usize>]) -> bool {
    let mut seen = vec![false; adjacency.len()];
    let mut queue = VecDeque::from([0]);
    seen[0] = true;
    let mut count = 1;
    while let Some(i) = queue.pop_front() {
        for &j in &adjacency[i] {
            if !seen[j] {
                seen[j] = true;
                count += 1;
                queue.push_back(j);
            }
        }
    }
    count == adjacency.len()
}

fn complete(n: usize) -> Vec<Vec<usize>> {
    (0..n)
        .map(|i| (0..n).filter(|&j| j != i).collect())
        .collect()
}

fn torus(n: usize, rows: Option<usize>) -> Result<Vec<Vec<usize>>, Error> {
    let rows = match rows {
        Some(r) if r == 0 || !n.is_multiple_of(r) => return Err(Error::TorusRows { rows: r, n }),
        Some(r) => r,
        None => (1..=n)
            .take_while(|r| r * r <= n)
            .filter(|r| n.is_multiple_of(*r))
            .last()
            .unwrap_or(1),
    };
    let cols = n / rows;
    let at = |r: usize, c: usize| (r % rows) * cols + c % cols;
    Ok((0..n)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            vec![
                at(r + rows - 1, c),
                at(r + 1, c),
                at(r, c + cols - 1),
                at(r, c + 1),
            ]
        })
        .collect())
}

fn exponential(n: usize) -> Vec<Vec<usize>> {
    (0..n)
        .map(|i| {
            std::iter::successors(Some(1usize), |h| h.checked_mul(2))
                .take_while(|&h| h < n)
                .map(|h| (i + h) % n)
                .collect()
        })
        .collect()
}

fn dumbbell(n: usize) -> Vec<Vec<usize>> {
    let half = n / 2;
    let mut out: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let clique = if i < half { 0..half } else { half..n };
            clique.filter(|&j| j != i).collect()
        })
        .collect();
    out[half - 1].push(half);
    out[half].push(half - 1);
    out
}

/// Undirected adjacency sets to a graph.
fn undirected(adjacency: Vec<BTreeSet<usize>>) -> Graph {
    let out: Vec<Vec<usize>> = adjacency
        .into_iter()
        .map(|s| s.into_iter().collect())
        .collect();
    Graph {
        inn: out.clone(),
        out,
    }
}

fn erdos_renyi<R: Rng + ?Sized>(n: usize, p: f64, rng: &mut R) -> Result<Graph, Error> {
    if !(p > 0.0 && p <= 1.0) {
        return Err(Error::Probability(p));
    }
    for _ in 0..MAX_TRIES {
        let mut adjacency = vec![BTreeSet::new(); n];
        for i in 0..n {
            for j in i + 1..n {
                if rng.random::<f64>() < p {
                    adjacency[i].insert(j);
                    adjacency[j].insert(i);
                }
            }
        }
        let graph = undirected(adjacency);
        if graph.is_strongly_connected() {
            return Ok(graph);
        }
    }
    Err(Error::Disconnected {
        topology: "erdos-renyi",
        n,
        tries: MAX_TRIES,
    })
}

fn random_regular<R: Rng + ?Sized>(n: usize, degree: usize, rng: &mut R) -> Result<Graph, Error> {
    let bad = |reason| Err(Error::Degree { degree, n, reason });
    if degree == 0 {
        return bad("degree must be at least 1");
    }
    if degree >= n {
        return bad("degree must be below n");
    }
    if !(degree * n).is_multiple_of(2) {
        return bad("degree * n must be even");
    }
    for _ in 0..MAX_TRIES {
        if let Some(adjacency) = pairing(n, degree, rng) {
            let graph = undirected(adjacency);
            if graph.is_strongly_connected() {
                return Ok(graph);
            }
        }
    }
    Err(Error::Disconnected {
        topology: "random-regular",
        n,
        tries: MAX_TRIES,
    })
}

/// One attempt of the Steger-Wormald pairing: `degree` points per node, paired at random while
/// refusing loops and repeated edges. `None` when it gets stuck (no admissible pair left).
fn pairing<R: Rng + ?Sized>(n: usize, degree: usize, rng: &mut R) -> Option<Vec<BTreeSet<usize>>> {
    let mut points: Vec<usize> = (0..n)
        .flat_map(|v| std::iter::repeat_n(v, degree))
        .collect();
    let mut adjacency = vec![BTreeSet::new(); n];
    let admissible = |adj: &[BTreeSet<usize>], u: usize, v: usize| u != v && !adj[u].contains(&v);
    while !points.is_empty() {
        let mut chosen = None;
        for _ in 0..64 {
            let (a, b) = (
                rng.random_range(0..points.len()),
                rng.random_range(0..points.len()),
            );
            if a != b && admissible(&adjacency, points[a], points[b]) {
                chosen = Some((a, b));
                break;
            }
        }
        if chosen.is_none() {
            // Few points left: pick uniformly among the admissible pairs, if any remain.
            let pairs: Vec<(usize, usize)> = (0..points.len())
                .flat_map(|a| (a + 1..points.len()).map(move |b| (a, b)))
                .filter(|&(a, b)| admissible(&adjacency, points[a], points[b]))
                .collect();
            if pairs.is_empty() {
                return None;
            }
            chosen = Some(pairs[rng.random_range(0..pairs.len())]);
        }
        let (a, b) = chosen?;
        let (u, v) = (points[a], points[b]);
        adjacency[u].insert(v);
        adjacency[v].insert(u);
        points.swap_remove(a.max(b));
        points.swap_remove(a.min(b));
    }
    Some(adjacency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn build(t: Topology, n: usize) -> Result<Graph, Error> {
        Graph::build(&t, n, &mut ChaCha8Rng::seed_from_u64(42))
    }

    #[test]
    fn deterministic_shapes() {
        let ring = build(Topology::Ring, 5).unwrap();
        assert_eq!(ring.out_neighbours(0), &[1, 4]);
        assert!(ring.is_symmetric() && ring.is_strongly_connected());
        assert_eq!(build(Topology::Ring, 2).unwrap().out_neighbours(1), &[0]);

        let torus = build(Topology::Torus { rows: None }, 16).unwrap();
        assert_eq!(torus.out_neighbours(5), &[1, 4, 6, 9]);
        assert_eq!(torus.out_neighbours(0), &[1, 3, 4, 12]);
        assert!(torus.is_symmetric() && torus.is_strongly_connected());
        // 12 nodes: squarest is 3 x 4; 2 x 6 has coinciding up and down neighbours.
        let t = build(Topology::Torus { rows: None }, 12).unwrap();
        assert_eq!(t.out_neighbours(0), &[1, 3, 4, 8]);
        assert_eq!(t.out_neighbours(0).len(), 4);
        assert_eq!(
            build(Topology::Torus { rows: Some(2) }, 12)
                .unwrap()
                .out_neighbours(0),
            &[1, 5, 6]
        );
        // A prime number of nodes is a 1 x n torus: a ring.
        assert_eq!(
            build(Topology::Torus { rows: None }, 7).unwrap(),
            build(Topology::Ring, 7).unwrap()
        );

        let exp = build(Topology::Exponential, 16).unwrap();
        assert_eq!(exp.out_neighbours(3), &[4, 5, 7, 11]);
        assert_eq!(exp.in_neighbours(3), &[1, 2, 11, 15]);
        assert!(!exp.is_symmetric() && exp.is_strongly_connected());
        assert_eq!(
            build(Topology::Exponential, 10).unwrap().out_neighbours(9),
            &[0, 1, 3, 7]
        );

        let db = build(Topology::Dumbbell, 9).unwrap();
        assert_eq!(db.out_neighbours(0), &[1, 2, 3]);
        assert_eq!(db.out_neighbours(3), &[0, 1, 2, 4]);
        assert_eq!(db.out_neighbours(4), &[3, 5, 6, 7, 8]);
        assert_eq!(db.edges(), 2 * (6 + 10 + 1));
        assert!(db.is_symmetric() && db.is_strongly_connected());

        let complete = build(Topology::Complete, 6).unwrap();
        assert_eq!(complete.edges(), 30);
        assert_eq!(build(Topology::Sample { s: 2 }, 6).unwrap(), complete);
        assert!(
            build(Topology::Complete, 1)
                .unwrap()
                .is_strongly_connected()
        );
    }

    #[test]
    fn random_regular_has_exact_degrees_and_is_seeded() {
        for (n, d) in [(16, 3), (50, 4), (101, 6), (30, 29), (200, 8)] {
            let t = Topology::RandomRegular { degree: d };
            let g = build(t.clone(), n).unwrap();
            assert!(
                (0..n).all(|i| g.out_neighbours(i).len() == d),
                "n={n} d={d}"
            );
            assert!(g.is_symmetric() && g.is_strongly_connected());
            assert_eq!(g, build(t.clone(), n).unwrap(), "same seed, same graph");
        }
        let t = Topology::RandomRegular { degree: 4 };
        let a = Graph::build(&t, 40, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let b = Graph::build(&t, 40, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        assert_ne!(a, b, "different seeds should give different graphs");
    }

    #[test]
    fn erdos_renyi_is_connected_and_seeded() {
        let t = Topology::ErdosRenyi { p: 0.15 };
        let g = build(t.clone(), 60).unwrap();
        assert!(g.is_symmetric() && g.is_strongly_connected());
        assert_eq!(g, build(t, 60).unwrap());
        // Mean degree near p (n - 1) = 8.85.
        let mean = g.edges() as f64 / 60.0;
        assert!((mean - 8.85).abs() < 2.0, "mean degree {mean}");
        assert_eq!(
            build(Topology::ErdosRenyi { p: 1.0 }, 7).unwrap(),
            build(Topology::Complete, 7).unwrap()
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            build(Topology::Ring, 1),
            Err(Error::TooFewNodes {
                topology: "ring",
                n: 1,
                min: 2
            })
        );
        assert_eq!(
            build(Topology::Dumbbell, 3),
            Err(Error::TooFewNodes {
                topology: "dumbbell",
                n: 3,
                min: 4
            })
        );
        assert!(matches!(
            build(Topology::Complete, 0),
            Err(Error::TooFewNodes { .. })
        ));
        assert_eq!(
            build(Topology::Torus { rows: Some(5) }, 16),
            Err(Error::TorusRows { rows: 5, n: 16 })
        );
        assert_eq!(
            build(Topology::Torus { rows: Some(0) }, 16),
            Err(Error::TorusRows { rows: 0, n: 16 })
        );
        let degree = |degree, n| build(Topology::RandomRegular { degree }, n);
        assert!(matches!(
            degree(3, 7),
            Err(Error::Degree {
                reason: "degree * n must be even",
                ..
            })
        ));
        assert!(matches!(
            degree(7, 7),
            Err(Error::Degree {
                reason: "degree must be below n",
                ..
            })
        ));
        assert!(matches!(degree(0, 7), Err(Error::Degree { .. })));
        // Degree 1 is a perfect matching: never connected beyond two nodes.
        assert_eq!(
            degree(1, 8),
            Err(Error::Disconnected {
                topology: "random-regular",
                n: 8,
                tries: MAX_TRIES
            })
        );
        assert!(degree(1, 2).is_ok());
        for p in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(matches!(
                build(Topology::ErdosRenyi { p }, 10),
                Err(Error::Probability(_))
            ));
        }
        assert!(matches!(
            build(Topology::ErdosRenyi { p: 0.01 }, 50),
            Err(Error::Disconnected { .. })
        ));
        assert_eq!(build(Topology::Sample { s: 0 }, 5), Err(Error::SampleSize));
        assert_eq!(
            Graph::from_out_neighbours(vec![vec![1], vec![2]]),
            Err(Error::Neighbour {
                node: 1,
                neighbour: 2,
                n: 2
            })
        );
    }

    #[test]
    fn connectivity() {
        let g = Graph::from_out_neighbours(vec![vec![1], vec![2], vec![0]]).unwrap();
        assert!(g.is_strongly_connected() && !g.is_symmetric());
        let g = Graph::from_out_neighbours(vec![vec![1], vec![2], vec![]]).unwrap();
        assert!(
            !g.is_strongly_connected(),
            "a path is weakly but not strongly connected"
        );
        let g = Graph::from_out_neighbours(vec![vec![1, 1, 0], vec![0], vec![3], vec![2]]).unwrap();
        assert_eq!(g.out_neighbours(0), &[1]);
        assert!(g.is_symmetric() && !g.is_strongly_connected());
        assert!(
            !Graph::from_out_neighbours(vec![])
                .unwrap()
                .is_strongly_connected()
        );
    }
}
