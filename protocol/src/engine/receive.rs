//! Messages from peers: fetches to answer, pushed updates, gossip, and the checks every signed
//! update passes.

use super::hold::Held;
use super::peers::Standing;
use super::{Engine, GossipVerdict, Input, Output, Phase, Rejection};
use crate::evidence::Equivocation;
use crate::replay;
use crate::sign::PeerKey;
use crate::wire;
use std::sync::Arc;
use std::time::Duration;

/// Fetches of this node's model a peer gets answered in one round.
pub(super) const FETCHES_PER_ROUND: u32 = 8;

/// A signed update that passed every check: its round and parameters (empty when the caller
/// asked for the check alone).
pub(super) struct Checked {
    pub round: u64,
    pub params: Vec<f32>,
}

/// What a caller of [`Engine::check`] keeps of an update that passes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// Its parameters, decoded.
    Params,
    /// Its bytes (decoded later): the parameters are checked in place and not copied. An
    /// increment of the `top-k` chain, or a snapshot of it, is always decoded.
    Bytes,
}

impl Engine {
    /// Whether `key` may take part: the run lists no members, or `key` is one (or this node).
    pub(super) fn admits(&self, key: &PeerKey) -> bool {
        *key == self.me || self.members.as_deref().is_none_or(|m| m.admits(key))
    }

    /// The peer behind `input` when the run lists its members and that peer is not one.
    pub(super) fn outsider(&self, input: &Input) -> Option<PeerKey> {
        self.members.as_ref()?;
        let peer = match input {
            Input::PeerUp { peer }
            | Input::PeerDown { peer }
            | Input::Fetched { peer, .. }
            | Input::Busy { peer }
            | Input::Unframed { peer, .. } => peer,
            Input::UpdateReceived { from, .. } | Input::FetchRequested { from, .. } => from,
            Input::GossipReceived { author, .. } => author,
            Input::Start { .. } | Input::Trained { .. } | Input::Tick | Input::Intel { .. } => {
                return None;
            }
        };
        (!self.admits(peer)).then_some(*peer)
    }

    /// Refuses `input` of `peer`, a key outside the run's members: its connection is answered
    /// with a ban (the engine keeps no record of it: the list refuses it already), a fetch of
    /// it with nothing, its gossip is rejected, and everything else it sends is dropped. Each is
    /// counted as `not_member`, at no points (see [`Rejection::NotMember`]).
    pub(super) fn refuse_outsider(&mut self, peer: PeerKey, input: Input) {
        let reason = Rejection::NotMember;
        match input {
            // Nothing was up to take down.
            Input::PeerDown { .. } => return,
            Input::PeerUp { .. } => self.outputs.push_back(Output::Ban { peer, reason }),
            Input::FetchRequested { request, .. } => self.outputs.push_back(Output::Serve {
                to: peer,
                request,
                update: None,
            }),
            Input::GossipReceived { message, .. } => {
                self.outputs.push_back(Output::GossipChecked {
                    message,
                    verdict: GossipVerdict::Reject,
                });
            }
            _ => {}
        }
        *self.stats.rejected.entry(reason).or_default() += 1;
    }

    pub(super) fn reject(&mut self, peer: PeerKey, reason: Rejection) {
        *self.stats.rejected.entry(reason).or_default() += 1;
        if reason.penalty(self.config.ban_threshold) == 0 {
            return;
        }
        match self.peers.penalize(peer, reason, self.round) {
            Standing::Penalized(points) => {
                self.outputs.push_back(Output::Penalize {
                    peer,
                    reason,
                    points,
                });
            }
            Standing::Banned => {
                self.stats.bans += 1;
                if let Some(c) = self.chain.as_mut() {
                    c.forget(&peer);
                }
                self.answers.remove(&peer);
                self.unhold(&peer);
                self.outputs.push_back(Output::Ban { peer, reason });
            }
            Standing::AlreadyBanned => {}
        }
    }

    /// Runs every check of a signed update from `from` and records it in the replay window; an
    /// update of a round below `floor` is `lagging`. A `fetched` update (the answer to this
    /// node's own request) may be the one the window already holds from that peer: a peer that
    /// has not signed a newer one serves it again. A failure is returned with its reason, for
    /// the caller to penalise; equivocation is handled here.
    pub(super) fn check(
        &mut self,
        from: PeerKey,
        bytes: &Arc<[u8]>,
        (floor, ceiling): (u64, u64),
        fetched: bool,
        keep: Keep,
    ) -> Result<Checked, Rejection> {
        if self.chain.is_some() && bytes.first() == Some(&crate::sparse::KIND_BUNDLE) {
            return self.check_bundle(from, bytes, (floor, ceiling));
        }
        self.check_one(from, (bytes, Some(bytes)), (floor, ceiling), fetched, keep)
    }

