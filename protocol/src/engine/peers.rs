//! Per-peer standing: penalty points, bans, and the connected set.

use super::Rejection;
use crate::sign::PeerKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// Points a peer earns back per accepted update, and the most it can bank.
const CREDIT: u32 = 2;

/// Rounds a ban on screen evidence alone lasts. The outlier screen judges distances, which
/// colluders can skew and non-IID data can stretch: it may drop a model from a mix, but it never
/// banishes a peer for good.
pub(crate) const SCREEN_BAN_ROUNDS: u64 = 50;

/// What happened to a peer's standing after a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Penalised; the peer's points now.
    Penalized(u32),
    /// The peer crossed the threshold and is banned now.
    Banned,
    /// The peer was already banned.
    AlreadyBanned,
}

/// A peer's penalty points: from proofs of misbehaviour (`hard`: a bad signature, poison, a
/// replay...) and from the outlier screen (`soft`: a judgement on distances, which decays).
#[derive(Debug, Clone, Copy, Default)]
struct Score {
    hard: u32,
    soft: u32,
    /// The last reason that cost hard points: a ban the screen's points complete is for good
    /// when hard points are among them, and is recorded under this reason, which a later life
    /// restores for good too (an `outlier` ban comes back as the screen's, for 50 rounds).
    last_hard: Option<Rejection>,
}

impl Score {
    fn total(&self) -> u32 {
        self.hard.saturating_add(self.soft)
    }
}

#[derive(Debug, Clone, Copy)]
struct Ban {
    reason: Rejection,
    /// The round it ends at; `None`: for good.
    until: Option<u64>,
    /// The peer was connected to this node when banned or since (or was banned in an earlier
    /// life, which kept only such bans), or the run lists its members (keys outside the list
    /// never reach the table). A ban of a key that never connected (on relayed evidence, or on
    /// points its relayed gossip earned) in a run open to any key is not: anyone can make keys,
    /// have them sign junk or prove them equivocating, while connections are bounded. Such bans
    /// are never persisted ([`Peers::kept`]), make room first when the table is full, and never
    /// push out a ban of a peer the node met.
    met: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Peers {
    connected: BTreeSet<PeerKey>,
    points: BTreeMap<PeerKey, Score>,
    banned: BTreeMap<PeerKey, Ban>,
    /// Peers met whose ban a full table pushed out since [`Peers::take_forgotten`]: their
    /// callers were told of the ban and must be told it ended, or their block lists would keep
    /// every key ever banned.
    forgotten: Vec<PeerKey>,
    /// Draws the ban a full table pushes out (see [`Peers::ban_as`]).
    evictions: ChaCha8Rng,
    /// Every ban counts as met: the run lists its members.
    all_met: bool,
    threshold: u32,
    capacity: usize,
}

impl Peers {
    pub(crate) fn new(threshold: u32, capacity: usize) -> Self {
        Peers {
            connected: BTreeSet::new(),
            points: BTreeMap::new(),
            banned: BTreeMap::new(),
            forgotten: Vec::new(),
            evictions: ChaCha8Rng::from_seed([0; 32]),
            all_met: false,
            threshold,
            capacity,
        }
    }

    /// Keys the draws of the bans a full table pushes out with `key`, a secret of the node's
    /// (an attacker who could foresee them could aim at a ban).
    pub(crate) fn key_evictions(&mut self, key: [u8; 32]) {
        self.evictions = ChaCha8Rng::from_seed(key);
    }

    /// The run lists its members: every ban is of a member (the engine refuses other keys
    /// before they reach the table), so every ban counts as met ([`Ban::met`]).
    pub(crate) fn members_listed(&mut self) {
        self.all_met = true;
    }

    pub(crate) fn is_banned(&self, peer: &PeerKey) -> bool {
        self.banned.contains_key(peer)
    }

    /// Whether `peer`'s ban is of a peer met ([`Ban::met`]).
    pub(crate) fn banned_met(&self, peer: &PeerKey) -> bool {
        self.banned.get(peer).is_some_and(|b| b.met)
    }

    /// Records a connection; if the peer is banned it stays out and the ban's reason is returned
    /// (the ban is of a peer met from then on: its caller now refuses it).
    pub(crate) fn up(&mut self, peer: PeerKey) -> Option<Rejection> {
        if let Some(ban) = self.banned.get_mut(&peer) {
            ban.met = true;
            return Some(ban.reason);
        }
        if self.connected.len() < self.capacity {
            self.connected.insert(peer);
        }
        None
    }

    pub(crate) fn down(&mut self, peer: &PeerKey) {
        self.connected.remove(peer);
    }

