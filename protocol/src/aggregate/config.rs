//! The aggregation configuration: plain serde data, checked once when it is loaded and again by
//! [`Aggregator::new`](super::Aggregator::new).
//!
//! On the wire (TOML, JSON) a configuration is one flat table: a `rule` name, that rule's
//! parameters, and an optional list of pre-aggregation steps:
//!
//! ```toml
//! aggregation = { rule = "mean" }
//! aggregation = { rule = "median" }
//! aggregation = { rule = "trimmed-mean", f = 2 }
//! aggregation = { rule = "meamed", f = 2 }
//! aggregation = { rule = "krum", f = 2 }
//! aggregation = { rule = "multi-krum", f = 2 }            # m defaults to n - f
//! aggregation = { rule = "multi-krum", f = 2, m = 3 }
//! aggregation = { rule = "geometric-median" }             # nu = 0.1, iterations = 3
//! aggregation = { rule = "geometric-median", nu = 0.1, iterations = 100 }
//! aggregation = { rule = "centered-clipping", tau = 1.0, iterations = 3 }
//! aggregation = { rule = "clipped-gossip", tau = 1.0 }     # fixed clipping radius
//! aggregation = { rule = "clipped-gossip", adaptive-f = 1 } # radius from the distances, see below
//! aggregation = { rule = "monna", f = 2 }
//! aggregation = { rule = "cs-plus", f = 1 }                # CS+-RG: clips the 2f farthest
//! aggregation = { rule = "trimmed-mean", f = 2, pre = [{ kind = "nnm", f = 2 }, { kind = "bucketing", s = 2 }] }
//! ```
//!
//! Keys: `f` (number of Byzantine inputs tolerated, an integer), `m` (inputs averaged by
//! multi-Krum), `tau` (clipping radius, in the units of the model's parameters, > 0), `nu`
//! (smoothing of the geometric median, > 0), `iterations` (Weiszfeld steps T, or centered-clipping
//! steps L, >= 1), `adaptive-f` (ClippedGossip clips the `adaptive-f` farthest received models:
//! the radius is the (`adaptive-f` + 1)-th largest distance of a received model to the node's
//! own model, at most twice the median of the nearest received distances of its recent mixes,
//! and that bound itself with no more received models than `adaptive-f`; the own model among the
//! inputs takes no part).
//! Pre-aggregation steps run in the order listed: `{ kind = "nnm", f }`,
//! `{ kind = "bucketing", s }` (bucket size, >= 1), `{ kind = "clipping", c }` (static clipping
//! to norm `c` > 0), `{ kind = "arc", f }` (adaptive robust clipping). A key that the rule does not take, an unknown key, a missing parameter or a
//! bad value is an error.

use serde::{Deserialize, Serialize};

/// An aggregation configuration: the rule, and the pre-aggregation steps applied before it.
///
/// Serialised as one flat table (see the module documentation); [`Config::default`] is
/// ClippedGossip with `adaptive-f = 2` (the reference code uses 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct Config {
    /// The robust rule that mixes the (pre-aggregated) inputs into one model.
    pub rule: Rule,
    /// Pre-aggregation steps, applied in order before the rule.
    pub pre: Vec<Pre>,
}

