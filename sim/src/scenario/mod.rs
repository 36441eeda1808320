//! Scenarios: what a simulation runs, as plain serde data read from TOML.
//!
//! A scenario names the nodes, who talks to whom, the learning task (the node's own
//! [`train::Spec`]), the protocol engine's settings (the node's own [`engine::Config`]), the
//! attackers, the compute and network models, churn, how long to run and when to evaluate, and
//! the seed. Every table rejects unknown keys; [`Scenario::validate`] checks every value once and
//! names the first bad key. [`Scenario::to_toml`] gives the resolved scenario (defaults filled
//! in) that a run writes next to its outputs.
//!
//! ```toml
//! name = "quickstart"
//! seed = 1
//! nodes = 16
//! rounds = 30
//! topology = { kind = "sample", s = 4 }
//! # method = "synchronous"        # a reference instead of the protocol, see `Method`
//!
//! [learning]                      # murmur-node's learning config
//! model = { kind = "mlp", hidden = [64] }
//! data = { kind = "digits" }
//!
//! [engine]                        # murmur-protocol's engine config
//! aggregation = { rule = "clipped-gossip", adaptive-f = 2 }
//!
//! [[attackers]]
//! count = 3
//! attack = { kind = "alie" }
//! ```

use murmur_learn::train;
use murmur_protocol::attack::{Aim, Attack, Knowledge};
use murmur_protocol::engine;
use murmur_protocol::topology::{self, Graph, Topology, Weights};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod method;
mod validate;

pub use method::Method;

/// A whole simulation, as written in a scenario file. See the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Scenario {
    /// A short name, used in reports and as the default output directory.
    #[serde(default = "d_name")]
    pub name: String,
    /// The seed of every random choice of the run (data split, partition, initial model,
    /// identities, attackers, network draws, peer sampling).
    pub seed: u64,
    /// Nodes in the run, Byzantine ones and late joiners included.
    pub nodes: usize,
    /// What runs: the murmur protocol (the default), or one of the synchronous references it is
    /// measured against, on the same trainers, data and seeds (see [`Method`]).
    #[serde(default, skip_serializing_if = "Method::is_protocol")]
    pub method: Method,
    /// Rounds every honest node runs; the run ends when all online honest nodes are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<u64>,
    /// Longest simulated duration, in milliseconds of virtual time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Who may send to whom. `sample` (the default, s = 4) connects every node to every other
    /// (up to `network.max-connections`) and sets the engine's fanout to `s`; a fixed graph
    /// connects each node to its neighbours, and every round a node asks all of them and waits
    /// for all of them or the round timeout (its fanout is its degree and its `wait-for` at least
    /// that: the engine's `fanout` applies to `sample` only).
    #[serde(default = "d_topology")]
    pub topology: Topology,
    /// The learning task: model, data, partition, optimiser, batch size, local steps.
    pub learning: train::Spec,
    /// The protocol engine's settings (`rounds` is taken from the scenario).
    #[serde(default)]
    pub engine: engine::Config,
    /// Byzantine nodes, in groups sharing one attack.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attackers: Vec<Attackers>,
    /// The run lists its members (an allowlist; README, "Run members"): every honest node and
    /// the first identity of each attacker process, as a run's operators admit one key per
    /// participant. Every engine refuses the other keys (the further identities of a Sybil
    /// process, `identities` above 1): it bans them when they connect, so they never take part,
    /// and counts what reaches it from them as `not_member`. Default false: any key takes part.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allowlist: bool,
    /// Local training time.
    #[serde(default)]
    pub compute: Compute,
    /// Links: latency, bandwidth, loss, gossip, splits.
    #[serde(default)]
    pub network: Network,
    /// Nodes leaving, coming back, and joining late.
    #[serde(default)]
    pub churn: Churn,
    /// When and how the honest models are evaluated.
    #[serde(default)]
    pub eval: Eval,
}

fn d_name() -> String {
    "scenario".into()
}

fn d_topology() -> Topology {
    Topology::Sample { s: 4 }
}

