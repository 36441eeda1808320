//! The node's configuration file: plain serde data with documented units and defaults, read and
//! validated once at start-up into a [`Resolved`] config. An error names the file and the field.
//!
//! Tables (see `configs/node.toml` for a fully commented example):
//! - `[run]`: what identifies the run (name, seed, number of data partitions). Every node of a
//!   run must have the same `[run]` and `[learning]`; the run id is a hash of both.
//! - `[node]`: this node (its state directory, key file, partition index, attack).
//! - `[learning]`: model, data, partition, optimiser, batch size, local steps ([`train::Spec`]).
//! - `[engine]`: the round rules, joining and checkpoints ([`engine::Config`]).
//! - `[network]`: listen and bootstrap addresses, discovery, limits ([`net::Config`]).
//! - `[metrics]`: the HTTP endpoint for Prometheus metrics and status, and evaluation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use murmur_protocol::attack::{Aim, Attack, Knowledge};
use murmur_protocol::engine;
use murmur_protocol::members::Members;
use murmur_protocol::sign::RunId;
use serde::{Deserialize, Serialize};

use crate::net;
use murmur_learn::train;

/// The most Sybil identities one red-team process may hold (`node.attack-identities`).
pub const MAX_IDENTITIES: usize = 64;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// The run.
    #[serde(default)]
    pub run: Run,
    /// This node.
    #[serde(default)]
    pub node: Node,
    /// Local training (required: at least the model).
    pub learning: train::Spec,
    /// The round rules.
    #[serde(default)]
    pub engine: engine::Config,
    /// Networking.
    #[serde(default)]
    pub network: net::Config,
    /// Metrics and status.
    #[serde(default)]
    pub metrics: Metrics,
}

/// `[run]`: what the nodes of one run share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Run {
    /// A name for the run. Default "murmur".
    pub name: String,
    /// Seed of the initial model, the data split and the partition. Default 1.
    pub seed: u64,
    /// Number of parts the training set is split into; node `index` trains on part `index`.
    /// Default 1 (every node trains on the whole set).
    pub partitions: usize,
    /// The run's members, when it admits only them: a file of one key per line, each a peer
    /// id (what `murmur-node keygen` prints) or 64 hexadecimal digits of the ed25519 public key;
    /// `#` starts a comment. The node refuses every other key: their connections, messages and
    /// fetches (README, "Run members"). The keys, not the path, are part of the run id. A
    /// relative path is relative to the working directory. Default none: any key takes part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<PathBuf>,
}

impl Default for Run {
    fn default() -> Self {
        Self {
            name: "murmur".into(),
            seed: 1,
            partitions: 1,
            members: None,
        }
    }
}

/// `[node]`: this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Node {
    /// Directory of the node's state: its key, checkpoint, signed-round record, bans and the
    /// resolved config. Default `murmur-state`. Relative paths are relative to the working
    /// directory.
    pub state_dir: Option<PathBuf>,
    /// The key file. Default `<state-dir>/node.key`, created if missing.
    pub key: Option<PathBuf>,
    /// Which partition of the training set this node trains on, below `run.partitions`.
    /// Default 0.
    pub index: usize,
    /// Make this node Byzantine (red-team testing), e.g. `{ kind = "alie" }`.
    pub attack: Option<Attack>,
    /// Nodes the attacker assumes are in the run (for ALIE's z). Default: its peers plus itself.
    pub attack_n: Option<usize>,
    /// Byzantine nodes the attacker assumes are in the run. Default 1.
    pub attack_f: Option<usize>,
    /// The attacker also pushes its forgeries at every connected peer every round, unasked.
    /// Default false.
    pub attack_push: bool,
    /// The attacker never trains: it signs (and forges from) its current model the moment each
    /// round starts, so its answers are ready before any honest node's. Not with `label-flip`.
    /// Default false.
    pub attack_free_timing: bool,
    /// The attacker hogs the honest uplinks: each round it also asks every connected peer it
    /// did not draw for that peer's next round, to be answered when the peer signs, ahead of
    /// the askers that come later. Default false.
    pub attack_hog: bool,
    /// With `attack-hog` and `attack-identities` above 1: the identities of this process take
    /// turns, one hogging each round (identity `i` of `k` in the rounds `r` with
    /// `r % k == i`), so that each asks a given peer as seldom as an honest asker and stays
    /// under the share rule's floor. Default false: every identity hogs every round.
    pub attack_hog_in_turn: bool,
    /// What the attacker knows of the honest models: `own` (what it mixes; default) or
    /// `colluding` (also every honest model any red-team node of the same `attack-intel`
    /// directory fetched). `omniscient` is the simulator's alone: no real node sees every
    /// honest model the moment it is signed.
    #[serde(skip_serializing_if = "Knowledge::is_own")]
    pub attack_knowledge: Knowledge,
    /// The red team's side channel for `colluding`: a directory the red-team processes share
    /// (on one machine, or a network file system). Each writes its peer id under `allies/` and
    /// every honest update it fetches under `intel/`, and reads the others'.
    pub attack_intel: Option<PathBuf>,
    /// Which honest models a forgery for an asker is computed from: `all` it knows (default)
    /// or `victim`, the asker's and the other honest models it knows. Needs `colluding`.
    #[serde(skip_serializing_if = "Aim::is_all")]
    pub attack_aim: Aim,
    /// Sybil identities: the red-team process holds this many keys and joins as that many
    /// peers. Identity 0 is this node as configured; identity `i` keeps its key and state in
    /// `<state-dir>/identity-<i>`, listens on each listen address's port plus `i` (port 0 stays
    /// 0) and serves metrics on `metrics.listen`'s port plus `i`. The identities share the
    /// process's uplink and one training thread at a time (one CPU). Needs `attack`; at most
    /// [`MAX_IDENTITIES`]. Default 1.
    pub attack_identities: Option<usize>,
    /// Exit once the configured rounds are done (after the final checkpoint), instead of
    /// serving the model to late joiners until stopped. Default false.
    pub exit_when_finished: bool,
}

