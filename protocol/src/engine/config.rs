//! The engine's configuration: plain serde data with documented units and defaults, validated
//! once into an [`Engine`](super::Engine).

use crate::aggregate;
use serde::{Deserialize, Serialize};

/// How one node runs its rounds. TOML keys are kebab-case; every key has a default.
///
/// ```toml
/// fanout = 4               # peers drawn each round whose models are fetched and mixed (s)
/// wait-for = 4             # answers to collect before mixing (m)
/// round-timeout-ms = 2000  # longest wait for them after local training
/// max-staleness = 4        # models more than this many rounds behind are not mixed
/// staleness-decay = 0.5    # a model k rounds behind weighs (1 + k)^-0.5 in the mix; 0 = equal
/// max-ahead = 1000         # models more than this many rounds ahead are not mixed
/// aggregation = { rule = "clipped-gossip" }
/// codec = "f32"            # payload encoding of signed models: "f32", "bf16", "f16", "int8", "int4"
/// outlier-factor = 2.5     # pull in models this many times farther than the median; 0 = off
/// join-peers = 3           # peers a joining or restarted node fetches models from; 0 = none
/// join-timeout-ms = 5000   # longest wait for their answers
/// checkpoint-every = 5     # ask for a checkpoint at least this many rounds apart; 0 = never
/// final-mix-rounds = 0     # rounds of mixing alone after the last training round
/// last-fraction = 0.1      # top-k: the fraction sent from the last training round on
/// uplink-mbps = 20         # this node's upload rate: refuse fetches it cannot answer in time
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Peers whose models a node fetches and mixes each round, after its local training (the
    /// `s` of random s-peer sampling): drawn afresh every round from the connected ones.
    /// Default 4.
    pub fanout: usize,
    /// Answers to wait for before mixing (`m`), at most as many as peers were drawn; the node
    /// also mixes once every drawn peer has answered. Default 4.
    pub wait_for: usize,
    /// Longest wait for the answers after local training, in milliseconds; when it passes the
    /// node mixes what it has. A node holds a peer's fetch for a round it has not signed yet for
    /// at most half of it. Default 2000.
    pub round_timeout_ms: u64,
    /// A model whose round is more than this many rounds behind the node's own is not mixed
    /// (`lagging`), and one catch-up to its peers' rounds moves at most this many rounds.
    /// Default 4.
    pub max_staleness: u64,
    /// How much a late model's weight in the mix falls with its age: a model `k` rounds behind
    /// the node's own weighs `(1 + k)^-a` against 1 for the node's own model and for models of
    /// its round or ahead (the polynomial staleness function of FedAsync, Xie et al. 2019), so a
    /// straggler's model still counts, less than a fresh one, up to `max-staleness`. 0 weighs
    /// every mixed model equally. Rules that take no weights (median, trimmed mean, Meamed,
    /// Krum) ignore it. Default 0.5.
    pub staleness_decay: f64,
    /// A model whose round is more than this many rounds ahead of the node's own is not mixed
    /// (`ahead`, no penalty: this node may be the slow one). Default 1000.
    pub max_ahead: u64,
    /// The robust mixing rule. Default: ClippedGossip.
    pub aggregation: aggregate::Config,
    /// How signed models are encoded: `f32` (4 bytes a parameter), `bf16` (2 bytes, 8 bits of
    /// mantissa, the f32 range), `f16` (2 bytes, 11 bits of mantissa, up to ±65504, larger
    /// values saturating), `int8` or `int4` (1 byte or half a byte, plus a 4-byte scale per
    /// block of 256 parameters, stochastic rounding; `{ kind = "int8", block = 64 }` chooses the
    /// block). See [`crate::codec`]. Every node of a run must use the same, block included; an
    /// update in another codec is rejected (`wrong_codec`). Default `f32`.
    #[serde(with = "crate::codec::spec")]
    pub codec: crate::wire::Codec,
    /// The outlier screen before mixing: a received model more than this many times farther
    /// from the node's own model than the (lower) median distance of the round's received
    /// models is pulled in to that distance; one more than twice as far and farther than the own
    /// model's norm is dropped and its sender penalised (`outlier`, a quarter of
    /// `ban-threshold`). 0 turns the screen off; otherwise it must be above 1. Default 2.5.
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
    /// Rounds of mixing alone after the `rounds` training rounds: the node does not train in
    /// them, it signs the model it last mixed, fetches and mixes as in any round, so the honest
    /// nodes end closer together. The node finishes after `rounds + final-mix-rounds` rounds.
    /// Needs `rounds`. Default 0.
    pub final_mix_rounds: u64,
    /// With the `top-k` codec, how a node mixes the copies it holds of its peers' estimates
    /// (see the chain in the engine's module `chain`). Unset (the default): as any peers' models,
    /// with its own model, by the configured rule. Set to `γ` in (0, 1]: CHOCO-Gossip's
    /// consensus step: the rule runs over the estimates (its own and the copies) and the model
    /// moves by `γ` times the difference between the result and its own estimate, which keeps
    /// the network's average exactly but needs `γ` small when the fraction is (measured in
    /// docs/results.md). From the last of the `rounds` on (and in the rounds of mixing alone)
    /// the copies are mixed as models, so that a node ends with a mix of its peers' models rather
    /// than with all of its own unsent progress. Ignored by the other codecs.
    pub consensus_step: Option<f64>,
    /// With the `top-k` codec, the fraction of coordinates the increments of the last training
    /// round and of the rounds of mixing alone carry, instead of the codec's: a node then sends
    /// more of the progress it has not sent yet where its peers mix its estimate as its model
    /// for the last time (see [`Config::consensus_step`]), at the cost of that round's bytes.
    /// In (0, 0.25], at least the codec's fraction; needs `rounds`. Unset (the default): the
    /// codec's fraction in every round. Every node of a run must use the same (the real node
    /// puts it in the run id); an increment of another size is refused (`wrong_dimension`).
    pub last_fraction: Option<f64>,
    /// This node's upload rate in Mbit/s, as its operator knows it (the measured saturation
    /// warning says when it is needed). When set, the node keeps account of the models it
    /// serves as its uplink would carry them, one after the other, and, with per-round sampling,
    /// answers a fetch whose model would not have left within a quarter of a round timeout
    /// (behind the answers before it) with "busy" instead; an idle uplink serves, unless the
    /// asker holds more than its share of a contended uplink (engine module `share`). The
    /// asker draws another peer at once rather than wait for a model that would reach it late
    /// (with none left to draw, it asks again a little later), and this node serves what its
    /// uplink carries in time (the "smaller fanout" of a slow uplink). Held fetches are
    /// answered lightest first, then first come, first served. On a fixed graph it never
    /// refuses: its neighbours wait for it and so pace their rounds to its uplink. Unset (the
    /// default): every fetch is served.
    pub uplink_mbps: Option<f64>,
}