/// A robust aggregation rule with its parameters. See each rule's module for its contract,
/// breakdown point and cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Weighted average. Breakdown point 0. Cost O(n d).
    Mean,
    /// Coordinate-wise median (Yin et al. 2018); weights ignored. Breakdown point 1/2. Cost
    /// O(d n log² n) comparisons, vectorised.
    Median,
    /// Coordinate-wise trimmed mean dropping the `f` largest and `f` smallest values of each
    /// coordinate (Yin et al. 2018); weights ignored. Needs n ≥ 2f + 1; tolerates f Byzantine
    /// inputs. Cost O(d n log² n) comparisons, vectorised.
    TrimmedMean { f: usize },
    /// Mean around the median (Xie et al. 2018): per coordinate, the average of the n - f values
    /// nearest to the median; weights ignored. Needs n ≥ 2f + 1; tolerates f. Cost
    /// O(d n log² n) comparisons, vectorised.
    Meamed { f: usize },
    /// Krum (Blanchard et al. 2017): the input with the smallest score, the *mean* squared
    /// distance to its n - f - 1 nearest others (ByzFL's definition; the paper sums over the
    /// n - f - 2 nearest). Weights ignored. Needs n ≥ 2f + 3; tolerates f. Cost O(n² d).
    Krum { f: usize },
    /// Multi-Krum: the weighted average of the `m` inputs with the smallest Krum scores
    /// (`m` = n - f if absent). Needs n ≥ max(2f + 3, m + f); tolerates f. Cost O(n² d).
    MultiKrum { f: usize, m: Option<usize> },
    /// Geometric median by `iterations` smoothed Weiszfeld steps with smoothing `nu`, from zero,
    /// as ByzFL and RFA (Pillutla et al. 2022); weighted. Breakdown point 1/2. Cost
    /// O(iterations · n d).
    GeometricMedian { nu: f32, iterations: usize },
    /// Centered clipping (Karimireddy et al. 2021): `iterations` clipping steps of radius `tau`
    /// around the previous aggregate, which the aggregator keeps as state (zero at first);
    /// weighted. Robust for a small Byzantine fraction with a suitable `tau`. Cost
    /// O(iterations · n d).
    CenteredClipping { tau: f32, iterations: usize },
    /// ClippedGossip (He, Karimireddy, Jaggi 2022): `own + sum_j w_j clip(x_j - own, tau)`,
    /// clipping around the node's own model; weighted by the gossip weights. Its guarantee
    /// depends on the Byzantine gossip weight against the honest graph's spectral gap rather
    /// than on a fraction. Cost O(n d).
    ClippedGossip { tau: Tau },
    /// MoNNA (Farhadkhani et al. 2023): the weighted average of the n - f inputs nearest to the
    /// node's own model. Needs n ≥ f + 1; tolerates f < n/2 with an honest own model. Cost
    /// O(n d).
    Monna { f: usize },
    /// CS+-RG (Gaucher, Dieuleveut, Hendrikx 2025): ClippedGossip's step around the own model,
    /// with the radius at the weighted quantile of the distances that leaves twice the weight of
    /// `f` received inputs beyond it (the `2 f` farthest under uniform weights); the own model
    /// is kept when that is half the weight or more. Tolerates f Byzantine neighbours under the
    /// paper's spectral condition. Cost O(n d).
    CsPlus { f: usize },
}

/// How ClippedGossip chooses its clipping radius.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tau {
    /// A fixed radius (> 0).
    Fixed(f32),
    /// The (`f` + 1)-th largest distance from the node's own model to an input, so that the `f`
    /// farthest inputs are clipped (with at most `f` inputs, the smallest distance). `f = 1` is
    /// the rule of He, Karimireddy and Jaggi's reference code (the second-largest distance).
    Adaptive { f: usize },
}

/// A pre-aggregation step: maps the n inputs to new vectors before the rule runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Pre {
    /// Nearest-neighbour mixing (Allouah et al. 2023): every input is replaced by the plain
    /// average of its n - f nearest inputs (itself included); weights pass through. Lets a
    /// following rule reach the optimal error under heterogeneity with f Byzantine inputs. Needs
    /// n ≥ f + 1. Cost O(n² d).
    Nnm { f: usize },
    /// Bucketing (Karimireddy, He and Jaggi 2022): a random permutation (from the `rng` given to
    /// the call), then the weighted averages of consecutive buckets of `s` inputs (the last one
    /// may be smaller), each with its bucket's total weight. Divides the count by `s`. Cost O(n d).
    Bucketing { s: usize },
    /// Static clipping: every input with an l2 norm above `c` is scaled to norm `c`; weights
    /// pass through. Bounds any input's pull on a mean by `c` times its weight. Cost O(n d).
    Clipping { c: f32 },
    /// Adaptive robust clipping (Allouah et al. 2024): the floor(2f(n-f)/n) inputs of largest
    /// norm are clipped to the largest norm among the others; weights pass through. Needs
    /// n ≥ f + 1. Cost O(n d).
    Arc { f: usize },
}