    /// [`Engine::check`] of one signed update (never a bundle). `shared` is the allocation
    /// `bytes` is, when they are a whole one: the memo of checks done once (see
    /// [`Engine::share_checks`]) may know it.
    pub(super) fn check_one(
        &mut self,
        from: PeerKey,
        (bytes, shared): (&[u8], Option<&Arc<[u8]>>),
        (floor, ceiling): (u64, u64),
        fetched: bool,
        keep: Keep,
    ) -> Result<Checked, Rejection> {
        // These very bytes passed the signature and digest checks in another engine.
        let memo = shared.zip(self.memo.clone());
        let checks = memo.as_ref().and_then(|(b, m)| m.knows(b));
        let known = checks.is_some();
        let signature = wire::Signature::unless_known(known);
        // Header and signature first; the payload's hash and copy only for an update that
        // passes the cheap checks below.
        let update = wire::decode_update_ref_as(bytes, self.limit, signature)
            .map_err(|e| Rejection::of(&e))?;
        let h = update.header();
        if h.sender != from {
            return Err(Rejection::Impersonation);
        }
        if h.run != self.run {
            return Err(Rejection::WrongRun);
        }
        if !self.config.codec.admits(h.codec) {
            return Err(Rejection::WrongCodec);
        }
        let round = h.round;
        // With `top-k`, an update in the configured codec is an increment (its length is
        // checked when it is applied), one in the whole-model form a snapshot.
        let increment = self.chain.is_some() && h.codec == self.config.codec;
        // An increment the copy already holds (a peer serves its newest one again).
        if increment && let Some(held) = self.chain_held(&from, round) {
            return Ok(held);
        }
        if round < floor {
            return Err(Rejection::Lagging);
        }
        // Before the replay window records anything: a round far ahead is not remembered.
        if round > ceiling {
            return Err(Rejection::Ahead);
        }
        // A snapshot of the sender's estimate (`top-k`) stays out of the replay window: its
        // sender signs an increment of the same round too (see `chain`).
        let snapshot = self.chain.is_some() && !increment;
        let fresh = snapshot
            || match self.window.check(&update.signed) {
                replay::Verdict::Fresh => true,
                // A peer serves its newest update: the one it served before, when it has not
                // signed another since (never an older one: that is a replay).
                replay::Verdict::Duplicate if fetched => false,
                replay::Verdict::Stale { .. } => return Err(Rejection::Stale),
                replay::Verdict::BelowFloor { .. } => return Err(Rejection::Forgotten),
                replay::Verdict::Duplicate => return Err(Rejection::Duplicate),
                replay::Verdict::Equivocation(ev) => {
                    self.on_equivocation(*ev);
                    return Err(Rejection::Equivocation);
                }
            };
        if !known {
            update.verify_payload().map_err(|e| Rejection::of(&e))?;
            if let Some((b, m)) = &memo {
                m.record(b);
            }
        }
        let params = if increment {
            self.chain_apply(&from, round, update.payload())?
        } else if keep == Keep::Bytes && !snapshot {
            if checks.and_then(|c| c.decodes_at) != Some(self.dim) {
                crate::codec::validate(h.codec, update.payload(), self.dim)
                    .map_err(|e| Rejection::of(&e))?;
                if let Some((b, m)) = &memo {
                    m.record_decodes(b, self.dim);
                }
            }
            Vec::new()
        } else {
            let mut params = Vec::new();
            update
                .params_into(self.dim, &mut params)
                .map_err(|e| Rejection::of(&e))?;
            params
        };
        if snapshot && let Some(c) = self.chain.as_mut() {
            c.replace(from, round, params.clone());
        } else if fresh {
            self.window.accept(update.signed);
        }
        if fresh {
            self.peers.credit(&from);
        }
        Ok(Checked { round, params })
    }

    /// Decodes an announcement, its signature verified unless the memo of shared checks knows
    /// these very bytes (see [`Engine::share_checks`]); the header another receiver decoded from
    /// them, if the memo holds it.
    fn announcement(&self, bytes: &Arc<[u8]>) -> Result<wire::SignedHeader, wire::Error> {
        let Some(m) = &self.memo else {
            return wire::decode_announcement_as(bytes, wire::Signature::Verify);
        };
        if let Some(signed) = m.header(bytes) {
            return Ok(signed);
        }
        let known = m.knows(bytes).is_some();
        let signed = wire::decode_announcement_as(bytes, wire::Signature::unless_known(known))?;
        if !known {
            m.record(bytes);
        }
        m.record_header(bytes, &signed);
        Ok(signed)
    }

