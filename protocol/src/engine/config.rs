//! The engine's configuration: plain serde data with documented units and defaults, validated
//! once into an [`Engine`](super::Engine).

use crate::aggregate;
use serde::{Deserialize, Serialize};

/// How one node runs its rounds. TOML keys are kebab-case; every key has a default.
///
/// ```toml
/// fanout = 4               # peers each update is sent to per round (s)
/// wait-for = 4             # fresh updates to collect before mixing (m)
/// round-timeout-ms = 2000  # longest wait for them after local training
/// max-staleness = 4        # updates more than this many rounds behind are stale
/// aggregation = { rule = "clipped-gossip" }
/// outlier-factor = 2.5     # screen out models this many times farther than the median; 0 = off
/// join-peers = 3           # peers a joining or restarted node fetches models from; 0 = none
/// join-timeout-ms = 5000   # longest wait for their answers
/// checkpoint-every = 5     # ask for a checkpoint at least this many rounds apart; 0 = never
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Peers each signed update is sent to after local training (the `s` of random s-peer
    /// sampling). Peers are drawn afresh every round from the connected ones. Default 4.
    pub fanout: usize,
    /// Fresh updates to wait for before mixing (`m`). Default 4.
    pub wait_for: usize,
    /// Longest wait for `wait_for` updates after local training, in milliseconds; when it passes
    /// the node mixes what it has. Default 2000.
    pub round_timeout_ms: u64,
    /// An update whose round is more than this many rounds behind the node's own is stale and
    /// is not mixed. Default 4.
    pub max_staleness: u64,
    /// The robust mixing rule. Default: ClippedGossip.
    pub aggregation: aggregate::Config,
    /// The outlier screen before mixing: a received model more than this many times farther
    /// from the node's own model than the (lower) median distance of the round's received
    /// models is dropped and its sender penalised (`outlier`, a quarter of `ban-threshold`).
    /// 0 turns the screen off; otherwise it must be above 1. Default 2.5.
    pub outlier_factor: f64,
    /// Peers remembered for replay protection and buffering (bounds memory). Default 4096.
    pub max_peers: usize,
    /// Penalty points at which a peer is banned. Default 100.
    pub ban_threshold: u32,
    /// Peers a node that joins a run in progress, or restarts with peers to join through,
    /// fetches the latest signed models of before its first round; it starts from their median
    /// (see the engine's start-up). 0: never fetch, start at once. Default 3.
    pub join_peers: usize,
    /// Longest wait for those answers, in milliseconds; then the node starts from what it has.
    /// Default 5000.
    pub join_timeout_ms: u64,
    /// Ask for a checkpoint when at least this many rounds have completed since the last one,
    /// and when the configured rounds are done; 0: never (a node still saves one when it is
    /// stopped). Default 5.
    pub checkpoint_every: u64,
    /// Stop after this many rounds; unset runs until stopped.
    pub rounds: Option<u64>,
}

/// Default of [`Config::outlier_factor`].
pub const DEFAULT_OUTLIER_FACTOR: f64 = 2.5;

impl Default for Config {
    fn default() -> Self {
        Config {
            fanout: 4,
            wait_for: 4,
            round_timeout_ms: 2000,
            max_staleness: 4,
            aggregation: aggregate::Config::default(),
            outlier_factor: DEFAULT_OUTLIER_FACTOR,
            max_peers: 4096,
            ban_threshold: 100,
            join_peers: 3,
            join_timeout_ms: 5000,
            checkpoint_every: 5,
            rounds: None,
        }
    }
}

/// A configuration value that cannot work, naming the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A key's value is out of range.
    #[error("`{key}` = {value}: {why}")]
    Value {
        /// The config key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The aggregation rule is invalid.
    #[error("`aggregation`: {0}")]
    Aggregation(#[from] aggregate::ConfigError),
    /// The attack is invalid.
    #[error("`attack`: {0}")]
    Attack(String),
    /// The initial model is empty.
    #[error("the model has no parameters")]
    EmptyModel,
}

impl Config {
    /// Checks every value, naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, value: &dyn std::fmt::Display, why| {
            Err(ConfigError::Value {
                key,
                value: value.to_string(),
                why,
            })
        };
        if self.fanout == 0 {
            return bad("fanout", &self.fanout, "must be at least 1");
        }
        if self.round_timeout_ms == 0 {
            return bad(
                "round-timeout-ms",
                &self.round_timeout_ms,
                "must be at least 1",
            );
        }
        if !(self.outlier_factor == 0.0
            || self.outlier_factor > 1.0 && self.outlier_factor.is_finite())
        {
            return bad(
                "outlier-factor",
                &self.outlier_factor,
                "must be 0 (off) or a finite number above 1",
            );
        }
        if self.max_peers == 0 {
            return bad("max-peers", &self.max_peers, "must be at least 1");
        }
        if self.ban_threshold == 0 {
            return bad("ban-threshold", &self.ban_threshold, "must be at least 1");
        }
        if self.join_peers > 0 && self.join_timeout_ms == 0 {
            return bad(
                "join-timeout-ms",
                &self.join_timeout_ms,
                "must be at least 1 when join-peers is above 0",
            );
        }
        if self.rounds == Some(0) {
            return bad("rounds", &0, "must be at least 1 when set");
        }
        self.aggregation.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_with_defaults_and_rejects_unknown_keys() {
        let c: Config = toml::from_str("fanout = 3\nwait-for = 2\n").unwrap();
        assert_eq!(c.fanout, 3);
        assert_eq!(c.wait_for, 2);
        assert_eq!(c.max_staleness, Config::default().max_staleness);
        let err = toml::from_str::<Config>("fan-out = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fan-out"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let c = Config {
            fanout: 0,
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`fanout`"), "{e}");
        assert!(Config::default().validate().is_ok());
    }
}