/// Default of [`Config::staleness_decay`].
pub const DEFAULT_STALENESS_DECAY: f64 = 0.5;

/// Default of [`Config::outlier_factor`].
pub const DEFAULT_OUTLIER_FACTOR: f64 = 2.5;

impl Default for Config {
    fn default() -> Self {
        Config {
            fanout: 4,
            wait_for: 4,
            round_timeout_ms: 2000,
            max_staleness: 4,
            staleness_decay: DEFAULT_STALENESS_DECAY,
            max_ahead: 1000,
            aggregation: aggregate::Config::default(),
            codec: crate::wire::Codec::F32Le,
            outlier_factor: DEFAULT_OUTLIER_FACTOR,
            max_peers: 4096,
            ban_threshold: 100,
            join_peers: 3,
            join_timeout_ms: 5000,
            checkpoint_every: 5,
            rounds: None,
            final_mix_rounds: 0,
            consensus_step: None,
            last_fraction: None,
            uplink_mbps: None,
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
        if self.wait_for == 0 {
            return bad("wait-for", &self.wait_for, "must be at least 1");
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
        if !(self.staleness_decay.is_finite() && (0.0..=8.0).contains(&self.staleness_decay)) {
            return bad(
                "staleness-decay",
                &self.staleness_decay,
                "must be in [0, 8] (0: equal weights)",
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
        if self.codec.validate().is_err() {
            return bad(
                "codec",
                &self.codec,
                "the block of int8 and int4 must be in 16..=1048576",
            );
        }
        if self.rounds == Some(0) {
            return bad("rounds", &0, "must be at least 1 when set");
        }
        if let Some(step) = self.consensus_step
            && !(step > 0.0 && step <= 1.0)
        {
            return bad("consensus-step", &step, "must be in (0, 1]");
        }
        if let Some(last) = self.last_fraction {
            let crate::wire::Codec::TopK { ppm } = self.codec else {
                return bad("last-fraction", &last, "needs the top-k codec");
            };
            let fraction = crate::codec::fraction_of(ppm);
            let max = crate::codec::fraction_of(crate::codec::MAX_TOP_K_PPM);
            if !(last >= fraction && last <= max) {
                return bad(
                    "last-fraction",
                    &last,
                    "must be at least the codec's fraction and at most 0.25",
                );
            }
            if self.rounds.is_none() {
                return bad(
                    "last-fraction",
                    &last,
                    "needs `rounds`: it applies from the last training round on",
                );
            }
        }
        if let Some(mbps) = self.uplink_mbps
            && !(mbps.is_finite() && mbps > 0.0)
        {
            return bad(
                "uplink-mbps",
                &mbps,
                "must be a finite number above 0 when set",
            );
        }
        if self.final_mix_rounds > 0 && self.rounds.is_none() {
            return bad(
                "final-mix-rounds",
                &self.final_mix_rounds,
                "needs `rounds`: the rounds of mixing alone follow the last training round",
            );
        }
        self.aggregation.validate()?;
        let need = self.aggregation.min_inputs();
        if need > self.wait_for + 1 {
            return Err(ConfigError::Value {
                key: "aggregation",
                value: self.aggregation.name(),
                why: "needs more models than `wait-for` answers and the own model can give: \
                      raise `wait-for` or lower the rule's f",
            });
        }
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
        let c = Config {
            final_mix_rounds: 5,
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("`final-mix-rounds`") && e.contains("`rounds`"),
            "{e}"
        );
        let c = Config {
            rounds: Some(10),
            ..c
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_last_fraction_needs_top_k_rounds_and_a_fraction_in_range() {
        let c: Config = toml::from_str(
            "codec = { kind = \"top-k\", fraction = 0.01 }\nlast-fraction = 0.1\nrounds = 30\n",
        )
        .unwrap();
        assert_eq!(c.last_fraction, Some(0.1));
        assert!(c.validate().is_ok());
        let why = |c: Config| c.validate().unwrap_err().to_string();
        for (bad, says) in [
            (
                Config {
                    codec: crate::wire::Codec::Int8 { block: 256 },
                    ..c.clone()
                },
                "top-k",
            ),
            (
                Config {
                    rounds: None,
                    ..c.clone()
                },
                "`rounds`",
            ),
            (
                Config {
                    last_fraction: Some(0.005),
                    ..c.clone()
                },
                "at least the codec's fraction",
            ),
            (
                Config {
                    last_fraction: Some(0.3),
                    ..c.clone()
                },
                "at most 0.25",
            ),
            (
                Config {
                    last_fraction: Some(f64::NAN),
                    ..c.clone()
                },
                "at most 0.25",
            ),
        ] {
            let e = why(bad);
            assert!(e.contains("`last-fraction`") && e.contains(says), "{e}");
        }
    }
}