    /// An update pushed at this node unasked: never mixed, and not even checked (checking costs
    /// a hash and a signature; that is what a flood would spend). It costs the transport-
    /// authenticated sender `unsolicited` points.
    pub(super) fn on_push(&mut self, from: PeerKey) {
        if !self.peers.is_banned(&from) {
            self.reject(from, Rejection::Unsolicited);
        }
    }

    /// Checks a gossip message published by `author`: an announcement must be its author's own,
    /// of this run, and new; evidence must prove an equivocation of this run. Anything that fails
    /// to decode, or names another run or another sender, is rejected and costs the author.
    pub(super) fn on_gossip(&mut self, author: PeerKey, bytes: &Arc<[u8]>) -> GossipVerdict {
        if self.peers.is_banned(&author) {
            return GossipVerdict::Ignore;
        }
        let rejected = |e: &mut Self, reason| {
            e.reject(author, reason);
            GossipVerdict::Reject
        };
        if wire::is_announcement(bytes) {
            match self.announcement(bytes) {
                Ok(signed) if signed.header.run != self.run => rejected(self, Rejection::WrongRun),
                // Honest nodes publish only their own announcements.
                Ok(signed) if signed.header.sender != author => {
                    rejected(self, Rejection::Impersonation)
                }
                // Not remembered: it would hold a slot of the bounded announcement table.
                Ok(signed)
                    if signed.header.round > self.round.saturating_add(self.config.max_ahead) =>
                {
                    GossipVerdict::Ignore
                }
                Ok(signed) => match self.window.check(&signed) {
                    replay::Verdict::Equivocation(ev) => {
                        self.on_equivocation(*ev);
                        GossipVerdict::Ignore
                    }
                    // Remembered, so a conflicting update that arrives later is caught too.
                    // Below the author's latest announcement: not remembered, so not forwarded
                    // (else one identity has honest nodes relay a message per lower round and
                    // digest); not penalised, as gossip may reorder an honest author's rounds.
                    replay::Verdict::Fresh
                        if self.window.is_announced(&signed)
                            || self.window.announced_later(&signed) =>
                    {
                        GossipVerdict::Ignore
                    }
                    replay::Verdict::Fresh => match self.window.announce(signed) {
                        Some(ev) => {
                            self.on_equivocation(ev);
                            GossipVerdict::Ignore
                        }
                        None => GossipVerdict::Accept,
                    },
                    replay::Verdict::Stale { .. }
                    | replay::Verdict::BelowFloor { .. }
                    | replay::Verdict::Duplicate => GossipVerdict::Ignore,
                },
                Err(e) => rejected(self, Rejection::of(&e)),
            }
        } else if wire::is_evidence(bytes) {
            // What the proof claims decides whether it is worth its signature checks. A proof
            // of another run is its author's fault whatever its signatures: it is refused unchecked.
            match Equivocation::decode_unverified(bytes) {
                Ok(ev) if ev.a.header.run != self.run => rejected(self, Rejection::WrongRun),
                Ok(ev) if !self.worth_proving(&ev.offender()) => GossipVerdict::Ignore,
                Ok(ev) => match ev.verify_unless(|h| self.window.holds(h)) {
                    Ok(()) => {
                        self.on_equivocation(ev);
                        GossipVerdict::Accept
                    }
                    Err(e) => rejected(self, Rejection::of(&e)),
                },
                Err(e) => rejected(self, Rejection::of(&e)),
            }
        } else {
            rejected(self, Rejection::Malformed)
        }
    }

    /// Whether a proof that `offender` equivocated is worth checking and acting on: `offender`
    /// is not banned already, may take part in the run, and this node has heard of it (it is
    /// connected, or it announced or sent an update this node accepted). Anyone can make keys
    /// and prove them equivocating: acting on a proof against a key this node never heard of
    /// would have every node check two signatures, spend a slot of its bounded ban table and
    /// relay the proof, for each key made for the purpose. Such a proof is dropped, not kept:
    /// should the key connect later and equivocate again, this node catches it as any node
    /// does, when both halves reach it. Against a key outside the run's members it proves
    /// nothing the list does not.
    fn worth_proving(&self, offender: &PeerKey) -> bool {
        !self.peers.is_banned(offender)
            && self.admits(offender)
            && (self.peers.connected_to(offender) || self.window.latest(offender).is_some())
    }

