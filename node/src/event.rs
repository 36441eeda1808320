//! The node's events on standard output: one JSON object per line, for scripts and tests.
//!
//! Every line has the time (`"time"`, RFC 3339 in UTC with milliseconds) and the event's name
//! (`"event"`), then the event's own fields:
//!
//! ```text
//! {"time":"2026-12-02T11:15:40.123Z","event":"started","start":"joined","round":13,"checkpoint":null,"joined_from":3}
//! ```
//!
//! A red-team process of several Sybil identities (`node.attack-identities`) adds
//! `"identity": i` after the time.

use serde::Serialize;

/// Something a node reports on standard output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The node listens on `addr` (a full multiaddr ending in `/p2p/<peer id>`).
    Listening {
        /// The address.
        addr: String,
    },
    /// A bootstrap address could not be reached (the node goes on with the peers it finds
    /// otherwise, perhaps none).
    BootstrapFailed {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The HTTP endpoint (`/metrics`, `/status`) is bound to `addr`.
    Http {
        /// The address.
        addr: String,
    },
    /// The node started its rounds.
    Started {
        /// How: `fresh`, `checkpoint`, `joined` or `caught-up`.
        start: &'static str,
        /// The first round it trains.
        round: u64,
        /// The round of the checkpoint it loaded, if any.
        checkpoint: Option<u64>,
        /// Peers whose models it started from.
        joined_from: usize,
    },
    /// A model was evaluated on the test set.
    Eval {
        /// The round.
        round: u64,
        /// `local` (after local training) or `mixed` (after mixing).
        model: &'static str,
        /// Test accuracy, in [0, 1].
        accuracy: f64,
        /// Mean test loss.
        loss: f64,
    },
    /// A checkpoint of `round` was written.
    Checkpoint {
        /// The round.
        round: u64,
    },
    /// A peer of this run identified itself: the node may now mix with it.
    PeerUp {
        /// Its peer id.
        peer: String,
        /// Whether this node dialed it (rather than the peer connecting to this node).
        outbound: bool,
    },
    /// The last connection to a peer closed (bans are reported as `banned` instead).
    PeerDown {
        /// Its peer id.
        peer: String,
        /// Why: `ping failed: ...` when the link was found cut, the connection's error, or
        /// `closed`.
        reason: String,
    },
    /// A peer was banned.
    Banned {
        /// Its peer id.
        peer: String,
        /// Why.
        reason: &'static str,
    },
    /// The configured rounds are done; the mixed model's final accuracy.
    Finished {
        /// The last round.
        round: u64,
        /// Test accuracy of the mixed model.
        accuracy: f64,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    /// Which Sybil identity of the process (`node.attack-identities` above 1); absent for a
    /// process that is one node.
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<usize>,
    #[serde(flatten)]
    event: &'a Event,
}

impl Event {
    /// The event's line (without the newline), stamped with the current time and, in a
    /// process of several Sybil identities, with the identity that reports it.
    pub fn line(&self, identity: Option<usize>) -> String {
        let line = Line {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            identity,
            event: self,
        };
        serde_json::to_string(&line).expect("events serialise")
    }

    /// Prints the event's line on standard output.
    pub fn emit(&self, identity: Option<usize>) {
        println!("{}", self.line(identity));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_json_with_the_time_and_the_event_name() {
        let e = Event::Eval {
            round: 4,
            model: "mixed",
            accuracy: 0.5,
            loss: 1.25,
        };
        let v: serde_json::Value = serde_json::from_str(&e.line(None)).unwrap();
        assert!(v.get("identity").is_none(), "a lone node names no identity");
        let sybil: serde_json::Value = serde_json::from_str(&e.line(Some(2))).unwrap();
        assert_eq!(sybil["identity"], 2);
        assert_eq!(v["event"], "eval");
        assert_eq!(v["round"], 4);
        assert_eq!(v["model"], "mixed");
        let time = v["time"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
        assert!(time.ends_with('Z') && time.len() == 24, "{time}");
    }
}
