//! Byzantine behaviours, as pure functions shared by the simulator and a red-team node.
//!
//! An [`Attack`] is plain configuration data. Each round an attacking node builds a [`View`] of
//! what it could really know (its own honestly trained model, the honest models it received, the
//! run's size) and asks [`Attack::plan`] what to do; the answer is a [`Plan`]: a forged model to
//! sign and send, its honest model, a replay of an old signed update, two conflicting models
//! (equivocation), or a stale copy (free-riding). The attacker signs whatever it sends with its
//! own key: these are attacks on aggregation, not on the signature scheme.
//!
//! The forging functions live in [`forge`] and are re-exported here; the standard normal quantile
//! ALIE needs is in [`normal`] (no numerics dependency).
//!
//! What this module does not do: decide who is Byzantine, whom to send to, or which peer gets
//! which half of an equivocation. The caller does.

pub mod forge;
pub mod normal;

pub use forge::{
    Perturbation, alie, dissensus, gaussian, ipm, mean, min_max, min_sum, non_finite, sign_flip,
};
pub use normal::{alie_z, inverse_normal_cdf, normal_cdf};

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Default noise scale of [`Attack::Gaussian`].
pub const DEFAULT_SIGMA: f32 = 1.0;
/// Default scale of [`Attack::Ipm`] (the small-epsilon regime of Xie et al. 2020).
pub const DEFAULT_IPM_EPSILON: f32 = 0.1;
/// Default scale of [`Attack::Dissensus`]: above 1, so the victim is pushed away, not just frozen.
pub const DEFAULT_DISSENSUS_EPSILON: f32 = 1.5;
/// Default age of a replayed update, in rounds.
pub const DEFAULT_REPLAY_LAG: u64 = 1;
/// Default lie of [`Attack::RoundLie`], in rounds ahead of the attacker's real round: far ahead,
/// yet within the engine's default `max-ahead` (1,000), so the update is not refused for it.
pub const DEFAULT_ROUND_LIE: u64 = 100;

/// An adversarial behaviour. Plain serde data, internally tagged by `kind`, unknown fields
/// rejected:
///
/// ```toml
/// attack = { kind = "alie" }                  # z from n and f (Baruch et al. 2019)
/// attack = { kind = "alie", z = 1.5 }
/// attack = { kind = "ipm", epsilon = 0.5 }
/// attack = { kind = "ipm", epsilon = 0.1, space = "update" }  # on the round's updates
/// attack = { kind = "gaussian", sigma = 1.0 }
/// attack = { kind = "dissensus", epsilon = 1.5 }
/// attack = { kind = "non-finite", value = "nan" }  # or "inf", "-inf"
/// attack = { kind = "replay", lag = 3 }
/// attack = { kind = "mimic", target = 0 }
/// attack = { kind = "sign-flip" }   # also "label-flip", "equivocate", "free-rider"
/// attack = { kind = "min-max" }      # or "min-sum"; perturbation = "std" | "unit-vector" | "sign"
/// attack = { kind = "opt-alie" }     # z searched against the honest nodes' defence
/// attack = { kind = "opt-ipm" }      # epsilon searched likewise, in update space
/// attack = { kind = "round-lie", ahead = 100 }  # honest model, signed for a round ahead
/// attack = { kind = "junk", form = "digest" }   # or "random", "oversize"
/// ```
///
/// [`FromStr`] parses the bare kind names with default parameters (for `--attack alie`).
/// Parameters are checked by [`Attack::validate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", from = "Repr")]
pub enum Attack {
    /// Send the negated mean of the honest models ([`sign_flip`]).
    SignFlip,
    /// Send the own model plus independent `N(0, sigma^2)` noise per coordinate ([`gaussian`]).
    Gaussian {
        /// Standard deviation of the noise, in parameter units. Default 1.
        sigma: f32,
    },
    /// A Little Is Enough ([`alie`]): mean plus `z` sample standard deviations. Without `z`, the
    /// paper's value from `n` and `f` ([`alie_z`]).
    Alie {
        /// Shift in standard deviations; `None` derives it from the view's `n` and `f`.
        #[serde(skip_serializing_if = "Option::is_none")]
        z: Option<f64>,
    },
    /// Inner product manipulation ([`ipm`], Xie, Koyejo and Gupta 2020): `-epsilon` times the
    /// honest mean, of the models (`space = "model"`, the default) or of the round's updates
    /// (`space = "update"`: the reference model minus `epsilon` times the honest models' mean
    /// step from it, the attack as the paper defines it on gradients).
    Ipm {
        /// Scale. Default 0.1.
        epsilon: f32,
        /// What the mean is taken of. Default: the models.
        #[serde(default, skip_serializing_if = "Space::is_model")]
        space: Space,
    },
    /// Train on flipped labels ([`flip_label`]) and send the resulting model honestly. A data
    /// hook: the trainer asks [`Attack::flips_labels`].
    LabelFlip,
    /// Dissensus against one honest victim ([`dissensus`]).
    Dissensus {
        /// Scale; 1 freezes the victim, above 1 pushes it away. Default 1.5.
        epsilon: f32,
    },
    /// Copy one honest model (Karimireddy, He and Jaggi, "Byzantine-Robust Learning on
    /// Heterogeneous Datasets via Bucketing", ICLR 2022): all attackers agreeing on one honest
    /// node over-weights that node's data.
    Mimic {
        /// Index into [`View::honest`] (taken modulo its length). Default 0.
        target: usize,
    },
    /// Send a model whose every coordinate is NaN or an infinity.
    NonFinite {
        /// Which value. Default NaN.
        value: NonFinite,
    },
    /// Resend the own signed update from `lag` rounds ago: validly signed, but stale.
    Replay {
        /// Age in rounds, at least 1. Default 1.
        lag: u64,
    },
    /// Send two different models for the same round to different peers: the own model to some,
    /// a sign-flipped mean to others. Two such signatures are a proof of equivocation.
    Equivocate,
    /// Do no work: resend the last model received from a peer, unchanged.
    FreeRider,
    /// The min-max attack ([`min_max`], Shejwalkar and Houmansadr, NDSS 2021): the honest mean
    /// moved along `-perturbation` as far as the largest distance between two honest models
    /// allows. The honest set is the models the attacker knows plus its own honestly trained one.
    MinMax {
        /// The direction. Default: the honest models' standard deviation.
        perturbation: Perturbation,
        /// Whether the unit-vector and sign directions are taken of the models or of the
        /// round's updates (the standard deviation is the same in both). Default: updates.
        space: Space,
    },
    /// The min-sum attack ([`min_sum`]): as min-max, bounding the sum of squared distances.
    MinSum {
        /// The direction. Default: the standard deviation.
        perturbation: Perturbation,
        /// As for min-max. Default: updates.
        space: Space,
    },
    /// ALIE with `z` chosen each time it forges by a line search against the honest nodes'
    /// defence ([`View::defence`]): the `z` whose forgery moves a simulated victim's mix farthest
    /// from the honest mean, as ByzFL's optimised ALIE does against its aggregator.
    OptAlie,
    /// IPM with `epsilon` chosen by the same line search ([`OptIpm`](Attack::OptIpm)).
    OptIpm {
        /// As for [`Attack::Ipm`]. Default: updates, the attack as its paper defines it.
        space: Space,
    },
    /// Lie about the round: serve the own, honestly trained model signed for `ahead` rounds
    /// past the attacker's real round, every round (so each lie is newer than the last). What
    /// it tries: to drag receivers' round counters forward (the catch-up), so they skip
    /// training, and to look fresher than honest peers to a staleness weighting.
    RoundLie {
        /// Rounds ahead. Default [`DEFAULT_ROUND_LIE`].
        ahead: u64,
    },
    /// Serve bytes that are not a valid update: see [`Junk`].
    Junk {
        /// Which kind of junk. Default: a valid signature over a payload that does not match
        /// its digest, the costliest to refuse.
        form: Junk,
    },
}

