//! Replay protection: per sender, the highest round accepted, in bounded memory.
//!
//! An update at or below a sender's highest accepted round is stale or replayed. A second update
//! for the same round with a different digest is equivocation, and the stored header together
//! with the new one is the proof. Memory is bounded by `capacity` senders; when a new sender
//! arrives at capacity, the least recently accepted sender is forgotten and its round raises the
//! floor of its bucket, so forgetting never lets an old update back in: a sender this window does
//! not know must be above its bucket's floor. Senders fall into [`FLOOR_BUCKETS`] buckets by a
//! hash keyed with the window's secret, so identities evicted with high rounds raise the floors
//! of their own buckets only, and cannot aim at an honest sender's bucket (they cannot compute
//! it): one global floor let a few evicted Sybils make every forgotten honest sender look stale.
//! A header at or below its bucket's floor from a sender the window does not remember is
//! [`Verdict::BelowFloor`], not [`Verdict::Stale`]: refused all the same, but without proof against
//! the sender (it may be honest, in a bucket Sybils raised), so the engine does not charge it.

use crate::evidence::Equivocation;
use crate::sign::PeerKey;
use crate::wire::SignedHeader;
use std::collections::BTreeMap;

/// The verdict on a header that passed signature checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Newer than anything accepted from this sender.
    Fresh,
    /// At or below the highest round accepted from the sender.
    Stale {
        /// The highest round already accepted.
        highest: u64,
    },
    /// From a sender this window does not remember, at or below the floor of its bucket: it may
    /// be a replay of an update accepted before the sender was forgotten, or an honest sender
    /// whose bucket's floor forgotten Sybils raised. Refused, but no proof against the sender.
    BelowFloor {
        /// The bucket's floor.
        floor: u64,
    },
    /// The same round and digest again: a duplicate delivery or a replay.
    Duplicate,
    /// The same round with another digest: proof of equivocation.
    Equivocation(Box<Equivocation>),
}

#[derive(Clone, Debug)]
struct Entry {
    last: SignedHeader,
    touched: u64,
}

/// Buckets of the floors left by forgotten senders.
pub const FLOOR_BUCKETS: usize = 256;

/// Highest accepted round per sender.
#[derive(Clone, Debug)]
pub struct Window {
    capacity: usize,
    entries: BTreeMap<PeerKey, Entry>,
    by_age: BTreeMap<u64, PeerKey>,
    clock: u64,
    /// Per bucket, the highest round of a forgotten sender (0: none).
    floors: Vec<u64>,
    secret: [u8; 32],
    /// Announcements not yet backed by an update, with when they came, and by age.
    announced: BTreeMap<PeerKey, (SignedHeader, u64)>,
    announced_by_age: BTreeMap<u64, PeerKey>,
}

impl Window {
    /// A window remembering at most `capacity` senders (at least 1), with a fixed bucket key.
    pub fn new(capacity: usize) -> Self {
        Window::keyed(capacity, [0; 32])
    }

    /// A window whose floor buckets are keyed with `secret` (keep it from peers).
    pub fn keyed(capacity: usize, secret: [u8; 32]) -> Self {
        Window {
            capacity: capacity.max(1),
            entries: BTreeMap::new(),
            by_age: BTreeMap::new(),
            clock: 0,
            floors: vec![0; FLOOR_BUCKETS],
            secret,
            announced: BTreeMap::new(),
            announced_by_age: BTreeMap::new(),
        }
    }

    pub(crate) fn bucket(&self, sender: &PeerKey) -> usize {
        let h = blake3::keyed_hash(&self.secret, &sender.0);
        let b = h.as_bytes();
        usize::from(u16::from_le_bytes([b[0], b[1]])) % FLOOR_BUCKETS
    }

    /// Number of senders remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no sender is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The highest round accepted from `sender`, if remembered.
    pub fn highest(&self, sender: &PeerKey) -> Option<u64> {
        self.entries.get(sender).map(|e| e.last.header.round)
    }