/// One group of Byzantine nodes running the same attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Attackers {
    /// How many nodes, drawn by the seed among the nodes not yet chosen. Ignored when
    /// `nodes` is given.
    #[serde(default)]
    pub count: usize,
    /// Exactly these node indices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<usize>>,
    /// What they do; required unless `absent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<Attack>,
    /// The nodes never run: no engine starts, no peer connects to them, their shards go unused.
    /// The attack-free baseline of the same honest nodes (same shards, same identities) that a
    /// group of attackers is measured against. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
    /// Also push their forgeries at every connected peer every round, unasked, as fast as the
    /// protocol lets anyone send. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub push: bool,
    /// Free timing: they never train, and sign (and forge from) their current model the moment
    /// each round starts, so their answers are ready before any honest node's (their compute
    /// time is not spent). Not with `label-flip`. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free_timing: bool,
    /// Hog the honest uplinks: each time they have trained a round they also ask every honest
    /// peer they did not draw for its next round, to be answered when it signs, ahead of the
    /// askers that come later; with `uplink-mbps` set, the honest askers behind them hear
    /// "busy". Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hog: bool,
    /// With `hog` and `identities` above 1: the identities of each process take turns, one
    /// hogging each round (identity `j` of a process of `k` in the rounds `r` with
    /// `r % k == j`), so that each asks a given peer in one round of `k`, as seldom as an
    /// honest asker. Default false: every identity hogs every round.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hog_in_turn: bool,
    /// Sybil identities: each attacker process of the group holds this many keys and joins as
    /// that many peers. The group's nodes (`count` or `nodes`, which must be a multiple of it)
    /// are its identities; each run of `identities` of them, in node order, is one process:
    /// their messages leave one after the other on one uplink (whatever `shared-uplink` says),
    /// and their training shares one CPU (each takes `identities` times as long). Default 1.
    #[serde(default = "d_identities", skip_serializing_if = "is_one")]
    pub identities: usize,
    /// What they know of the honest models: `own` (what each mixed; default), `colluding`
    /// (every honest model any attacker fetched) or `omniscient` (every honest node's newest
    /// model, the moment it is signed). Beyond `own` they know each other and, on a fixed graph,
    /// every node's mixing weights, and forge for each asker when it asks.
    #[serde(default, skip_serializing_if = "Knowledge::is_own")]
    pub knowledge: Knowledge,
    /// Which honest models a forgery for an asker is computed from: `all` the group knows
    /// (default) or `victim`, the asker's and its honest neighbours' (the ClippedGossip paper's
    /// decentralized ALIE and IPM). `victim` needs `knowledge` beyond `own`.
    #[serde(default, skip_serializing_if = "Aim::is_all")]
    pub aim: Aim,
}

fn d_identities() -> usize {
    1
}

fn is_one(k: &usize) -> bool {
    *k == 1
}

impl Attackers {
    /// The attack the group runs: `None` when it is absent.
    pub fn running(&self) -> Option<&Attack> {
        self.attack.as_ref().filter(|_| !self.absent)
    }
}

/// Local training time: `local-steps x step-ms x` the node's speed factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Compute {
    /// Virtual milliseconds per local step on a node of speed factor 1. Default 5.
    #[serde(default = "d_step_ms")]
    pub step_ms: f64,
    /// How per-node speed factors (time multipliers, drawn once per node) are distributed.
    #[serde(default)]
    pub speed: Speed,
    /// A fraction of the nodes, drawn by the seed, that are `slowdown` times slower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stragglers: Option<Stragglers>,
}

impl Default for Speed {
    fn default() -> Self {
        Speed::Fixed {}
    }
}

fn d_step_ms() -> f64 {
    5.0
}

impl Default for Compute {
    fn default() -> Self {
        Compute {
            step_ms: d_step_ms(),
            speed: Speed::default(),
            stragglers: None,
        }
    }
}

/// Distribution of per-node time multipliers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
#[serde(deny_unknown_fields)]
pub enum Speed {
    /// Every node has factor 1. (A struct variant, so that extra keys are rejected.)
    Fixed {},
    /// Factor uniform in `[min, max]`.
    Uniform {
        /// Smallest factor, > 0.
        min: f64,
        /// Largest factor, >= min.
        max: f64,
    },
    /// Factor `exp(N(0, sigma^2))`: median 1, heavy right tail.
    Lognormal {
        /// Spread, >= 0.
        sigma: f64,
    },
}