/// `[metrics]`: the HTTP endpoint and evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Metrics {
    /// Address of the HTTP endpoint serving `/metrics` (Prometheus text) and `/status` (JSON);
    /// port 0 picks a free port. Default `127.0.0.1:9464`. Empty disables it.
    pub listen: String,
    /// Evaluate the local and the mixed model on the test set when at least this many rounds
    /// have passed since the last evaluation, and at the end; 0 never. Default 5.
    pub eval_every: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            eval_every: 5,
        }
    }
}

/// A config file that cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The TOML does not parse or has an unknown or ill-typed key.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("{path}: `{field}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, with its table.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The members file (`run.members`) cannot be read or holds something that is not a key.
    #[error("{path} (run.members): {reason}")]
    Members {
        /// The members file.
        path: PathBuf,
        /// What is wrong (a parse error names the line).
        reason: String,
    },
    /// A command-line flag's value is wrong (not the file's fault).
    #[error("{flag} {value:?}: {reason}")]
    Flag {
        /// The flag, e.g. `--bootstrap`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// Checks that every value of a flag is a multiaddr, naming the flag (not the config file).
fn flag_addrs(flag: &'static str, values: &[String]) -> Result<(), ConfigError> {
    for v in values {
        if let Err(e) = v.parse::<libp2p::Multiaddr>() {
            return Err(ConfigError::Flag {
                flag,
                value: v.clone(),
                reason: e.to_string(),
            });
        }
    }
    Ok(())
}

/// Command-line overrides of the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replace `network.listen` when not empty.
    pub listen: Vec<String>,
    /// Add to `network.bootstrap`.
    pub bootstrap: Vec<String>,
    /// Replace `node.state-dir`.
    pub state_dir: Option<PathBuf>,
    /// Replace the directory of file-based datasets (`learning.data.dir`).
    pub dataset_dir: Option<PathBuf>,
    /// Replace `node.index`.
    pub index: Option<usize>,
    /// Replace `node.attack`.
    pub attack: Option<Attack>,
    /// Replace `node.attack-knowledge`.
    pub attack_knowledge: Option<Knowledge>,
    /// Set `node.attack-free-timing`.
    pub attack_free_timing: bool,
    /// Set `node.attack-hog`.
    pub attack_hog: bool,
    /// Set `node.attack-hog-in-turn`.
    pub attack_hog_in_turn: bool,
    /// Replace `node.attack-intel`.
    pub attack_intel: Option<PathBuf>,
    /// Replace `node.attack-identities`.
    pub attack_identities: Option<usize>,
    /// Replace `run.members`.
    pub members: Option<PathBuf>,
    /// Replace `metrics.listen`.
    pub metrics: Option<String>,
    /// Replace `engine.rounds`.
    pub rounds: Option<u64>,
    /// Replace `network.mdns` with false.
    pub no_mdns: bool,
    /// Replace `node.exit-when-finished` with true.
    pub exit_when_finished: bool,
}