/// The bytes an [`Attack::Junk`] attacker serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Junk {
    /// Its own update, validly signed, with one payload byte changed: the receiver checks the
    /// signature and hashes the whole payload before the digest gives it away.
    #[default]
    Digest,
    /// Random bytes as long as a valid update.
    Random,
    /// Random bytes one longer than the largest valid update: refused on their length.
    Oversize,
}

/// The form [`Attack`] is read in. Kinds without parameters are empty structs here, because serde
/// ignores extra keys after the tag of a unit variant and `deny_unknown_fields` must hold for
/// every kind.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum Repr {
    SignFlip {},
    Gaussian {
        #[serde(default = "default_sigma")]
        sigma: f32,
    },
    Alie {
        #[serde(default)]
        z: Option<f64>,
    },
    Ipm {
        #[serde(default = "default_ipm_epsilon")]
        epsilon: f32,
        #[serde(default)]
        space: Space,
    },
    LabelFlip {},
    Dissensus {
        #[serde(default = "default_dissensus_epsilon")]
        epsilon: f32,
    },
    Mimic {
        #[serde(default)]
        target: usize,
    },
    NonFinite {
        #[serde(default)]
        value: NonFinite,
    },
    Replay {
        #[serde(default = "default_replay_lag")]
        lag: u64,
    },
    Equivocate {},
    FreeRider {},
    MinMax {
        #[serde(default)]
        perturbation: Perturbation,
        #[serde(default = "update_space")]
        space: Space,
    },
    MinSum {
        #[serde(default)]
        perturbation: Perturbation,
        #[serde(default = "update_space")]
        space: Space,
    },
    OptAlie {},
    OptIpm {
        #[serde(default = "update_space")]
        space: Space,
    },
    RoundLie {
        #[serde(default = "default_round_lie")]
        ahead: u64,
    },
    Junk {
        #[serde(default)]
        form: Junk,
    },
}

impl From<Repr> for Attack {
    fn from(r: Repr) -> Attack {
        match r {
            Repr::SignFlip {} => Attack::SignFlip,
            Repr::Gaussian { sigma } => Attack::Gaussian { sigma },
            Repr::Alie { z } => Attack::Alie { z },
            Repr::Ipm { epsilon, space } => Attack::Ipm { epsilon, space },
            Repr::LabelFlip {} => Attack::LabelFlip,
            Repr::Dissensus { epsilon } => Attack::Dissensus { epsilon },
            Repr::Mimic { target } => Attack::Mimic { target },
            Repr::NonFinite { value } => Attack::NonFinite { value },
            Repr::Replay { lag } => Attack::Replay { lag },
            Repr::Equivocate {} => Attack::Equivocate,
            Repr::FreeRider {} => Attack::FreeRider,
            Repr::MinMax {
                perturbation,
                space,
            } => Attack::MinMax {
                perturbation,
                space,
            },
            Repr::MinSum {
                perturbation,
                space,
            } => Attack::MinSum {
                perturbation,
                space,
            },
            Repr::OptAlie {} => Attack::OptAlie,
            Repr::OptIpm { space } => Attack::OptIpm { space },
            Repr::RoundLie { ahead } => Attack::RoundLie { ahead },
            Repr::Junk { form } => Attack::Junk { form },
        }
    }
}

