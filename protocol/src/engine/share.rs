//! Each peer's share of a contended uplink (see
//! [`Config::uplink_mbps`](super::Config::uplink_mbps)).
//!
//! An honest asker draws `fanout` of its peers a round, so it asks a given node in about
//! `fanout / connected` of the rounds. An attacker hogging uplinks asks every node every round,
//! to fill their uplinks ahead of the honest askers, who then hear "busy" and mix fewer honest
//! models. So a node counts the fetches each peer asks of it, keeping three quarters of each
//! count from one round to the next (an honest asker's count stays near the mean, one asking
//! every round nears four). While its uplink is contended (it refused a peer's first fetch of
//! a round for its backlog within the last round timeout) it refuses as busy a peer whose count
//! is over one and a half times the mean count of its connected peers (and at least one and a
//! half), even at a moment the uplink is idle: an attacker would take those moments. The
//! fetches it held are answered lightest first. An attacker asking every round stays over its
//! share, refused or not, until it asks about as often as an honest asker; an honest asker
//! that drew this node the round before too may be refused (1.75 against 1.5 times a mean
//! near one), and draws another peer, as when any uplink is busy. What remains is the number
//! of identities (see the README's "The Byzantine share of a mix"). An uplink that is never
//! contended refuses nobody for this.

use crate::sign::PeerKey;
use std::collections::BTreeMap;
use std::time::Duration;

/// What a peer's count keeps from one round to the next.
const KEEP: f32 = 0.75;
/// Counts below this are forgotten (they bound the table: a count of one is forgotten after
/// eleven rounds without a fetch).
const FORGET: f32 = 0.05;
/// How many times the mean count a peer may hold before a contended uplink refuses it.
const OVER: f32 = 1.5;
/// A count under which a peer is never heavy. A fetch is counted before it is judged: a peer
/// asking for the first time holds 1, one that asked two rounds before 1.56, one that asked
/// the round before 1.75.
const FLOOR: f32 = 1.5;

/// The fetches each peer asked of this node, decayed by round.
#[derive(Debug, Default, Clone)]
pub(super) struct Shares {
    served: BTreeMap<PeerKey, f32>,
    total: f32,
    /// Until when the uplink counts as contended (see [`Shares::contended_until`]).
    until: Duration,
}

impl Shares {
    /// `peer` asked for a fetch.
    pub fn charge(&mut self, peer: PeerKey) {
        *self.served.entry(peer).or_default() += 1.0;
        self.total += 1.0;
    }

    /// A new round: every count keeps [`KEEP`] of itself.
    pub fn next_round(&mut self) {
        self.served.retain(|_, n| {
            *n *= KEEP;
            *n >= FORGET
        });
        self.total = self.served.values().sum();
    }

    /// The uplink refused a first fetch for its backlog: it counts as contended until `until`.
    pub fn contended_until(&mut self, until: Duration) {
        self.until = self.until.max(until);
    }

    /// Whether the uplink is contended at `now`.
    pub fn contended(&self, now: Duration) -> bool {
        now < self.until
    }

    /// `peer`'s count.
    pub fn of(&self, peer: &PeerKey) -> f32 {
        self.served.get(peer).copied().unwrap_or(0.0)
    }

    /// Whether `peer` holds more than its share: over [`OVER`] times the mean count of the
    /// `connected` peers, and at least [`FLOOR`].
    pub fn heavy(&self, peer: &PeerKey, connected: usize) -> bool {
        let n = self.of(peer);
        let mean = self.total / connected.max(1) as f32;
        n >= FLOOR && n > OVER * mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PeerKey {
        crate::sign::Identity::from_secret([i; 32]).public()
    }

    /// A peer served every round becomes heavy among peers served one round in four, each of
    /// which is light again when its turn comes; counts fade and are forgotten.
    #[test]
    fn a_peer_served_every_round_is_heavy_and_one_served_now_and_then_is_not() {
        let mut s = Shares::default();
        for round in 0..16u8 {
            s.next_round();
            s.charge(key(0));
            // Twelve others, three a round in turn.
            for k in 0..3 {
                let peer = key(1 + (round * 3 + k) % 12);
                assert!(!s.heavy(&peer, 13), "round {round}: {}", s.of(&peer));
                s.charge(peer);
            }
            if round >= 2 {
                assert!(s.heavy(&key(0), 13), "round {round}: {}", s.of(&key(0)));
            }
        }
        let mut once = Shares::default();
        once.charge(key(1));
        for _ in 0..3 {
            once.next_round();
        }
        assert!(!once.heavy(&key(1), 2), "0.42 is under the floor");
        let mut twice = Shares::default();
        twice.charge(key(1));
        twice.next_round();
        twice.charge(key(1));
        assert!(
            twice.heavy(&key(1), 8),
            "1.75, over 1.5 times the mean of 0.22"
        );
        twice.next_round();
        assert!(!twice.heavy(&key(1), 8), "1.31 is under the floor");
        for _ in 0..8 {
            once.next_round();
        }
        assert_eq!(once.of(&key(1)), 0.0, "forgotten after eleven rounds");
        assert!(once.served.is_empty() && once.total < 1e-6);
    }
}
