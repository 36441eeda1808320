//! Messages from peers: pushed updates, gossip, and the checks every signed update passes.

use super::peers::Standing;
use super::{Engine, Output, Pending, Rejection};
use crate::evidence::Equivocation;
use crate::replay;
use crate::sign::PeerKey;
use crate::wire;
use std::sync::Arc;

/// A signed update that passed every check: its round and parameters.
pub(super) struct Checked {
    pub round: u64,
    pub params: Vec<f32>,
}

impl Engine {
    pub(super) fn reject(&mut self, peer: PeerKey, reason: Rejection) {
        *self.stats.rejected.entry(reason).or_default() += 1;
        if reason.penalty(self.config.ban_threshold) == 0 {
            return;
        }
        match self.peers.penalize(peer, reason) {
            Standing::Penalized(points) => {
                self.outputs.push_back(Output::Penalize {
                    peer,
                    reason,
                    points,
                });
            }
            Standing::Banned => {
                self.stats.bans += 1;
                self.pending.remove(&peer);
                self.outputs.push_back(Output::Ban { peer, reason });
            }
            Standing::AlreadyBanned => {}
        }
    }

    /// Runs every check of a signed update from `from` and records it in the replay window; an
    /// update of a round below `floor` is `lagging`. A `fetched` update (the answer to this
    /// node's own request) may be one the window already holds, or older: it is the peer's latest
    /// as far as the peer knows, not a replay pushed at this node. A failure is returned with its
    /// reason, for the caller to penalise; equivocation is handled here.
    pub(super) fn check(
        &mut self,
        from: PeerKey,
        bytes: &[u8],
        floor: u64,
        fetched: bool,
    ) -> Result<Checked, Rejection> {
        let update = wire::decode_update(bytes, self.limit).map_err(|e| Rejection::of(&e))?;
        let h = update.header();
        if h.sender != from {
            return Err(Rejection::Impersonation);
        }
        if h.run != self.run {
            return Err(Rejection::WrongRun);
        }
        let round = h.round;
        if round < floor {
            return Err(Rejection::Lagging);
        }
        let fresh = match self.window.check(&update.signed) {
            replay::Verdict::Fresh => true,
            replay::Verdict::Stale { .. } | replay::Verdict::Duplicate if fetched => false,
            replay::Verdict::Stale { .. } => return Err(Rejection::Stale),
            replay::Verdict::Duplicate => return Err(Rejection::Duplicate),
            replay::Verdict::Equivocation(ev) => {
                self.on_equivocation(*ev);
                return Err(Rejection::Equivocation);
            }
        };
        let mut params = Vec::new();
        update
            .params_into(self.dim, &mut params)
            .map_err(|e| Rejection::of(&e))?;
        if fresh {
            self.window.accept(update.signed);
            self.peers.credit(&from);
        }
        Ok(Checked { round, params })
    }

    pub(super) fn on_update(&mut self, from: PeerKey, bytes: &[u8]) {
        if self.peers.is_banned(&from) {
            return;
        }
        let floor = self.round.saturating_sub(self.config.max_staleness);
        let Checked { round, params } = match self.check(from, bytes, floor, false) {
            Ok(c) => c,
            // Counted where the proof was handled.
            Err(Rejection::Equivocation) => return,
            Err(reason) => return self.reject(from, reason),
        };
        self.stats.accepted += 1;
        if self.pending.len() >= self.config.max_peers && !self.pending.contains_key(&from) {
            // Bounded buffer: drop the oldest pending update to make room.
            if let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.round)
                .map(|(k, _)| *k)
            {
                self.pending.remove(&oldest);
            }
        }
        self.pending.insert(from, Pending { round, params });
    }

    pub(super) fn on_gossip(&mut self, from: PeerKey, bytes: &[u8]) {
        if self.peers.is_banned(&from) {
            return;
        }
        if wire::is_announcement(bytes) {
            match wire::decode_announcement(bytes) {
                Ok(signed) if signed.header.run != self.run => {
                    self.reject(from, Rejection::WrongRun)
                }
                Ok(signed) => match self.window.check(&signed) {
                    replay::Verdict::Equivocation(ev) => self.on_equivocation(*ev),
                    // Remembered, so a conflicting update that arrives later is caught too.
                    replay::Verdict::Fresh => {
                        if let Some(ev) = self.window.announce(signed) {
                            self.on_equivocation(ev);
                        }
                    }
                    replay::Verdict::Stale { .. } | replay::Verdict::Duplicate => {}
                },
                Err(e) => self.reject(from, Rejection::of(&e)),
            }
        } else if wire::is_evidence(bytes) {
            match Equivocation::decode(bytes) {
                Ok(ev) if ev.a.header.run == self.run => {
                    if !self.peers.is_banned(&ev.offender()) {
                        self.on_equivocation(ev);
                    }
                }
                Ok(_) => self.reject(from, Rejection::WrongRun),
                Err(e) => self.reject(from, Rejection::of(&e)),
            }
        } else {
            self.reject(from, Rejection::Malformed);
        }
    }

    pub(super) fn on_equivocation(&mut self, ev: Equivocation) {
        let offender = ev.offender();
        *self
            .stats
            .rejected
            .entry(Rejection::Equivocation)
            .or_default() += 1;
        self.pending.remove(&offender);
        if self.peers.ban(offender, Rejection::Equivocation) {
            self.stats.bans += 1;
            self.outputs.push_back(Output::Ban {
                peer: offender,
                reason: Rejection::Equivocation,
            });
            let bytes: Arc<[u8]> = ev.encode().into();
            self.broadcast(bytes);
        }
    }

    /// Answers a peer's fetch with the latest signed update.
    pub(super) fn serve(&mut self, from: PeerKey, request: u64) {
        let update = if self.peers.is_banned(&from) {
            None
        } else {
            self.last_update.clone()
        };
        if let Some(u) = &update {
            self.stats.bytes_sent += u.len() as u64;
        }
        self.outputs.push_back(Output::Serve {
            to: from,
            request,
            update,
        });
    }
}