fn default_sigma() -> f32 {
    DEFAULT_SIGMA
}
fn default_ipm_epsilon() -> f32 {
    DEFAULT_IPM_EPSILON
}
fn default_dissensus_epsilon() -> f32 {
    DEFAULT_DISSENSUS_EPSILON
}
fn default_replay_lag() -> u64 {
    DEFAULT_REPLAY_LAG
}
fn default_round_lie() -> u64 {
    DEFAULT_ROUND_LIE
}
fn update_space() -> Space {
    Space::Update
}

/// Whether an attack works on the models themselves or on the round's updates (each model minus
/// the reference it was trained from).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Space {
    /// On the models.
    #[default]
    Model,
    /// On the updates relative to [`View::reference`]; without a reference, on the models.
    Update,
}

impl Space {
    /// Whether this is the default, [`Space::Model`].
    pub fn is_model(&self) -> bool {
        *self == Space::Model
    }
}

/// What an attacker knows of the honest models when it forges. Configured per attacker group in
/// a scenario; the red-team node has `own` and `colluding`.
///
/// ```toml
/// knowledge = "own"          # the models it mixed (default): what one real attacker sees
/// knowledge = "colluding"    # plus every honest model any attacker of the run fetched
/// knowledge = "omniscient"   # every honest node's newest signed model, the moment it is signed
/// ```
///
/// An attacker that knows more than its own mixes (`colluding`, `omniscient`) also forges later:
/// for each asker when it asks, from what it knows then, rather than once per round after its
/// training. Omniscience is a simulator power (an upper bound on what a network of attackers
/// that pulls from every honest node as often as it may could know); collusion is what red-team
/// processes sharing what they fetch can really do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Knowledge {
    /// The honest models it mixed last round.
    #[default]
    Own,
    /// Plus those its allies fetched (pooled through a side channel).
    Colluding,
    /// Every honest node's newest signed model.
    Omniscient,
}

impl Knowledge {
    /// Whether this is the default, [`Knowledge::Own`].
    pub fn is_own(&self) -> bool {
        *self == Knowledge::Own
    }

    /// The name, as in configs.
    pub fn name(self) -> &'static str {
        match self {
            Knowledge::Own => "own",
            Knowledge::Colluding => "colluding",
            Knowledge::Omniscient => "omniscient",
        }
    }
}

impl FromStr for Knowledge {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "own" => Ok(Knowledge::Own),
            "colluding" => Ok(Knowledge::Colluding),
            "omniscient" => Ok(Knowledge::Omniscient),
            other => Err(format!(
                "unknown knowledge {other:?}; expected one of [\"own\", \"colluding\", \"omniscient\"]"
            )),
        }
    }
}

/// The value a [`Attack::NonFinite`] attacker fills its model with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NonFinite {
    /// Not a number.
    #[default]
    #[serde(rename = "nan")]
    Nan,
    /// Positive infinity.
    #[serde(rename = "inf")]
    Inf,
    /// Negative infinity.
    #[serde(rename = "-inf")]
    NegInf,
}

impl NonFinite {
    /// The `f32` value.
    pub fn value(self) -> f32 {
        match self {
            NonFinite::Nan => f32::NAN,
            NonFinite::Inf => f32::INFINITY,
            NonFinite::NegInf => f32::NEG_INFINITY,
        }
    }
}

/// Why an attack could not be parsed or its parameters are unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The name is not an attack kind.
    #[error("unknown attack {0:?}; expected one of {NAMES:?}")]
    Unknown(String),
    /// A parameter is out of range.
    #[error("attack {attack}: {field} = {value} {reason}")]
    Parameter {
        /// The attack's kind name.
        attack: &'static str,
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: f64,
        /// What it must be.
        reason: &'static str,
    },
}

/// Every kind name, as written in configs and on the command line.
pub const NAMES: [&str; 17] = [
    "sign-flip",
    "gaussian",
    "alie",
    "ipm",
    "label-flip",
    "dissensus",
    "mimic",
    "non-finite",
    "replay",
    "equivocate",
    "free-rider",
    "round-lie",
    "junk",
    "min-max",
    "min-sum",
    "opt-alie",
    "opt-ipm",
];

/// What an attacker sees when it crafts a message: only what a real attacker could.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// The attacker's own, honestly trained model.
    pub own: &'a [f32],
    /// The honest models it received recently (its neighbours' updates), in a fixed order (for
    /// instance by sender key). Models whose length differs from `own` are ignored.
    pub honest: &'a [&'a [f32]],
    /// The model the round's training started from (the attacker's own, before its local
    /// steps: the network's common point when it is near consensus), for attacks in update
    /// space. `None`: unknown.
    pub reference: Option<&'a [f32]>,
    /// Nodes in the run.
    pub n: usize,
    /// Byzantine nodes in the run (for ALIE's `z`).
    pub f: usize,
    /// For dissensus: the targeted honest node, as seen by colluding attackers. The attacks
    /// that search their strength simulate this node's mix (its model), or the attacker's own.
    pub victim: Option<Victim<'a>>,
    /// How the honest nodes mix, for the attacks that search their strength against it
    /// ([`Attack::OptAlie`], [`Attack::OptIpm`]); `None`: they use their papers' default
    /// strength.
    pub defence: Option<Defence<'a>>,
}

/// `(own, received, out)`: writes into `out` what a node holding `own` mixes from `received`.
pub type MixFn = dyn Fn(&[f32], &[&[f32]], &mut [f32]);

