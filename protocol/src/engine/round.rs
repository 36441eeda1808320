//! The round schedule: train, sign, pull the models of the peers the node draws, screen and mix,
//! checkpoint, next round.
//!
//! Models move by pull. After its local training for round `r` a node signs its model, announces
//! it by gossip, and asks `fanout` peers drawn at random from the connected ones for their
//! update of round `r` or later ([`Output::Fetch`]). A peer that has not signed round `r` yet holds
//! the request until it has, or for half a round timeout, then answers with the newest update it
//! has (see `receive`). The node mixes when `wait-for` of the drawn peers have answered with a
//! usable model (or all of them have answered), or at the round's deadline. Updates pushed at it
//! unasked are never mixed.
//!
//! So the share of a mix that Byzantine peers hold is bounded by the node's own draw: with `b` of
//! its `c` connected peers Byzantine, the number of Byzantine models among the `s` it draws is
//! hypergeometric, `P(k) = C(b, k) C(c - b, s - k) / C(c, s)`, with mean `s b / c`, however fast,
//! however often, and under however many names the attackers send.

use super::receive::{Checked, Keep};
use super::{
    Answer, Engine, InputError, Kept, Model, Output, Own, Pending, Phase, REPLAY_HISTORY,
    Rejection, screen,
};
use crate::aggregate;
use crate::codec::{self, Codec};
use crate::sign::PeerKey;
use crate::topology::sample_peers;
use crate::wire::{self, SignedHeader};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

impl Engine {
    /// Starts the round after `self.round`, or finishes when the configured rounds are done.
    pub(super) fn start_round(&mut self) {
        let last = self
            .config
            .rounds
            .map(|r| r.saturating_add(self.config.final_mix_rounds));
        // A round at the largest has no next: the node finishes rather than sign it again (a
        // join can take its round from peers; see `join`).
        if last.is_some_and(|r| self.round >= r) || self.round == u64::MAX {
            self.phase = Phase::Finished;
            if self.config.checkpoint_every > 0 && self.checkpointed < self.round {
                self.checkpoint(self.round);
            }
            self.outputs.push_back(Output::Finished);
            return;
        }
        self.round += 1;
        self.fetches.clear();
        // A fetch held into the new round is its asker's fetch of it: asking again is a repeat
        // (not charged again to its share: it was counted when asked).
        for peer in self.held.keys() {
            self.fetches.insert(*peer, 1);
        }
        self.retries.clear();
        if self.config.uplink_mbps.is_some() {
            self.shares.next_round(self.peers.connected_keys());
        }
        for peer in self.peers.tick(self.round) {
            self.outputs.push_back(Output::Unban { peer });
        }
        self.phase = Phase::Training;
        if !self.trains_free() {
            self.outputs.push_back(Output::Train { round: self.round });
        }
    }

    fn checkpoint(&mut self, round: u64) {
        self.checkpointed = round;
        self.outputs.push_back(Output::Checkpoint { round });
    }

