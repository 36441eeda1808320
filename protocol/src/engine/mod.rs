//! The state machine of one node, for its whole life.
//!
//! [`Engine`] decides everything a node decides: where it starts (a fresh model, its checkpoint,
//! or its peers' models), when to train, whom to send to, which updates to accept, how to mix
//! them, when to checkpoint, whom to penalise and ban. It never touches a socket or a clock: the
//! caller feeds it [`Input`]s with the current time, drains [`Output`]s with [`Engine::poll`],
//! and wakes it at [`Engine::poll_timeout`] with [`Input::Tick`]. The real node and the simulator
//! run exactly this loop:
//!
//! ```text
//! let mut engine = Engine::new(setup)?;
//! engine.handle(now, Input::Start { resume, join })?;          // once, first
//! engine.handle(now, Input::Fetched { peer, update })?;       // PeerUp, FetchRequested, Trained, Tick, ...
//! while let Some(out) = engine.poll() { /* Started, Train, Mixed, Send, Fetch, Serve, Ban, ... */ }
//! let wake = engine.poll_timeout();
//! ```
//!
//! **Start-up** ([`Input::Start`], module `join`). The caller says what the node remembers from
//! earlier lives ([`Resume`]: its checkpoint's round, the highest round it ever signed, the peers
//! it banned) and whether it was given peers to join through. Without peers the node starts at
//! once; with them it first fetches the latest signed updates of up to `join-peers` peers, drawn
//! at random ([`Output::Fetch`], answered by [`Input::Fetched`]), and starts from their
//! coordinate-wise median, unless its own checkpoint is recent enough. Either way it starts past
//! every round it ever signed, so a restart never equivocates. [`Output::Started`] says how.
//!
//! **Rounds** (module `round`). Rounds are asynchronous; there is no global barrier, and models
//! move by pull. In round `r` a node trains locally ([`Output::Train`], answered by
//! [`Input::Trained`]), signs its model, draws `fanout` peers afresh from the connected ones with
//! its own seeded generator (Epidemic Learning's s-peer sampling, de Vos et al., NeurIPS 2023,
//! turned into pulls) and fetches each one's update of round `r` ([`Output::Fetch`], answered by
//! [`Input::Fetched`]); a peer that connects while fewer than `fanout` were drawn is drawn too.
//! It mixes when `wait_for` answers have come, every drawn peer has answered, or
//! `round_timeout_ms` has passed, by the configured robust rule ([`crate::aggregate`]), hands the
//! result and its round to the trainer ([`Output::Mixed`]) and starts round `r + 1`, or a later
//! one if its answers were ahead (the median round of the answers that passed every check and the
//! screen, at most `max_staleness` rounds on). Every `checkpoint-every` rounds it asks for a
//! checkpoint ([`Output::Checkpoint`]).
//!
//! **Receiving** (module `receive`). Answers are checked at once (signature, run, version,
//! sender, size, dimension, finiteness, replay, equivocation, round bounds); only answers of
//! drawn peers are kept, one per peer. A failed check drops the update and penalises the sender
//! with the reason; enough penalty points ban it ([`Output::Ban`]: the caller disconnects it and
//! refuses it from then on), and equivocation bans at once and is broadcast as transferable
//! evidence. Updates pushed unasked ([`Input::UpdateReceived`]) are never mixed and cost their
//! sender points. A peer asking for this node's update ([`Input::FetchRequested`]) is answered
//! with [`Output::Serve`]; asked for a round it has not signed yet, the node holds the request up
//! to half a round timeout and answers as soon as it signs; a held request whose asker goes down
//! or is banned meanwhile ends in [`Output::Unanswered`], so the caller can drop its channel.

//! Errors: input from peers never fails, it becomes penalties. [`Engine::handle`] returns an
//! [`InputError`] only for the caller's own mistakes (a training result nobody asked for, of the
//! wrong round or size, or a second start).

mod adversary;
mod chain;
mod config;
mod hold;
mod io;
mod join;
mod own;
mod peers;
mod receive;
mod rejection;
mod round;
mod screen;
mod share;