/// Slow nodes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Stragglers {
    /// Fraction of nodes that straggle, in [0, 1].
    pub fraction: f64,
    /// Their extra time multiplier, >= 1.
    pub slowdown: f64,
}

/// The network model. Every message takes `bytes / bandwidth` on the sender's uplink (messages
/// from one sender, updates and gossip, queue behind each other when `shared-uplink`), then the link's latency; a
/// message is lost with probability `loss`; messages across a split are dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Network {
    /// One-way latency of each link, drawn once per (unordered) pair of nodes.
    #[serde(default)]
    pub latency: Latency,
    /// Uplink bandwidth of every node, in megabits per second; unset means unlimited.
    #[serde(default = "d_bandwidth", skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<f64>,
    /// Whether one sender's messages share its uplink (sent one after the other). Default true.
    #[serde(default = "d_true")]
    pub shared_uplink: bool,
    /// Probability that a message is lost, in [0, 1).
    #[serde(default)]
    pub loss: f64,
    /// Most peers a node is connected to; with more candidates each node gets a seeded random
    /// set (made symmetric), as a real node keeps a bounded number of connections. Default 64.
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    /// Peers a node publishes or forwards a gossip message (announcement, evidence) to, drawn
    /// per message among its connected peers (gossipsub's mesh degree); 0 means every connected
    /// peer. Default 6.
    #[serde(default = "d_gossip_peers")]
    pub gossip_peers: usize,
    /// Times a gossip message is forwarded after its author's own send. Unset (the default): as
    /// gossipsub, until every node has seen it, each node dropping the copies it has seen. 0:
    /// only the author's mesh receives it (cheaper for very large runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_hops: Option<u32>,
    /// Network splits on a schedule (the data's partition across nodes is
    /// `learning.partition`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<Split>,
}

fn d_bandwidth() -> Option<f64> {
    Some(100.0)
}

fn d_true() -> bool {
    true
}

fn d_max_connections() -> usize {
    64
}

fn d_gossip_peers() -> usize {
    6
}

impl Default for Network {
    fn default() -> Self {
        Network {
            latency: Latency::default(),
            bandwidth_mbps: d_bandwidth(),
            shared_uplink: true,
            loss: 0.0,
            max_connections: d_max_connections(),
            gossip_peers: d_gossip_peers(),
            gossip_hops: None,
            splits: Vec::new(),
        }
    }
}

/// Distribution of link latencies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
#[serde(deny_unknown_fields)]
pub enum Latency {
    /// Every link has the same latency.
    Fixed {
        /// Milliseconds, >= 0.
        ms: f64,
    },
    /// Uniform in `[min-ms, max-ms]`.
    Uniform {
        /// Smallest, >= 0.
        min_ms: f64,
        /// Largest, >= min-ms.
        max_ms: f64,
    },
    /// `median-ms * exp(N(0, sigma^2))`.
    Lognormal {
        /// Median, >= 0.
        median_ms: f64,
        /// Spread, >= 0.
        sigma: f64,
    },
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed { ms: 20.0 }
    }
}

/// A split of the network into `sides` contiguous blocks of node indices, from `start-ms` until
/// `heal-ms` (virtual milliseconds). While split, connections across blocks are down and
/// messages across them are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Split {
    /// When the split starts, >= 0.
    pub start_ms: f64,
    /// When it heals, > start-ms.
    pub heal_ms: f64,
    /// Number of blocks, >= 2. Default 2.
    #[serde(default = "d_sides")]
    pub sides: usize,
}

fn d_sides() -> usize {
    2
}