/// The honest nodes' mix as an attacker can simulate it: the protocol and the run's
/// configuration are public, so it knows the rule and the screen, though not each node's
/// history.
#[derive(Clone, Copy)]
pub struct Defence<'a> {
    /// Writes into `out` what a node holding `own` mixes from the received models `received`.
    pub mix: &'a MixFn,
    /// How many models a node receives per mix.
    pub fan_in: usize,
}

impl std::fmt::Debug for Defence<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Defence")
            .field("fan_in", &self.fan_in)
            .finish_non_exhaustive()
    }
}

/// Upper end of the strength line search of [`Attack::OptAlie`] and [`Attack::OptIpm`].
pub const SEARCH_MAX: f64 = 64.0;

/// The honest node a dissensus attack is aimed at, and what its next gossip step mixes.
#[derive(Clone, Copy, Debug)]
pub struct Victim<'a> {
    /// The victim's current model `x_v`.
    pub model: &'a [f32],
    /// The models of the victim's good (honest) neighbours `x_j`.
    pub good: &'a [&'a [f32]],
    /// The victim's mixing weight `W_vj` for each entry of `good`, in the same order.
    pub good_weights: &'a [f64],
    /// The total weight `sum_b W_vb` the victim gives its Byzantine neighbours.
    pub byzantine_weight: f64,
}

/// What an attacking node does this round.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Sign and send this forged model to every peer.
    Send(Vec<f32>),
    /// Send the own model (a label-flipping attacker has already poisoned its training data).
    Honest,
    /// Resend the own signed update from `lag` rounds ago, bytes unchanged.
    Replay {
        /// Age in rounds.
        lag: u64,
    },
    /// Sign both models for the same round and send the first to some peers, the second to the
    /// others.
    Equivocate(Vec<f32>, Vec<f32>),
    /// Free-riding: resend the last model received from a peer, unchanged.
    Stale,
    /// Sign the own model for `ahead` rounds past the real round.
    Ahead {
        /// Rounds ahead.
        ahead: u64,
    },
    /// Serve junk of this form.
    Junk(Junk),
}

impl Attack {
    /// Decides this round's behaviour from what the attacker can see.
    ///
    /// Fallbacks, so a plan always exists: attacks that work from the honest models (sign flip,
    /// IPM, ALIE, mimic, the second half of an equivocation) use `[own]` when no honest model of
    /// the right length was received. Dissensus without a [`Victim`] (or with a victim model of the
    /// wrong length) aims at the attacker's own position: victim `own`, good neighbours `honest`,
    /// each at weight `1/(k + 2)` for `k` honest models, Byzantine weight `1/(k + 2)`.
    /// `rng` is only drawn from by [`Attack::Gaussian`].
    pub fn plan<R: Rng + ?Sized>(&self, view: &View<'_>, rng: &mut R) -> Plan {
        let d = view.own.len();
        let mut honest: Vec<&[f32]> = view
            .honest
            .iter()
            .copied()
            .filter(|m| m.len() == d)
            .collect();
        if honest.is_empty() {
            honest.push(view.own);
        }
        let mut out = vec![0.0f32; d];
        match self {
            Attack::SignFlip => sign_flip(&honest, &mut out),
            Attack::Gaussian { sigma } => gaussian(view.own, *sigma, rng, &mut out),
            Attack::Alie { z } => alie(
                &honest,
                z.unwrap_or_else(|| alie_z(view.n, view.f)),
                &mut out,
            ),
            Attack::Ipm {
                epsilon,
                space: Space::Model,
            } => ipm(&honest, *epsilon, &mut out),
            Attack::Ipm {
                epsilon,
                space: Space::Update,
            } => match view.reference.filter(|r| r.len() == d) {
                Some(reference) => forge::ipm_update(&honest, reference, *epsilon, &mut out),
                None => ipm(&honest, *epsilon, &mut out),
            },
            Attack::LabelFlip => return Plan::Honest,
            Attack::Dissensus { epsilon } => plan_dissensus(view, &honest, *epsilon, &mut out),
            Attack::Mimic { target } => out.copy_from_slice(honest[target % honest.len()]),
            Attack::NonFinite { value } => non_finite(*value, &mut out),
            Attack::Replay { lag } => return Plan::Replay { lag: *lag },
            Attack::Equivocate => {
                sign_flip(&honest, &mut out);
                return Plan::Equivocate(view.own.to_vec(), out);
            }
            Attack::FreeRider => return Plan::Stale,
            Attack::RoundLie { ahead } => return Plan::Ahead { ahead: *ahead },
            Attack::Junk { form } => return Plan::Junk(*form),
            Attack::MinMax {
                perturbation,
                space,
            }
            | Attack::MinSum {
                perturbation,
                space,
            } => {
                honest.push(view.own);
                let dev = deviation(&honest, view.reference, *perturbation, *space);
                if matches!(self, Attack::MinMax { .. }) {
                    min_max(&honest, &dev, &mut out);
                } else {
                    min_sum(&honest, &dev, &mut out);
                }
            }
            Attack::OptAlie => {
                let forge = |z: f64, out: &mut [f32]| alie(&honest, z, out);
                let z = match view.defence {
                    Some(d) => search(view, &honest, &d, &forge),
                    None => alie_z(view.n, view.f),
                };
                forge(z, &mut out);
            }
            Attack::OptIpm { space } => {
                let reference = view
                    .reference
                    .filter(|r| r.len() == d && *space == Space::Update);
                let forge = |e: f64, out: &mut [f32]| match reference {
                    Some(r) => forge::ipm_update(&honest, r, e as f32, out),
                    None => ipm(&honest, e as f32, out),
                };
                let e = match view.defence {
                    Some(d) => search(view, &honest, &d, &forge),
                    None => f64::from(DEFAULT_IPM_EPSILON),
                };
                forge(e, &mut out);
            }
        }
        Plan::Send(out)
    }

