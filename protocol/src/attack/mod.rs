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

pub use forge::{alie, dissensus, gaussian, ipm, mean, non_finite, sign_flip};
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
pub const NAMES: [&str; 11] = [
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
    /// For dissensus: the targeted honest node, as seen by colluding attackers.
    pub victim: Option<Victim<'a>>,
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
        }
        Plan::Send(out)
    }

    /// Whether [`Attack::plan`] forges a model from the view ([`Plan::Send`]): the attacks an
    /// attacker that learns more during the round forges for each asker when it asks.
    pub fn forges(&self) -> bool {
        !matches!(
            self,
            Attack::LabelFlip | Attack::Replay { .. } | Attack::Equivocate | Attack::FreeRider
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
        }
    }

    /// Checks parameters: `sigma` finite and non-negative; `z` and `epsilon` finite; `lag >= 1`.
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
        };
        let plan =
            Attack::Dissensus { epsilon: 2.0 }.plan(&view, &mut ChaCha8Rng::seed_from_u64(0));
        // Weights 1/3 each: 0 - 2 * (1/3 * 1) / (1/3) = -2.
        assert_eq!(plan, Plan::Send(vec![-2.0]));
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
