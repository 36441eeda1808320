//! The fetches a node holds until it signs the round they ask for (or their time is up),
//! indexed by asker, by expiry and by round, so that the next expiry and the fetches due cost
//! a lookup rather than a walk over every fetch held: with thousands of identities each holding
//! one, a walk at each event cost the node the square of their number.

use crate::sign::PeerKey;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A fetch waiting for this node to sign the round it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Held {
    pub request: u64,
    pub round: u64,
    pub have: Option<u64>,
    pub until: Duration,
}

/// The fetches held, at most one per asker.
#[derive(Debug, Default, Clone)]
pub(super) struct Holds {
    by_peer: BTreeMap<PeerKey, Held>,
    by_until: BTreeSet<(Duration, PeerKey)>,
    by_round: BTreeSet<(u64, PeerKey)>,
}

impl Holds {
    /// Holds `held` for `peer`, returning the fetch it held for `peer` before, if any.
    pub fn insert(&mut self, peer: PeerKey, held: Held) -> Option<Held> {
        let older = self.remove(&peer);
        self.by_until.insert((held.until, peer));
        self.by_round.insert((held.round, peer));
        self.by_peer.insert(peer, held);
        older
    }

    /// Stops holding `peer`'s fetch, returning it.
    pub fn remove(&mut self, peer: &PeerKey) -> Option<Held> {
        let held = self.by_peer.remove(peer)?;
        self.by_until.remove(&(held.until, *peer));
        self.by_round.remove(&(held.round, *peer));
        Some(held)
    }

    pub fn len(&self) -> usize {
        self.by_peer.len()
    }

    pub fn contains_key(&self, peer: &PeerKey) -> bool {
        self.by_peer.contains_key(peer)
    }

    /// The askers, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &PeerKey> {
        self.by_peer.keys()
    }

    /// When the earliest fetch held expires.
    pub fn earliest(&self) -> Option<Duration> {
        self.by_until.first().map(|&(until, _)| until)
    }

    /// The fetches due, in their askers' key order: those for a round up to `have`, and with
    /// `expired`, those whose time is up at `now`.
    pub fn due(&self, have: u64, now: Option<Duration>) -> Vec<(PeerKey, Held)> {
        let mut due: BTreeSet<PeerKey> = self
            .by_round
            .iter()
            .take_while(|&&(round, _)| round <= have)
            .map(|&(_, peer)| peer)
            .collect();
        if let Some(now) = now {
            due.extend(
                self.by_until
                    .iter()
                    .take_while(|&&(until, _)| until <= now)
                    .map(|&(_, peer)| peer),
            );
        }
        due.into_iter().map(|p| (p, self.by_peer[&p])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PeerKey {
        crate::sign::Identity::from_secret([i; 32]).public()
    }

    fn held(request: u64, round: u64, until_ms: u64) -> Held {
        Held {
            request,
            round,
            have: None,
            until: Duration::from_millis(until_ms),
        }
    }

    /// The fetches due are those of the rounds signed and, at a tick, those expired, each once
    /// and in key order; a fetch replaced or removed leaves every index.
    #[test]
    fn fetches_fall_due_by_round_or_expiry_and_leave_every_index() {
        let mut h = Holds::default();
        let mut keys: Vec<PeerKey> = (1..=4).map(key).collect();
        keys.sort();
        assert_eq!(h.insert(keys[3], held(1, 2, 300)), None);
        assert_eq!(h.insert(keys[1], held(2, 3, 100)), None);
        assert_eq!(h.insert(keys[0], held(3, 2, 500)), None);
        assert_eq!(h.insert(keys[2], held(4, 4, 200)), None);
        assert_eq!(h.earliest(), Some(Duration::from_millis(100)));
        let peers = |due: Vec<(PeerKey, Held)>| due.into_iter().map(|d| d.0).collect::<Vec<_>>();
        assert_eq!(peers(h.due(1, None)), []);
        assert_eq!(peers(h.due(2, None)), [keys[0], keys[3]]);
        assert_eq!(
            peers(h.due(2, Some(Duration::from_millis(200)))),
            [keys[0], keys[1], keys[2], keys[3]],
            "round 2's and those expired by 200 ms, each once"
        );
        // Asked again: the new fetch replaces the old in every index.
        assert_eq!(h.insert(keys[1], held(5, 9, 900)), Some(held(2, 3, 100)));
        assert_eq!(h.earliest(), Some(Duration::from_millis(200)));
        assert_eq!(
            peers(h.due(3, Some(Duration::from_millis(150)))),
            [keys[0], keys[3]]
        );
        assert_eq!(h.remove(&keys[2]), Some(held(4, 4, 200)));
        assert_eq!(h.remove(&keys[2]), None);
        assert_eq!(h.earliest(), Some(Duration::from_millis(300)));
        assert_eq!(h.len(), 3);
        for k in &keys {
            h.remove(k);
        }
        assert!(h.by_until.is_empty() && h.by_round.is_empty() && h.earliest().is_none());
    }
}