    pub(super) fn on_trained(
        &mut self,
        now: Duration,
        round: u64,
        params: Vec<f32>,
        samples: u64,
    ) -> Result<(), InputError> {
        if !matches!(self.phase, Phase::Training) || round != self.round {
            let expected = match self.phase {
                Phase::Training => format!("round {} is being trained", self.round),
                _ => "no training was asked for".to_owned(),
            };
            return Err(InputError::UnexpectedTraining { round, expected });
        }
        if params.len() != self.dim {
            return Err(InputError::Dimension {
                expected: self.dim,
                got: params.len(),
            });
        }
        let mut before = std::mem::replace(&mut self.model, Own::Params(params));
        if self.adversary.is_some() {
            self.reference = before.take().into_vec();
        }
        // The previous model goes before signing allocates the update: to the next mix of any
        // engine sharing spares, if it was the mix this model was trained from.
        if let (Some(spares), Own::Mixed(mix)) = (&self.spares, before)
            && let Ok(mix) = Arc::try_unwrap(mix)
        {
            spares.give(mix);
        }
        // Whatever goes out now is signed for this round.
        self.signed = self.signed.max(self.round);
        match self.adversary.clone() {
            None => {
                let (bytes, signed) = if self.chain.is_some() {
                    self.sign_chained(samples)
                } else {
                    self.sign(&self.model.params(), samples)
                };
                if self.config.codec == Codec::F32Le {
                    // The update's payload is the model, bit for bit (module `own`).
                    self.model = Own::signed(Arc::clone(&bytes), self.dim);
                }
                self.last_update = Some(bytes);
                self.announce(&signed);
            }
            Some(adv) => self.plan_round(&adv, samples),
        }
        self.served_round = Some(self.round);
        self.answer_held(now, false);
        // Draw the peers to mix with, and ask each for its update of this round.
        let drawn = sample_peers(&self.peers.connected(), self.config.fanout, &mut self.rng);
        self.asked.clear();
        self.answers.clear();
        for peer in drawn {
            self.asked.insert(peer, false);
            self.outputs.push_back(Output::Fetch {
                peer,
                round: Some(self.round),
                have: self.have(&peer),
            });
        }
        self.hog();
        let timeout = Duration::from_millis(self.config.round_timeout_ms);
        self.phase = Phase::Collecting {
            deadline: now.checked_add(timeout).unwrap_or(Duration::MAX),
        };
        Ok(())
    }

    /// Signs `params` as this node's update of the current round (see [`Engine::on_trained`],
    /// which records the round as signed first).
    pub(super) fn sign(&self, params: &[f32], samples: u64) -> (Arc<[u8]>, SignedHeader) {
        self.sign_for(self.round, params, samples)
    }

