//! The `top-k` codec's chain of increments (CHOCO-SGD's public estimates, Koloskova et al.,
//! ICML 2019 and ICLR 2020), turned into pulls.
//!
//! **Sender.** A node keeps a public estimate `x̂` of its model. Its update of round `r` is the
//! increment that brings `x̂` from the round of its previous update (the increment's base) to
//! `r`: the `k` coordinates where the trained model differs most from `x̂` (see
//! [`crate::sparse`]), which it adds to `x̂` exactly as every receiver does. What it did not send
//! stays in `x - x̂` and goes out in a later round (error feedback). A node that starts fresh
//! starts `x̂` as the run's initial model, which every node that started without a checkpoint
//! holds (its round is 0): its first update is an increment too. A node that starts from a
//! checkpoint or a join starts `x̂` as its model, and its first update is a snapshot: the model
//! whole (`f32`, in the `top-k` codec). With `last-fraction` ([`super::Config::last_fraction`]),
//! the increments of the last training round and of the rounds of mixing alone carry that
//! fraction of the coordinates instead: the last mixes, where peers take the copies as models,
//! then see more of what the node had not sent.
//!
//! **Pull.** A fetch names the round of the copy of the peer's estimate the asker holds
//! (`have`). A peer that kept its increments since then answers with them, oldest first, in a
//! bundle (at most [`HISTORY`], and never more bytes than one full update); otherwise (no copy
//! and no initial model, a copy older than its history, a restart since) with a snapshot of its
//! estimate, signed on first demand for each round. Either way the asker ends with a bit-identical copy of the
//! peer's current estimate, whatever rounds it missed: the scheme is the same on a static graph
//! (each neighbour asked every round: one increment per answer) and with per-round peer
//! sampling (a peer asked after `g` rounds: `g` increments, or one snapshot).
//!
//! **Receiver.** It keeps a copy per peer (at most four times the fanout, or the in-degree of a static graph if
//! larger; the least recently used evicted), applies what arrives in order, each increment exactly once, and hands the copy to
//! the mix as the peer's model: the robust rules and the outlier screen see whole models, as with
//! every codec. An increment whose base is not the copy's round (the copy was evicted or
//! replaced while the fetch was out) is unusable but costs its sender nothing
//! ([`Rejection::Unchained`](super::Rejection::Unchained)): an honest peer answers from the round
//! it was told.
//!
//! **Mix.** By default the copies are mixed as the peers' models, with the own model, by the
//! configured rule: a copy lags its peer's model by what the peer has not sent yet, so each mix
//! pulls the node back towards older values. With a consensus step `γ`
//! ([`super::Config::consensus_step`]), CHOCO-Gossip: with the rule `R` over the own estimate and
//! the copies, `x ← x + γ (R(x̂, x̂_j, ...) - x̂)` (with the mean, CHOCO's
//! `x + γ Σ_j w_ij (x̂_j - x̂)`), which keeps the average of the network's models exactly but is
//! stable only for a `γ` small against the fraction sent, so the nodes agree slowly: each keeps
//! whole the progress on its own data that it has not sent yet. When its rounds are known, from
//! the last training round on (and in the rounds of mixing alone), a node with a step mixes its
//! copies as models instead, so the model it ends with shares its peers' progress rather than
//! holding its own whole; a node run until stopped takes the step in every round.
//!
//! **What an attacker can do.** Any valid encoding: an increment with huge (finite) values, or a
//! snapshot at any round, instead of its increments. The copies it leaves are models like any
//! other, judged by the screen and the rule. A snapshot is signed in the codec's whole-model form
//! ([`crate::codec::Codec::TopKWhole`]): an honest peer signs a snapshot and an increment for the
//! same round, and evidence of equivocation needs two headers of one codec, so nobody can frame
//! it with the pair. Snapshots are not recorded in the replay window: a snapshot that conflicts
//! with its sender's announced increment is not caught, only bounded by the round checks;
//! increments are checked as any update. With a step, a forgery moves a node by `γ` times its
//! share of the mix in the training rounds and by its whole share in the last ones (the robust
//! rule and the screen bound both). A node that took a step catches up (on the lower median of
//! its draw's rounds) at most to its last training round, so answers lying about their round
//! cannot make it finish without the last round's mix of models.

use super::Rejection;
use super::receive::{Checked, Keep};
use crate::sign::PeerKey;
use crate::sparse;
use crate::wire::{self, SignedHeader};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Increments a node keeps to answer peers that missed a few rounds.
pub const HISTORY: usize = 16;