/// Churn: honest nodes leaving and coming back, and nodes joining late.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Churn {
    /// Fraction of the honest nodes (drawn by the seed) that leave once, in [0, 1].
    #[serde(default)]
    pub leave_fraction: f64,
    /// Leaving times are uniform in `[leave-from-ms, leave-until-ms]`.
    #[serde(default)]
    pub leave_from_ms: f64,
    /// See `leave-from-ms`.
    #[serde(default)]
    pub leave_until_ms: f64,
    /// Time offline before coming back, in milliseconds. A node comes back as a restarted process
    /// (the node's own restart, run by its engine): from its last checkpoint (taken every
    /// `engine.checkpoint-every` rounds), past the last round it signed, with its bans and fresh
    /// connections; if its checkpoint is more than `engine.max-staleness` rounds behind its
    /// peers, it starts from the median of their models instead.
    #[serde(default)]
    pub downtime_ms: f64,
    /// Honest nodes (the highest indices) that are offline at the start and join at `join-ms`,
    /// as a node joins a run in progress: from the median of `engine.join-peers` peers' latest
    /// updates, fetched from a seeded draw of the peers it connects to.
    #[serde(default)]
    pub joiners: usize,
    /// When the joiners join.
    #[serde(default)]
    pub join_ms: f64,
}

/// When and how the honest models are evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Eval {
    /// Evaluate whenever every online honest node has completed another `every-rounds` rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_rounds: Option<u64>,
    /// Evaluate every `every-ms` milliseconds of virtual time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<f64>,
    /// Honest nodes whose models are evaluated at each point (a seeded sample when there are
    /// more); the honest average model is always evaluated too. Default 16.
    #[serde(default = "d_sample")]
    pub sample: usize,
    /// Evaluate on the first this-many test samples only; unset means the whole test set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_samples: Option<usize>,
}

fn d_sample() -> usize {
    16
}

impl Default for Eval {
    fn default() -> Self {
        Eval {
            every_rounds: None,
            every_ms: None,
            sample: d_sample(),
            test_samples: None,
        }
    }
}