    /// Whether [`Attack::plan`] forges a model from the view ([`Plan::Send`]): the attacks an
    /// attacker that learns more during the round forges for each asker when it asks.
    pub fn forges(&self) -> bool {
        !matches!(
            self,
            Attack::LabelFlip
                | Attack::Replay { .. }
                | Attack::Equivocate
                | Attack::FreeRider
                | Attack::RoundLie { .. }
                | Attack::Junk { .. }
        )
    }

    /// Whether the attacker's trainer must flip labels ([`flip_label`]) before local steps.
    pub fn flips_labels(&self) -> bool {
        matches!(self, Attack::LabelFlip)
    }

    /// The kind name, as in configs.
    pub fn name(&self) -> &'static str {
        match self {
            Attack::SignFlip => "sign-flip",
            Attack::Gaussian { .. } => "gaussian",
            Attack::Alie { .. } => "alie",
            Attack::Ipm { .. } => "ipm",
            Attack::LabelFlip => "label-flip",
            Attack::Dissensus { .. } => "dissensus",
            Attack::Mimic { .. } => "mimic",
            Attack::NonFinite { .. } => "non-finite",
            Attack::Replay { .. } => "replay",
            Attack::Equivocate => "equivocate",
            Attack::FreeRider => "free-rider",
            Attack::MinMax { .. } => "min-max",
            Attack::MinSum { .. } => "min-sum",
            Attack::OptAlie => "opt-alie",
            Attack::OptIpm { .. } => "opt-ipm",
            Attack::RoundLie { .. } => "round-lie",
            Attack::Junk { .. } => "junk",
        }
    }

    /// Checks parameters: `sigma` finite and non-negative; `z` and `epsilon` finite; `lag` and
    /// `ahead` at least 1.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, value: f64, reason| Error::Parameter {
            attack: self.name(),
            field,
            value,
            reason,
        };
        match *self {
            Attack::Gaussian { sigma } if !(sigma.is_finite() && sigma >= 0.0) => Err(bad(
                "sigma",
                f64::from(sigma),
                "must be finite and non-negative",
            )),
            Attack::Alie { z: Some(z) } if !z.is_finite() => Err(bad("z", z, "must be finite")),
            Attack::Ipm { epsilon, .. } | Attack::Dissensus { epsilon } if !epsilon.is_finite() => {
                Err(bad("epsilon", f64::from(epsilon), "must be finite"))
            }
            Attack::Replay { lag: 0 } => Err(bad("lag", 0.0, "must be at least 1")),
            Attack::RoundLie { ahead: 0 } => Err(bad("ahead", 0.0, "must be at least 1")),
            _ => Ok(()),
        }
    }
}

/// The perturbation of a min-max or min-sum forgery: of the honest models' steps from
/// `reference` in update space (of the models when no reference of the right length is known).
fn deviation(
    honest: &[&[f32]],
    reference: Option<&[f32]>,
    kind: Perturbation,
    space: Space,
) -> Vec<f32> {
    let d = honest[0].len();
    let mut dev = vec![0.0f32; d];
    match reference.filter(|r| r.len() == d && space == Space::Update) {
        Some(r) => {
            let steps: Vec<Vec<f32>> = honest
                .iter()
                .map(|h| h.iter().zip(r).map(|(x, y)| x - y).collect())
                .collect();
            let steps: Vec<&[f32]> = steps.iter().map(Vec::as_slice).collect();
            forge::perturbation(&steps, kind, &mut dev);
        }
        None => forge::perturbation(honest, kind, &mut dev),
    }
    dev
}

/// The strength whose forgery, received by a simulated victim, moves the victim's mix farthest
/// from the mean of the honest models it mixes (ByzFL's objective for its optimised attacks).
///
/// The victim is [`View::victim`]'s model, or the attacker's own; it receives `fan_in` models:
/// as many copies of the forgery as a node draws attackers on average (`f` of the other `n - 1`
/// nodes, at least one), and known honest models (other than the victim's) for the rest. The
/// strength is searched on a halving grid from [`SEARCH_MAX`] down to `SEARCH_MAX / 4096`, and 0,
/// then refined by a golden-section search between the best point's neighbours; ties go to the
/// smaller strength. Deterministic: no randomness.
fn search(
    view: &View<'_>,
    honest: &[&[f32]],
    defence: &Defence<'_>,
    forge: &dyn Fn(f64, &mut [f32]),
) -> f64 {
    let d = view.own.len();
    let victim: &[f32] = view
        .victim
        .map(|v| v.model)
        .filter(|m| m.len() == d)
        .unwrap_or(view.own);
    let fan_in = defence.fan_in.max(1);
    let others_n = view.n.saturating_sub(1).max(1);
    let copies = (view.f * fan_in).div_ceil(others_n).clamp(1, fan_in);
    let mut others: Vec<&[f32]> = honest
        .iter()
        .copied()
        .filter(|m| !std::ptr::eq(m.as_ptr(), victim.as_ptr()))
        .take(fan_in - copies)
        .collect();
    if others.is_empty() {
        others.push(view.own);
    }
    let mut mixed: Vec<&[f32]> = others.clone();
    mixed.push(victim);
    let mut centre = vec![0.0f32; d];
    mean(&mixed, &mut centre);
    let mut forged = vec![0.0f32; d];
    let mut out = vec![0.0f32; d];
    let mut harm = |s: f64| -> f64 {
        forge(s, &mut forged);
        let mut received = others.clone();
        received.extend(std::iter::repeat_n(forged.as_slice(), copies));
        (defence.mix)(victim, &received, &mut out);
        let h = crate::aggregate::distance(&out, &centre);
        if h.is_nan() { f64::NEG_INFINITY } else { h }
    };
    let grid: Vec<f64> = std::iter::once(0.0)
        .chain((0..=12).rev().map(|k| SEARCH_MAX / f64::from(1u32 << k)))
        .collect();
    let scores: Vec<f64> = grid.iter().map(|&s| harm(s)).collect();
    let mut best = 0;
    for (i, &h) in scores.iter().enumerate() {
        if h > scores[best] {
            best = i;
        }
    }
    let (mut lo, mut hi) = (
        grid[best.saturating_sub(1)],
        grid[(best + 1).min(grid.len() - 1)],
    );
    let (mut top, mut top_h) = (grid[best], scores[best]);
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..14 {
        let a = hi - phi * (hi - lo);
        let b = lo + phi * (hi - lo);
        let (ha, hb) = (harm(a), harm(b));
        for (s, h) in [(a, ha), (b, hb)] {
            if h > top_h {
                (top, top_h) = (s, h);
            }
        }
        if ha >= hb {
            hi = b;
        } else {
            lo = a;
        }
    }
    top
}