#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError};
pub use io::{GossipVerdict, Input, InputError, Origin, Output, Resume};
pub use own::ModelView;
pub use rejection::Rejection;

use crate::aggregate::Aggregator;
use crate::attack::Attack;
use crate::members::Members;
use crate::memo::Memo;
use crate::replay::Window;
use crate::sign::{Identity, PeerKey, RunId};
use crate::wire;
pub use adversary::Adversary;
use adversary::Menu;
use hold::Holds;
use join::Joining;
use own::{Model, Own};
use peers::Peers;
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

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
    /// Received models the outlier screen pulled in to its limit (outliers not gross enough to
    /// drop).
    pub pulled_in: u64,
    /// Updates sent.
    pub updates_sent: u64,
    /// Bytes of updates, answers to fetches and gossip sent.
    pub bytes_sent: u64,
    /// Peers banned (not counting bans carried over from earlier lives).
    pub bans: u64,
    /// Fetches this node refused because its uplink would not carry the answer in time
    /// ([`Config::uplink_mbps`]).
    pub refused_busy: u64,
    /// Peers drawn in place of one that refused as busy.
    pub redrawn: u64,
    /// Fetches sent again to a busy peer that could not be replaced.
    pub retried: u64,
    /// An attacker with [`Adversary::hog`]: rounds in which it hogged the uplinks (asked the
    /// peers it did not draw).
    pub hog_rounds: u64,
}

impl Stats {
    /// Adds the counts of `other` (an earlier life of the same node).
    pub fn add(&mut self, other: &Stats) {
        self.accepted += other.accepted;
        for (r, c) in &other.rejected {
            *self.rejected.entry(*r).or_default() += c;
        }
        self.mixes += other.mixes;
        self.skipped_mixes += other.skipped_mixes;
        self.inputs_mixed += other.inputs_mixed;
        self.clipped += other.clipped;
        self.pulled_in += other.pulled_in;
        self.updates_sent += other.updates_sent;
        self.bytes_sent += other.bytes_sent;
        self.bans += other.bans;
        self.refused_busy += other.refused_busy;
        self.redrawn += other.redrawn;
        self.retried += other.retried;
        self.hog_rounds += other.hog_rounds;
    }
}

/// Everything an engine is built from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The node's signing identity.
    pub identity: Identity,
    /// The run; updates of other runs are rejected.
    pub run: RunId,
    /// Round rules.
    pub config: Config,
    /// The starting model: the run's initial model, or the checkpoint's (see
    /// [`Resume::checkpoint`]).
    pub model: Vec<f32>,
    /// The run's seed. The engine's random choices (peer sampling, whom a joiner asks,
    /// bucketing, attacks) come from a generator derived from it, the node's key and what the
    /// node resumes from, so nodes and restarts draw differently.
    pub seed: u64,
    /// Set to make this node Byzantine.
    pub adversary: Option<Adversary>,
    /// Static mixing weights on a fixed graph: `W_ij` for each in-neighbour `j`, by key (for
    /// example Metropolis-Hastings weights, which keep the network's average). The node's own
    /// model takes what the received models do not: a neighbour that does not answer in time
    /// leaves its weight with the node, and a late model's weight falls with its age
    /// ([`Config::staleness_decay`]) the same way. Empty with peer sampling: the own and the
    /// received models then weigh alike (up to their age).
    pub weights: BTreeMap<PeerKey, f64>,
    /// The run's members, when it lists them: every other key is refused (see
    /// [`crate::members`]). `None`: any key may take part.
    pub members: Option<Arc<Members>>,
}

/// A checked model, as the mix uses it.
#[derive(Debug, Clone)]
struct Pending {
    round: u64,
    params: Model,
}

/// A usable answer waiting for the mix.
#[derive(Debug, Clone)]
struct Answer {
    round: u64,
    model: Kept,
}

/// How an answer is held until the mix.
#[derive(Debug, Clone)]
enum Kept {
    /// Decoded (an increment applied to the copy, or what an attacker studies).
    Decoded(Vec<f32>),
    /// The signed update as it arrived, checked, decoded again when the node mixes: it is the
    /// sender's own buffer (shared with every peer it served), so a node that waits for its
    /// round's answers holds no model-sized copy of each.
    Signed(Arc<[u8]>),
}