/// A configuration that cannot be used. Each variant names the key and the bad value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A parameter the rule needs was not given.
    #[error("aggregation rule {rule} needs the key `{key}`")]
    Missing {
        rule: &'static str,
        key: &'static str,
    },
    /// A key was given that the rule does not take.
    #[error("aggregation rule {rule} does not take the key `{key}`")]
    NotApplicable {
        rule: &'static str,
        key: &'static str,
    },
    /// Two keys that exclude each other were both given.
    #[error("aggregation rule {rule}: give either `{a}` or `{b}`, not both")]
    Conflict {
        rule: &'static str,
        a: &'static str,
        b: &'static str,
    },
    /// A value is out of range.
    #[error("aggregation key `{key}` = {value}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The model dimension is zero.
    #[error("aggregation over vectors of dimension 0")]
    ZeroDimension,
}

impl Config {
    /// The plain (non-robust) average, without pre-aggregation.
    pub fn mean() -> Self {
        Self {
            rule: Rule::Mean,
            pre: Vec::new(),
        }
    }

    /// A short human name, e.g. `trimmed-mean(f=2)` or `nnm(f=2)+trimmed-mean(f=2)`.
    pub fn name(&self) -> String {
        let mut s = String::new();
        for p in &self.pre {
            s.push_str(&p.name());
            s.push('+');
        }
        s.push_str(&self.rule.name());
        s
    }

    /// Checks every value; [`Aggregator::new`](super::Aggregator::new) calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rule.validate()?;
        for p in &self.pre {
            p.validate()?;
        }
        Ok(())
    }

    /// Smallest number of inputs accepted: the rule's minimum, carried back through the
    /// pre-aggregation steps (bucketing divides the count by `s`).
    pub fn min_inputs(&self) -> usize {
        let mut need = self.rule.min_inputs();
        for p in self.pre.iter().rev() {
            need = match *p {
                Pre::Nnm { f } | Pre::Arc { f } => need.max(f + 1),
                Pre::Bucketing { s } => (need - 1) * s + 1,
                Pre::Clipping { .. } => need,
            };
        }
        need.max(1)
    }
}

impl Default for Config {
    /// ClippedGossip with an adaptive radius that clips the two farthest inputs (the third-largest
    /// distance to the node's own model). The reference code clips one (`adaptive-f = 1`); with
    /// random peer sampling a node regularly receives two Byzantine updates in one round, and
    /// clipping only one of them lets the other pull at full weight (see docs/results.md).
    fn default() -> Self {
        Self {
            rule: Rule::ClippedGossip {
                tau: Tau::Adaptive { f: 2 },
            },
            pre: Vec::new(),
        }
    }
}