/// A validated configuration, with paths resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The config after overrides.
    pub config: Config,
    /// The run id.
    pub run: RunId,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The key file.
    pub key: PathBuf,
    /// Listen addresses.
    pub listen: Vec<libp2p::Multiaddr>,
    /// Bootstrap addresses.
    pub bootstrap: Vec<libp2p::Multiaddr>,
    /// The metrics endpoint, if enabled.
    pub metrics: Option<std::net::SocketAddr>,
    /// Which of the process's Sybil identities this is, when it has several
    /// (`node.attack-identities`); `None` for a process that is one node.
    pub identity: Option<usize>,
    /// The run's members, read from `run.members`; `None`: any key takes part.
    pub members: Option<Arc<Members>>,
}

impl Resolved {
    /// The checkpoint file.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.state_dir.join("checkpoint.safetensors")
    }

    /// The record of the highest round this node has signed.
    pub fn signed_round_path(&self) -> PathBuf {
        self.state_dir.join("signed-round")
    }

    /// With `node.attack-hog-in-turn`, this identity's turn among the process's identities:
    /// `(i, k)` for identity `i` of `k` ([`Resolved::identities`]).
    pub fn hog_turn(&self) -> Option<(u64, u64)> {
        let k = self.config.node.attack_identities.unwrap_or(1);
        (self.config.node.attack_hog_in_turn).then(|| (self.identity.unwrap_or(0) as u64, k as u64))
    }

    /// The record of the peers this node banned.
    pub fn bans_path(&self) -> PathBuf {
        self.state_dir.join("bans")
    }

    /// Every identity this process runs (`node.attack-identities`, default 1): this config
    /// first, then identity `i` with its key and state in `<state-dir>/identity-<i>` and its
    /// listen and metrics ports shifted by `i` (port 0 stays 0). [`Config::resolve`] checked
    /// that the shifted ports exist.
    pub fn identities(&self) -> Vec<Resolved> {
        let k = self.config.node.attack_identities.unwrap_or(1);
        let mut all = vec![Resolved {
            identity: (k > 1).then_some(0),
            ..self.clone()
        }];
        for i in 1..k {
            let by = u16::try_from(i).expect("at most MAX_IDENTITIES");
            let state_dir = self.state_dir.join(format!("identity-{i}"));
            let mut r = self.clone();
            r.identity = Some(i);
            r.key = state_dir.join("node.key");
            r.config.node.state_dir = Some(state_dir.clone());
            r.config.node.key = None;
            r.state_dir = state_dir;
            r.listen = self
                .listen
                .iter()
                .map(|a| shift_port(a, by).expect("checked in resolve"))
                .collect();
            r.metrics = self.metrics.map(|mut m| {
                if m.port() != 0 {
                    m.set_port(m.port() + by);
                }
                m
            });
            all.push(r);
        }
        all
    }
}