/// A receiver's copy of a peer's estimate.
#[derive(Debug)]
pub(super) struct Copy {
    /// The round of the last increment or snapshot applied.
    pub round: u64,
    pub estimate: Vec<f32>,
    /// When it was last used (a counter), for eviction.
    used: u64,
}

/// The state of the `top-k` chain: the own estimate and increments, and the copies of peers'.
#[derive(Debug)]
pub(super) struct Chain {
    /// Coordinates an increment carries.
    pub k: usize,
    /// From which round on increments carry how many coordinates instead (the configured
    /// `last-fraction`, from the last training round on).
    last: Option<(u64, usize)>,
    /// Most bytes of a signed update, and so of a bundle.
    limit: usize,
    /// The own public estimate; empty before the first update of this life.
    pub estimate: Vec<f32>,
    /// The round of the own estimate (of the last update signed).
    pub round: Option<u64>,
    /// The samples of the last update signed (the snapshot's header carries them too).
    pub samples: u64,
    /// The last signed increments, oldest first: `(base, round, bytes)`.
    history: VecDeque<(u64, u64, Arc<[u8]>)>,
    /// Increments a bundle may carry without exceeding one full update.
    history_cap: usize,
    /// The signed snapshot of the own estimate at its round, once asked for.
    snapshot: Option<(u64, Arc<[u8]>)>,
    /// The run's initial model, when this node knows it (it started without a checkpoint):
    /// every peer that started fresh has it as its estimate of round 0.
    genesis: Option<Vec<f32>>,
    copies: BTreeMap<PeerKey, Copy>,
    max_copies: usize,
    clock: u64,
    scratch: Vec<(f32, u32)>,
}

/// What a fetch is answered with.
pub(super) enum Answer {
    /// The increments after the asker's copy, in a bundle.
    Increments(Arc<[u8]>),
    /// A snapshot is needed (signed by the caller, who holds the key).
    Snapshot,
}

impl Chain {
    /// The chain of a `dim`-parameter model with increments of `k` coordinates (of `k_last`
    /// from round `from` on, with `last = Some((from, k_last))`), whose signed updates are at
    /// most `limit` bytes, keeping at most `max_copies` copies of peers' estimates.
    pub fn new(k: usize, last: Option<(u64, usize)>, limit: usize, max_copies: usize) -> Self {
        // A signed increment: the fixed prefix, a header, the padding, the payload; 4 more bytes
        // in a bundle.
        let part = crate::wire::update_len_bound(sparse::payload_len(k)) + 4;
        let history_cap = (limit.saturating_sub(3) / part).clamp(1, HISTORY);
        Chain {
            k,
            last,
            limit,
            estimate: Vec::new(),
            round: None,
            samples: 0,
            history: VecDeque::new(),
            history_cap,
            snapshot: None,
            genesis: None,
            copies: BTreeMap::new(),
            max_copies: max_copies.max(1),
            clock: 0,
            scratch: Vec::new(),
        }
    }

    /// Starts a new estimate from `model` (the first update of a life): the caller signs and
    /// sends it whole as the snapshot of `round`.
    pub fn restart(&mut self, round: u64, model: &[f32]) {
        self.estimate.clear();
        self.estimate.extend_from_slice(model);
        self.round = Some(round);
        self.history.clear();
        self.snapshot = None;
    }

    /// Coordinates the increment of `round` carries.
    pub fn k_for(&self, round: u64) -> usize {
        match self.last {
            Some((from, k)) if round >= from => k,
            _ => self.k,
        }
    }

    /// The increment payload of `round` for `model`, applied to the own estimate. Call
    /// [`Chain::restart`] first in a life.
    pub fn increment(&mut self, round: u64, model: &[f32]) -> Vec<u8> {
        let base = self.round.expect("the chain was started");
        let k = self.k_for(round);
        let payload =
            sparse::encode_increment(base, model, &mut self.estimate, k, &mut self.scratch);
        self.round = Some(round);
        self.snapshot = None;
        payload
    }

    /// Records the signed increment of `round` from `base`.
    pub fn record(&mut self, base: u64, round: u64, bytes: Arc<[u8]>) {
        if self.history.len() == self.history_cap {
            self.history.pop_front();
        }
        self.history.push_back((base, round, bytes));
        // The larger increments of the last rounds: no more than one bundle can carry (an
        // asker from before them gets the estimate whole anyway).
        while self.history.len() > 1 && self.bundle_len(0) > self.limit {
            self.history.pop_front();
        }
    }