    pub(super) fn on_equivocation(&mut self, ev: Equivocation) {
        let offender = ev.offender();
        *self
            .stats
            .rejected
            .entry(Rejection::Equivocation)
            .or_default() += 1;
        self.answers.remove(&offender);
        self.unhold(&offender);
        let already = self.peers.is_banned(&offender);
        if self.peers.ban(offender, Rejection::Equivocation) {
            self.stats.bans += 1;
            self.outputs.push_back(Output::Ban {
                peer: offender,
                reason: Rejection::Equivocation,
            });
        }
        // The proof goes on even when a full table has no room for the ban of a key never met:
        // the peers it is connected to need it.
        if !already {
            let bytes: Arc<[u8]> = ev.encode().into();
            self.broadcast(bytes);
        }
    }

    /// A peer asks for this node's update of `round` or later: answered at once when it has
    /// signed that round (or the asker wants whatever there is, or this node trains no more
    /// rounds), otherwise held until it has, or for half a round timeout. One request per peer
    /// is held (a newer one answers the older at once), and at most `max-peers` in all.
    pub(super) fn on_fetch_request(
        &mut self,
        now: Duration,
        from: PeerKey,
        request: u64,
        round: Option<u64>,
        have: Option<u64>,
    ) {
        // A model is the largest thing a node sends: a peer may have it a few times a round
        // (an honest one asks once; a faster one, or a joiner, a few times), and after that
        // gets nothing until the next round.
        let full = self.fetches.len() >= self.config.max_peers && !self.fetches.contains_key(&from);
        let served = self.fetches.entry(from).or_default();
        *served += 1;
        if *served > FETCHES_PER_ROUND || full {
            self.outputs.push_back(Output::Serve {
                to: from,
                request,
                update: None,
            });
            return;
        }
        if *served == 1 && self.config.uplink_mbps.is_some() {
            self.shares.charge(from);
        }
        let waits = round.is_some_and(|r| self.served_round.is_none_or(|have| have < r))
            // A node still joining holds too: it will sign soon, and answering "nothing" at once
            // would let the asker race on alone.
            && !matches!(self.phase, Phase::Finished)
            && !self.peers.is_banned(&from);
        if !waits || (self.held.len() >= self.config.max_peers && !self.held.contains_key(&from)) {
            return self.answer(now, from, request, have, round.is_none());
        }
        let hold = Duration::from_millis(self.config.round_timeout_ms / 2);
        let held = Held {
            request,
            round: round.unwrap_or(0),
            have,
            until: now.checked_add(hold).unwrap_or(Duration::MAX),
        };
        if let Some(older) = self.held.insert(from, held) {
            self.answer(now, from, older.request, older.have, false);
        }
    }

    /// Answers the held requests this node can answer now: those for a round it has signed,
    /// and, when `expired`, those whose time is up.
    pub(super) fn answer_held(&mut self, now: Duration, expired: bool) {
        let have = self.served_round.unwrap_or(0);
        let mut due: Vec<(Duration, PeerKey, u64, Option<u64>)> = self
            .held
            .due(have, expired.then_some(now))
            .into_iter()
            .map(|(k, h)| (h.until, k, h.request, h.have))
            .collect();
        if self.config.uplink_mbps.is_some() {
            // The uplink may not carry them all in time: the askers that asked least over the
            // last rounds first (module `share`), then first come, first served.
            let shares = &self.shares;
            due.sort_by(|a, b| {
                shares
                    .of(&a.1)
                    .total_cmp(&shares.of(&b.1))
                    .then(a.0.cmp(&b.0))
            });
        }
        for (_, peer, request, copy) in due {
            self.held.remove(&peer);
            self.answer(now, peer, request, copy, false);
        }
    }

    /// Drops the fetch held for `peer`, if any, telling the driver it will not be answered.
    pub(super) fn unhold(&mut self, peer: &PeerKey) {
        if let Some(h) = self.held.remove(peer) {
            self.outputs.push_back(Output::Unanswered {
                to: *peer,
                request: h.request,
            });
        }
    }

    /// When the earliest held request expires.
    pub(super) fn held_until(&self) -> Option<Duration> {
        self.held.earliest()
    }