/// A scenario that cannot be read or used. Every variant names the file or the key.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or has an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file (or `<string>`).
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A value out of range, in a file.
    #[error("{path}: {error}")]
    InFile {
        /// The file (or `<string>`).
        path: PathBuf,
        /// What is wrong, naming the key.
        error: Box<ScenarioError>,
    },
    /// The graph file of a `file` topology cannot be read or is not a valid graph.
    #[error("topology file {path}: {message}")]
    Graph {
        /// The graph file.
        path: PathBuf,
        /// What is wrong (with the line, when one is at fault).
        message: String,
    },
    /// A value of the `[engine]` or `[learning]` table out of range.
    #[error("`{table}`: {message}")]
    Table {
        /// The table.
        table: &'static str,
        /// The table's own error, naming its key.
        message: String,
    },
    /// A value out of range.
    #[error("`{key}` = {value}: {why}")]
    Value {
        /// The key, dotted from the top of the file.
        key: String,
        /// The value given.
        value: String,
        /// What it must be.
        why: String,
    },
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_owned(),
            source,
        })?;
        Scenario::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` names the source in errors, and a `file`
    /// topology's path is taken relative to its directory (and read, to check the graph).
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        if let Topology::File { path: graph } = &mut scenario.topology {
            let base = path.parent().unwrap_or(Path::new(""));
            *graph = base.join(&*graph).to_string_lossy().into_owned();
        }
        let in_file = |error| ScenarioError::InFile {
            path: path.to_owned(),
            error: Box::new(error),
        };
        scenario.validate().map_err(in_file)?;
        scenario.graph().map_err(in_file)?;
        Ok(scenario)
    }

    /// The graph of a `file` topology, read from its (resolved) path; `None` for the other
    /// kinds.
    pub fn graph(&self) -> Result<Option<Graph>, ScenarioError> {
        Ok(self.edge_list()?.map(|(g, _)| g))
    }

    /// The graph of a `file` topology and its mixing weights if the file gives them (see
    /// [`topology::parse_weighted_edge_list`]); `None` for the other kinds.
    pub fn edge_list(&self) -> Result<Option<(Graph, Option<Weights>)>, ScenarioError> {
        let Topology::File { path } = &self.topology else {
            return Ok(None);
        };
        let fail = |message: String| ScenarioError::Graph {
            path: PathBuf::from(path),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        topology::parse_weighted_edge_list(&text, self.nodes)
            .map(Some)
            .map_err(|e| fail(e.to_string()))
    }

    /// The resolved scenario as TOML, every default written out.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a scenario serialises")
    }

    /// Number of Byzantine nodes.
    pub fn byzantine(&self) -> usize {
        self.attackers
            .iter()
            .map(|a| a.nodes.as_ref().map_or(a.count, Vec::len))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
seed = 3
nodes = 8
rounds = 5
[learning]
model = { kind = "logistic-regression" }
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn minimal_scenario_takes_defaults_and_round_trips() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.topology, Topology::Sample { s: 4 });
        assert_eq!(s.network.bandwidth_mbps, Some(100.0));
        let again = parse(&s.to_toml()).unwrap();
        assert_eq!(s, again);
    }

    #[test]
    fn unknown_keys_are_named() {
        for (extra, key) in [
            ("nodez = 3", "nodez"),
            ("[network]\nlatncy = 3", "latncy"),
            ("[compute]\nstep = 3", "step"),
            ("[eval]\nevery = 3", "every"),
            (
                "[[attackers]]\ncount = 1\nattack = { kind = \"alie\", zz = 1 }",
                "zz",
            ),
        ] {
            let text = format!("{MINIMAL}\n{extra}\n");
            let text = if extra.starts_with("nodez") {
                format!("{extra}\n{MINIMAL}")
            } else {
                text
            };
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
            assert!(err.starts_with("test.toml"), "{err}");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        for (extra, key) in [
            ("[network]\nloss = 1.5", "network.loss"),
            ("[compute]\nstep-ms = -1.0", "compute.step-ms"),
            (
                "[[network.splits]]\nstart-ms = 5000.0\nheal-ms = 2000.0",
                "network.splits[0].heal-ms",
            ),
            (
                "[[attackers]]\nnodes = [9]\nattack = { kind = \"alie\" }",
                "attackers[0].nodes",
            ),
            (
                "[[attackers]]\ncount = 1\nattack = { kind = \"replay\", lag = 0 }",
                "attackers[0].attack",
            ),
            ("[[attackers]]\ncount = 1", "attackers[0].attack"),
            (
                "[[attackers]]\ncount = 1\nabsent = true\nattack = { kind = \"alie\" }",
                "attackers[0].attack",
            ),
            (
                "[[attackers]]\ncount = 2\nidentities = 2\nhog-in-turn = true\nattack = { kind = \"alie\" }",
                "attackers[0].hog-in-turn",
            ),
            (
                "[[attackers]]\ncount = 2\nhog = true\nhog-in-turn = true\nattack = { kind = \"alie\" }",
                "attackers[0].hog-in-turn",
            ),
            ("[eval]\nevery-rounds = 0", "eval.every-rounds"),
        ] {
            let err = parse(&format!("{MINIMAL}\n{extra}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{key}`")), "{extra}: {err}");
            assert!(err.starts_with("test.toml: "), "{err}");
        }
        for (extra, table, key) in [
            ("[engine]\nfanout = 0", "engine", "fanout"),
            (
                "[engine]\nwait-for = 2\njoin-peers = 2\njoin-timeout-ms = 0",
                "engine",
                "join-timeout-ms",
            ),
            (
                "[engine]\naggregation = { rule = \"centered-clipping\", tau = -1.0, iterations = 1 }",
                "aggregation",
                "tau",
            ),
        ] {
            let err = parse(&format!("{MINIMAL}\n{extra}\n"))
                .unwrap_err()
                .to_string();
            // Values serde checks while parsing are named by the parser (with the line).
            assert!(
                err.starts_with("test.toml: ") && err.contains(table) && err.contains(key),
                "{extra}: {err}"
            );
        }
        let err = parse(&MINIMAL.replace("logistic-regression\" }", "mlp\", hidden = [] }"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.toml: `learning`: ") && err.contains("hidden"),
            "{err}"
        );
        let err =
            parse("seed = 1\nnodes = 2\n[learning]\nmodel = { kind = \"logistic-regression\" }")
                .unwrap_err()
                .to_string();
        assert!(err.contains("`rounds`"), "{err}");
    }
}