    /// Connected, unbanned peers in key order.
    pub(crate) fn connected(&self) -> Vec<PeerKey> {
        self.connected.iter().copied().collect()
    }

    /// Connected, unbanned peers in key order, without a copy.
    pub(crate) fn connected_keys(&self) -> std::collections::btree_set::Iter<'_, PeerKey> {
        self.connected.iter()
    }

    /// Whether `peer` is connected (and unbanned).
    pub(crate) fn connected_to(&self, peer: &PeerKey) -> bool {
        self.connected.contains(peer)
    }

    pub(crate) fn credit(&mut self, peer: &PeerKey) {
        if let Some(s) = self.points.get_mut(peer) {
            let from_soft = CREDIT.min(s.soft);
            s.soft -= from_soft;
            s.hard = s.hard.saturating_sub(CREDIT - from_soft);
            if s.total() == 0 {
                self.points.remove(peer);
            }
        }
    }

    /// Charges `reason`'s points to `peer` in round `round`; a ban on screen evidence alone
    /// ends after [`SCREEN_BAN_ROUNDS`]. When the table is full, the peer with the fewest points
    /// makes room (a flood of identities cannot make a newcomer's first penalty a ban), one not
    /// connected before any that is: authors of relayed junk, made by the thousand, cannot push
    /// out (and so wipe) the points of a connected peer.
    pub(crate) fn penalize(&mut self, peer: PeerKey, reason: Rejection, round: u64) -> Standing {
        if self.is_banned(&peer) {
            return Standing::AlreadyBanned;
        }
        if self.points.len() >= self.capacity
            && !self.points.contains_key(&peer)
            && let Some(least) = self
                .points
                .iter()
                .min_by_key(|(k, s)| (self.connected.contains(k), s.total(), **k))
                .map(|(k, _)| *k)
        {
            self.points.remove(&least);
        }
        let s = self.points.entry(peer).or_default();
        let points = reason.penalty(self.threshold);
        if reason == Rejection::Outlier {
            s.soft = s.soft.saturating_add(points);
        } else {
            s.hard = s.hard.saturating_add(points);
            s.last_hard = Some(reason);
        }
        let (total, hard) = (s.total(), s.hard);
        let until = (hard == 0).then(|| round.saturating_add(SCREEN_BAN_ROUNDS));
        let reason = match (until, s.last_hard) {
            (None, Some(hard)) => hard,
            _ => reason,
        };
        if total >= self.threshold && self.ban_until(peer, reason, until) {
            Standing::Banned
        } else {
            // Below the threshold, or a key never met that finds the table full of bans of
            // peers met: its points stay, and its next penalty tries again.
            Standing::Penalized(total)
        }
    }

    /// Bans a peer for good (equivocation). True when the ban is new; false when the peer was
    /// banned already, or was not connected and the table is full of bans of peers that were
    /// ([`Ban::met`]).
    pub(crate) fn ban(&mut self, peer: PeerKey, reason: Rejection) -> bool {
        self.ban_until(peer, reason, None)
    }

    /// Bans a peer until round `until` (for good with `None`); see [`Peers::ban`].
    pub(crate) fn ban_until(
        &mut self,
        peer: PeerKey,
        reason: Rejection,
        until: Option<u64>,
    ) -> bool {
        let met = self.all_met || self.connected.contains(&peer);
        self.ban_as(peer, reason, until, met)
    }

    /// A ban of an earlier life (of a peer met, the only ones kept), until round `until`.
    pub(crate) fn restore(&mut self, peer: PeerKey, reason: Rejection, until: Option<u64>) {
        self.ban_as(peer, reason, until, true);
    }

    /// Records a ban; `met` as [`Ban::met`]. True when the peer was not banned before and now
    /// is. The ban table is bounded by the capacity too (a flood of fresh keys cannot grow
    /// memory without bound). Past it, a ban of a key never met makes room; when there is none,
    /// a ban of a peer met makes room for another ban of a peer met. Which one is drawn at
    /// random, from a generator keyed with a secret of the node's: never the oldest, the newest
    /// or by key, which an attacker could aim at, so that lifting a chosen ban takes about as
    /// many bans as the table holds. A key never met finds no room in a table full of bans of
    /// peers met.
    fn ban_as(&mut self, peer: PeerKey, reason: Rejection, until: Option<u64>, met: bool) -> bool {
        if let Some(b) = self.banned.get_mut(&peer) {
            b.met |= met;
            b.reason = reason;
            b.until = b.until.zip(until).map(|(a, b)| a.max(b));
            return false;
        }
        if self.banned.len() >= self.capacity {
            let unmet = self.banned.values().filter(|b| !b.met).count();
            let (pool, of_unmet) = match unmet {
                0 if met => (self.banned.len(), false),
                0 => return false,
                n => (n, true),
            };
            let nth = self.evictions.random_range(0..pool);
            let (k, was_met) = self
                .banned
                .iter()
                .filter(|(_, b)| !of_unmet || !b.met)
                .nth(nth)
                .map(|(k, b)| (*k, b.met))
                .expect("drawn below the count");
            self.banned.remove(&k);
            if was_met {
                self.forgotten.push(k);
            }
        }
        self.points.remove(&peer);
        self.connected.remove(&peer);
        self.banned.insert(peer, Ban { reason, until, met });
        true
    }