fn plan_dissensus(view: &View<'_>, honest: &[&[f32]], epsilon: f32, out: &mut [f32]) {
    let d = view.own.len();
    if let Some(v) = view.victim.filter(|v| v.model.len() == d) {
        let (good, weights): (Vec<&[f32]>, Vec<f64>) = v
            .good
            .iter()
            .zip(v.good_weights)
            .filter(|(m, _)| m.len() == d)
            .map(|(m, w)| (*m, *w))
            .unzip();
        let victim = Victim {
            good: &good,
            good_weights: &weights,
            ..v
        };
        dissensus(&victim, epsilon, out);
    } else {
        let w = 1.0 / (honest.len() as f64 + 2.0);
        let weights = vec![w; honest.len()];
        let victim = Victim {
            model: view.own,
            good: honest,
            good_weights: &weights,
            byzantine_weight: w,
        };
        dissensus(&victim, epsilon, out);
    }
}

impl FromStr for Attack {
    type Err = Error;

    /// A bare kind name with default parameters: `"alie"`, `"ipm"`, `"non-finite"`, ...
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s.trim() {
            "sign-flip" => Attack::SignFlip,
            "gaussian" => Attack::Gaussian {
                sigma: DEFAULT_SIGMA,
            },
            "alie" => Attack::Alie { z: None },
            "ipm" => Attack::Ipm {
                epsilon: DEFAULT_IPM_EPSILON,
                space: Space::Model,
            },
            "label-flip" => Attack::LabelFlip,
            "dissensus" => Attack::Dissensus {
                epsilon: DEFAULT_DISSENSUS_EPSILON,
            },
            "mimic" => Attack::Mimic { target: 0 },
            "non-finite" => Attack::NonFinite {
                value: NonFinite::Nan,
            },
            "replay" => Attack::Replay {
                lag: DEFAULT_REPLAY_LAG,
            },
            "equivocate" => Attack::Equivocate,
            "free-rider" => Attack::FreeRider,
            "min-max" => Attack::MinMax {
                perturbation: Perturbation::Std,
                space: Space::Update,
            },
            "min-sum" => Attack::MinSum {
                perturbation: Perturbation::Std,
                space: Space::Update,
            },
            "opt-alie" => Attack::OptAlie,
            "round-lie" => Attack::RoundLie {
                ahead: DEFAULT_ROUND_LIE,
            },
            "junk" => Attack::Junk { form: Junk::Digest },
            "opt-ipm" => Attack::OptIpm {
                space: Space::Update,
            },
            other => return Err(Error::Unknown(other.to_owned())),
        })
    }
}

