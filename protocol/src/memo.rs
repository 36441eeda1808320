//! Work done once: which shared messages already passed their signature and digest checks.
//!
//! Checking a signed update costs an ed25519 verification of its header and a BLAKE3 hash of its
//! payload, and both are pure functions of its bytes (an announcement, a signed header alone,
//! costs the verification). Where one process runs many engines (the simulator), an update
//! sent to k peers reaches them as one shared allocation (`Arc<[u8]>`), and without a memo it
//! would be verified and hashed k times. A [`Memo`] shared by those
//! engines records each allocation whose signature and digest passed; an engine handed the same
//! allocation again skips those two steps, and the scan of its payload for values that are not
//! finite once a receiver of the same model dimension made it. Nothing else is skipped: every
//! engine still makes every other check (size, header, sender, run, codec, round, replay window),
//! so the verdicts are the ones the engines would reach alone.
//!
//! The memo keys an allocation by its address and holds a reference to it, so an address it
//! knows is never freed and reused for other bytes while it is known. Bytes in any other
//! allocation are unknown, even when they equal a recorded message: a copy, tampered or not, is
//! checked in full. Allocations only the memo still holds are dropped once the bytes it holds have
//! grown by a sixteenth (and at least [`SLACK`]) since the last sweep, so it keeps alive at most a
//! sixteenth more bytes than the messages still in use elsewhere, plus [`SLACK`] (a sweep looks at
//! every entry, a few per message recorded).
//!
//! An announcement reaches every node, and each decoded its header from the same bytes: the
//! memo also keeps the header decoded once a receiver decoded it (`Memo::header`); the checks
//! on what it says (run, sender, round, replay window) are still every engine's.
//!
//! The real node has no use for one: each message it receives is its own allocation.

use crate::wire::SignedHeader;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The shared messages whose signature and digest passed. See the module documentation.
#[derive(Default)]
pub struct Memo {
    inner: Mutex<Known>,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = self.lock();
        f.debug_struct("Memo")
            .field("messages", &known.by_address.len())
            .field("bytes", &known.held)
            .field("hits", &known.hits)
            .finish()
    }
}

/// What a memo knows of a message: its signature and digest passed, and (once a receiver has
/// checked it) the model dimension its payload decodes to finite values at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// The dimension at which the payload was found to decode, as [`crate::codec::validate`]
    /// checks it; `None` until a receiver checked that.
    pub decodes_at: Option<usize>,
}

/// A message held: its bytes, what passed, and its header once decoded (announcements).
struct Entry {
    bytes: Arc<[u8]>,
    checks: Checks,
    header: Option<SignedHeader>,
}

#[derive(Default)]
struct Known {
    by_address: HashMap<usize, Entry>,
    /// Bytes of the messages held.
    held: usize,
    /// The bytes held that trigger the next sweep.
    sweep_at: usize,
    /// Checks skipped because the message was known.
    hits: u64,
}

impl Known {
    /// The entry of this very allocation (not of another at the same address before it).
    fn entry(&self, bytes: &Arc<[u8]>) -> Option<&Entry> {
        let e = self.by_address.get(&address(bytes))?;
        Arc::ptr_eq(&e.bytes, bytes).then_some(e)
    }

    /// [`Known::entry`], to change.
    fn entry_mut(&mut self, bytes: &Arc<[u8]>) -> Option<&mut Entry> {
        let e = self.by_address.get_mut(&address(bytes))?;
        Arc::ptr_eq(&e.bytes, bytes).then_some(e)
    }
}

/// Bytes the memo may grow by between sweeps, at the least.
pub const SLACK: usize = 4 << 20;

fn address(bytes: &Arc<[u8]>) -> usize {
    bytes.as_ptr() as usize
}

impl Memo {
    /// An empty memo.
    pub fn new() -> Memo {
        Memo::default()
    }

    fn lock(&self) -> MutexGuard<'_, Known> {
        // A panic elsewhere cannot leave the table inconsistent: every change is one call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is known of this very allocation: `Some` when it passed its signature and digest
    /// checks (counted as a hit).
    pub fn knows(&self, bytes: &Arc<[u8]>) -> Option<Checks> {
        let mut known = self.lock();
        let checks = known.entry(bytes).map(|e| e.checks);
        known.hits += u64::from(checks.is_some());
        checks
    }