    /// Bytes of a bundle of the kept increments from the `start`-th on.
    fn bundle_len(&self, start: usize) -> usize {
        3 + self
            .history
            .iter()
            .skip(start)
            .map(|(_, _, b)| 4 + b.len())
            .sum::<usize>()
    }

    /// Increments kept to answer peers with.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.history.len()
    }

    /// What to answer an asker whose copy is of round `have`.
    pub fn answer(&self, have: Option<u64>) -> Answer {
        let Some(have) = have else {
            return Answer::Snapshot;
        };
        // The increments after `have`: the chain must start exactly at it.
        let Some(start) = self.history.iter().position(|(base, _, _)| *base == have) else {
            // Already current: the newest increment again (the receiver skips it).
            return match self.history.back() {
                Some((_, round, bytes)) if *round == have => {
                    Answer::Increments(sparse::encode_bundle(&[bytes]).into())
                }
                _ => Answer::Snapshot,
            };
        };
        // What is kept fits in one update's bytes (see `record`); checked all the same.
        if self.bundle_len(start) > self.limit {
            return Answer::Snapshot;
        }
        let parts: Vec<&[u8]> = self
            .history
            .iter()
            .skip(start)
            .map(|(_, _, b)| &b[..])
            .collect();
        Answer::Increments(sparse::encode_bundle(&parts).into())
    }

    /// The cached snapshot of the estimate's current round, if signed already.
    pub fn snapshot(&self) -> Option<&Arc<[u8]>> {
        match (&self.snapshot, self.round) {
            (Some((r, bytes)), Some(round)) if *r == round => Some(bytes),
            _ => None,
        }
    }

    /// Keeps the signed snapshot of the current round.
    pub fn keep_snapshot(&mut self, bytes: Arc<[u8]>) {
        if let Some(round) = self.round {
            self.snapshot = Some((round, bytes));
        }
    }

    /// Knows the run's initial model: a fresh node's estimate of round 0, its own and its
    /// peers'.
    pub fn set_genesis(&mut self, model: &[f32]) {
        self.genesis = Some(model.to_vec());
    }

    /// Whether this node knows the run's initial model.
    pub fn knows_genesis(&self) -> bool {
        self.genesis.is_some()
    }

    /// The round of the copy held of `peer`; 0 (the run's initial model) for a peer of which
    /// there is no copy yet, when this node knows that model.
    pub fn have(&self, peer: &PeerKey) -> Option<u64> {
        match self.copies.get(peer) {
            Some(c) => Some(c.round),
            None => self.genesis.as_ref().map(|_| 0),
        }
    }

    /// The copy of `peer`, marked as used; started from the run's initial model for an increment
    /// of `base` 0 when there is none.
    fn copy_for(&mut self, peer: &PeerKey, base: u64) -> Option<&mut Copy> {
        if base == 0
            && !self.copies.contains_key(peer)
            && let Some(g) = &self.genesis
        {
            let g = g.clone();
            self.replace(*peer, 0, g);
        }
        self.copy_mut(peer)
    }

    /// The copy of `peer`, marked as used.
    pub fn copy_mut(&mut self, peer: &PeerKey) -> Option<&mut Copy> {
        self.clock += 1;
        let clock = self.clock;
        let c = self.copies.get_mut(peer)?;
        c.used = clock;
        Some(c)
    }

    /// Replaces the copy of `peer` by a snapshot of `round`, evicting the least recently used
    /// copy when full.
    pub fn replace(&mut self, peer: PeerKey, round: u64, estimate: Vec<f32>) {
        self.clock += 1;
        if !self.copies.contains_key(&peer)
            && self.copies.len() >= self.max_copies
            && let Some(oldest) = self
                .copies
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| *k)
        {
            self.copies.remove(&oldest);
        }
        self.copies.insert(
            peer,
            Copy {
                round,
                estimate,
                used: self.clock,
            },
        );
    }

    /// Forgets the copy of `peer` (a banned peer).
    pub fn forget(&mut self, peer: &PeerKey) {
        self.copies.remove(peer);
    }

    /// The round and values of the copy of `peer`.
    #[cfg(test)]
    pub fn copy_of(&self, peer: &PeerKey) -> Option<(u64, Vec<f32>)> {
        self.copies.get(peer).map(|c| (c.round, c.estimate.clone()))
    }
}