#[derive(Debug)]
enum Phase {
    /// Built, waiting for [`Input::Start`].
    Created,
    /// Fetching peers' models before the first round.
    Joining(Box<Joining>),
    /// Waiting for the trainer's result of the current round.
    Training,
    /// Trained and sent; collecting peers' updates until `deadline` or `wait_for` of them.
    Collecting { deadline: Duration },
    /// The configured rounds are done.
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
    seed: u64,
    dim: usize,
    limit: usize,
    model: Own,
    /// The round being trained or collected; before the first round and when finished, the
    /// last completed round.
    round: u64,
    /// The highest round this node signed, in this life or an earlier one.
    signed: u64,
    /// The round of the last checkpoint asked for (or restored).
    checkpointed: u64,
    phase: Phase,
    aggregator: Aggregator,
    window: Window,
    peers: Peers,
    /// The peers drawn this round, and whether each has answered.
    asked: BTreeMap<PeerKey, bool>,
    /// Their usable answers.
    answers: BTreeMap<PeerKey, Answer>,
    /// Peers' fetches waiting for this node to sign the round they ask for.
    held: Holds,
    /// The round of the update this node serves now.
    served_round: Option<u64>,
    /// Fetches served to each peer in the current round (see `FETCHES_PER_ROUND`).
    fetches: BTreeMap<PeerKey, u32>,
    /// With [`Config::uplink_mbps`]: when the answers served so far will have left the uplink.
    uplink_free: Duration,
    /// With [`Config::uplink_mbps`]: in how many of the last rounds each peer asked for a
    /// fetch, decayed by round (module `share`).
    shares: share::Shares,
    /// Busy peers of this round to ask again, and when (see `round::on_busy`).
    retries: BTreeMap<PeerKey, Duration>,
    /// What an attacker serves this round.
    menu: Menu,
    outputs: VecDeque<Output>,
    rng: ChaCha8Rng,
    /// The state of the stochastic rounding of blockwise codecs: drawn from `rng` at start-up
    /// (only when the codec rounds, so the other codecs' draws are unchanged), advanced at each
    /// signing (which borrows the engine shared).
    dither: Cell<u64>,
    stats: Stats,
    adversary: Option<Adversary>,
    /// Static mixing weights by in-neighbour (see [`Setup::weights`]).
    weights: BTreeMap<PeerKey, f64>,
    /// The run's members, if it lists them (see [`Setup::members`]).
    members: Option<Arc<Members>>,
    sent: VecDeque<Arc<[u8]>>,
    last_received: BTreeMap<PeerKey, Vec<f32>>,
    /// An attacker's model before this round's training (the reference of attacks in update
    /// space); empty for honest nodes.
    reference: Vec<f32>,
    last_update: Option<Arc<[u8]>>,
    /// What an attacker beyond [`Knowledge::Own`](crate::attack::Knowledge::Own) knows: each honest author's newest model and
    /// its round (bounded by `INTEL_AUTHORS`).
    intel: BTreeMap<PeerKey, (u64, Vec<f32>)>,
    /// The forgery each asker was served this round (it is not served two).
    forged: BTreeMap<PeerKey, Arc<[u8]>>,
    /// The `top-k` codec's estimates and copies (module `chain`); `None` with the other codecs.
    chain: Option<chain::Chain>,
    /// The checks shared with other engines of the process (see [`Engine::share_checks`]).
    memo: Option<Arc<Memo>>,
    /// Free model buffers shared with other engines of the process (see
    /// [`Engine::share_spares`]).
    spares: Option<Arc<crate::spares::Spares>>,
    /// Another thread that may take part of this engine's hashing and mixing (see
    /// [`Engine::assist_with`]).
    assist: Option<Arc<dyn crate::assist::Assist>>,
    /// Whether [`Output::Mixed`] carries a copy of the mix (see [`Engine::hand_over_mixes`]).
    hand_over_mixes: bool,
}

