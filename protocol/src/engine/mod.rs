//! The state machine of one node.
//!
//! [`Engine`] decides everything a node decides: when to train, whom to send to, which updates
//! to accept, how to mix them, whom to penalise. It never touches a socket or a clock: the caller
//! feeds it [`Input`]s with the current time, drains [`Output`]s with [`Engine::poll`], and wakes it
//! at [`Engine::poll_timeout`] with [`Input::Tick`]. The real node and the simulator run exactly
//! this loop:
//!
//! ```text
//! engine.handle(now, Input::UpdateReceived { from, bytes });   // also PeerUp, PeerDown, Trained, Tick
//! while let Some(out) = engine.poll() { /* Train, SetModel, Send, Broadcast, Penalize, Ban, ... */ }
//! let wake = engine.poll_timeout();
//! ```
//!
//! Rounds are asynchronous; there is no global barrier. In round `r` a node trains locally
//! ([`Output::Train`], answered by [`Input::Trained`]), signs its model and sends it to `fanout`
//! peers drawn afresh from the connected ones (Epidemic Learning, de Vos et al., NeurIPS 2023),
//! then collects fresh updates from others until it has `wait_for` of them or `round_timeout_ms`
//! passes, mixes its own model with them by the configured robust rule ([`crate::aggregate`]) and
//! starts round `r + 1`. Updates arriving at any time are checked at once (signature, run,
//! version, sender, size, dimension, finiteness, replay, equivocation) and buffered, one per peer.
//! A failed check drops the update and penalises the sender with the reason; enough penalty points
//! ban it, and equivocation bans at once and is broadcast as transferable evidence.

mod adversary;
pub mod bootstrap;
mod config;
mod peers;
mod rejection;
mod screen;

#[cfg(test)]
mod harness;
#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError};
pub use rejection::Rejection;

use crate::aggregate::Aggregator;
use crate::attack::Attack;
use crate::evidence::Equivocation;
use crate::replay::{self, Window};
use crate::sign::{Identity, PeerKey, RunId};
use crate::topology::sample_peers;
use crate::wire::{self, Codec, SignedHeader};
use peers::{Peers, Standing};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Something that happened to the node.
#[derive(Debug, Clone)]
pub enum Input {
    /// A connection to `peer` is up: it may be chosen as a target.
    PeerUp {
        /// The peer.
        peer: PeerKey,
    },
    /// The connection to `peer` is gone.
    PeerDown {
        /// The peer.
        peer: PeerKey,
    },
    /// An update (or any point-to-point message) arrived from `from`.
    UpdateReceived {
        /// The transport-authenticated sender.
        from: PeerKey,
        /// The message bytes, unchecked.
        bytes: Arc<[u8]>,
    },
    /// A gossip message (announcement or evidence) arrived, relayed by `from`.
    GossipReceived {
        /// The peer that relayed it.
        from: PeerKey,
        /// The message bytes, unchecked.
        bytes: Arc<[u8]>,
    },
    /// Local training for `round` finished with these parameters.
    Trained {
        /// The round that was asked for in [`Output::Train`].
        round: u64,
        /// The trained flat parameters.
        params: Vec<f32>,
        /// Training samples processed.
        samples: u64,
    },
    /// The time returned by [`Engine::poll_timeout`] has come.
    Tick,
}

/// Something the node must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Run local training for `round` from the current model; answer with [`Input::Trained`].
    Train {
        /// The round number.
        round: u64,
    },
    /// Replace the trainer's parameters with these (after mixing).
    SetModel {
        /// Flat parameters.
        params: Vec<f32>,
    },
    /// Deliver a signed update to one peer.
    Send {
        /// The receiver.
        to: PeerKey,
        /// The message.
        bytes: Arc<[u8]>,
    },
    /// Publish a small message to every peer of the run (announcements, evidence).
    Broadcast {
        /// The message.
        bytes: Arc<[u8]>,
    },
    /// A peer's update was rejected; its penalty points are now `points`.
    Penalize {
        /// The peer.
        peer: PeerKey,
        /// Why.
        reason: Rejection,
        /// Its penalty points after this one.
        points: u32,
    },
    /// Disconnect `peer` and refuse it from now on.
    Ban {
        /// The peer.
        peer: PeerKey,
        /// The rejection that crossed the threshold (or equivocation).
        reason: Rejection,
    },
    /// A round was mixed.
    Mixed {
        /// The round that ended.
        round: u64,
        /// Models mixed, the node's own included.
        inputs: usize,
        /// Inputs the rule clipped or discarded.
        clipped: usize,
        /// True when too few inputs arrived for the rule and the own model was kept.
        skipped: bool,
    },
    /// The configured number of rounds is done.
    Finished,
}