    /// Answers a fetch with this node's latest signed update (what its attack makes of it, for
    /// an attacker; with the `top-k` codec, the increments since the asker's copy of round
    /// `have`, or a snapshot), or nothing for a banned peer; or refuses it as busy when the
    /// uplink would not carry it in time (see [`Engine::uplink_full`]). A fetch for whatever the
    /// node has (`any`: a joining or restarted peer's, once a life) is not refused for a full
    /// uplink as the peer's first fetch of the round (a repeat is, like any other, unless the
    /// uplink is idle); the share rule applies to it as to any fetch ([`Engine::over_share`]).
    fn answer(&mut self, now: Duration, to: PeerKey, request: u64, have: Option<u64>, any: bool) {
        let update = if self.peers.is_banned(&to) {
            None
        } else {
            match self.adversary.clone() {
                Some(adv) => self.forged_for(&adv, to),
                None if self.chain.is_some() && self.last_update.is_some() => {
                    Some(self.chained_answer(have))
                }
                None => self.last_update.clone(),
            }
        };
        if let Some(u) = &update {
            let repeat = self.fetches.get(&to).is_some_and(|&n| n > 1);
            let full = self.uplink_full(now, u.len(), repeat);
            if full && !repeat {
                // A first fetch that does not fit: the uplink is contended (module `share`).
                let timeout = Duration::from_millis(self.config.round_timeout_ms);
                self.shares.contended_until(now.saturating_add(timeout));
            }
            // A joiner's fetch is exempt from a full uplink as its first of the round only:
            // asked for again and again, it would let one identity keep the uplink full. It is
            // not exempt from the share rule (a joiner asks once and holds 1, under its floor).
            let exempt = any && !repeat;
            if (full && !exempt) || self.over_share(now, &to) {
                self.stats.refused_busy += 1;
                self.outputs.push_back(Output::Busy { to, request });
                return;
            }
            self.stats.updates_sent += 1;
            self.stats.bytes_sent += u.len() as u64;
            if let Some(mbps) = self.config.uplink_mbps {
                let transfer = transfer_time(u.len(), mbps);
                self.uplink_free = self.uplink_free.max(now).saturating_add(transfer);
            }
        }
        self.outputs.push_back(Output::Serve {
            to,
            request,
            update,
        });
    }
}

/// How long an uplink of `mbps` Mbit/s takes to carry `bytes` bytes (saturating: a rate so low
/// that the time overflows is forever).
fn transfer_time(bytes: usize, mbps: f64) -> Duration {
    Duration::try_from_secs_f64(bytes as f64 * 8.0 / (mbps * 1e6)).unwrap_or(Duration::MAX)
}

impl Engine {
    /// Whether an answer of `bytes` bytes served at `now` would not have left the uplink within
    /// a quarter of a round timeout: the answers served before it (as an uplink of
    /// [`Config::uplink_mbps`] carries them, one after the other) and its own bytes take
    /// longer, so it would reach an asker, which waits at most a round timeout after its own
    /// training (and may have asked for a round this node signs late), late or not at all. (A
    /// quarter rather than a half: 89.7% against 88.8% on 16 MNIST nodes with 5 Mbit/s
    /// uplinks, seeds 1-5.) An idle uplink always serves, however slow: a node whose single
    /// model takes longer than that still serves one at a time, and its data stay in the mix.
    /// A peer's `repeat` fetch in the round (a retry, or an attacker fetching again and again
    /// to fill the uplink) is served only by an idle uplink, so the peers asking for the first
    /// time come first: each identity takes at most one answer a round from a busy uplink.
    /// Only for an honest node, and never on a fixed graph, where the neighbours wait for every
    /// answer (and so pace their rounds to the uplink).
    ///
    /// [`Config::uplink_mbps`]: super::Config::uplink_mbps
    fn uplink_full(&self, now: Duration, bytes: usize, repeat: bool) -> bool {
        let Some(mbps) = self.refusing_rate() else {
            return false;
        };
        let backlog = self.uplink_free.saturating_sub(now);
        if backlog.is_zero() {
            return false;
        }
        let limit = Duration::from_millis(self.config.round_timeout_ms / 4);
        repeat || backlog.saturating_add(transfer_time(bytes, mbps)) > limit
    }

    /// The uplink's rate if this node refuses fetches as busy (an honest node with
    /// [`Config::uplink_mbps`] set, not on a fixed graph), else `None`.
    ///
    /// [`Config::uplink_mbps`]: super::Config::uplink_mbps
    fn refusing_rate(&self) -> Option<f64> {
        let mbps = self.config.uplink_mbps?;
        (self.adversary.is_none() && self.weights.is_empty()).then_some(mbps)
    }

    /// Whether `peer` asked for more than its share of the fetches over the last rounds while
    /// the uplink is contended: it refused a peer's first fetch of a round for its
    /// backlog within the last round timeout (module `share`). Such a peer is refused even at
    /// a moment the uplink is idle, which an attacker asking every round would otherwise take.
    fn over_share(&self, now: Duration, peer: &PeerKey) -> bool {
        self.refusing_rate().is_some() && self.shares.contended(now) && self.shares.heavy(peer)
    }
}
