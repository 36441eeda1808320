//! Replay protection: per sender, the highest round accepted, in bounded memory.
//!
//! An update at or below a sender's highest accepted round is stale or replayed. A second update
//! for the same round with a different digest is equivocation, and the stored header together
//! with the new one is the proof. Memory is bounded by `capacity` senders; when a new sender
//! arrives at capacity, the least recently accepted sender is forgotten and its round raises a
//! global floor, so forgetting never lets an old update back in: a sender this window does not
//! know must be above the floor.

use crate::evidence::Equivocation;
use crate::sign::PeerKey;
use crate::wire::SignedHeader;
use std::collections::BTreeMap;

/// The verdict on a header that passed signature checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Newer than anything accepted from this sender.
    Fresh,
    /// At or below the highest round accepted from the sender (or the floor, for an unknown one).
    Stale {
        /// The highest round already accepted (or the floor).
        highest: u64,
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

/// Highest accepted round per sender.
#[derive(Clone, Debug)]
pub struct Window {
    capacity: usize,
    entries: BTreeMap<PeerKey, Entry>,
    by_age: BTreeMap<u64, PeerKey>,
    clock: u64,
    floor: Option<u64>,
    announced: BTreeMap<PeerKey, SignedHeader>,
}

impl Window {
    /// A window remembering at most `capacity` senders (at least 1).
    pub fn new(capacity: usize) -> Self {
        Window {
            capacity: capacity.max(1),
            entries: BTreeMap::new(),
            by_age: BTreeMap::new(),
            clock: 0,
            floor: None,
            announced: BTreeMap::new(),
        }
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

    /// Judges a verified header without recording it.
    pub fn check(&self, h: &SignedHeader) -> Verdict {
        match self.check_accepted(h) {
            Verdict::Fresh => match self.announced.get(&h.header.sender) {
                Some(a)
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

    /// Remembers an announced header that is fresh but not yet backed by an update, so that a
    /// conflicting update or announcement for the same round is caught whichever arrives first.
    /// Returns the proof when it conflicts with an earlier announcement. Bounded like the rest:
    /// past `capacity` senders with pending announcements, new ones are not remembered.
    pub fn announce(&mut self, h: SignedHeader) -> Option<Equivocation> {
        let sender = h.header.sender;
        if let Some(prev) = self.announced.get(&sender) {
            if prev.header.round == h.header.round {
                if prev.header.digest != h.header.digest {
                    return Equivocation::new(prev.clone(), h).ok();
                }
                return None;
            }
            if prev.header.round > h.header.round {
                return None;
            }
        } else if self.announced.len() >= self.capacity {
            return None;
        }
        self.announced.insert(sender, h);
        None
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
            None => match self.floor {
                Some(floor) if round <= floor => Verdict::Stale { highest: floor },
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
            .is_some_and(|a| a.header.round <= h.header.round)
        {
            self.announced.remove(&sender);
        }
        if let Some(old) = self.entries.remove(&sender) {
            self.by_age.remove(&old.touched);
        } else if self.entries.len() >= self.capacity
            && let Some((_, victim)) = self.by_age.pop_first()
        {
            let e = self.entries.remove(&victim).expect("indexes agree");
            let r = e.last.header.round;
            self.floor = Some(self.floor.map_or(r, |f| f.max(r)));
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
        assert_eq!(w.announce(h(&id, 5, 0.0)), None);
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
        // ids[0] (round 10) and ids[1] (round 11) were forgotten: the floor is 11.
        assert_eq!(w.highest(&ids[0].public()), None);
        assert_eq!(
            w.check(&h(&ids[0], 10, 0.0)),
            Verdict::Stale { highest: 11 }
        );
        assert_eq!(
            w.check(&h(&ids[0], 11, 0.0)),
            Verdict::Stale { highest: 11 }
        );
        assert_eq!(w.check(&h(&ids[0], 12, 0.0)), Verdict::Fresh);
        // A remembered sender refreshed is not evicted first.
        w.accept(h(&ids[2], 20, 0.0));
        w.accept(h(&ids[0], 30, 0.0));
        assert_eq!(w.highest(&ids[2].public()), Some(20));
        assert_eq!(w.highest(&ids[3].public()), None);
    }
}