/// Running counts, for metrics and reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Updates accepted into the buffer.
    pub accepted: u64,
    /// Messages rejected, by reason.
    pub rejected: BTreeMap<Rejection, u64>,
    /// Rounds mixed.
    pub mixes: u64,
    /// Rounds that kept the own model for lack of inputs.
    pub skipped_mixes: u64,
    /// Models mixed in all rounds, own included.
    pub inputs_mixed: u64,
    /// Inputs clipped or discarded by the rule.
    pub clipped: u64,
    /// Updates sent.
    pub updates_sent: u64,
    /// Bytes of updates and gossip sent.
    pub bytes_sent: u64,
    /// Peers banned.
    pub bans: u64,
}

/// A Byzantine behaviour for this engine (the simulator's attackers and a red-team node).
#[derive(Debug, Clone, PartialEq)]
pub struct Adversary {
    /// What to do.
    pub attack: Attack,
    /// Nodes in the run, as the attacker believes (for ALIE's z).
    pub n: usize,
    /// Byzantine nodes in the run, as the attacker believes.
    pub f: usize,
}

/// Everything an engine starts from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The node's signing identity.
    pub identity: Identity,
    /// The run; updates of other runs are rejected.
    pub run: RunId,
    /// Round rules.
    pub config: Config,
    /// The starting model (the run's initial model, or a checkpoint's).
    pub model: Vec<f32>,
    /// The last completed round (0 for a fresh start; a checkpoint's round when resuming).
    pub round: u64,
    /// Seed of the engine's random choices (peer sampling, bucketing, attacks).
    pub seed: u64,
    /// Set to make this node Byzantine.
    pub adversary: Option<Adversary>,
}

#[derive(Debug, Clone)]
struct Pending {
    round: u64,
    params: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Training,
    Collecting { deadline: Duration },
    Finished,
}

/// Sent updates an adversary keeps for replay.
const REPLAY_HISTORY: usize = 16;

/// The state machine of one node. See the module docs.
#[derive(Debug)]
pub struct Engine {
    identity: Identity,
    me: PeerKey,
    run: RunId,
    config: Config,
    dim: usize,
    limit: usize,
    model: Vec<f32>,
    round: u64,
    phase: Phase,
    aggregator: Aggregator,
    window: Window,
    peers: Peers,
    pending: BTreeMap<PeerKey, Pending>,
    outputs: VecDeque<Output>,
    rng: ChaCha8Rng,
    stats: Stats,
    adversary: Option<Adversary>,
    sent: VecDeque<Arc<[u8]>>,
    last_received: BTreeMap<PeerKey, Vec<f32>>,
    last_update: Option<Arc<[u8]>>,
    scratch: Vec<f32>,
}

impl Engine {
    /// Validates the setup and starts the first round: the first output is [`Output::Train`].
    pub fn new(setup: Setup) -> Result<Self, ConfigError> {
        let Setup {
            identity,
            run,
            config,
            model,
            round,
            seed,
            adversary,
        } = setup;
        config.validate()?;
        if model.is_empty() {
            return Err(ConfigError::EmptyModel);
        }
        if let Some(a) = &adversary {
            a.attack
                .validate()
                .map_err(|e| ConfigError::Attack(e.to_string()))?;
        }
        let dim = model.len();
        let aggregator = Aggregator::new(&config.aggregation, dim)?;
        let mut engine = Engine {
            me: identity.public(),
            identity,
            run,
            limit: wire::PREFIX + wire::MAX_HEADER + Codec::F32Le.payload_len(dim),
            dim,
            window: Window::new(config.max_peers),
            peers: Peers::new(config.ban_threshold, config.max_peers),
            config,
            model,
            round,
            phase: Phase::Training,
            aggregator,
            pending: BTreeMap::new(),
            outputs: VecDeque::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            stats: Stats::default(),
            adversary,
            sent: VecDeque::new(),
            last_received: BTreeMap::new(),
            last_update: None,
            scratch: vec![0.0; dim],
        };
        engine.start_round();
        Ok(engine)
    }

    /// This node's public key.
    pub fn id(&self) -> PeerKey {
        self.me
    }

    /// The round being trained or collected (the last completed round plus one).
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The current model: after mixing, or after local training while collecting.
    pub fn model(&self) -> &[f32] {
        &self.model
    }