impl Engine {
    /// Validates the setup. Nothing happens until [`Input::Start`].
    pub fn new(setup: Setup) -> Result<Self, ConfigError> {
        let Setup {
            identity,
            run,
            config,
            model,
            seed,
            adversary,
            weights,
            members,
        } = setup;
        config.validate()?;
        if model.is_empty() {
            return Err(ConfigError::EmptyModel);
        }
        if let Some(a) = &adversary {
            a.attack
                .validate()
                .map_err(|e| ConfigError::Attack(e.to_string()))?;
            if a.free_timing && matches!(a.attack, Attack::LabelFlip) {
                return Err(ConfigError::Attack(
                    "label-flip trains on flipped labels: it cannot skip training (free timing)"
                        .to_owned(),
                ));
            }
            if let Some((turn, of)) = a.hog_turn
                && (!a.hog || turn >= of)
            {
                return Err(ConfigError::Attack(format!(
                    "a hog's turn {turn} of {of}: it needs hog, and a turn below the number of \
                     turns"
                )));
            }
        }
        let dim = model.len();
        let aggregator = Aggregator::new(&config.aggregation, dim)?;
        // Copies of peers' estimates: every in-neighbour on a static graph; with sampling, the
        // peers drawn in the last few rounds.
        let chain = config.codec.top_k(dim).map(|k| {
            let copies = weights
                .len()
                .max(4 * config.fanout)
                .min(config.max_peers.max(1));
            let last = config
                .last_fraction
                .zip(config.rounds)
                .map(|(f, from)| (from, crate::sparse::count(dim, crate::codec::ppm_of(f))));
            chain::Chain::new(k, last, wire::max_update_len(dim), copies)
        });
        let me = identity.public();
        // Keys only this node can compute (its signatures of fixed messages), so that peers can
        // aim neither at a bucket of the replay window nor at the ban a full table pushes out.
        let secret = |context: &str, message: &[u8]| {
            blake3::derive_key(context, &identity.sign(message, &[]))
        };
        let floor_key = secret("murmur replay floor buckets v1", b"murmur replay floor key");
        let evictions_key = secret("murmur ban evictions v1", b"murmur ban eviction key");
        Ok(Engine {
            rng: join::derive_rng(seed, &me, &Resume::default()),
            dither: Cell::new(0),
            me,
            identity,
            run,
            limit: wire::max_update_len(dim),
            dim,
            window: Window::keyed(config.max_peers, floor_key),
            peers: {
                let mut peers = Peers::new(config.ban_threshold, config.max_peers);
                if members.is_some() {
                    peers.members_listed();
                }
                peers.key_evictions(evictions_key);
                peers
            },
            config,
            seed,
            model: Own::Params(model),
            round: 0,
            signed: 0,
            checkpointed: 0,
            phase: Phase::Created,
            aggregator,
            asked: BTreeMap::new(),
            answers: BTreeMap::new(),
            held: Holds::default(),
            served_round: None,
            fetches: BTreeMap::new(),
            uplink_free: Duration::ZERO,
            shares: share::Shares::default(),
            retries: BTreeMap::new(),
            menu: Menu::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            adversary,
            weights,
            members,
            sent: VecDeque::new(),
            last_received: BTreeMap::new(),
            reference: Vec::new(),
            last_update: None,
            intel: BTreeMap::new(),
            forged: BTreeMap::new(),
            chain,
            memo: None,
            spares: None,
            assist: None,
            hand_over_mixes: true,
        })
    }

    /// Shares the signature and digest checks of signed updates and announcements with the
    /// other engines that hold `memo` (see [`crate::memo`]): for a harness that runs many
    /// engines in one process and hands the same allocation to each receiver. The verdicts do
    /// not change.
    pub fn share_checks(&mut self, memo: Arc<Memo>) {
        self.memo = Some(memo);
    }

    /// Mixes into model buffers other engines holding `spares` are done with, and gives them
    /// the model it trained from once the trained one is back (see [`crate::spares`]): for a
    /// harness that runs many engines in one process. The results do not change.
    pub fn share_spares(&mut self, spares: Arc<crate::spares::Spares>) {
        self.spares = Some(spares);
    }

