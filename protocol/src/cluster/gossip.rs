//! Gossip as gossipsub spreads it: a mesh of peers per node, forwarding with a hop budget, and a
//! cache of the messages a node has seen.

use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How gossip spreads in a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Gossip {
    /// Peers a node publishes or forwards a message to, drawn per message among its connected
    /// peers (gossipsub's mesh degree, 6 by default); 0: all of them.
    pub mesh: usize,
    /// Times a message is forwarded after its author's own send: `None` until every node has
    /// seen it (gossipsub), `Some(0)` not at all (only the author's mesh receives it; no seen
    /// cache is kept then).
    pub hops: Option<u32>,
    /// How long a node remembers a message it has seen and drops copies of it (gossipsub's
    /// duplicate cache keeps them 60 s).
    pub seen_for: Duration,
}

impl Default for Gossip {
    fn default() -> Self {
        Gossip {
            mesh: 6,
            hops: None,
            seen_for: Duration::from_secs(60),
        }
    }
}

impl Gossip {
    /// The hop budget of a copy forwarded by a node that received it with `hops` left, or
    /// `None` when it is not forwarded.
    pub(super) fn next_hop(&self, hops: Option<u32>) -> Option<Option<u32>> {
        match hops {
            None => Some(None),
            Some(0) => None,
            Some(h) => Some(Some(h - 1)),
        }
    }

    /// Whether messages are forwarded at all (then nodes keep a seen cache).
    pub(super) fn relays(&self) -> bool {
        self.hops != Some(0)
    }

    /// The peers (of `peers`, sorted) a message goes to.
    pub(super) fn mesh_of(&self, peers: &[usize], rng: &mut impl Rng) -> Vec<usize> {
        if self.mesh == 0 || self.mesh >= peers.len() {
            return peers.to_vec();
        }
        crate::topology::sample_peers(peers, self.mesh, rng)
    }
}

/// A message's identity: the first 8 bytes of the BLAKE3 hash of its bytes (gossipsub's message
/// id is a hash of the data here too).
pub(super) fn id(bytes: &[u8]) -> u64 {
    let h = blake3::hash(bytes);
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The messages one node has seen, forgotten after a while.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// The ids held, oldest first.
    order: VecDeque<u64>,
    /// Each id held, with when it was seen ([`nanos`]).
    ids: HashMap<u64, u64, IdKeys>,
}

/// A time in whole nanoseconds (saturating past 584 years): 8 bytes an id, not a `Duration`'s 16.
fn nanos(t: Duration) -> u64 {
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}

/// How the seen cache hashes message ids: one folded multiply of the id with keys drawn for
/// each cache. An id is already a hash (a prefix of the message's BLAKE3 digest), so the
/// standard hasher's rounds are work done twice; the keys keep a sender that hashes its way to
/// ids sharing their low bits from piling them into one bucket. Only which ids are in the cache
/// matters, never their order, so the keys change no result.
#[derive(Debug, Clone)]
struct IdKeys(u64, u64);

impl Default for IdKeys {
    fn default() -> Self {
        let keys = std::collections::hash_map::RandomState::new();
        IdKeys(keys.hash_one(0u64), keys.hash_one(1u64) | 1)
    }
}

impl BuildHasher for IdKeys {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            keys: (self.0, self.1),
            hash: 0,
        }
    }
}

#[derive(Debug)]
struct IdHasher {
    keys: (u64, u64),
    hash: u64,
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        let folded = bytes
            .iter()
            .fold(self.hash, |h, &b| h.rotate_left(8) ^ u64::from(b));
        self.write_u64(folded);
    }

    fn write_u64(&mut self, id: u64) {
        let m = u128::from(id ^ self.keys.0) * u128::from(self.keys.1);
        self.hash = (m as u64) ^ ((m >> 64) as u64);
    }
}

impl Seen {
    /// Records `id` at `now`, forgetting what is older than `keep`; false if it was seen.
    pub(super) fn insert(&mut self, now: Duration, id: u64, keep: Duration) -> bool {
        let (now, keep) = (nanos(now), nanos(keep));
        while let Some(&old) = self.order.front() {
            if self
                .ids
                .get(&old)
                .is_some_and(|&at| at.saturating_add(keep) > now)
            {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&old);
        }
        if self.ids.contains_key(&id) {
            return false;
        }
        self.ids.insert(id, now);
        self.order.push_back(id);
        true
    }

    /// Whether a copy of `id` arriving at `at` will surely be refused as seen: `id` is held
    /// now and will not be forgotten by then (an id leaves only once `keep` has passed since
    /// it was seen, and more copies cannot make it leave sooner).
    pub(super) fn holds_at(&self, id: u64, at: Duration, keep: Duration) -> bool {
        self.ids
            .get(&id)
            .is_some_and(|&seen| seen.saturating_add(nanos(keep)) > nanos(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_ids_are_refused_until_forgotten() {
        let keep = Duration::from_secs(10);
        let mut seen = Seen::default();
        let ids: Vec<u64> = (0..1000u64).map(|i| id(&i.to_le_bytes())).collect();
        for &i in &ids {
            assert!(seen.insert(Duration::ZERO, i, keep));
        }
        for &i in &ids {
            assert!(!seen.insert(Duration::from_secs(9), i, keep), "seen {i:x}");
        }
        // Ids that differ only in their high bits, or share their low bits, are told apart.
        assert!(seen.insert(Duration::from_secs(9), 1 << 63, keep));
        assert!(seen.insert(Duration::from_secs(9), 1 << 62, keep));
        let shared: Vec<u64> = (1..=500u64).map(|i| i << 32).collect();
        for &i in &shared {
            assert!(seen.insert(Duration::from_secs(9), i, keep));
        }
        for &i in &shared {
            assert!(!seen.insert(Duration::from_secs(9), i, keep));
        }
        // Held for a copy arriving before `keep` has passed, not for one arriving after.
        assert!(seen.holds_at(ids[0], Duration::from_secs(9), keep));
        assert!(seen.holds_at(ids[0], Duration::from_millis(9_999), keep));
        assert!(!seen.holds_at(ids[0], Duration::from_secs(10), keep));
        assert!(!seen.holds_at(id(b"never seen"), Duration::ZERO, keep));
        // Forgotten once older than `keep`: each is new again.
        for &i in &ids {
            assert!(seen.insert(Duration::from_secs(10), i, keep));
        }
        assert!(!seen.insert(Duration::from_secs(10), 1 << 63, keep));
    }
}