    /// Number of parameters.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Largest update message accepted, in bytes.
    pub fn max_update_bytes(&self) -> usize {
        self.limit
    }

    /// The last signed update this node sent out (its trained model of its latest round, or
    /// what its attack sent), for a late joiner's [`bootstrap::join`]. `None` before the first
    /// round's training is done.
    pub fn last_update(&self) -> Option<Arc<[u8]>> {
        self.last_update.clone()
    }

    /// Running counts.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether `peer` is banned.
    pub fn is_banned(&self, peer: &PeerKey) -> bool {
        self.peers.is_banned(peer)
    }

    /// Banned peers in key order.
    pub fn banned(&self) -> Vec<PeerKey> {
        self.peers.banned().copied().collect()
    }

    /// Connected, unbanned peers in key order.
    pub fn connected(&self) -> Vec<PeerKey> {
        self.peers.connected()
    }

    /// Whether the configured number of rounds is done.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The next output, if any.
    pub fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Engine::handle`] with [`Input::Tick`] next, if a timer is running.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.phase {
            Phase::Collecting { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// Feeds one input at time `now` (any monotonic clock, the same for every call).
    pub fn handle(&mut self, now: Duration, input: Input) {
        match input {
            Input::PeerUp { peer } => {
                if peer != self.me
                    && let Some(reason) = self.peers.up(peer)
                {
                    self.outputs.push_back(Output::Ban { peer, reason });
                }
            }
            Input::PeerDown { peer } => self.peers.down(&peer),
            Input::UpdateReceived { from, bytes } => self.on_update(from, &bytes),
            Input::GossipReceived { from, bytes } => self.on_gossip(from, &bytes),
            Input::Trained {
                round,
                params,
                samples,
            } => self.on_trained(now, round, params, samples),
            Input::Tick => {}
        }
        if let Phase::Collecting { deadline } = self.phase
            && (now >= deadline || self.fresh_count() >= self.config.wait_for)
        {
            self.mix();
        }
    }

    fn start_round(&mut self) {
        if self.config.rounds.is_some_and(|r| self.round >= r) {
            self.phase = Phase::Finished;
            self.outputs.push_back(Output::Finished);
            return;
        }
        self.round += 1;
        self.phase = Phase::Training;
        self.outputs.push_back(Output::Train { round: self.round });
    }

    fn reject(&mut self, peer: PeerKey, reason: Rejection) {
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

    fn on_update(&mut self, from: PeerKey, bytes: &[u8]) {
        if self.peers.is_banned(&from) {
            return;
        }
        let update = match wire::decode_update(bytes, self.limit) {
            Ok(u) => u,
            Err(e) => return self.reject(from, Rejection::of(&e)),
        };
        let h = update.header();
        if h.sender != from {
            return self.reject(from, Rejection::Impersonation);
        }
        if h.run != self.run {
            return self.reject(from, Rejection::WrongRun);
        }
        if h.round + self.config.max_staleness < self.round {
            return self.reject(from, Rejection::Lagging);
        }
        match self.window.check(&update.signed) {
            replay::Verdict::Fresh => {}
            replay::Verdict::Stale { .. } => return self.reject(from, Rejection::Stale),
            replay::Verdict::Duplicate => return self.reject(from, Rejection::Duplicate),
            replay::Verdict::Equivocation(ev) => return self.on_equivocation(*ev),
        }
        let mut params = Vec::new();
        if let Err(e) = update.params_into(self.dim, &mut params) {
            return self.reject(from, Rejection::of(&e));
        }
        let round = update.header().round;
        self.window.accept(update.signed);
        self.peers.credit(&from);
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

    fn on_gossip(&mut self, from: PeerKey, bytes: &[u8]) {
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

    fn on_equivocation(&mut self, ev: Equivocation) {
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
            self.stats.bytes_sent += bytes.len() as u64;
            self.outputs.push_back(Output::Broadcast { bytes });
        }
    }

    fn on_trained(&mut self, now: Duration, round: u64, params: Vec<f32>, samples: u64) {
        if self.phase != Phase::Training || round != self.round || params.len() != self.dim {
            return; // a late answer to an earlier request; the driver's mistake, not a peer's
        }
        self.model = params;
        let targets = sample_peers(&self.peers.connected(), self.config.fanout, &mut self.rng);
        match self.adversary.clone() {
            None => {
                let (bytes, signed) = self.sign(&self.model, samples);
                self.send_all(&targets, &bytes, &signed);
            }
            Some(adv) => self.send_forged(&adv, &targets, samples),
        }
        let timeout = Duration::from_millis(self.config.round_timeout_ms);
        self.phase = Phase::Collecting {
            deadline: now + timeout,
        };
    }

    fn sign(&self, params: &[f32], samples: u64) -> (Arc<[u8]>, SignedHeader) {
        let payload = wire::encode_params(params);
        let (bytes, signed) = wire::encode_update(
            &self.identity,
            self.run,
            self.round,
            samples,
            Codec::F32Le,
            &payload,
        );
        (bytes.into(), signed)
    }

    fn send_all(&mut self, targets: &[PeerKey], bytes: &Arc<[u8]>, signed: &SignedHeader) {
        self.last_update = Some(bytes.clone());
        for &to in targets {
            self.send(to, bytes.clone());
        }
        let ann: Arc<[u8]> = wire::encode_announcement(signed).into();
        self.stats.bytes_sent += ann.len() as u64;
        self.outputs.push_back(Output::Broadcast { bytes: ann });
    }

    fn send(&mut self, to: PeerKey, bytes: Arc<[u8]>) {
        self.stats.updates_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Send { to, bytes });
    }

    fn remember(&mut self, bytes: Arc<[u8]>) {
        self.last_update = Some(bytes.clone());
        if self.sent.len() == REPLAY_HISTORY {
            self.sent.pop_front();
        }
        self.sent.push_back(bytes);
    }

    fn fresh_count(&self) -> usize {
        let floor = self.round.saturating_sub(self.config.max_staleness);
        self.pending.values().filter(|p| p.round >= floor).count()
    }

    /// Drops the received models the outlier screen flags, penalises their senders, and returns
    /// how many were dropped.
    fn screen(&mut self, received: &mut BTreeMap<PeerKey, Vec<f32>>) -> usize {
        let inputs: Vec<&[f32]> = received.values().map(Vec::as_slice).collect();
        let flagged = screen::outliers(&self.model, &inputs, self.config.outlier_factor);
        drop(inputs);
        let keys: Vec<PeerKey> = received.keys().copied().collect();
        for &i in &flagged {
            received.remove(&keys[i]);
            self.reject(keys[i], Rejection::Outlier);
        }
        flagged.len()
    }

    fn mix(&mut self) {
        let floor = self.round.saturating_sub(self.config.max_staleness);
        let pending = std::mem::take(&mut self.pending);
        let fresh: Vec<(PeerKey, Pending)> = pending
            .into_iter()
            .filter(|(_, p)| p.round >= floor)
            .collect();
        let mut rounds: Vec<u64> = fresh.iter().map(|(_, p)| p.round).collect();
        rounds.push(self.round);
        rounds.sort_unstable();
        let median_round = rounds[rounds.len() / 2];
        let mut received: BTreeMap<PeerKey, Vec<f32>> =
            fresh.into_iter().map(|(k, p)| (k, p.params)).collect();
        let screened = self.screen(&mut received);
        let mut inputs: Vec<&[f32]> = Vec::with_capacity(received.len() + 1);
        inputs.push(&self.model);
        inputs.extend(received.values().map(Vec::as_slice));
        let n = inputs.len();
        let (clipped, skipped) = if n >= self.aggregator.min_inputs() {
            match self.aggregator.aggregate_screened(
                &self.model,
                &inputs,
                &[],
                screened,
                &mut self.rng,
                &mut self.scratch,
            ) {
                Ok(report) => (report.clipped, false),
                Err(_) => (0, true), // inputs are checked on receipt; keep the own model
            }
        } else {
            (0, true)
        };
        drop(inputs);
        if skipped {
            self.stats.skipped_mixes += 1;
        } else {
            std::mem::swap(&mut self.model, &mut self.scratch);
            self.stats.mixes += 1;
            self.stats.inputs_mixed += n as u64;
            self.stats.clipped += clipped as u64;
        }
        if self.adversary.is_some() {
            self.last_received = received;
        }
        self.outputs.push_back(Output::Mixed {
            round: self.round,
            inputs: n,
            clipped,
            skipped,
        });
        self.outputs.push_back(Output::SetModel {
            params: self.model.clone(),
        });
        // Catch up: a node that fell behind the peers it mixes with continues from the median
        // of their rounds (its own included), so slow nodes are not left lagging for ever; the
        // median keeps a Byzantine minority from pushing the round counter.
        self.round = self.round.max(median_round);
        self.start_round();
    }
}