/// The label-flipping map: `classes - 1 - label` (for 10 classes, 9 - label), as in the
/// decentralised reference code of He, Karimireddy and Jaggi (2022). Labels outside
/// `0..classes` are returned unchanged.
pub fn flip_label(label: u32, classes: u32) -> u32 {
    if label < classes {
        classes - 1 - label
    } else {
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Config {
        attack: Attack,
    }

    fn parse(s: &str) -> Result<Attack, toml::de::Error> {
        toml::from_str::<Config>(s).map(|c| c.attack)
    }

    #[test]
    fn ipm_in_update_space_turns_the_honest_step_back_from_the_reference() {
        let (a, b) = ([1.0f32, 2.0], [3.0f32, 4.0]);
        let honest: [&[f32]; 2] = [&a, &b];
        let own = [0.0f32, 0.0];
        let reference = [1.0f32, 1.0];
        let attack =
            parse(r#"attack = { kind = "ipm", epsilon = 0.5, space = "update" }"#).unwrap();
        let plan = |reference| {
            let view = View {
                own: &own,
                honest: &honest,
                reference,
                n: 4,
                f: 1,
                victim: None,
                defence: None,
            };
            attack.plan(&view, &mut ChaCha8Rng::seed_from_u64(0))
        };
        // Mean [2, 3]: the step from the reference is [1, 2]; turned back and halved.
        assert_eq!(plan(Some(&reference)), Plan::Send(vec![0.5, 0.0]));
        // Without a reference, on the models: -0.5 x [2, 3].
        assert_eq!(plan(None), Plan::Send(vec![-1.0, -1.5]));
        let text = serde_json::to_string(&attack).unwrap();
        assert!(text.contains(r#""space":"update""#), "{text}");
        let default = serde_json::to_string(&"ipm".parse::<Attack>().unwrap()).unwrap();
        assert!(!default.contains("space"), "{default}");
    }

    #[test]
    fn toml_forms() {
        assert_eq!(
            parse(r#"attack = { kind = "alie" }"#).unwrap(),
            Attack::Alie { z: None }
        );
        assert_eq!(
            parse(r#"attack = { kind = "alie", z = 1.5 }"#).unwrap(),
            Attack::Alie { z: Some(1.5) }
        );
        assert_eq!(
            parse(r#"attack = { kind = "ipm", epsilon = 0.5 }"#).unwrap(),
            Attack::Ipm {
                epsilon: 0.5,
                space: Space::Model,
            }
        );
        assert_eq!(
            parse(r#"attack = { kind = "ipm" }"#).unwrap(),
            Attack::Ipm {
                epsilon: 0.1,
                space: Space::Model,
            }
        );
        assert_eq!(
            parse(r#"attack = { kind = "non-finite", value = "-inf" }"#).unwrap(),
            Attack::NonFinite {
                value: NonFinite::NegInf
            }
        );
        assert_eq!(
            parse(r#"attack = { kind = "replay", lag = 3 }"#).unwrap(),
            Attack::Replay { lag: 3 }
        );
        assert_eq!(
            parse(r#"attack = { kind = "free-rider" }"#).unwrap(),
            Attack::FreeRider
        );
        assert!(parse(r#"attack = { kind = "ipm", epsilon = 0.5, eps = 1.0 }"#).is_err());
        assert!(parse(r#"attack = { kind = "sign-flip", z = 1.0 }"#).is_err());
        assert!(parse(r#"attack = { kind = "teleport" }"#).is_err());
        assert_eq!(
            parse(r#"attack = { kind = "min-sum", perturbation = "sign", space = "model" }"#)
                .unwrap(),
            Attack::MinSum {
                perturbation: Perturbation::Sign,
                space: Space::Model,
            }
        );
        assert_eq!(
            parse(r#"attack = { kind = "opt-ipm" }"#).unwrap(),
            Attack::OptIpm {
                space: Space::Update
            }
        );
        assert!(parse(r#"attack = { kind = "opt-alie", z = 1.0 }"#).is_err());
    }

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for name in NAMES {
            let a: Attack = name.parse().unwrap();
            assert_eq!(a.name(), name);
            assert_eq!(a.validate(), Ok(()));
            let text = toml::to_string(&Config { attack: a.clone() }).unwrap();
            assert_eq!(parse(&text).unwrap(), a, "{text}");
        }
        assert_eq!(
            "bogus".parse::<Attack>(),
            Err(Error::Unknown("bogus".into()))
        );
    }

    #[test]
    fn validate_rejects_bad_parameters() {
        assert!(Attack::Gaussian { sigma: -1.0 }.validate().is_err());
        assert!(Attack::Gaussian { sigma: f32::NAN }.validate().is_err());
        assert!(
            Attack::Alie {
                z: Some(f64::INFINITY)
            }
            .validate()
            .is_err()
        );
        assert!(Attack::Dissensus { epsilon: f32::NAN }.validate().is_err());
        assert!(Attack::Replay { lag: 0 }.validate().is_err());
        assert_eq!(Attack::Gaussian { sigma: 0.0 }.validate(), Ok(()));
    }

    #[test]
    fn plans() {
        let own = [1.0f32, 1.0];
        let a = [2.0f32, 4.0];
        let b = [4.0f32, 0.0];
        let short = [9.0f32];
        let honest: [&[f32]; 3] = [&a, &short, &b];
        let view = View {
            own: &own,
            honest: &honest,
            reference: None,
            n: 10,
            f: 2,
            victim: None,
            defence: None,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let plan = |a: Attack, rng: &mut ChaCha8Rng| a.plan(&view, rng);
        // The short model is ignored.
        assert_eq!(
            plan(Attack::SignFlip, &mut rng),
            Plan::Send(vec![-3.0, -2.0])
        );
        assert_eq!(
            plan(Attack::Mimic { target: 3 }, &mut rng),
            Plan::Send(vec![4.0, 0.0])
        );
        assert_eq!(plan(Attack::LabelFlip, &mut rng), Plan::Honest);
        assert_eq!(plan(Attack::FreeRider, &mut rng), Plan::Stale);
        assert_eq!(
            plan(Attack::Replay { lag: 4 }, &mut rng),
            Plan::Replay { lag: 4 }
        );
        assert_eq!(
            plan(Attack::Equivocate, &mut rng),
            Plan::Equivocate(vec![1.0, 1.0], vec![-3.0, -2.0])
        );
        // ALIE without z: z = alie_z(10, 2); sample std of (2, 4) and (4, 0) is sqrt 2 and sqrt 8.
        let z = alie_z(10, 2);
        let Plan::Send(v) = plan(Attack::Alie { z: None }, &mut rng) else {
            panic!()
        };
        assert!((f64::from(v[0]) - (3.0 + z * 2f64.sqrt())).abs() < 1e-6);
        assert!((f64::from(v[1]) - (2.0 + z * 8f64.sqrt())).abs() < 1e-6);
        let Plan::Send(v) = plan(
            Attack::NonFinite {
                value: NonFinite::Inf,
            },
            &mut rng,
        ) else {
            panic!()
        };
        assert_eq!(v, vec![f32::INFINITY; 2]);
        let g1 = Attack::Gaussian { sigma: 1.0 }.plan(&view, &mut ChaCha8Rng::seed_from_u64(3));
        let g2 = Attack::Gaussian { sigma: 1.0 }.plan(&view, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(g1, g2);
        assert_ne!(g1, Plan::Send(own.to_vec()));
    }

    #[test]
    fn plans_fall_back_to_own_without_honest_models() {
        let own = [1.0f32, -2.0];
        let view = View {
            own: &own,
            honest: &[],
            reference: None,
            n: 4,
            f: 1,
            victim: None,
            defence: None,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            Attack::SignFlip.plan(&view, &mut rng),
            Plan::Send(vec![-1.0, 2.0])
        );
        assert_eq!(
            Attack::Mimic { target: 5 }.plan(&view, &mut rng),
            Plan::Send(own.to_vec())
        );
        assert_eq!(
            Attack::Alie { z: Some(2.0) }.plan(&view, &mut rng),
            Plan::Send(own.to_vec())
        );
        // Dissensus aimed at itself with nobody to pull against: stays put.
        assert_eq!(
            Attack::Dissensus { epsilon: 1.5 }.plan(&view, &mut rng),
            Plan::Send(own.to_vec())
        );
    }

    #[test]
    fn dissensus_without_victim_pushes_away_from_neighbours() {
        let own = [0.0f32];
        let a = [1.0f32];
        let honest: [&[f32]; 1] = [&a];
        let view = View {
            own: &own,
            honest: &honest,
            reference: None,
            n: 3,
            f: 1,
            victim: None,
            defence: None,
        };
        let plan =
            Attack::Dissensus { epsilon: 2.0 }.plan(&view, &mut ChaCha8Rng::seed_from_u64(0));
        // Weights 1/3 each: 0 - 2 * (1/3 * 1) / (1/3) = -2.
        assert_eq!(plan, Plan::Send(vec![-2.0]));
    }

    #[test]
    fn searched_strength_is_the_largest_the_defence_lets_through() {
        // Honest models around 0 in one coordinate; the defence drops any received model
        // farther than 1 from the node's own and averages the rest with it. The most harmful
        // ALIE forgery is the one just inside that radius; past it, it is dropped and does
        // nothing.
        let own = [0.0f32, 0.0];
        let (a, b, c) = ([0.1f32, 0.0], [-0.1f32, 0.0], [0.0f32, 0.1]);
        let honest: [&[f32]; 3] = [&a, &b, &c];
        let mix = |own: &[f32], received: &[&[f32]], out: &mut [f32]| {
            let kept: Vec<&[f32]> = std::iter::once(own)
                .chain(
                    received
                        .iter()
                        .copied()
                        .filter(|r| crate::aggregate::distance(own, r) <= 1.0),
                )
                .collect();
            mean(&kept, out);
        };
        let view = View {
            own: &own,
            honest: &honest,
            reference: None,
            n: 16,
            f: 3,
            victim: None,
            defence: Some(Defence {
                mix: &mix,
                fan_in: 4,
            }),
        };
        let Plan::Send(forged) = Attack::OptAlie.plan(&view, &mut ChaCha8Rng::seed_from_u64(0))
        else {
            panic!()
        };
        let d = crate::aggregate::distance(&own, &forged);
        assert!((0.97..=1.0).contains(&d), "forged at distance {d}");
        // Against the plain mean, more is always worse: the top of the search range.
        let plain = |own: &[f32], received: &[&[f32]], out: &mut [f32]| {
            let all: Vec<&[f32]> = std::iter::once(own)
                .chain(received.iter().copied())
                .collect();
            mean(&all, out);
        };
        let view = View {
            defence: Some(Defence {
                mix: &plain,
                fan_in: 4,
            }),
            ..view
        };
        let Plan::Send(far) = Attack::OptIpm {
            space: Space::Model,
        }
        .plan(&view, &mut ChaCha8Rng::seed_from_u64(0)) else {
            panic!()
        };
        let mut want = [0.0f32; 2];
        ipm(&honest, SEARCH_MAX as f32, &mut want);
        assert_eq!(far, want);
        // Without a defence to search against: the papers' strengths.
        let view = View {
            defence: None,
            ..view
        };
        let mut want = [0.0f32; 2];
        alie(&honest, alie_z(16, 3), &mut want);
        assert_eq!(
            Attack::OptAlie.plan(&view, &mut ChaCha8Rng::seed_from_u64(0)),
            Plan::Send(want.to_vec())
        );
    }

    #[test]
    fn min_max_counts_the_attackers_own_model_as_honest() {
        let own = [1.0f32, 0.0];
        let a = [0.0f32, 1.0];
        let honest: [&[f32]; 1] = [&a];
        let view = View {
            own: &own,
            honest: &honest,
            reference: None,
            n: 4,
            f: 1,
            victim: None,
            defence: None,
        };
        let attack = parse(r#"attack = { kind = "min-max" }"#).unwrap();
        let Plan::Send(v) = attack.plan(&view, &mut ChaCha8Rng::seed_from_u64(0)) else {
            panic!()
        };
        // Two honest vectors at distance sqrt 2: the forgery is sqrt 2 from the farther one.
        let far = crate::aggregate::distance(&v, &own).max(crate::aggregate::distance(&v, &a));
        assert!((far - 2f64.sqrt()).abs() < 1e-5, "{v:?}");
    }

    #[test]
    fn label_flip_map() {
        assert_eq!(flip_label(0, 10), 9);
        assert_eq!(flip_label(9, 10), 0);
        assert_eq!(flip_label(3, 4), 0);
        assert_eq!(flip_label(12, 10), 12);
        assert!(Attack::LabelFlip.flips_labels());
        assert!(!Attack::SignFlip.flips_labels());
    }
}
