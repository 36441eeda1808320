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

mod adaptive;
mod knowledge;
pub use knowledge::{Aim, Knowledge};
pub mod forge;
pub mod normal;

pub use adaptive::{Defence, MixFn, SEARCH_MAX};
pub use forge::{
    Perturbation, alie, dissensus, gaussian, ipm, mean, min_max, min_sum, non_finite, sign_flip,
};
pub use normal::{alie_z, inverse_normal_cdf, normal_cdf};

use adaptive::{deviation, search};

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
/// attack = { kind = "gossip-abuse" }
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
    /// Abuse the gossip layer while serving the own, honestly trained model: every round,
    /// publish junk bytes, an announcement forged in an honest peer's name, evidence forged
    /// against an honest peer (two headers in its name for one round, with signatures that do
    /// not verify), a replay of the attacker's oldest announcement it still holds, and valid
    /// proofs of equivocation against keys made for the purpose. What it tries: to frame honest
    /// peers (have them banned as equivocators or blamed for junk they relay), to fill their ban
    /// tables, and to spend every node's CPU and bandwidth. Gossipsub forwards only what a
    /// node's engine accepts, and a rejection costs the message's author alone.
    GossipAbuse,
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
    GossipAbuse {},
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
            Repr::GossipAbuse {} => Attack::GossipAbuse,
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
pub const NAMES: [&str; 18] = [
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
    "gossip-abuse",
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
    /// Send the own model, and abuse the gossip layer ([`Attack::GossipAbuse`]).
    GossipAbuse,
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
            Attack::GossipAbuse => return Plan::GossipAbuse,
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
                | Attack::GossipAbuse
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
            Attack::GossipAbuse => "gossip-abuse",
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
            "gossip-abuse" => Attack::GossipAbuse,
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
mod tests;
