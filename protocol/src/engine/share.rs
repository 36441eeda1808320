//! Each peer's share of a contended uplink (see
//! [`Config::uplink_mbps`](super::Config::uplink_mbps)).
//!
//! An honest asker draws `fanout` of its peers a round, so it asks a given node in about
//! `fanout / connected` of the rounds. An attacker hogging uplinks asks every node every round,
//! to fill their uplinks ahead of the honest askers, who then hear "busy" and mix fewer honest
//! models. So a node counts the rounds in which each peer asked it for a fetch (once a round,
//! however often it asks: retries and repeats add nothing), keeping three quarters of each
//! count from one round to the next: an honest asker's count stays near the mean, one asking
//! every round nears four. While its uplink is contended (it refused a peer's first fetch of a
//! round for its backlog within the last round timeout) it refuses as busy a peer whose count
//! is over one and a half times the mean count of its peers (those connected when the round
//! started, and those that asked since) and at least one and a half, even at a moment the uplink is idle: an attacker would take those moments. The
//! fetches it held are answered lightest first. An attacker asking every round stays over its
//! share, refused or not, until it asks about as often as an honest asker. What it costs the
//! honest askers: one that asked this node in either of the last two rounds may be refused
//! (1.75 or 1.56 against the threshold), and draws another peer, as when any uplink is busy;
//! identities that stay connected without asking lower the mean, down to the floor. What
//! remains to attackers is the number of identities (see the README's "The Byzantine share of
//! a mix"). An uplink that is never contended refuses nobody for this.

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
/// A count under which a peer is never heavy. A round's fetch is counted before it is judged:
/// a peer asking for the first time holds 1, one that asked two rounds before 1.56, one that
/// asked the round before 1.75.
const FLOOR: f32 = 1.5;

/// One peer's count, and whether it is among the round's [`Shares::members`].
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    n: f32,
    member: bool,
}

/// In how many of the last rounds each peer asked this node for a fetch, decayed by round.
///
/// The mean a peer's count is judged against is kept as it changes, so that judging a fetch
/// costs one lookup however many peers are connected (summed over them at each fetch, a flood
/// of fetches from thousands of identities cost the node the square of their number). Its
/// members are the peers connected when the round started and those that asked since.
#[derive(Debug, Default, Clone)]
pub(super) struct Shares {
    asked: BTreeMap<PeerKey, Count>,
    /// The sum of the members' counts.
    sum: f32,
    /// How many members the round has.
    members: usize,
    /// Until when the uplink counts as contended (see [`Shares::contended_until`]).
    until: Duration,
}

impl Shares {
    /// `peer` asked for its first fetch of the round; a peer that connected since the round
    /// started becomes a member of its mean.
    pub fn charge(&mut self, peer: PeerKey) {
        let c = self.asked.entry(peer).or_default();
        c.n += 1.0;
        if c.member {
            self.sum += 1.0;
        } else {
            c.member = true;
            self.members += 1;
            self.sum += c.n;
        }
    }

    /// A new round: every count keeps [`KEEP`] of itself, and the mean is taken again over
    /// the `connected` peers (those gone or banned count for nothing from now on).
    pub fn next_round<'a>(&mut self, connected: impl Iterator<Item = &'a PeerKey>) {
        self.asked.retain(|_, c| {
            c.n *= KEEP;
            c.member = false;
            c.n >= FORGET
        });
        (self.sum, self.members) = (0.0, 0);
        for peer in connected {
            let c = self.asked.entry(*peer).or_default();
            c.member = true;
            self.members += 1;
            self.sum += c.n;
        }
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
        self.asked.get(peer).map_or(0.0, |c| c.n)
    }

    /// Whether `peer` holds more than its share: at least [`FLOOR`], and over [`OVER`] times
    /// the mean count of the round's members.
    pub fn heavy(&self, peer: &PeerKey) -> bool {
        let n = self.of(peer);
        n >= FLOOR && n > OVER * self.sum / self.members.max(1) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PeerKey {
        crate::sign::Identity::from_secret([i; 32]).public()
    }

    /// A peer asking every round becomes heavy among peers asking one round in four, each of
    /// which is light when its turn comes; a peer asking two rounds running is heavy on the
    /// second when the others ask little; counts fade and are forgotten.
    #[test]
    fn a_peer_asking_every_round_is_heavy_and_one_asking_now_and_then_is_not() {
        let connected: Vec<PeerKey> = (0..13).map(key).collect();
        let mut s = Shares::default();
        for round in 0..16u8 {
            s.next_round(connected.iter());
            s.charge(key(0));
            if round >= 2 {
                assert!(s.heavy(&key(0)), "round {round}: {}", s.of(&key(0)));
            }
            // Twelve others, three a round in turn.
            for k in 0..3 {
                let peer = key(1 + (round * 3 + k) % 12);
                s.charge(peer);
                assert!(!s.heavy(&peer), "round {round}: {}", s.of(&peer));
            }
        }
        let eight: Vec<PeerKey> = (1..=8).map(key).collect();
        let mut twice = Shares::default();
        twice.charge(key(1));
        assert!(!twice.heavy(&key(1)), "1 is under the floor");
        twice.next_round(eight.iter());
        twice.charge(key(1));
        assert!(
            twice.heavy(&key(1)),
            "1.75, over 1.5 times the mean of 0.22"
        );
        twice.next_round(eight.iter());
        assert!(!twice.heavy(&key(1)), "1.31 is under the floor");
        for _ in 0..12 {
            twice.next_round(std::iter::empty());
        }
        assert_eq!(twice.of(&key(1)), 0.0, "forgotten");
        assert!(twice.asked.is_empty());
    }

    /// The mean is over the peers connected when the round started and those that asked
    /// since: forty identities that asked four rounds running and left no longer raise it,
    /// and a peer that connects and asks during the round counts once, with its count.
    #[test]
    fn the_mean_is_the_rounds_members_and_peers_gone_count_for_nothing() {
        let eight: Vec<PeerKey> = (1..=8).map(key).collect();
        let forty: Vec<PeerKey> = (20..60).map(key).collect();
        let mut s = Shares::default();
        let both = || eight.iter().chain(&forty);
        for _ in 0..4 {
            s.next_round(both());
            for p in &forty {
                s.charge(*p);
            }
        }
        s.next_round(both());
        s.charge(key(1));
        // 1 against a mean of (1 + 40 * 2.05) / 48: light while the forty are connected.
        assert!(!s.heavy(&key(1)));
        s.next_round(both());
        s.charge(key(1));
        assert!(!s.heavy(&key(1)), "1.75 against 1.5 * {}", s.sum / 48.0);
        let mut gone = s.clone();
        gone.next_round(eight.iter());
        gone.charge(key(1));
        assert_eq!(gone.members, 8);
        assert!(gone.heavy(&key(1)), "2.31 against the eight alone");
        // A peer that joins during the round and asks is a member from then on, once.
        let newcomer = key(100);
        gone.charge(newcomer);
        assert_eq!((gone.members, gone.sum), (9, gone.of(&key(1)) + 1.0));
        gone.next_round(eight.iter().chain([&newcomer]));
        assert_eq!(gone.members, 9);
    }
}