/// Reads the members file `path` (see [`Run::members`]).
pub fn read_members(path: &Path) -> Result<Members, ConfigError> {
    let fail = |reason: String| ConfigError::Members {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    Members::parse(&text, "a peer id", |word| {
        word.parse::<libp2p::PeerId>()
            .ok()
            .and_then(|id| net::peer_key(&id))
    })
    .map_err(|e| fail(e.to_string()))
}

/// `addr` with its TCP or UDP port plus `by` (port 0, any free port, stays 0); `None` when
/// that passes 65535.
fn shift_port(addr: &libp2p::Multiaddr, by: u16) -> Option<libp2p::Multiaddr> {
    use libp2p::multiaddr::Protocol;
    addr.iter()
        .map(|p| match p {
            Protocol::Tcp(port) if port != 0 => port.checked_add(by).map(Protocol::Tcp),
            Protocol::Udp(port) if port != 0 => port.checked_add(by).map(Protocol::Udp),
            p => Some(p),
        })
        .collect()
}

impl Config {
    /// Parses TOML text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The run id: a hash of `[run]` and `[learning]` (model, data spec, hyperparameters, seed),
    /// of `engine.codec` (with its block) when it is not the default `f32`, of
    /// `engine.last-fraction` when set (nodes that encode models differently are in different
    /// runs; runs in `f32` keep the ids they had), and of the keys of `members` (read from
    /// `run.members`, whose path is left out) when the run lists them.
    pub fn run_id(&self, members: Option<&Members>) -> RunId {
        // The path is left out (a path that is no UTF-8 would not even serialise).
        let run = Run {
            members: None,
            ..self.run.clone()
        };
        let mut description = serde_json::json!({
            "run": run,
            "learning": self.learning,
        });
        if let Some(m) = members {
            description["members"] = serde_json::json!(hex::encode(m.digest()));
        }
        if self.engine.codec != murmur_protocol::wire::Codec::F32Le {
            description["codec"] = serde_json::json!(self.engine.codec.to_string());
        }
        if let Some(last) = self.engine.last_fraction {
            description["last-fraction"] = serde_json::json!(last);
        }
        RunId::derive(description.to_string().as_bytes())
    }

    /// Applies `overrides` and checks every value that can be checked without loading data.
    pub fn resolve(mut self, overrides: Overrides, path: &Path) -> Result<Resolved, ConfigError> {
        let invalid = |field, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason,
        };
        flag_addrs("--listen", &overrides.listen)?;
        flag_addrs("--bootstrap", &overrides.bootstrap)?;
        if !overrides.listen.is_empty() {
            self.network.listen = overrides.listen;
        }
        self.network.bootstrap.extend(overrides.bootstrap);
        if let Some(d) = overrides.state_dir {
            self.node.state_dir = Some(d);
        }
        if let Some(d) = overrides.dataset_dir {
            self.learning.data.set_dir(d);
        }
        if let Some(i) = overrides.index {
            self.node.index = i;
        }
        if let Some(a) = overrides.attack {
            self.node.attack = Some(a);
        }
        if let Some(k) = overrides.attack_knowledge {
            self.node.attack_knowledge = k;
        }
        if overrides.attack_free_timing {
            self.node.attack_free_timing = true;
        }
        if overrides.attack_hog {
            self.node.attack_hog = true;
        }
        if overrides.attack_hog_in_turn {
            self.node.attack_hog_in_turn = true;
        }
        if let Some(d) = overrides.attack_intel {
            self.node.attack_intel = Some(d);
        }
        if let Some(k) = overrides.attack_identities {
            self.node.attack_identities = Some(k);
        }
        if let Some(m) = overrides.members {
            self.run.members = Some(m);
        }
        if let Some(m) = overrides.metrics {
            self.metrics.listen = m;
        }
        if let Some(r) = overrides.rounds {
            self.engine.rounds = Some(r);
        }
        if overrides.no_mdns {
            self.network.mdns = false;
        }
        if overrides.exit_when_finished {
            self.node.exit_when_finished = true;
        }
        self.engine
            .validate()
            .map_err(|e| invalid("engine", e.to_string()))?;
        self.learning
            .check()
            .map_err(|e| invalid("learning", e.to_string()))?;
        if let Some(a) = &self.node.attack {
            a.validate()
                .map_err(|e| invalid("node.attack", e.to_string()))?;
        }
        if self.node.attack_free_timing {
            match &self.node.attack {
                None => {
                    return Err(invalid(
                        "node.attack-free-timing",
                        "is an attacker's power, and node.attack is not set".into(),
                    ));
                }
                Some(Attack::LabelFlip) => {
                    return Err(invalid(
                        "node.attack-free-timing",
                        "label-flip trains on flipped labels: it cannot skip training".into(),
                    ));
                }
                Some(_) => {}
            }
        }
        if self.node.attack_hog && self.node.attack.is_none() {
            return Err(invalid(
                "node.attack-hog",
                "is an attacker's power, and node.attack is not set".into(),
            ));
        }
        if self.node.attack_hog_in_turn
            && !(self.node.attack_hog && self.node.attack_identities.is_some_and(|k| k > 1))
        {
            return Err(invalid(
                "node.attack-hog-in-turn",
                "is how the identities of one process take turns hogging: it needs \
                 node.attack-hog and node.attack-identities above 1"
                    .into(),
            ));
        }
        match (self.node.attack_knowledge, &self.node.attack_intel) {
            (Knowledge::Own, None) => {}
            (Knowledge::Own, Some(_)) => {
                return Err(invalid(
                    "node.attack-intel",
                    "is the side channel of attack-knowledge = \"colluding\", which is not set"
                        .into(),
                ));
            }
            (Knowledge::Omniscient, _) => {
                return Err(invalid(
                    "node.attack-knowledge",
                    "\"omniscient\" is the simulator's alone (every honest model the moment it is \
                     signed); a red-team node can be \"colluding\" through attack-intel"
                        .into(),
                ));
            }
            (Knowledge::Colluding, None) => {
                return Err(invalid(
                    "node.attack-intel",
                    "\"colluding\" needs the directory the red-team nodes share".into(),
                ));
            }
            (Knowledge::Colluding, Some(_)) if self.node.attack.is_none() => {
                return Err(invalid(
                    "node.attack-knowledge",
                    "is what an attacker knows, and node.attack is not set".into(),
                ));
            }
            (Knowledge::Colluding, Some(_)) => {}
        }
        if !self.node.attack_aim.is_all() && self.node.attack_knowledge.is_own() {
            return Err(invalid(
                "node.attack-aim",
                "aiming at each asker needs attack-knowledge = \"colluding\" (forgeries are \
                 then made for each asker)"
                    .into(),
            ));
        }
        match self.node.attack_identities {
            Some(0) => {
                return Err(invalid(
                    "node.attack-identities",
                    "must be at least 1 (the node itself)".into(),
                ));
            }
            Some(k) if k > MAX_IDENTITIES => {
                return Err(invalid(
                    "node.attack-identities",
                    format!("{k} is above the limit of {MAX_IDENTITIES}"),
                ));
            }
            Some(k) if k > 1 && self.node.attack.is_none() => {
                return Err(invalid(
                    "node.attack-identities",
                    "Sybil identities are an attacker's power, and node.attack is not set".into(),
                ));
            }
            _ => {}
        }
        if self.run.partitions == 0 {
            return Err(invalid("run.partitions", "must be at least 1".into()));
        }
        if self.node.index >= self.run.partitions {
            return Err(invalid(
                "node.index",
                format!(
                    "{} is not below run.partitions = {}",
                    self.node.index, self.run.partitions
                ),
            ));
        }
        let addrs = |field, list: &[String]| {
            list.iter()
                .map(|a| {
                    a.parse::<libp2p::Multiaddr>()
                        .map_err(|e| invalid(field, format!("{a:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let listen = addrs("network.listen", &self.network.listen)?;
        if listen.is_empty() {
            return Err(invalid(
                "network.listen",
                "needs at least one address".into(),
            ));
        }
        let bootstrap = addrs("network.bootstrap", &self.network.bootstrap)?;
        let n = &self.network;
        for (field, v) in [
            ("network.target-peers", n.target_peers),
            ("network.max-pending-requests", n.max_pending_requests),
            ("network.max-streams", n.max_streams),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1".into()));
            }
        }
        for (field, v) in [
            ("network.random-walk-ms", n.random_walk_ms),
            ("network.request-timeout-ms", n.request_timeout_ms),
            ("network.idle-timeout-ms", n.idle_timeout_ms),
            ("network.ping-interval-ms", n.ping_interval_ms),
            ("network.ping-timeout-ms", n.ping_timeout_ms),
            (
                "network.receive-buffer-mib",
                u64::from(n.receive_buffer_mib),
            ),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1".into()));
            }
        }
        if n.max_connections == 0 || n.max_connections_per_peer == 0 {
            return Err(invalid(
                "network.max-connections",
                "limits must be at least 1".into(),
            ));
        }
        if self.engine.max_peers < n.max_connections as usize {
            return Err(invalid(
                "engine.max-peers",
                format!(
                    "{} is below network.max-connections = {}: the engine would not know every \
                     connected peer (it could not draw them, nor ban one that misbehaves)",
                    self.engine.max_peers, n.max_connections
                ),
            ));
        }
        let metrics: Option<std::net::SocketAddr> = if self.metrics.listen.is_empty() {
            None
        } else {
            Some(self.metrics.listen.parse().map_err(|e| {
                invalid("metrics.listen", format!("{:?}: {e}", self.metrics.listen))
            })?)
        };
        let state_dir = self
            .node
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("murmur-state"));
        let key = self
            .node
            .key
            .clone()
            .unwrap_or_else(|| state_dir.join("node.key"));
        // Every identity's ports must exist: checked here, so that a bad combination is an
        // error naming the field before anything starts.
        let last = u16::try_from(self.node.attack_identities.unwrap_or(1) - 1)
            .expect("at most MAX_IDENTITIES");
        for addr in &listen {
            if shift_port(addr, last).is_none() {
                return Err(invalid(
                    "node.attack-identities",
                    format!(
                        "identity {last} would listen on {addr}'s port plus {last}, above 65535"
                    ),
                ));
            }
        }
        if let Some(m) = metrics
            && m.port() != 0
            && m.port().checked_add(last).is_none()
        {
            return Err(invalid(
                "node.attack-identities",
                format!(
                    "identity {last} would serve metrics on {m}'s port plus {last}, above 65535"
                ),
            ));
        }
        let members = self.run.members.as_deref().map(read_members).transpose()?;
        Ok(Resolved {
            run: self.run_id(members.as_ref()),
            members: members.map(Arc::new),
            config: self,
            state_dir,
            key,
            listen,
            bootstrap,
            metrics,
            identity: None,
        })
    }
}

#[cfg(test)]
mod tests;
