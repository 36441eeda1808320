//! Who talks to whom: communication graphs, mixing weights and their spectral gap.
//!
//! A [`Topology`] is configuration; [`Graph::build`] turns it into a concrete directed graph for
//! `n` nodes (an edge `i -> j` means `i` sends its model to `j`), [`Weights`] into a mixing
//! matrix, and [`Weights::spectral_gap`] says how fast gossip on it reaches consensus. The
//! per-round peer sampling of Epidemic Learning is [`sample_peers`] over the complete graph.
//!
//! Randomised graphs take the run's seeded `rng`: the same seed gives the same graph. Every graph
//! built here is strongly connected; random ones are resampled until they are, a bounded number
//! of times.

pub mod eigen;
mod graph;
mod weights;

pub use eigen::symmetric_eigenvalues;
pub use graph::Graph;
pub use weights::Weights;

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Default degree of [`Topology::RandomRegular`].
pub const DEFAULT_DEGREE: usize = 4;
/// Default edge probability of [`Topology::ErdosRenyi`].
pub const DEFAULT_EDGE_PROBABILITY: f64 = 0.2;
/// Default number of peers drawn per round by [`Topology::Sample`].
pub const DEFAULT_SAMPLE: usize = 4;
/// How many random graphs are drawn before giving up on a connected one.
pub const MAX_TRIES: usize = 100;

/// A communication topology. Plain serde data, internally tagged by `kind`, unknown fields
/// rejected:
///
/// ```toml
/// topology = { kind = "ring" }
/// topology = { kind = "torus", rows = 4 }          # cols = n / rows; default: the squarest grid
/// topology = { kind = "exponential" }
/// topology = { kind = "random-regular", degree = 4 }
/// topology = { kind = "erdos-renyi", p = 0.2 }
/// topology = { kind = "dumbbell" }
/// topology = { kind = "complete" }
/// topology = { kind = "sample", s = 4 }            # s fresh random peers every round
/// topology = { kind = "file", path = "graph.txt" } # an edge list, see [`parse_weighted_edge_list`]
/// ```
///
/// [`FromStr`] parses the bare kind names with default parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", from = "Repr")]
pub enum Topology {
    /// Node `i` exchanges with `i - 1` and `i + 1` (mod n). Degree 2; gap O(1/n^2).
    Ring,
    /// A `rows x cols` grid wrapped both ways; node `r * cols + c` exchanges with its four
    /// neighbours. Degree 4 (fewer when a side is 1 or 2); gap O(1/n).
    Torus {
        /// Rows; must divide n. Default: the largest divisor of n not above sqrt(n).
        #[serde(skip_serializing_if = "Option::is_none")]
        rows: Option<usize>,
    },
    /// The directed one-peer-per-power exponential graph: node `i` sends to `i + 2^k` (mod n) for
    /// every `2^k < n`. Degree about log2 n; with uniform weights its gap is `2 / (1 + log2 n)`
    /// for powers of two, shrinking only logarithmically (Ying et al., "Exponential Graph is
    /// Provably Efficient for Decentralized Deep Training", NeurIPS 2021). Not symmetric.
    Exponential,
    /// A uniformly drawn simple `degree`-regular graph (pairing model, Steger and Wormald 1999).
    RandomRegular {
        /// Neighbours per node: at least 1, below n, with `degree * n` even. Default 4.
        degree: usize,
    },
    /// The Erdős–Rényi graph G(n, p): every pair is an edge independently with probability `p`,
    /// redrawn until connected.
    ErdosRenyi {
        /// Edge probability in (0, 1]. Default 0.2.
        p: f64,
    },
    /// Two cliques of `floor(n/2)` and `ceil(n/2)` nodes joined by a single edge between nodes
    /// `n/2 - 1` and `n/2`: well connected inside, a bottleneck between (the hard case of He,
    /// Karimireddy and Jaggi 2022).
    Dumbbell,
    /// Every node exchanges with every other.
    Complete,
    /// Epidemic Learning (de Vos et al., "Epidemic Learning: Boosting Decentralized Learning with
    /// Randomized Communication", NeurIPS 2023): every round each node sends to `s` peers drawn
    /// afresh with [`sample_peers`]. The graph built is the complete graph of candidates.
    Sample {
        /// Peers per round, at least 1. Default 4.
        s: usize,
    },
    /// An undirected graph read from an edge list, with its weights if it gives them (see
    /// [`parse_weighted_edge_list`]); the caller reads
    /// the file ([`Graph::build`] does no I/O and refuses this kind).
    File {
        /// The file, relative to the scenario that names it.
        path: String,
    },
}