    /// The newest round heard of from `sender`: accepted, or announced and not yet backed.
    pub fn latest(&self, sender: &PeerKey) -> Option<u64> {
        let announced = self.announced.get(sender).map(|(a, _)| a.header.round);
        self.highest(sender).max(announced)
    }

    /// Whether this window holds `h`, byte for byte and with its signature: the last header
    /// accepted from its sender or its pending announcement, whose signature was checked when it
    /// came.
    pub fn holds(&self, h: &SignedHeader) -> bool {
        let same = |k: &SignedHeader| k.signature == h.signature && k.bytes == h.bytes;
        let sender = &h.header.sender;
        self.entries.get(sender).is_some_and(|e| same(&e.last))
            || self.announced.get(sender).is_some_and(|(a, _)| same(a))
    }

    /// Judges a verified header without recording it.
    pub fn check(&self, h: &SignedHeader) -> Verdict {
        match self.check_accepted(h) {
            Verdict::Fresh => match self.announced.get(&h.header.sender) {
                Some((a, _))
                    if a.header.round == h.header.round && a.header.digest != h.header.digest =>
                {
                    match Equivocation::new(a.clone(), h.clone()) {
                        Ok(ev) => Verdict::Equivocation(Box::new(ev)),
                        Err(_) => Verdict::Fresh,
                    }
                }
                _ => Verdict::Fresh,
            },
            other => other,
        }
    }

    /// Whether this very header (sender, round and digest) was announced already.
    pub fn is_announced(&self, h: &SignedHeader) -> bool {
        self.announced
            .get(&h.header.sender)
            .is_some_and(|(prev, _)| {
                prev.header.round == h.header.round && prev.header.digest == h.header.digest
            })
    }

    /// Whether the sender announced a later round already: an announcement below it is not
    /// remembered ([`Window::announce`]).
    pub fn announced_later(&self, h: &SignedHeader) -> bool {
        self.announced
            .get(&h.header.sender)
            .is_some_and(|(prev, _)| prev.header.round > h.header.round)
    }

    /// Remembers an announced header that is fresh but not yet backed by an update, so that a
    /// conflicting update or announcement for the same round is caught whichever arrives first.
    /// Returns the proof when it conflicts with an earlier announcement. Bounded like the rest:
    /// past `capacity` senders with pending announcements, the oldest announcement makes room
    /// (a flood of identities cannot stop the table from taking new ones).
    pub fn announce(&mut self, h: SignedHeader) -> Option<Equivocation> {
        let sender = h.header.sender;
        if let Some((prev, _)) = self.announced.get(&sender) {
            if prev.header.round == h.header.round {
                if prev.header.digest != h.header.digest {
                    return Equivocation::new(prev.clone(), h).ok();
                }
                return None;
            }
            if prev.header.round > h.header.round {
                return None;
            }
        } else if self.announced.len() >= self.capacity
            && let Some((_, oldest)) = self.announced_by_age.pop_first()
        {
            self.announced.remove(&oldest);
        }
        self.clock += 1;
        if let Some((_, old)) = self.announced.insert(sender, (h, self.clock)) {
            self.announced_by_age.remove(&old);
        }
        self.announced_by_age.insert(self.clock, sender);
        None
    }

    fn forget_announcement(&mut self, sender: &PeerKey) {
        if let Some((_, at)) = self.announced.remove(sender) {
            self.announced_by_age.remove(&at);
        }
    }

    fn check_accepted(&self, h: &SignedHeader) -> Verdict {
        let round = h.header.round;
        match self.entries.get(&h.header.sender) {
            Some(e) => {
                let last = &e.last.header;
                if round > last.round {
                    Verdict::Fresh
                } else if round == last.round && h.header.digest != last.digest {
                    match Equivocation::new(e.last.clone(), h.clone()) {
                        Ok(ev) => Verdict::Equivocation(Box::new(ev)),
                        Err(_) => Verdict::Duplicate,
                    }
                } else if round == last.round {
                    Verdict::Duplicate
                } else {
                    Verdict::Stale {
                        highest: last.round,
                    }
                }
            }
            None => match self.floors[self.bucket(&h.header.sender)] {
                floor if floor > 0 && round <= floor => Verdict::BelowFloor { floor },
                _ => Verdict::Fresh,
            },
        }
    }

