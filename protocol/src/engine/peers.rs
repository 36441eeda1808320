//! Per-peer standing: penalty points, bans, and the connected set.

use super::Rejection;
use crate::sign::PeerKey;
use std::collections::{BTreeMap, BTreeSet};

/// Points a peer earns back per accepted update, and the most it can bank.
const CREDIT: u32 = 2;

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

#[derive(Debug, Clone)]
pub(crate) struct Peers {
    connected: BTreeSet<PeerKey>,
    points: BTreeMap<PeerKey, u32>,
    banned: BTreeMap<PeerKey, Rejection>,
    threshold: u32,
    capacity: usize,
}

impl Peers {
    pub(crate) fn new(threshold: u32, capacity: usize) -> Self {
        Peers {
            connected: BTreeSet::new(),
            points: BTreeMap::new(),
            banned: BTreeMap::new(),
            threshold,
            capacity,
        }
    }

    pub(crate) fn is_banned(&self, peer: &PeerKey) -> bool {
        self.banned.contains_key(peer)
    }

    /// Records a connection; if the peer is banned it stays out and the ban's reason is returned.
    pub(crate) fn up(&mut self, peer: PeerKey) -> Option<Rejection> {
        if let Some(reason) = self.banned.get(&peer) {
            return Some(*reason);
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

    pub(crate) fn credit(&mut self, peer: &PeerKey) {
        if let Some(p) = self.points.get_mut(peer) {
            *p = p.saturating_sub(CREDIT);
            if *p == 0 {
                self.points.remove(peer);
            }
        }
    }

    pub(crate) fn penalize(&mut self, peer: PeerKey, reason: Rejection) -> Standing {
        if self.is_banned(&peer) {
            return Standing::AlreadyBanned;
        }
        let threshold = self.threshold;
        let full = self.points.len() >= self.capacity && !self.points.contains_key(&peer);
        let points = if full { threshold } else { 0 };
        let p = self.points.entry(peer).or_insert(points);
        *p = p.saturating_add(reason.penalty(threshold));
        if *p >= threshold {
            self.ban(peer, reason);
            Standing::Banned
        } else {
            Standing::Penalized(*p)
        }
    }

    /// Bans a peer. The ban list is bounded by the capacity too: past it, the lowest key is
    /// forgotten (a Sybil flood of fresh keys cannot grow memory without bound).
    pub(crate) fn ban(&mut self, peer: PeerKey, reason: Rejection) -> bool {
        self.points.remove(&peer);
        self.connected.remove(&peer);
        if self.banned.len() >= self.capacity && !self.banned.contains_key(&peer) {
            self.banned.pop_first();
        }
        self.banned.insert(peer, reason).is_none()
    }

    pub(crate) fn banned(&self) -> impl Iterator<Item = (PeerKey, Rejection)> + '_ {
        self.banned.iter().map(|(k, r)| (*k, *r))
    }
}