    /// Lets another thread, when one is idle, hash part of each update this engine signs and sum
    /// part of each plain mean of updates read in place (see [`crate::assist`]): for a harness
    /// whose event loop signs and mixes for many engines while its worker threads wait. The
    /// digests and mixes do not change.
    pub fn assist_with(&mut self, assist: Arc<dyn crate::assist::Assist>) {
        self.assist = Some(assist);
    }

    /// Whether [`Output::Mixed`] carries a copy of the mixed model (`true` by default). A
    /// driver whose trainer starts each job from [`Engine::model`] turns it off, and the mix is
    /// not copied.
    pub fn hand_over_mixes(&mut self, on: bool) {
        self.hand_over_mixes = on;
    }

    /// This node's public key.
    pub fn id(&self) -> PeerKey {
        self.me
    }

    /// The round being trained or collected; before the first round and once finished, the last
    /// completed round.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The signed update this node serves now (an attacker's: the last it signed), for a
    /// harness that gives honest nodes' updates to omniscient attackers.
    pub fn latest_update(&self) -> Option<&Arc<[u8]>> {
        self.last_update.as_ref()
    }

    /// The last round whose mix is done (a checkpoint of it is complete): what a node that
    /// stops now resumes after.
    pub fn completed_round(&self) -> u64 {
        match self.phase {
            Phase::Training | Phase::Collecting { .. } => self.round.saturating_sub(1),
            Phase::Created | Phase::Joining(_) | Phase::Finished => self.round,
        }
    }

    /// The highest round this node ever signed an update for (its earlier lives included).
    pub fn signed_round(&self) -> u64 {
        self.signed
    }

