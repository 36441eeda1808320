//! What an attacker knows of the honest models, and which of them a forgery for an asker is
//! computed from.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Which honest models an attacker that forges for each asker takes its statistics over (the
/// mean and deviation of ALIE, the mean of IPM, the models of the adaptive attacks). Configured
/// per attacker group in a scenario (`aim`) and on the red-team node (`node.attack-aim`).
///
/// ```toml
/// aim = "all"       # every honest model it knows (default)
/// aim = "victim"    # the asker's model and its honest neighbours' (the ClippedGossip paper's
///                   # decentralized ALIE and IPM), as far as it knows them
/// ```
///
/// `victim` needs knowledge beyond `own` (only then is a forgery made for each asker); on a
/// fixed graph the neighbours are the asker's real ones, otherwise every other honest model
/// known. Dissensus always aims at its victim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aim {
    /// Every honest model the attacker knows.
    #[default]
    All,
    /// The asker's model and its honest neighbours'.
    Victim,
}

impl Aim {
    /// Whether this is the default, [`Aim::All`].
    pub fn is_all(&self) -> bool {
        *self == Aim::All
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