    /// The peers met whose bans were pushed out of the full table since the last call.
    pub(crate) fn take_forgotten(&mut self) -> Vec<PeerKey> {
        std::mem::take(&mut self.forgotten)
    }

    /// A new round: every peer's screen points decay by a hundredth of the threshold (at least
    /// 1), and bans that end at `round` or before are lifted. Returns the peers let back in.
    pub(crate) fn tick(&mut self, round: u64) -> Vec<PeerKey> {
        let decay = self.threshold.div_ceil(100).max(1);
        self.points.retain(|_, s| {
            s.soft = s.soft.saturating_sub(decay);
            s.total() > 0
        });
        let lifted: Vec<PeerKey> = self
            .banned
            .iter()
            .filter(|(_, b)| b.until.is_some_and(|u| u <= round))
            .map(|(k, _)| *k)
            .collect();
        for k in &lifted {
            self.banned.remove(k);
        }
        lifted
    }

    pub(crate) fn banned(&self) -> impl Iterator<Item = (PeerKey, Rejection)> + '_ {
        self.banned.iter().map(|(k, b)| (*k, b.reason))
    }

    /// The bans of peers the node met ([`Ban::met`]): the ones a later life keeps.
    pub(crate) fn kept(&self) -> impl Iterator<Item = (PeerKey, Rejection)> + '_ {
        self.banned
            .iter()
            .filter(|(_, b)| b.met)
            .map(|(k, b)| (*k, b.reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PeerKey {
        crate::sign::Identity::from_secret([i; 32]).public()
    }

    /// Four screen flags ban a peer, but only for SCREEN_BAN_ROUNDS; a proof of misbehaviour
    /// among the points makes the ban permanent.
    #[test]
    fn a_ban_on_screen_evidence_alone_expires() {
        let mut p = Peers::new(100, 16);
        for _ in 0..4 {
            p.penalize(key(1), Rejection::Outlier, 10);
        }
        assert!(p.is_banned(&key(1)));
        p.penalize(key(2), Rejection::Malformed, 10);
        for _ in 0..2 {
            p.penalize(key(2), Rejection::Outlier, 10);
        }
        assert!(p.is_banned(&key(2)));
        assert!(p.tick(10 + SCREEN_BAN_ROUNDS - 1).is_empty());
        assert_eq!(p.tick(10 + SCREEN_BAN_ROUNDS), vec![key(1)]);
        assert!(!p.is_banned(&key(1)) && p.is_banned(&key(2)));
        // The permanent ban is recorded under its proof, which a later life restores for good
        // (an `outlier` ban comes back as the screen's, for 50 rounds).
        assert_eq!(
            p.banned().collect::<Vec<_>>(),
            vec![(key(2), Rejection::Malformed)]
        );
    }

    /// Screen points decay a little every round, so rare flags on an honest peer never add up;
    /// points for proofs do not.
    #[test]
    fn points_decay_every_round() {
        let mut p = Peers::new(100, 16);
        for round in 0..200u64 {
            if round % 26 == 0 {
                assert_eq!(
                    p.penalize(key(1), Rejection::Outlier, round),
                    Standing::Penalized(25)
                );
            }
            p.tick(round);
        }
        assert!(!p.is_banned(&key(1)));
        p.penalize(key(2), Rejection::NonFinite, 0);
        for round in 1..200 {
            p.tick(round);
        }
        assert_eq!(
            p.penalize(key(2), Rejection::NonFinite, 200),
            Standing::Banned
        );
    }

    /// A full ban table pushes out a ban of a peer met only for another such ban, and reports
    /// it (the caller lifts it from its block list); a ban of a key never met pushes out none.
    #[test]
    fn a_ban_the_full_table_pushes_out_is_reported_once() {
        let mut p = Peers::new(100, 2);
        for i in 1..=3 {
            p.up(key(i));
            assert!(p.ban(key(i), Rejection::Equivocation));
        }
        let out = p.take_forgotten();
        assert_eq!(out.len(), 1);
        assert!(!p.is_banned(&out[0]));
        assert!(p.take_forgotten().is_empty());
        assert!(
            !p.ban(key(9), Rejection::Equivocation),
            "no room for a key never met"
        );
        assert!(p.take_forgotten().is_empty());
        assert_eq!(p.banned().count(), 2);
    }

    /// Which ban of a peer met a full table pushes out is drawn: lifting a chosen one takes
    /// about as many further bans as the table holds, not one (were the newest pushed out, the
    /// next ban would lift the last; were the lowest key, an attacker could choose). A hundred
    /// targets, each banned last into a full table of 64: the next ban lifts it about once in
    /// 64, and lifting it takes 62 further bans on average here.
    #[test]
    fn lifting_a_chosen_ban_takes_about_as_many_bans_as_the_table_holds() {
        let mut p = Peers::new(100, 64);
        p.key_evictions([7; 32]);
        let mut next = 0u32;
        let mut fresh = |p: &mut Peers| {
            next += 1;
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&next.to_le_bytes());
            let k = PeerKey(k);
            p.up(k);
            assert!(p.ban(k, Rejection::Equivocation));
            k
        };
        for _ in 0..64 {
            fresh(&mut p);
        }
        let (mut at_once, mut total) = (0, 0);
        for _ in 0..100 {
            let target = fresh(&mut p);
            let mut n = 0;
            while p.is_banned(&target) {
                fresh(&mut p);
                n += 1;
            }
            at_once += u32::from(n == 1);
            total += n;
        }
        println!(
            "lifted by the next ban {at_once} times in 100; {} bans on average",
            total / 100
        );
        assert!(at_once <= 8, "{at_once}");
        assert!(total / 100 >= 32, "{}", total / 100);
    }

    /// A ban of a key never met is one of a peer met once the key connects and is refused; with
    /// the run's members listed every ban is; a key never met that finds no room in a table full
    /// of bans of peers met is not banned (and not said to be), and its points stay.
    #[test]
    fn a_refused_connection_makes_a_ban_met_and_a_ban_with_no_room_is_not_counted() {
        let mut p = Peers::new(100, 2);
        assert!(p.ban(key(1), Rejection::Equivocation));
        assert_eq!(p.kept().count(), 0, "a key never met");
        assert_eq!(p.up(key(1)), Some(Rejection::Equivocation));
        assert_eq!(p.kept().count(), 1, "refused when it connected");
        p.up(key(2));
        assert!(p.ban(key(2), Rejection::Equivocation));
        assert_eq!(
            p.penalize(key(3), Rejection::Malformed, 1),
            Standing::Penalized(50)
        );
        assert_eq!(
            p.penalize(key(3), Rejection::Malformed, 1),
            Standing::Penalized(100)
        );
        assert!(!p.is_banned(&key(3)) && p.take_forgotten().is_empty());
        let mut listed = Peers::new(100, 2);
        listed.members_listed();
        assert!(listed.ban(key(1), Rejection::Equivocation));
        assert_eq!(listed.kept().count(), 1);
    }

    /// Keys that are not connected (authors of relayed junk) make room in a full table before a
    /// connected peer does, whatever their points: were the fewest points to go first, a flood
    /// of authors charged more than a connected attacker would wipe its points.
    #[test]
    fn a_flood_of_unconnected_authors_does_not_wipe_a_connected_peers_points() {
        let mut p = Peers::new(100, 4);
        p.up(key(1));
        assert_eq!(
            p.penalize(key(1), Rejection::Malformed, 1),
            Standing::Penalized(50)
        );
        for i in 10..30 {
            p.penalize(key(i), Rejection::Malformed, 1);
            p.penalize(key(i), Rejection::WrongRun, 1);
        }
        assert_eq!(p.points.len(), 4);
        assert_eq!(
            p.penalize(key(1), Rejection::Malformed, 1),
            Standing::Banned
        );
    }

    /// With the table full of flooded identities, a newcomer's first small penalty does not ban
    /// it (a full table must not start newcomers at the threshold).
    #[test]
    fn a_full_table_does_not_ban_a_newcomer_on_its_first_penalty() {
        let mut p = Peers::new(100, 4);
        for i in 10..14 {
            p.penalize(key(i), Rejection::WrongRun, 1);
        }
        assert_eq!(
            p.penalize(key(1), Rejection::Stale, 1),
            Standing::Penalized(1)
        );
        assert!(!p.is_banned(&key(1)));
        assert_eq!(p.points.len(), 4);
    }
}