    /// The current model: after mixing, or after local training while collecting (then, with
    /// the `f32` codec, held as the payload of the node's signed update).
    pub fn model(&self) -> ModelView<'_> {
        self.model.view()
    }

    /// Number of parameters.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Largest update message accepted, in bytes ([`wire::max_update_len`]).
    pub fn max_update_bytes(&self) -> usize {
        self.limit
    }

    /// The last signed update this node sent out (its trained model of its latest round, or
    /// what its attack sent): what it serves to a peer's fetch. `None` before the first round's
    /// training is done.
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

    /// Whether the caller keeps `peer` out at the connection (on [`Output::Ban`]): its ban is
    /// of a peer met (connected when banned or since, kept by an earlier life, or of a run
    /// listing its members), the bans this engine keeps and lifts with [`Output::Unban`] when
    /// it forgets them. Any other banned key (the author of relayed gossip, the subject of
    /// relayed evidence: keys anyone can make by the thousand) is refused by the engine if it
    /// ever comes up, and then is one met; a block list of them would grow without bound. A key
    /// outside the run's members is kept out too (the node's allow list does it before the
    /// engine hears of the key).
    pub fn keeps_out(&self, peer: &PeerKey) -> bool {
        self.peers.banned_met(peer) || !self.admits(peer)
    }

    /// Banned peers with the reason, in key order.
    pub fn banned(&self) -> Vec<(PeerKey, Rejection)> {
        self.peers.banned().collect()
    }

    /// The bans a later life keeps (what a restart passes in [`Resume::bans`]): those of peers
    /// that were connected when banned. A ban of a key that never connected (on relayed
    /// evidence or gossip) is this life's alone: anyone can make such keys by the thousand.
    pub fn bans_kept(&self) -> Vec<(PeerKey, Rejection)> {
        self.peers.kept().collect()
    }

    /// Connected, unbanned peers in key order.
    pub fn connected(&self) -> Vec<PeerKey> {
        self.peers.connected()
    }

    /// Whether [`Input::Start`] was given and the start-up (a join or catch-up) is over.
    pub fn is_started(&self) -> bool {
        !matches!(self.phase, Phase::Created | Phase::Joining(_))
    }

    /// Whether the configured number of rounds is done.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    /// The next output, if any.
    pub fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Engine::handle`] with [`Input::Tick`] next, if a timer is running.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let phase = match &self.phase {
            Phase::Collecting { deadline } => Some(*deadline),
            Phase::Joining(j) => Some(j.wake()),
            Phase::Created | Phase::Training | Phase::Finished => None,
        };
        let retry = self.retries.values().min().copied();
        [phase, self.held_until(), retry]
            .into_iter()
            .flatten()
            .min()
    }

    /// Feeds one input at time `now` (any monotonic clock, the same for every call). Peers'
    /// input never fails; an error is the caller's mistake and changes nothing.
    pub fn handle(&mut self, now: Duration, input: Input) -> Result<(), InputError> {
        if let Some(outsider) = self.outsider(&input) {
            self.refuse_outsider(outsider, input);
            return Ok(());
        }
        match input {
            Input::Start { resume, join } => self.on_start(now, resume, join)?,
            Input::PeerUp { peer } => {
                if peer != self.me {
                    match self.peers.up(peer) {
                        Some(reason) => self.outputs.push_back(Output::Ban { peer, reason }),
                        None => self.draw_late(peer),
                    }
                }
            }
            Input::PeerDown { peer } => {
                self.peers.down(&peer);
                self.unhold(&peer);
                self.pending_fetch_failed(&peer);
                self.answer_failed(&peer);
            }
            Input::UpdateReceived { from, bytes: _ } => self.on_push(from),
            Input::GossipReceived {
                author,
                relayer: _,
                message,
                bytes,
            } => {
                let verdict = self.on_gossip(author, &bytes);
                self.outputs
                    .push_back(Output::GossipChecked { message, verdict });
            }
            Input::FetchRequested {
                from,
                request,
                round,
                have,
            } => self.on_fetch_request(now, from, request, round, have),
            Input::Fetched { peer, update } => match self.phase {
                Phase::Joining(_) => self.on_fetched(peer, update.as_ref()),
                Phase::Collecting { .. } => self.on_answer(peer, update.as_ref()),
                _ => {}
            },
            Input::Busy { peer } => match self.phase {
                Phase::Joining(_) => self.on_fetched(peer, None),
                Phase::Collecting { .. } => self.on_busy(now, peer),
                _ => {}
            },
            Input::Unframed { peer, oversize } => self.reject(
                peer,
                if oversize {
                    Rejection::Oversize
                } else {
                    Rejection::Malformed
                },
            ),
            Input::Trained {
                round,
                params,
                samples,
            } => self.on_trained(now, round, params, samples)?,
            Input::Tick => {
                self.answer_held(now, true);
                self.retry_due(now);
            }
            Input::Intel { update } => self.on_intel(&update),
        }
        self.advance(now);
        // A ban the full table pushed out has ended: the caller lets the peer connect again
        // (it keeps no block list longer than the table).
        for peer in self.peers.take_forgotten() {
            self.outputs.push_back(Output::Unban { peer });
        }
        Ok(())
    }

    /// Moves on when the phase's condition holds: a join that has its answers or whose time
    /// is up, a round that has its updates or whose time is up.
    fn advance(&mut self, now: Duration) {
        match &self.phase {
            Phase::Joining(_) => self.join_step(now),
            Phase::Collecting { deadline } if self.ready(now, *deadline) => self.mix(),
            _ => {}
        }
        // An attacker with free timing takes its current model as trained the moment a round
        // starts (no `Train` was asked for). Once per input: a round it starts cannot mix
        // before a later input, so this never loops.
        if matches!(self.phase, Phase::Training) && self.trains_free() {
            let model = self.model.params().into_owned();
            self.on_trained(now, self.round, model, 0)
                .expect("the round being trained, of the model's size");
        }
    }

    /// Whether the current round takes the model as trained without asking the trainer: an
    /// attacker with free timing ([`Adversary::free_timing`]) always, any node in the rounds of
    /// mixing alone after its training rounds ([`Config::final_mix_rounds`]).
    fn trains_free(&self) -> bool {
        self.adversary.as_ref().is_some_and(|a| a.free_timing)
            || self.config.rounds.is_some_and(|r| self.round > r)
    }
}