    /// The signed header of this very allocation, decoded by an earlier receiver, if its
    /// signature passed and one did ([`Memo::record_header`]; counted as a hit).
    pub(crate) fn header(&self, bytes: &Arc<[u8]>) -> Option<SignedHeader> {
        let mut known = self.lock();
        let header = known.entry(bytes).and_then(|e| e.header.clone());
        known.hits += u64::from(header.is_some());
        header
    }

    /// Records `signed` as what the header of `bytes`, already recorded, decodes to. Nothing
    /// happens for an allocation the memo does not hold.
    pub(crate) fn record_header(&self, bytes: &Arc<[u8]>, signed: &SignedHeader) {
        if let Some(e) = self.lock().entry_mut(bytes) {
            e.header = Some(signed.clone());
        }
    }

    /// Records that `bytes` passed its signature and digest checks.
    pub(crate) fn record(&self, bytes: &Arc<[u8]>) {
        let mut known = self.lock();
        let entry = Entry {
            bytes: Arc::clone(bytes),
            checks: Checks { decodes_at: None },
            header: None,
        };
        if let Some(old) = known.by_address.insert(address(bytes), entry) {
            known.held -= old.bytes.len();
        }
        known.held += bytes.len();
        if known.held >= known.sweep_at {
            known
                .by_address
                .retain(|_, e| Arc::strong_count(&e.bytes) > 1);
            let live: usize = known.by_address.values().map(|e| e.bytes.len()).sum();
            known.held = live;
            known.sweep_at = live + (live / 16).max(SLACK);
        }
    }

    /// Records that the payload of `bytes`, already recorded, decodes to `dim` finite
    /// parameters. Nothing happens for an allocation the memo does not hold.
    pub(crate) fn record_decodes(&self, bytes: &Arc<[u8]>, dim: usize) {
        if let Some(e) = self.lock().entry_mut(bytes) {
            e.checks.decodes_at = Some(dim);
        }
    }

    /// Checks skipped so far because the message was known.
    pub fn hits(&self) -> u64 {
        self.lock().hits
    }

    /// Messages held now.
    pub fn len(&self) -> usize {
        self.lock().by_address.len()
    }

    /// Bytes of the messages held now.
    pub fn held_bytes(&self) -> usize {
        self.lock().held
    }

    /// Whether the memo holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_recorded_allocation_and_no_copy_of_it() {
        let memo = Memo::new();
        let a: Arc<[u8]> = vec![1u8; 100].into();
        assert_eq!(memo.knows(&a), None);
        memo.record(&a);
        let signed = Checks { decodes_at: None };
        assert_eq!(memo.knows(&Arc::clone(&a)), Some(signed));
        let copy: Arc<[u8]> = a.to_vec().into();
        assert_eq!(
            memo.knows(&copy),
            None,
            "an equal copy is another allocation"
        );
        memo.record_decodes(&copy, 25);
        assert_eq!(memo.knows(&a), Some(signed));
        memo.record_decodes(&a, 25);
        let decodes = Checks {
            decodes_at: Some(25),
        };
        assert_eq!(memo.knows(&a), Some(decodes));
        assert_eq!(memo.hits(), 3);
    }

    #[test]
    fn drops_messages_no_one_else_holds() {
        let memo = Memo::new();
        let size = 64 << 10;
        let kept: Arc<[u8]> = vec![7u8; size].into();
        memo.record(&kept);
        for i in 0..10 * SLACK / size {
            let gone: Arc<[u8]> = vec![i as u8; size].into();
            memo.record(&gone);
        }
        assert!(
            memo.held_bytes() <= SLACK + 2 * size,
            "{} bytes held",
            memo.held_bytes()
        );
        assert_eq!(memo.held_bytes(), memo.len() * size);
        assert!(
            memo.knows(&kept).is_some(),
            "a message still held elsewhere stays known"
        );
    }
}