/// The form [`Topology`] is read in: kinds without parameters are empty structs here so that
/// `deny_unknown_fields` holds for them too (serde ignores extra keys after a unit variant's tag).
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum Repr {
    Ring {},
    Torus {
        #[serde(default)]
        rows: Option<usize>,
    },
    Exponential {},
    RandomRegular {
        #[serde(default = "default_degree")]
        degree: usize,
    },
    ErdosRenyi {
        #[serde(default = "default_edge_probability")]
        p: f64,
    },
    Dumbbell {},
    Complete {},
    Sample {
        #[serde(default = "default_sample")]
        s: usize,
    },
    File {
        path: String,
    },
}

impl From<Repr> for Topology {
    fn from(r: Repr) -> Topology {
        match r {
            Repr::Ring {} => Topology::Ring,
            Repr::Torus { rows } => Topology::Torus { rows },
            Repr::Exponential {} => Topology::Exponential,
            Repr::RandomRegular { degree } => Topology::RandomRegular { degree },
            Repr::ErdosRenyi { p } => Topology::ErdosRenyi { p },
            Repr::Dumbbell {} => Topology::Dumbbell,
            Repr::Complete {} => Topology::Complete,
            Repr::Sample { s } => Topology::Sample { s },
            Repr::File { path } => Topology::File { path },
        }
    }
}

fn default_degree() -> usize {
    DEFAULT_DEGREE
}
fn default_edge_probability() -> f64 {
    DEFAULT_EDGE_PROBABILITY
}
fn default_sample() -> usize {
    DEFAULT_SAMPLE
}

/// Every kind name, as written in configs and on the command line.
pub const NAMES: [&str; 8] = [
    "ring",
    "torus",
    "exponential",
    "random-regular",
    "erdos-renyi",
    "dumbbell",
    "complete",
    "sample",
];

impl Topology {
    /// The kind name, as in configs.
    pub fn name(&self) -> &'static str {
        match self {
            Topology::Ring => "ring",
            Topology::Torus { .. } => "torus",
            Topology::Exponential => "exponential",
            Topology::RandomRegular { .. } => "random-regular",
            Topology::ErdosRenyi { .. } => "erdos-renyi",
            Topology::Dumbbell => "dumbbell",
            Topology::Complete => "complete",
            Topology::Sample { .. } => "sample",
            Topology::File { .. } => "file",
        }
    }

    /// For [`Topology::Sample`], the number of peers to draw each round.
    pub fn sample_size(&self) -> Option<usize> {
        match self {
            Topology::Sample { s } => Some(*s),
            _ => None,
        }
    }
}

impl FromStr for Topology {
    type Err = Error;

    /// A bare kind name with default parameters: `"ring"`, `"torus"`, `"random-regular"`, ...
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s.trim() {
            "ring" => Topology::Ring,
            "torus" => Topology::Torus { rows: None },
            "exponential" => Topology::Exponential,
            "random-regular" => Topology::RandomRegular {
                degree: DEFAULT_DEGREE,
            },
            "erdos-renyi" => Topology::ErdosRenyi {
                p: DEFAULT_EDGE_PROBABILITY,
            },
            "dumbbell" => Topology::Dumbbell,
            "complete" => Topology::Complete,
            "sample" => Topology::Sample { s: DEFAULT_SAMPLE },
            other => return Err(Error::Unknown(other.to_owned())),
        })
    }
}