    /// Records an accepted header (the caller checked it was [`Verdict::Fresh`]).
    pub fn accept(&mut self, h: SignedHeader) {
        self.clock += 1;
        let sender = h.header.sender;
        if self
            .announced
            .get(&sender)
            .is_some_and(|(a, _)| a.header.round <= h.header.round)
        {
            self.forget_announcement(&sender);
        }
        if let Some(old) = self.entries.remove(&sender) {
            self.by_age.remove(&old.touched);
        } else if self.entries.len() >= self.capacity
            && let Some((_, victim)) = self.by_age.pop_first()
        {
            let e = self.entries.remove(&victim).expect("indexes agree");
            let bucket = self.bucket(&victim);
            self.floors[bucket] = self.floors[bucket].max(e.last.header.round);
        }
        self.by_age.insert(self.clock, sender);
        self.entries.insert(
            sender,
            Entry {
                last: h,
                touched: self.clock,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{Identity, RunId};
    use crate::wire::{Codec, encode_params, encode_update};

    fn h(id: &Identity, round: u64, v: f32) -> SignedHeader {
        encode_update(
            id,
            RunId::derive(b"r"),
            round,
            1,
            Codec::F32Le,
            &encode_params(&[v]),
        )
        .1
    }

    /// The window holds the last header accepted from a sender and its pending announcement,
    /// byte for byte with their signatures: the same header with another signature, or another
    /// round, is not held.
    #[test]
    fn the_headers_held_are_the_last_accepted_and_the_announced_exactly() {
        let id = Identity::from_secret([1; 32]);
        let mut w = Window::new(8);
        let accepted = h(&id, 5, 0.0);
        assert!(!w.holds(&accepted));
        w.accept(accepted.clone());
        assert!(w.holds(&accepted));
        let mut resigned = accepted.clone();
        resigned.signature[0] ^= 1;
        assert!(!w.holds(&resigned));
        assert!(!w.holds(&h(&id, 4, 0.0)));
        let announced = h(&id, 6, 0.0);
        assert!(w.announce(announced.clone()).is_none());
        assert!(w.holds(&announced) && w.holds(&accepted));
        w.accept(announced.clone());
        assert!(w.holds(&announced) && !w.holds(&accepted), "replaced");
    }

    #[test]
    fn stale_duplicate_and_equivocation() {
        let id = Identity::from_secret([1; 32]);
        let mut w = Window::new(8);
        assert_eq!(w.check(&h(&id, 5, 0.0)), Verdict::Fresh);
        w.accept(h(&id, 5, 0.0));
        assert_eq!(w.check(&h(&id, 5, 0.0)), Verdict::Duplicate);
        assert_eq!(w.check(&h(&id, 4, 0.0)), Verdict::Stale { highest: 5 });
        match w.check(&h(&id, 5, 1.0)) {
            Verdict::Equivocation(e) => {
                assert_eq!(e.offender(), id.public());
                e.verify().unwrap();
            }
            v => panic!("expected equivocation, got {v:?}"),
        }
        assert_eq!(w.check(&h(&id, 6, 0.0)), Verdict::Fresh);
    }

    #[test]
    fn an_announcement_catches_a_conflicting_update_that_arrives_later() {
        let id = Identity::from_secret([1; 32]);
        let mut w = Window::new(8);
        assert_eq!(w.check(&h(&id, 5, 0.0)), Verdict::Fresh);
        assert!(!w.is_announced(&h(&id, 5, 0.0)));
        assert_eq!(w.announce(h(&id, 5, 0.0)), None);
        assert!(w.is_announced(&h(&id, 5, 0.0)));
        // The announced update itself is still fresh and accepted.
        assert_eq!(w.check(&h(&id, 5, 0.0)), Verdict::Fresh);
        // A different update for the announced round is equivocation.
        assert!(matches!(w.check(&h(&id, 5, 1.0)), Verdict::Equivocation(_)));
        // So is a second, different announcement.
        let ev = w
            .announce(h(&id, 5, 2.0))
            .expect("conflicting announcements");
        assert_eq!(ev.offender(), id.public());
        w.accept(h(&id, 5, 0.0));
        assert_eq!(w.check(&h(&id, 6, 0.0)), Verdict::Fresh);
    }

    #[test]
    fn memory_is_bounded_and_forgetting_does_not_reopen_old_rounds() {
        let ids: Vec<Identity> = (1..=5).map(|i| Identity::from_secret([i; 32])).collect();
        let mut w = Window::new(3);
        for (i, id) in ids.iter().enumerate() {
            w.accept(h(id, 10 + i as u64, 0.0));
            assert!(w.len() <= 3);
        }
        // ids[0] (round 10) and ids[1] (round 11) were forgotten: their buckets' floors hold
        // their rounds.
        assert_eq!(w.highest(&ids[0].public()), None);
        assert!(matches!(
            w.check(&h(&ids[0], 10, 0.0)),
            Verdict::BelowFloor { floor } if floor >= 10
        ));
        assert!(matches!(
            w.check(&h(&ids[1], 11, 0.0)),
            Verdict::BelowFloor { floor } if floor >= 11
        ));
        assert_eq!(w.check(&h(&ids[0], 12, 0.0)), Verdict::Fresh);
        // A remembered sender refreshed is not evicted first.
        w.accept(h(&ids[2], 20, 0.0));
        w.accept(h(&ids[0], 30, 0.0));
        assert_eq!(w.highest(&ids[2].public()), Some(20));
        assert_eq!(w.highest(&ids[3].public()), None);
    }

    /// Sybils accepted with high rounds and then evicted raise the floors of their own buckets
    /// only: an honest sender the window has forgotten, or never met, in another bucket is still
    /// fresh at its real round (with one floor for all, it looked stale until round 1,000,000).
    #[test]
    fn evicted_sybils_with_high_rounds_do_not_make_honest_senders_stale() {
        let mut w = Window::keyed(4, [7; 32]);
        let sybils: Vec<Identity> = (100..140u8)
            .map(|i| Identity::from_secret([i; 32]))
            .collect();
        for (i, s) in sybils.iter().enumerate() {
            w.accept(h(s, 1_000_000 + i as u64, 0.0));
        }
        let poisoned: std::collections::BTreeSet<usize> =
            sybils.iter().map(|s| w.bucket(&s.public())).collect();
        let honest = (1..=255u8)
            .map(|i| Identity::from_secret([i; 32]))
            .find(|id| !poisoned.contains(&w.bucket(&id.public())))
            .expect("a bucket no Sybil fell in");
        assert_eq!(w.check(&h(&honest, 12, 0.0)), Verdict::Fresh);
        assert!(
            poisoned.len() < FLOOR_BUCKETS / 4,
            "{} buckets",
            poisoned.len()
        );
    }

    /// A full announcement table takes new announcements by forgetting the oldest, so a flood
    /// of identities cannot stop it from catching an equivocation of a sender it meets later.
    #[test]
    fn a_full_announcement_table_forgets_the_oldest() {
        let ids: Vec<Identity> = (1..=4).map(|i| Identity::from_secret([i; 32])).collect();
        let mut w = Window::new(3);
        for id in &ids[..3] {
            assert_eq!(w.announce(h(id, 5, 0.0)), None);
        }
        let late = &ids[3];
        assert_eq!(w.announce(h(late, 7, 0.0)), None);
        assert!(w.is_announced(&h(late, 7, 0.0)), "taken");
        assert!(!w.is_announced(&h(&ids[0], 5, 0.0)), "the oldest made room");
        assert!(matches!(
            w.check(&h(late, 7, 1.0)),
            Verdict::Equivocation(_)
        ));
    }
}