impl Rule {
    /// The rule's name as written in configurations (`trimmed-mean`).
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::Mean => "mean",
            Rule::Median => "median",
            Rule::TrimmedMean { .. } => "trimmed-mean",
            Rule::Meamed { .. } => "meamed",
            Rule::Krum { .. } => "krum",
            Rule::MultiKrum { .. } => "multi-krum",
            Rule::GeometricMedian { .. } => "geometric-median",
            Rule::CenteredClipping { .. } => "centered-clipping",
            Rule::ClippedGossip { .. } => "clipped-gossip",
            Rule::Monna { .. } => "monna",
            Rule::CsPlus { .. } => "cs-plus",
        }
    }

    /// The rule and its parameters, e.g. `trimmed-mean(f=2)`.
    pub fn name(&self) -> String {
        let k = self.kind();
        match *self {
            Rule::Mean | Rule::Median => k.to_string(),
            Rule::TrimmedMean { f }
            | Rule::Meamed { f }
            | Rule::Krum { f }
            | Rule::Monna { f }
            | Rule::CsPlus { f } => format!("{k}(f={f})"),
            Rule::MultiKrum { f, m: None } => format!("{k}(f={f})"),
            Rule::MultiKrum { f, m: Some(m) } => format!("{k}(f={f},m={m})"),
            Rule::GeometricMedian { nu, iterations } => format!("{k}(nu={nu},T={iterations})"),
            Rule::CenteredClipping { tau, iterations } => format!("{k}(tau={tau},L={iterations})"),
            Rule::ClippedGossip { tau: Tau::Fixed(t) } => format!("{k}(tau={t})"),
            Rule::ClippedGossip {
                tau: Tau::Adaptive { f },
            } => format!("{k}(adaptive-f={f})"),
        }
    }

    /// Smallest number of inputs the rule accepts.
    pub fn min_inputs(&self) -> usize {
        match *self {
            Rule::Mean
            | Rule::Median
            | Rule::GeometricMedian { .. }
            | Rule::CenteredClipping { .. }
            | Rule::ClippedGossip { .. }
            | Rule::CsPlus { .. } => 1,
            Rule::TrimmedMean { f } | Rule::Meamed { f } => 2 * f + 1,
            Rule::Monna { f } => f + 1,
            Rule::Krum { f } => 2 * f + 3,
            Rule::MultiKrum { f, m } => (2 * f + 3).max(m.unwrap_or(0) + f),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Rule::GeometricMedian { nu, iterations } => {
                positive("nu", nu)?;
                at_least_one("iterations", iterations)
            }
            Rule::CenteredClipping { tau, iterations } => {
                positive("tau", tau)?;
                at_least_one("iterations", iterations)
            }
            Rule::ClippedGossip {
                tau: Tau::Fixed(tau),
            } => positive("tau", tau),
            Rule::MultiKrum { m: Some(m), .. } => at_least_one("m", m),
            _ => Ok(()),
        }
    }
}

impl Pre {
    /// The step and its parameter, e.g. `nnm(f=2)`.
    pub fn name(&self) -> String {
        match *self {
            Pre::Nnm { f } => format!("nnm(f={f})"),
            Pre::Bucketing { s } => format!("bucketing(s={s})"),
            Pre::Clipping { c } => format!("clipping(c={c})"),
            Pre::Arc { f } => format!("arc(f={f})"),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Pre::Bucketing { s } => at_least_one("s", s),
            Pre::Clipping { c } => positive("c", c),
            Pre::Nnm { .. } | Pre::Arc { .. } => Ok(()),
        }
    }
}

fn positive(key: &'static str, v: f32) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            value: v.to_string(),
            reason: "must be finite and > 0",
        })
    }
}

fn at_least_one(key: &'static str, v: usize) -> Result<(), ConfigError> {
    if v >= 1 {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            value: v.to_string(),
            reason: "must be at least 1",
        })
    }
}