impl super::Engine {
    /// The round of the copy of `peer`'s estimate this node holds, to name in a fetch.
    pub(super) fn have(&self, peer: &PeerKey) -> Option<u64> {
        let chain = self.chain.as_ref()?;
        // Without a copy, the run's initial model only for a peer none of whose updates was
        // ever accepted: one whose copy was evicted would answer with increments from round 1,
        // which the replay window refuses as stale. It gets the model whole instead.
        if !chain.copies.contains_key(peer) && self.window.highest(peer).is_some() {
            return None;
        }
        chain.have(peer)
    }

    /// Signs this round's update of the chain: the increment of the trained model against the
    /// estimate, or, first in a life, the model whole as the estimate's snapshot.
    pub(super) fn sign_chained(&mut self, samples: u64) -> (Arc<[u8]>, SignedHeader) {
        let round = self.round;
        let chain = self.chain.as_mut().expect("the top-k codec");
        chain.samples = samples;
        let Some(base) = chain.round else {
            chain.restart(round, &self.model.params());
            let (bytes, signed) = self.sign(&self.model.params(), samples);
            if let Some(c) = self.chain.as_mut() {
                c.keep_snapshot(bytes.clone());
            }
            return (bytes, signed);
        };
        let payload = chain.increment(round, &self.model.params());
        let (bytes, signed) = wire::encode_update(
            &self.identity,
            self.run,
            round,
            samples,
            self.config.codec,
            &payload,
        );
        let bytes: Arc<[u8]> = bytes.into();
        if let Some(c) = self.chain.as_mut() {
            c.record(base, round, bytes.clone());
        }
        (bytes, signed)
    }

    /// What an honest node of the chain serves an asker whose copy is of round `have`.
    pub(super) fn chained_answer(&mut self, have: Option<u64>) -> Arc<[u8]> {
        let chain = self.chain.as_ref().expect("the top-k codec");
        if let Answer::Increments(bytes) = chain.answer(have) {
            return bytes;
        }
        if let Some(bytes) = chain.snapshot() {
            return bytes.clone();
        }
        let round = chain.round.expect("an update was signed");
        let (bytes, _) = self.sign_for(round, &chain.estimate, chain.samples);
        if let Some(c) = self.chain.as_mut() {
            c.keep_snapshot(bytes.clone());
        }
        bytes
    }

    /// The copy of `from` as an answer, when it already holds the increment of `round`.
    pub(super) fn chain_held(&mut self, from: &PeerKey, round: u64) -> Option<Checked> {
        let copy = self.chain.as_mut()?.copy_mut(from)?;
        (copy.round >= round).then(|| Checked {
            round: copy.round,
            params: copy.estimate.clone(),
        })
    }

    /// Applies the checked increment `payload` of `round` from `from` to its copy: the copy
    /// must be of the increment's base.
    pub(super) fn chain_apply(
        &mut self,
        from: &PeerKey,
        round: u64,
        payload: &[u8],
    ) -> Result<Vec<f32>, Rejection> {
        let dim = self.dim;
        let chain = self.chain.as_mut().expect("the top-k codec");
        let k = chain.k_for(round);
        let base = sparse::base_of(payload, dim, k).map_err(|e| Rejection::of(&e))?;
        let copy = chain.copy_for(from, base).ok_or(Rejection::Unchained)?;
        if base != copy.round {
            return Err(Rejection::Unchained);
        }
        sparse::apply_increment(payload, k, &mut copy.estimate).map_err(|e| Rejection::of(&e))?;
        copy.round = round;
        Ok(copy.estimate.clone())
    }

    /// A bundle of signed increments from `from`, applied in order: each part is checked as an
    /// update (round bounds aside: only the copy it leaves must be recent enough). A bad part
    /// stops the bundle; the parts before it stay applied (each was valid).
    pub(super) fn check_bundle(
        &mut self,
        from: PeerKey,
        bytes: &[u8],
        (floor, ceiling): (u64, u64),
    ) -> Result<Checked, Rejection> {
        let parts =
            sparse::decode_bundle(bytes, self.limit, HISTORY).map_err(|e| Rejection::of(&e))?;
        let mut last = None;
        for part in parts {
            last = Some(self.check_one(from, (part, None), (0, ceiling), true, Keep::Params)?);
        }
        // An honest peer never sends an empty bundle.
        let last = last.ok_or(Rejection::Malformed)?;
        if last.round < floor {
            return Err(Rejection::Lagging);
        }
        Ok(last)
    }
}