/// Why a graph or mixing matrix could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The name is not a topology kind.
    #[error("unknown topology {0:?}; expected one of {NAMES:?}")]
    Unknown(String),
    /// The topology needs more nodes.
    #[error("{topology} needs at least {min} nodes, got {n}")]
    TooFewNodes {
        /// The topology's kind name.
        topology: &'static str,
        /// Nodes asked for.
        n: usize,
        /// Fewest nodes it can be built on.
        min: usize,
    },
    /// The torus rows are zero or do not divide n.
    #[error("torus rows = {rows} must be at least 1 and divide n = {n}")]
    TorusRows {
        /// Rows asked for.
        rows: usize,
        /// Nodes.
        n: usize,
    },
    /// No simple `degree`-regular graph on n nodes exists, or it cannot be connected.
    #[error("random-regular degree = {degree} on n = {n} nodes: {reason}")]
    Degree {
        /// Degree asked for.
        degree: usize,
        /// Nodes.
        n: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The Erdős–Rényi edge probability is not in (0, 1].
    #[error("erdos-renyi p = {0} must be in (0, 1]")]
    Probability(f64),
    /// The per-round sample size is zero.
    #[error("sample s must be at least 1")]
    SampleSize,
    /// Every random draw was disconnected.
    #[error("no connected {topology} graph on {n} nodes in {tries} draws")]
    Disconnected {
        /// The topology's kind name.
        topology: &'static str,
        /// Nodes.
        n: usize,
        /// Draws made.
        tries: usize,
    },
    /// A file topology reaches [`Graph::build`], which reads no files.
    #[error("a file topology is read with parse_edge_list, not built")]
    FileNotRead,
    /// An edge list is malformed, names a node that does not exist, or is not connected.
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    EdgeList {
        /// The line at fault (from 1), if one is.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// Metropolis-Hastings weights need an undirected (symmetric) graph.
    #[error("metropolis-hastings weights need a symmetric graph")]
    Asymmetric,
    /// An explicit neighbour list names a node that does not exist.
    #[error("node {node} lists neighbour {neighbour}, but there are only {n} nodes")]
    Neighbour {
        /// The listing node.
        node: usize,
        /// The bad neighbour.
        neighbour: usize,
        /// Nodes.
        n: usize,
    },
    /// A dense matrix has the wrong number of entries.
    #[error("a mixing matrix needs {expected} entries, got {got}")]
    Shape {
        /// n * n.
        expected: usize,
        /// Entries given.
        got: usize,
    },
}

/// Parses an edge list into an undirected graph on `n` nodes (see
/// [`parse_weighted_edge_list`], whose weights this drops).
pub fn parse_edge_list(text: &str, n: usize) -> Result<Graph, Error> {
    parse_weighted_edge_list(text, n).map(|(g, _)| g)
}

/// Parses an edge list into an undirected graph on `n` nodes, with its mixing weights if the
/// list gives them: one edge `i j` or `i j w` per line (node indices from 0, separated by
/// blanks), `#` starting a comment, blank lines ignored. Each edge goes both ways, with
/// `W_ij = W_ji = w`, and each node keeps the rest of its row, `W_ii = 1 - sum_j W_ij` (so the
/// matrix is symmetric and doubly stochastic, as Metropolis-Hastings weights are); without
/// weights the caller chooses them (Metropolis-Hastings). A line with anything but two indices
/// and an optional weight, a node not below `n`, an edge from a node to itself, a weight outside
/// (0, 1], an edge listed again with another weight, some edges weighted and others not, a node
/// whose weights sum above 1 and a graph that is not connected are errors naming the line or the
/// node.
pub fn parse_weighted_edge_list(text: &str, n: usize) -> Result<(Graph, Option<Weights>), Error> {
    let err = |line: Option<usize>, message: String| Error::EdgeList { line, message };
    let mut out = vec![Vec::new(); n];
    // (edge, weight, line), edges with the smaller node first.
    let mut weights: std::collections::BTreeMap<(usize, usize), (f64, usize)> =
        std::collections::BTreeMap::new();
    // The first line with a weight and the first without.
    let (mut weighted, mut plain): (Option<usize>, Option<usize>) = (None, None);
    for (k, raw) in text.lines().enumerate() {
        let line = Some(k + 1);
        let body = raw.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let fields: Vec<&str> = body.split_whitespace().collect();
        let (a, b, w) = match fields[..] {
            [a, b] => (a, b, None),
            [a, b, w] => (a, b, Some(w)),
            _ => {
                return Err(err(
                    line,
                    format!("{body:?}: expected two node indices and an optional weight `i j [w]`"),
                ));
            }
        };
        let node = |t: &str| -> Result<usize, Error> {
            let i: usize = t
                .parse()
                .map_err(|_| err(line, format!("{t:?} is not a node index")))?;
            if i >= n {
                return Err(err(
                    line,
                    format!(
                        "node {i} does not exist: the run has {n} nodes (0 to {})",
                        n.saturating_sub(1)
                    ),
                ));
            }
            Ok(i)
        };
        let (i, j) = (node(a)?, node(b)?);
        if i == j {
            return Err(err(line, format!("an edge from node {i} to itself")));
        }
        let edge = (i.min(j), i.max(j));
        match w {
            Some(t) => {
                let w: f64 = t
                    .parse()
                    .map_err(|_| err(line, format!("{t:?} is not a weight")))?;
                if !(w > 0.0 && w <= 1.0) {
                    return Err(err(line, format!("weight {t} is not in (0, 1]")));
                }
                weighted.get_or_insert(k + 1);
                if let Some((before, at)) = weights.insert(edge, (w, k + 1))
                    && before != w
                {
                    return Err(err(
                        line,
                        format!("edge {i}-{j} again with weight {w} (line {at} gave {before})"),
                    ));
                }
            }
            None => {
                plain.get_or_insert(k + 1);
            }
        }
        if let (Some(with), Some(without)) = (weighted, plain) {
            return Err(err(
                line,
                format!(
                    "line {with} gives a weight and line {without} does not: give every edge a \
                     weight or none"
                ),
            ));
        }
        out[i].push(j);
        out[j].push(i);
    }
    let g = Graph::from_out_neighbours(out)?;
    if n > 1
        && let Some(lonely) = (0..n).find(|&i| g.out_neighbours(i).is_empty())
    {
        return Err(err(None, format!("node {lonely} has no edge")));
    }
    if !g.is_strongly_connected() {
        return Err(err(None, "the graph is not connected".into()));
    }
    if weighted.is_none() {
        return Ok((g, None));
    }
    let mut w = vec![0.0; n * n];
    for (&(i, j), &(x, _)) in &weights {
        w[i * n + j] = x;
        w[j * n + i] = x;
    }
    for i in 0..n {
        let taken: f64 = (0..n).filter(|&j| j != i).map(|j| w[i * n + j]).sum();
        if taken > 1.0 + 1e-9 {
            return Err(err(
                None,
                format!(
                    "node {i}: the weights of its edges sum to {taken}, above 1 (its own weight \
                     is what they leave of 1)"
                ),
            ));
        }
        w[i * n + i] = (1.0 - taken).max(0.0);
    }
    Ok((g, Some(Weights::from_rows(n, w)?)))
}

/// Per-round random peer sampling (Epidemic Learning, de Vos et al. 2023): `s` distinct peers
/// drawn uniformly without replacement from `candidates`, or all of them if there are fewer.
///
/// Duplicates in `candidates` count once, and the result, sorted, depends only on the set of
/// candidates and the state of `rng` (partial Fisher-Yates over the sorted candidates), so a
/// seeded run draws the same peers whatever order it lists them in. Cost O(c log c) for `c`
/// candidates.
pub fn sample_peers<T: Copy + Ord, R: Rng + ?Sized>(
    candidates: &[T],
    s: usize,
    rng: &mut R,
) -> Vec<T> {
    let mut pool = candidates.to_vec();
    pool.sort_unstable();
    pool.dedup();
    if s < pool.len() {
        for i in 0..s {
            let j = rng.random_range(i..pool.len());
            pool.swap(i, j);
        }
        pool.truncate(s);
        pool.sort_unstable();
    }
    pool
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Config {
        topology: Topology,
    }

    #[test]
    fn an_edge_list_gives_the_graph_it_lists() {
        let ring = "# a ring of 4\n0 1\n1 2   # comment\n\n2 3\n3 0\n1 0\n";
        let g = parse_edge_list(ring, 4).unwrap();
        let built = Graph::build(&Topology::Ring, 4, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(g, built, "undirected, repeated edges once");
        let c: Config = toml::from_str("topology = { kind = \"file\", path = \"g.txt\" }").unwrap();
        assert_eq!(
            c.topology,
            Topology::File {
                path: "g.txt".into()
            }
        );
        assert_eq!(
            Graph::build(&c.topology, 4, &mut ChaCha8Rng::seed_from_u64(1)),
            Err(Error::FileNotRead)
        );
    }

    /// A weighted list gives `W_ij = W_ji = w` and each node the rest of its row.
    #[test]
    fn an_edge_list_with_weights_gives_its_symmetric_doubly_stochastic_matrix() {
        let text = "0 1 0.25\n1 2 0.5   # heavier\n2 0 0.125\n1 0 0.25\n";
        let (g, w) = parse_weighted_edge_list(text, 3).unwrap();
        assert_eq!(g, parse_edge_list(text, 3).unwrap());
        let w = w.expect("weights given");
        let expect = [[0.625, 0.25, 0.125], [0.25, 0.25, 0.5], [0.125, 0.5, 0.375]];
        for (i, row) in expect.iter().enumerate() {
            for (j, x) in row.iter().enumerate() {
                assert!(
                    (w.get(i, j) - x).abs() < 1e-12,
                    "W[{i}][{j}] = {}",
                    w.get(i, j)
                );
            }
        }
        assert!(w.is_doubly_stochastic(1e-12));
        assert_eq!(parse_weighted_edge_list("0 1\n", 2).unwrap().1, None);
    }

    #[test]
    fn a_bad_edge_list_is_refused_naming_the_line() {
        let cases = [
            ("0 1\n1 x\n", "line 2: \"x\" is not a node index"),
            (
                "0 1\n1 2 0.5\n",
                "line 2: line 2 gives a weight and line 1 does not",
            ),
            (
                "0 1 2 3\n",
                "line 1: \"0 1 2 3\": expected two node indices and an optional weight",
            ),
            ("0 1 0.5\n1 2 1.5\n", "line 2: weight 1.5 is not in (0, 1]"),
            ("0 1 0.5\n1 2 x\n", "line 2: \"x\" is not a weight"),
            (
                "0 1 0.5\n1 2 0.5\n1 0 0.25\n",
                "line 3: edge 1-0 again with weight 0.25 (line 1 gave 0.5)",
            ),
            (
                "0 1 0.5\n1 2 0.75\n",
                "node 1: the weights of its edges sum to 1.25, above 1",
            ),
            (
                "0 1\n\n1 7\n",
                "line 3: node 7 does not exist: the run has 3 nodes (0 to 2)",
            ),
            ("0 1\n2 2\n", "line 2: an edge from node 2 to itself"),
            ("0 1\n", "node 2 has no edge"),
            ("0 1\n2 3\n", "the graph is not connected"),
        ];
        for (text, want) in cases {
            let n = if text.contains("2 3") { 4 } else { 3 };
            let got = parse_edge_list(text, n).unwrap_err().to_string();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }

    fn parse(s: &str) -> Result<Topology, toml::de::Error> {
        toml::from_str::<Config>(s).map(|c| c.topology)
    }

    #[test]
    fn toml_forms() {
        assert_eq!(
            parse(r#"topology = { kind = "ring" }"#).unwrap(),
            Topology::Ring
        );
        assert_eq!(
            parse(r#"topology = { kind = "torus" }"#).unwrap(),
            Topology::Torus { rows: None }
        );
        assert_eq!(
            parse(r#"topology = { kind = "torus", rows = 4 }"#).unwrap(),
            Topology::Torus { rows: Some(4) }
        );
        assert_eq!(
            parse(r#"topology = { kind = "random-regular", degree = 6 }"#).unwrap(),
            Topology::RandomRegular { degree: 6 }
        );
        assert_eq!(
            parse(r#"topology = { kind = "erdos-renyi", p = 0.3 }"#).unwrap(),
            Topology::ErdosRenyi { p: 0.3 }
        );
        assert_eq!(
            parse(r#"topology = { kind = "sample" }"#).unwrap(),
            Topology::Sample { s: 4 }
        );
        assert!(parse(r#"topology = { kind = "ring", degree = 2 }"#).is_err());
        assert!(parse(r#"topology = { kind = "star" }"#).is_err());
    }

    #[test]
    fn names_round_trip() {
        for name in NAMES {
            let t: Topology = name.parse().unwrap();
            assert_eq!(t.name(), name);
            let text = toml::to_string(&Config {
                topology: t.clone(),
            })
            .unwrap();
            assert_eq!(parse(&text).unwrap(), t, "{text}");
        }
        assert_eq!(
            "star".parse::<Topology>(),
            Err(Error::Unknown("star".into()))
        );
        assert_eq!(Topology::Sample { s: 3 }.sample_size(), Some(3));
        assert_eq!(Topology::Ring.sample_size(), None);
    }

    #[test]
    fn sample_peers_is_distinct_sorted_and_seeded() {
        let candidates: Vec<u32> = (0..30).rev().chain([5, 5]).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..200 {
            let got = sample_peers(&candidates, 7, &mut rng);
            assert_eq!(got.len(), 7);
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
            assert!(got.iter().all(|x| *x < 30));
        }
        let a = sample_peers(&candidates, 7, &mut ChaCha8Rng::seed_from_u64(9));
        let mut shuffled = candidates.clone();
        shuffled.sort();
        let b = sample_peers(&shuffled, 7, &mut ChaCha8Rng::seed_from_u64(9));
        assert_eq!(a, b, "the result must not depend on the candidates' order");
        assert_eq!(sample_peers(&[3, 1, 2], 5, &mut rng), vec![1, 2, 3]);
        assert_eq!(sample_peers::<u8, _>(&[], 2, &mut rng), Vec::<u8>::new());
        assert_eq!(sample_peers(&[3, 1, 2], 0, &mut rng), Vec::<i32>::new());
    }

    #[test]
    fn sample_peers_is_roughly_uniform() {
        // 20 candidates, 5 drawn 20 000 times: each expected 5 000 times. Chi-square with 19
        // degrees of freedom has its 99.99th percentile near 49.
        let candidates: Vec<usize> = (0..20).collect();
        let mut counts = [0u32; 20];
        let mut rng = ChaCha8Rng::seed_from_u64(2023);
        let draws = 20_000;
        for _ in 0..draws {
            for p in sample_peers(&candidates, 5, &mut rng) {
                counts[p] += 1;
            }
        }
        let expected = f64::from(draws) * 5.0 / 20.0;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (f64::from(c) - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 49.0, "chi-square {chi2}, counts {counts:?}");
        // Pairs also mix: 0 and 1 appear together about 5/20 * 4/19 of the time.
        let mut together = 0u32;
        for _ in 0..draws {
            let s = sample_peers(&candidates, 5, &mut rng);
            together += u32::from(s.contains(&0) && s.contains(&1));
        }
        let p = f64::from(together) / f64::from(draws);
        assert!(
            (p - 5.0 / 20.0 * 4.0 / 19.0).abs() < 0.01,
            "pair frequency {p}"
        );
    }

    proptest::proptest! {
        #[test]
        fn sample_peers_draws_a_subset(
            candidates in proptest::collection::vec(0u16..50, 0..40),
            s in 0usize..50,
            seed in 0u64..1000,
        ) {
            let got = sample_peers(&candidates, s, &mut ChaCha8Rng::seed_from_u64(seed));
            let mut distinct = candidates.clone();
            distinct.sort_unstable();
            distinct.dedup();
            proptest::prop_assert_eq!(got.len(), s.min(distinct.len()));
            proptest::prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
            proptest::prop_assert!(got.iter().all(|x| distinct.binary_search(x).is_ok()));
        }
    }
}