/// The flat serde shape of [`Config`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    rule: RuleKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tau: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nu: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iterations: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    adaptive_f: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pre: Vec<Pre>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RuleKind {
    Mean,
    Median,
    TrimmedMean,
    Meamed,
    Krum,
    MultiKrum,
    GeometricMedian,
    CenteredClipping,
    ClippedGossip,
    Monna,
    CsPlus,
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let name = match raw.rule {
            RuleKind::Mean => "mean",
            RuleKind::Median => "median",
            RuleKind::TrimmedMean => "trimmed-mean",
            RuleKind::Meamed => "meamed",
            RuleKind::Krum => "krum",
            RuleKind::MultiKrum => "multi-krum",
            RuleKind::GeometricMedian => "geometric-median",
            RuleKind::CenteredClipping => "centered-clipping",
            RuleKind::ClippedGossip => "clipped-gossip",
            RuleKind::Monna => "monna",
            RuleKind::CsPlus => "cs-plus",
        };
        let allowed: &[&str] = match raw.rule {
            RuleKind::Mean | RuleKind::Median => &[],
            RuleKind::TrimmedMean
            | RuleKind::Meamed
            | RuleKind::Krum
            | RuleKind::Monna
            | RuleKind::CsPlus => &["f"],
            RuleKind::MultiKrum => &["f", "m"],
            RuleKind::GeometricMedian => &["nu", "iterations"],
            RuleKind::CenteredClipping => &["tau", "iterations"],
            RuleKind::ClippedGossip => &["tau", "adaptive-f"],
        };
        let given = [
            ("f", raw.f.is_some()),
            ("m", raw.m.is_some()),
            ("tau", raw.tau.is_some()),
            ("nu", raw.nu.is_some()),
            ("iterations", raw.iterations.is_some()),
            ("adaptive-f", raw.adaptive_f.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(k, g)| *g && !allowed.contains(k)) {
            return Err(ConfigError::NotApplicable { rule: name, key });
        }
        let need_f = || {
            raw.f.ok_or(ConfigError::Missing {
                rule: name,
                key: "f",
            })
        };
        let rule = match raw.rule {
            RuleKind::Mean => Rule::Mean,
            RuleKind::Median => Rule::Median,
            RuleKind::TrimmedMean => Rule::TrimmedMean { f: need_f()? },
            RuleKind::Meamed => Rule::Meamed { f: need_f()? },
            RuleKind::Krum => Rule::Krum { f: need_f()? },
            RuleKind::Monna => Rule::Monna { f: need_f()? },
            RuleKind::CsPlus => Rule::CsPlus { f: need_f()? },
            RuleKind::MultiKrum => Rule::MultiKrum {
                f: need_f()?,
                m: raw.m,
            },
            RuleKind::GeometricMedian => Rule::GeometricMedian {
                nu: raw.nu.unwrap_or(0.1),
                iterations: raw.iterations.unwrap_or(3),
            },
            RuleKind::CenteredClipping => Rule::CenteredClipping {
                tau: raw.tau.ok_or(ConfigError::Missing {
                    rule: name,
                    key: "tau",
                })?,
                iterations: raw.iterations.unwrap_or(1),
            },
            RuleKind::ClippedGossip => Rule::ClippedGossip {
                tau: match (raw.tau, raw.adaptive_f) {
                    (Some(t), None) => Tau::Fixed(t),
                    (None, Some(f)) => Tau::Adaptive { f },
                    (Some(_), Some(_)) => {
                        return Err(ConfigError::Conflict {
                            rule: name,
                            a: "tau",
                            b: "adaptive-f",
                        });
                    }
                    (None, None) => {
                        return Err(ConfigError::Missing {
                            rule: name,
                            key: "tau",
                        });
                    }
                },
            },
        };
        let config = Config { rule, pre: raw.pre };
        config.validate()?;
        Ok(config)
    }
}

impl From<Config> for RawConfig {
    fn from(c: Config) -> Self {
        let mut raw = RawConfig {
            rule: RuleKind::Mean,
            f: None,
            m: None,
            tau: None,
            nu: None,
            iterations: None,
            adaptive_f: None,
            pre: c.pre,
        };
        match c.rule {
            Rule::Mean => {}
            Rule::Median => raw.rule = RuleKind::Median,
            Rule::TrimmedMean { f } => (raw.rule, raw.f) = (RuleKind::TrimmedMean, Some(f)),
            Rule::Meamed { f } => (raw.rule, raw.f) = (RuleKind::Meamed, Some(f)),
            Rule::Krum { f } => (raw.rule, raw.f) = (RuleKind::Krum, Some(f)),
            Rule::Monna { f } => (raw.rule, raw.f) = (RuleKind::Monna, Some(f)),
            Rule::CsPlus { f } => (raw.rule, raw.f) = (RuleKind::CsPlus, Some(f)),
            Rule::MultiKrum { f, m } => {
                (raw.rule, raw.f, raw.m) = (RuleKind::MultiKrum, Some(f), m)
            }
            Rule::GeometricMedian { nu, iterations } => {
                (raw.rule, raw.nu, raw.iterations) =
                    (RuleKind::GeometricMedian, Some(nu), Some(iterations))
            }
            Rule::CenteredClipping { tau, iterations } => {
                (raw.rule, raw.tau, raw.iterations) =
                    (RuleKind::CenteredClipping, Some(tau), Some(iterations))
            }
            Rule::ClippedGossip { tau } => {
                raw.rule = RuleKind::ClippedGossip;
                match tau {
                    Tau::Fixed(t) => raw.tau = Some(t),
                    Tau::Adaptive { f } => raw.adaptive_f = Some(f),
                }
            }
        }
        raw
    }
}