    /// Signs `params` as this node's update of `round` (one it has signed already).
    pub(super) fn sign_for(
        &self,
        round: u64,
        params: &[f32],
        samples: u64,
    ) -> (Arc<[u8]>, SignedHeader) {
        // SplitMix64: one well-mixed seed per signing, from a counter.
        let state = self.dither.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.dither.set(state);
        let mut seed = state;
        seed = (seed ^ (seed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        seed = (seed ^ (seed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // A whole model: with `top-k`, a snapshot in the codec's whole-model form.
        let codec = self.config.codec.whole();
        let (bytes, signed, valid) = if codec == Codec::F32Le {
            wire::encode_f32_update_shared(
                &self.identity,
                self.run,
                round,
                samples,
                params,
                self.assist.as_deref(),
            )
        } else {
            let mut valid = false;
            let (bytes, signed) = wire::encode_update_shared_with(
                &self.identity,
                self.run,
                round,
                samples,
                codec,
                codec.payload_len(params.len()),
                |out| valid = crate::codec::encode_into(codec, params, seed ^ (seed >> 31), out),
                self.assist.as_deref(),
            );
            (bytes, signed, valid)
        };
        self.signed_here(&bytes);
        if valid && let Some(m) = &self.memo {
            // Known from the encoding: the payload decodes to this many finite parameters.
            m.record_decodes(&bytes, params.len());
        }
        (bytes, signed)
    }

    /// Tells the memo of shared checks, if any, that `bytes`, just signed here, pass their
    /// signature and digest checks (they do by construction): the first receiver skips them as
    /// the later ones do. Receivers still make every other check.
    fn signed_here(&self, bytes: &Arc<[u8]>) {
        if let Some(m) = &self.memo {
            m.record(bytes);
        }
    }

    /// Announces a signed header by gossip (round and digest: peers detect equivocation).
    pub(super) fn announce(&mut self, signed: &SignedHeader) {
        let ann: Arc<[u8]> = wire::encode_announcement(signed).into();
        self.signed_here(&ann);
        self.broadcast(ann);
    }

    /// Pushes an update to a peer unasked (only an attacker does).
    pub(super) fn push(&mut self, to: PeerKey, bytes: Arc<[u8]>) {
        self.stats.updates_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Send { to, bytes });
    }

    pub(super) fn broadcast(&mut self, bytes: Arc<[u8]>) {
        self.stats.bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Broadcast { bytes });
    }

    pub(super) fn remember(&mut self, bytes: Arc<[u8]>) {
        self.last_update = Some(bytes.clone());
        if self.sent.len() == REPLAY_HISTORY {
            self.sent.pop_front();
        }
        self.sent.push_back(bytes);
    }

    /// Whether a consensus step, if one is configured, gives way to the mix of models: from the
    /// last training round on (the rounds of mixing alone included), when the rounds are known.
    fn mixes_as_models(&self) -> bool {
        self.config.rounds.is_some_and(|r| self.round >= r)
    }

    /// The lowest round a model may be of to be mixed in the current round.
    pub(super) fn floor(&self) -> u64 {
        self.round.saturating_sub(self.config.max_staleness)
    }

    /// Usable answers of this round.
    fn fresh_count(&self) -> usize {
        let floor = self.floor();
        self.answers.values().filter(|p| p.round >= floor).count()
    }

    /// Whether the round can be mixed at `now`: `wait-for` usable answers (or as many as peers
    /// were drawn), every drawn peer answered, or the deadline.
    pub(super) fn ready(&self, now: Duration, deadline: Duration) -> bool {
        if now >= deadline {
            return true;
        }
        // Nobody to ask yet: wait for a peer to connect (see `draw_late`) or the deadline.
        if self.asked.is_empty() {
            return false;
        }
        let want = self.config.wait_for.min(self.asked.len());
        self.fresh_count() >= want || self.asked.values().all(|answered| *answered)
    }

    /// A peer that connects while this round has drawn fewer than `fanout` peers is drawn too,
    /// so a node that was alone, or short of peers, mixes with those that arrive in time.
    pub(super) fn draw_late(&mut self, peer: PeerKey) {
        if matches!(self.phase, Phase::Collecting { .. })
            && self.asked.len() < self.config.fanout
            && !self.asked.contains_key(&peer)
            && !self.peers.is_banned(&peer)
        {
            self.asked.insert(peer, false);
            self.outputs.push_back(Output::Fetch {
                peer,
                round: Some(self.round),
                have: self.have(&peer),
            });
        }
    }

    /// A drawn peer's answer to this round's fetch, checked at once; a bad one is penalised.
    pub(super) fn on_answer(&mut self, peer: PeerKey, update: Option<&Arc<[u8]>>) {
        match self.asked.get_mut(&peer) {
            Some(answered @ false) => *answered = true,
            _ => return, // not drawn this round, or answered already
        }
        let Some(bytes) = update else { return };
        let floor = self.floor();
        let ceiling = self.round.saturating_add(self.config.max_ahead);
        // An honest node without the `top-k` chain keeps the shared bytes until the mix.
        let keep = if self.adversary.is_some() || self.chain.is_some() {
            Keep::Params
        } else {
            Keep::Bytes
        };
        match self.check(peer, bytes, (floor, ceiling), true, keep) {
            Ok(Checked { round, params }) => {
                self.stats.accepted += 1;
                let model = if self.adversary.is_some() {
                    self.learn_fetched(peer, round, &params, bytes);
                    Kept::Decoded(params)
                } else if self.chain.is_some() {
                    // An increment's result is the copy's new state, not these bytes.
                    Kept::Decoded(params)
                } else {
                    Kept::Signed(Arc::clone(bytes))
                };
                self.answers.insert(peer, Answer { round, model });
            }
            // Counted where the proof was handled.
            Err(Rejection::Equivocation) => {}
            Err(reason) => self.reject(peer, reason),
        }
    }

    /// A drawn peer refused as busy (its uplink is full). With per-round sampling another peer
    /// is drawn in its place, from the connected ones not asked this round, at most `fanout`
    /// times a round (so a round asks at most twice `fanout` peers, whoever refuses). When none
    /// can be drawn (every connected peer asked, the redraws spent, or a fixed graph, whose
    /// neighbours are the peers to mix with), the same peer is asked again after
    /// [`Engine::retry_delay`], while the round's deadline allows: a network whose uplinks are
    /// all full waits for them, paced to what they carry, rather than mixing nothing.
    pub(super) fn on_busy(&mut self, now: Duration, peer: PeerKey) {
        if self.asked.get(&peer) != Some(&false) {
            return; // not drawn this round, or answered already
        }
        let drawn_extra = self.asked.len().saturating_sub(self.config.fanout);
        let free: Vec<PeerKey> = if self.weights.is_empty() && drawn_extra < self.config.fanout {
            self.peers
                .connected()
                .into_iter()
                .filter(|p| !self.asked.contains_key(p))
                .collect()
        } else {
            Vec::new()
        };
        if let Some(&other) = sample_peers(&free, 1, &mut self.rng).first() {
            self.asked.insert(peer, true);
            self.stats.redrawn += 1;
            self.asked.insert(other, false);
            self.outputs.push_back(Output::Fetch {
                peer: other,
                round: Some(self.round),
                have: self.have(&other),
            });
            return;
        }
        let at = now.saturating_add(self.retry_delay());
        match self.phase {
            Phase::Collecting { deadline } if at < deadline => {
                self.retries.insert(peer, at);
            }
            _ => {
                self.asked.insert(peer, true);
            }
        }
    }

    /// How long a node waits before asking a busy peer again: an eighth of a round timeout.
    pub(super) fn retry_delay(&self) -> Duration {
        Duration::from_millis((self.config.round_timeout_ms / 8).max(1))
    }

    /// Asks again the busy peers whose time has come (see [`Engine::on_busy`]), if they are
    /// still drawn, unanswered and connected.
    pub(super) fn retry_due(&mut self, now: Duration) {
        let due: Vec<PeerKey> = self
            .retries
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.retries.remove(&peer);
            if self.asked.get(&peer) != Some(&false) {
                continue;
            }
            if self.peers.connected_to(&peer) {
                self.stats.retried += 1;
                self.outputs.push_back(Output::Fetch {
                    peer,
                    round: Some(self.round),
                    have: self.have(&peer),
                });
            } else {
                // Gone (or banned) meanwhile: it answers nothing.
                self.asked.insert(peer, true);
            }
        }
    }

    /// A drawn peer went down before answering: it answers nothing.
    pub(super) fn answer_failed(&mut self, peer: &PeerKey) {
        self.retries.remove(peer);
        if let Some(answered) = self.asked.get_mut(peer) {
            *answered = true;
        }
    }

    /// Applies the outlier screen (see [`screen`]): drops the gross outliers, charging their
    /// senders, and pulls the others in to the screen's limit. Returns how many were dropped,
    /// and, when it changed nothing and the rule measures the same distances first, the squared
    /// distances of `[reference, received...]` to `reference` for the rule to take.
    /// The screen measures distances from `reference`: the own estimate of the `top-k` chain
    /// when the node takes a consensus step, the own model otherwise. A node behind the models
    /// it received (the lower median of their rounds is after its own) drops and charges none:
    /// it pulls the gross outliers in as the others. Its own model is then no fair reference
    /// for "gross" (a node whose join found no peer trains from the initial model while the
    /// others run ahead, and an honest model rounds ahead can be farther from it than its
    /// length). Only a majority of the inputs can make a node behind them, and with a majority
    /// the screen's reference, their median distance, is theirs anyway; every outlier is still
    /// pulled in to the limit, and the nodes not behind still charge it.
    fn screen(
        &mut self,
        received: &mut BTreeMap<PeerKey, Pending>,
        reference: &[f32],
    ) -> (usize, Option<Vec<f64>>) {
        let factor = self.config.outlier_factor;
        if factor <= 0.0 || received.len() < 2 {
            return (0, None);
        }
        // Measured as the rule will measure them when it clips around the same model (the
        // reference first among its inputs), so that it can take them if the screen changes
        // nothing.
        let shared = self.aggregator.measures_distances_to_own();
        let mut rows: Vec<&[f32]> = Vec::with_capacity(received.len() + 1);
        if shared {
            rows.push(reference);
        }
        rows.extend(received.values().map(|p| p.params.as_slice()));
        let sq = aggregate::sq_dists_to(&rows, reference);
        let skip = usize::from(shared);
        let flagged = screen::outliers_given(reference, &rows[skip..], &sq[skip..], factor);
        drop(rows);
        if flagged.is_empty() {
            return (0, shared.then_some(sq));
        }
        let behind = lower_median(received.values().map(|p| p.round)) > self.round;
        let keys: Vec<PeerKey> = received.keys().copied().collect();
        let mut dropped = 0;
        for o in flagged {
            let key = keys[o.index];
            if o.gross && !behind {
                received.remove(&key);
                self.reject(key, Rejection::Outlier);
                dropped += 1;
            } else if let Some(p) = received.get_mut(&key) {
                screen::pull_in(reference, p.params.to_mut(), o.scale);
                self.stats.pulled_in += 1;
            }
        }
        (dropped, None)
    }

    /// An answer's model, to mix. A held update passed every check when it arrived (its
    /// signature too, which is not verified again: the shared bytes cannot change); an `f32`
    /// payload is read where it lies, any other decoded the same way again.
    fn decoded(&self, answer: Answer) -> Option<Pending> {
        let params = match answer.model {
            Kept::Decoded(params) => Model::Owned(params),
            Kept::Signed(bytes) => {
                let update =
                    wire::decode_update_ref_as(&bytes, self.limit, wire::Signature::Verified)
                        .ok()?;
                let payload = bytes.len() - update.payload().len();
                let in_place = update.header().codec == Codec::F32Le
                    && update.payload().len() == 4 * self.dim
                    && codec::f32_view(update.payload()).is_some();
                if in_place {
                    Model::InPlace { bytes, payload }
                } else {
                    let mut params = Vec::new();
                    update.params_into(self.dim, &mut params).ok()?;
                    Model::Owned(params)
                }
            }
        };
        Some(Pending {
            round: answer.round,
            params,
        })
    }

    pub(super) fn mix(&mut self) {
        let floor = self.floor();
        let mut received: BTreeMap<PeerKey, Pending> = std::mem::take(&mut self.answers)
            .into_iter()
            .filter(|(_, a)| a.round >= floor)
            .filter_map(|(peer, a)| Some((peer, self.decoded(a)?)))
            .collect();
        self.asked.clear();
        self.retries.clear();
        // With the `top-k` chain and a consensus step (CHOCO-Gossip), the rule runs over the
        // estimates (the own one and the copies of the peers'), and the model moves by the step
        // towards its result. Without a step, and with one from the last training round on, the
        // copies are mixed with the own model as any peers' models are: the step leaves each
        // model with all of its own data's progress not sent yet, which the node's final model
        // should share with its peers' (see the chain in `chain`).
        let as_models = self.mixes_as_models();
        let estimate = match (self.chain.as_mut(), self.config.consensus_step) {
            (Some(c), Some(_)) if !c.estimate.is_empty() && !as_models => {
                Some(std::mem::take(&mut c.estimate))
            }
            _ => None,
        };
        let stepped = estimate.is_some();
        // The own model (read in place if it is held as the signed update); the mix puts one
        // back.
        let own = self.model.take();
        let (screened, distances) =
            self.screen(&mut received, estimate.as_deref().unwrap_or(own.as_slice()));
        // The catch-up is taken from what passed every check and the screen.
        let median_round = lower_median(received.values().map(|p| p.round).chain([self.round]));
        let reference: &[f32] = estimate.as_deref().unwrap_or(own.as_slice());
        let mut inputs: Vec<&[f32]> = Vec::with_capacity(received.len() + 1);
        inputs.push(reference);
        inputs.extend(received.values().map(|p| p.params.as_slice()));
        let n = inputs.len();
        let weights = if self.weights.is_empty() {
            staleness_weights(
                self.round,
                received.values().map(|p| p.round),
                self.config.staleness_decay,
            )
        } else {
            graph_weights(
                self.round,
                received
                    .iter()
                    .map(|(k, p)| (self.weights.get(k).copied(), p.round)),
                self.config.staleness_decay,
            )
        };
        // The mix is written to a buffer of its own; the own model's buffer then carries the
        // copy the trainer continues from.
        let mut out = self
            .spares
            .as_ref()
            .and_then(|s| s.take(self.dim))
            .unwrap_or_default();
        let (clipped, skipped) = if received.is_empty() || n < self.aggregator.min_inputs() {
            (0, true)
        } else {
            out.resize(self.dim, 0.0);
            if let Some(assist) = &self.assist
                && estimate.is_none()
                && self.aggregator.takes_shared_rows()
                && let Some(rows) = std::iter::once(&own)
                    .chain(received.values().map(|p| &p.params))
                    .map(Model::shared)
                    .collect::<Option<Vec<_>>>()
            {
                // Every input is a signed update read in place: another thread may sum part.
                self.aggregator
                    .rows_shared(aggregate::SharedRows(rows.into()), Arc::clone(assist));
            }
            if let Some(sq) = distances {
                // The screen's distances, of these very inputs to `reference`.
                self.aggregator.distances_known(sq);
            }
            // `out` is this mix's own buffer: on error the own model is kept and `out` only
            // carries the copy.
            match self.aggregator.aggregate_into(
                reference,
                &inputs,
                &weights,
                screened,
                &mut self.rng,
                &mut out,
                false,
            ) {
                Ok(report) => (report.clipped, false),
                Err(_) => (0, true), // inputs are checked on receipt; keep the own model
            }
        };
        drop(inputs);
        let (model, mut copy) = if skipped {
            self.stats.skipped_mixes += 1;
            (own.into_vec(), out)
        } else {
            if let (Some(e), Some(step)) = (&estimate, self.config.consensus_step) {
                // x + γ (R - x̂), written into the buffer that holds R.
                let step = step as f32;
                for ((r, &x), &xh) in out.iter_mut().zip(own.as_slice()).zip(e) {
                    *r = x + step * (*r - xh);
                }
            }
            self.stats.mixes += 1;
            self.stats.inputs_mixed += n as u64;
            self.stats.clipped += clipped as u64;
            // The own model's buffer, if it has one, carries the copy.
            let spare = match own {
                Model::Owned(params) => params,
                Model::InPlace { .. } => Vec::new(),
            };
            (out, spare)
        };
        let copy = self.hand_over_mixes.then(|| {
            copy.clear();
            copy.extend_from_slice(&model);
            copy
        });
        self.model = Own::Mixed(Arc::new(model));
        self.outputs.push_back(Output::Mixed {
            round: self.round,
            params: copy,
            peers: if skipped {
                Vec::new()
            } else {
                received.keys().copied().collect()
            },
            inputs: n,
            clipped,
            skipped,
        });
        if let (Some(c), Some(e)) = (self.chain.as_mut(), estimate) {
            c.estimate = e;
        }
        if self.adversary.is_some() {
            self.last_received = received
                .into_iter()
                .map(|(k, p)| (k, p.params.into_vec()))
                .collect();
        }
        let every = self.config.checkpoint_every;
        if every > 0 && self.round >= self.checkpointed.saturating_add(every) {
            self.checkpoint(self.round);
        }
        // Catch up: a node that fell behind the peers it mixes with continues with the lower
        // median of their rounds (its own included), so slow nodes are not left lagging for ever;
        // the lower median keeps a Byzantine half from pushing the round counter, and one catch-up
        // moves it at most `max-staleness` rounds. The next round is that median itself: a node
        // one round behind trains the round its peers are on, and skips no training of its own.
        // After a consensus step it stops at the last training round, so that lies about the
        // round cannot make a node finish without the last round's mix of models.
        let mut cap = self.round.saturating_add(self.config.max_staleness);
        if let (true, Some(last)) = (stepped, self.config.rounds) {
            cap = cap.min(last.saturating_sub(1));
        }
        self.round = self.round.max(median_round.saturating_sub(1).min(cap));
        self.start_round();
    }
}

/// The mix weights on a fixed graph: each received model from a peer with static weight `w` and
/// `k` rounds behind weighs `w (1 + k)^-decay`, and the own model (first) takes the rest of 1. A
/// received model from a peer without a static weight (not a neighbour of the graph) gets the
/// smallest static weight of the others, so it can never outweigh a neighbour.
/// The lower median of `rounds` (0 if there are none): with an even count the upper one is the
/// larger half's, so half of the inputs lying about their round would drag a node ahead.
fn lower_median(rounds: impl Iterator<Item = u64>) -> u64 {
    let mut rounds: Vec<u64> = rounds.collect();
    rounds.sort_unstable();
    rounds
        .get(rounds.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

pub(super) fn graph_weights(
    round: u64,
    received: impl Iterator<Item = (Option<f64>, u64)>,
    decay: f64,
) -> Vec<f32> {
    let received: Vec<(Option<f64>, u64)> = received.collect();
    let least = received
        .iter()
        .filter_map(|(w, _)| *w)
        .fold(f64::INFINITY, f64::min);
    let least = if least.is_finite() { least } else { 0.0 };
    let mut w = vec![0.0f64];
    for (static_w, r) in received {
        let age = round.saturating_sub(r);
        w.push(static_w.unwrap_or(least).max(0.0) * (1.0 + age as f64).powf(-decay));
    }
    let taken: f64 = w.iter().sum();
    // Metropolis-Hastings rows leave the own model a positive share; keep one for any table.
    w[0] = (1.0 - taken).max(1e-3);
    // The rules take positive weights: a zero-weight input is kept at a negligible weight.
    w.iter().map(|&x| x.max(1e-9) as f32).collect()
}

/// The mix weights of the own model (first, weight 1) and of received models of `rounds` at a
/// node in round `round`: `(1 + k)^-decay` for a model `k` rounds behind, 1 for one of the
/// round or ahead. Empty (all equal) when nothing is behind or `decay` is 0.
pub(super) fn staleness_weights(
    round: u64,
    rounds: impl Iterator<Item = u64>,
    decay: f64,
) -> Vec<f32> {
    let mut any_late = false;
    let mut w = vec![1.0f32];
    for r in rounds {
        let age = round.saturating_sub(r);
        any_late |= age > 0;
        w.push((1.0 + age as f64).powf(-decay) as f32);
    }
    if decay == 0.0 || !any_late {
        w.clear();
    }
    w
}

#[cfg(test)]
mod staleness_tests {
    use super::staleness_weights;

    #[test]
    fn a_late_model_weighs_less_with_its_age_and_none_weighs_more_than_the_own() {
        let w = staleness_weights(10, [10, 9, 7, 12].into_iter(), 0.5);
        let expect = [1.0, 1.0, 0.5f32.sqrt(), 0.5, 1.0];
        for (a, b) in w.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
        assert_eq!(w.len(), 5);
        // Nothing late, or no decay: equal weights (the empty list).
        assert!(staleness_weights(10, [10, 11].into_iter(), 0.5).is_empty());
        assert!(staleness_weights(10, [3].into_iter(), 0.0).is_empty());
    }
}
