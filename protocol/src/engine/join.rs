//! Start-up with peers: a late joiner, or a restart catching up, fetches its peers' latest
//! signed updates and starts from their median.
//!
//! The node asks up to `join-peers` connected peers for their latest signed update
//! ([`Output::Fetch`]), in an order drawn from its own generator (never in key order: an attacker
//! could grind keys to be asked first). It waits until `ASK_FACTOR` times as many peers are
//! connected, or a quarter of `join-timeout-ms` has passed, before drawing, so that the first peers
//! to connect are not the ones asked. A peer that answers nothing (it has no model yet), fails,
//! or sends an update that fails the checks makes room to ask another, up to `ASK_FACTOR` times
//! `join-peers` peers in all; a bad update also costs its sender the usual penalty. The join ends
//! when `join-peers` updates passed the checks and outnumber the answers without a model (see the
//! round below), when every peer it may ask has answered, or at the deadline (peers keep
//! connecting while a node joins: one with few peers waits for more).
//!
//! Every answer is checked as a pushed update is (size, signature, sender, run, dimension,
//! finiteness, equivocation), except that it may be any number of rounds ahead, and may be an
//! update the node already received pushed (peers push to a joiner as soon as it connects). The
//! survivors are mixed by the coordinate-wise median (Yin et al. 2018), whose breakdown point is
//! 1/2: fewer than half of the answering peers lying cannot move any coordinate outside the range
//! of the honest answers. The starting round is the lower median of the answers' rounds, so a
//! lying minority cannot push the node far ahead or behind either. Every answer but one that failed
//! the checks votes on the round, one without a model (the peer has none yet, or its request
//! failed) as round 0: the first nodes of a run have no model, and one peer answering with an
//! update of a huge round must not set a joiner's round (every honest peer would refuse its
//! updates as too far ahead, and the round outlives restarts). When the lower median is 0 the
//! node starts fresh, whatever models came. The price: attackers holding half the votes (or
//! answering "nothing" at once while honest models are still in flight at the deadline) can make
//! a joiner start fresh, and a fresh node more than `max-ahead` rounds behind its peers refuses
//! their updates as too far ahead. Cost: O(k d log² k) for k answers of d parameters.
//!
//! What the node starts from ([`Output::Started`]):
//! - no checkpoint: the median of the answers ([`Origin::Joined`]); with no valid answer, or
//!   half of the answers or more without a model, the run's initial model ([`Origin::Fresh`]);
//! - a checkpoint: its own model ([`Origin::Checkpoint`]), unless the answers' round is more than
//!   `max-staleness` rounds ahead of it, when its updates would only be dropped as lagging: then
//!   the median of the answers ([`Origin::CaughtUp`]).
//!
//! In every case rounds go on past the highest round the node ever signed.

use super::receive::{Checked, Keep};
use super::{Config, Engine, InputError, Origin, Output, Own, Phase, Rejection, Resume, peers};
use crate::aggregate::{self, Aggregator};
use crate::sign::PeerKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// At most this many times `join-peers` peers are asked, and the draw waits for this many times
/// `join-peers` candidates (or a quarter of the timeout).
pub const ASK_FACTOR: usize = 4;

/// A peer's answer to the join's fetch.
#[derive(Debug)]
enum Answer {
    /// Asked, no answer yet.
    Waiting,
    /// No model, or a failed request: a vote for round 0.
    Nothing,
    /// A model that failed the checks (its sender was penalised): no vote.
    Refused,
    /// A checked model of `round`.
    Model { round: u64, params: Vec<f32> },
}

/// The state of a join in progress.
#[derive(Debug)]
pub(super) struct Joining {
    /// Draw whom to ask from this time on even with few candidates.
    draw_at: Duration,
    /// Whether drawing has begun.
    drawing: bool,
    /// Start with what has come at this time.
    deadline: Duration,
    want: usize,
    asked: BTreeMap<PeerKey, Answer>,
    resume: Resume,
}

impl Joining {
    pub(super) fn new(now: Duration, config: &Config, resume: Resume) -> Self {
        let timeout = Duration::from_millis(config.join_timeout_ms);
        Joining {
            draw_at: now + timeout / 4,
            drawing: false,
            deadline: now + timeout,
            want: config.join_peers,
            asked: BTreeMap::new(),
            resume,
        }
    }

    /// When the engine must be woken: the draw, then the deadline.
    pub(super) fn wake(&self) -> Duration {
        if self.drawing {
            self.deadline
        } else {
            self.draw_at
        }
    }

    fn models(&self) -> usize {
        self.asked
            .values()
            .filter(|a| matches!(a, Answer::Model { .. }))
            .count()
    }

    /// Answers without a model: votes for round 0.
    fn nothings(&self) -> usize {
        self.asked
            .values()
            .filter(|a| matches!(a, Answer::Nothing))
            .count()
    }

    fn waiting(&self) -> usize {
        self.asked
            .values()
            .filter(|a| matches!(a, Answer::Waiting))
            .count()
    }

    fn may_ask_more(&self) -> bool {
        self.asked.len() < ASK_FACTOR * self.want
    }

    /// Whether `models` answers with a model are enough: `want` of them, and more than the
    /// answers without one (else the lower median of the rounds is 0).
    fn enough(&self, models: usize) -> bool {
        models >= self.want && models > self.nothings()
    }

    fn wants_more(&self) -> bool {
        !self.enough(self.models() + self.waiting()) && self.may_ask_more()
    }

    /// Done when enough models passed the checks, when every peer it may ask has answered, or
    /// at the deadline. With fewer peers than it wants it waits: more may connect.
    fn done(&self, now: Duration) -> bool {
        now >= self.deadline
            || self.enough(self.models())
            || (self.waiting() == 0 && !self.may_ask_more())
    }
}

impl Engine {
    fn joining(&mut self) -> Option<&mut Joining> {
        match &mut self.phase {
            Phase::Joining(j) => Some(j),
            _ => None,
        }
    }

    /// Asks more peers while answers are wanted, and starts when the join is done.
    pub(super) fn join_step(&mut self, now: Duration) {
        let connected = self.peers.connected();
        let Phase::Joining(j) = &mut self.phase else {
            return;
        };
        let mut candidates: Vec<PeerKey> = connected
            .into_iter()
            .filter(|p| !j.asked.contains_key(p))
            .collect();
        j.drawing |= now >= j.draw_at || candidates.len() >= ASK_FACTOR * j.want;
        if j.drawing {
            while j.wants_more() && !candidates.is_empty() {
                let pick = self.rng.random_range(0..candidates.len());
                let peer = candidates.swap_remove(pick);
                j.asked.insert(peer, Answer::Waiting);
                self.outputs.push_back(Output::Fetch {
                    peer,
                    round: None,
                    // A joiner holds no copies yet: a full model.
                    have: None,
                });
            }
        }
        if j.done(now) {
            self.finish_join();
        }
    }

    /// A peer's answer to a fetch: checked at once; a bad one is penalised.
    pub(super) fn on_fetched(&mut self, peer: PeerKey, update: Option<&Arc<[u8]>>) {
        let waiting = self
            .joining()
            .is_some_and(|j| matches!(j.asked.get(&peer), Some(Answer::Waiting)));
        if !waiting {
            return; // not asked, or already answered: nothing to do
        }
        let answer = match update {
            None => Answer::Nothing,
            Some(bytes) => match self.check(peer, bytes, (0, u64::MAX), true, Keep::Params) {
                Ok(Checked { round, params }) => Answer::Model { round, params },
                Err(reason) => {
                    if reason != super::Rejection::Equivocation {
                        self.reject(peer, reason);
                    }
                    Answer::Refused
                }
            },
        };
        if let Some(j) = self.joining() {
            j.asked.insert(peer, answer);
        }
    }

    /// A peer went down while its answer was awaited: it answers nothing.
    pub(super) fn pending_fetch_failed(&mut self, peer: &PeerKey) {
        if let Some(j) = self.joining()
            && let Some(a @ Answer::Waiting) = j.asked.get_mut(peer)
        {
            *a = Answer::Nothing;
        }
    }

    fn finish_join(&mut self) {
        let Phase::Joining(j) = std::mem::replace(&mut self.phase, Phase::Training) else {
            return;
        };
        let Joining { asked, resume, .. } = *j;
        // Every answer but a refused one votes on the round; one without a model (a peer that
        // has none yet, or whose request failed) votes 0.
        let mut rounds: Vec<u64> = asked
            .values()
            .filter_map(|a| match a {
                Answer::Waiting | Answer::Refused => None,
                Answer::Nothing => Some(0),
                Answer::Model { round, .. } => Some(*round),
            })
            .collect();
        let models: Vec<Vec<f32>> = asked
            .into_values()
            .filter_map(|a| match a {
                Answer::Model { params, .. } => Some(params),
                _ => None,
            })
            .collect();
        let joined = lower_median(&mut rounds)
            .filter(|&round| round > 0)
            .and_then(|round| Some((round, self.median(&models)?)));
        let peers = models.len();
        match (resume.checkpoint, joined) {
            (None, Some((round, model))) => self.begin(Origin::Joined, round, Some(model), peers),
            (None, None) => self.begin(Origin::Fresh, 0, None, 0),
            (Some(c), Some((round, model)))
                if round > c.saturating_add(self.config.max_staleness) =>
            {
                self.begin(Origin::CaughtUp, round, Some(model), peers)
            }
            (Some(c), _) => self.begin(Origin::Checkpoint, c, None, 0),
        }
    }

    /// The coordinate-wise median of the answers' models.
    fn median(&self, models: &[Vec<f32>]) -> Option<Vec<f32>> {
        if models.is_empty() {
            return None;
        }
        let inputs: Vec<&[f32]> = models.iter().map(Vec::as_slice).collect();
        let config = aggregate::Config {
            rule: aggregate::Rule::Median,
            pre: Vec::new(),
        };
        let mut agg = Aggregator::new(&config, self.dim).ok()?;
        let mut out = vec![0.0; self.dim];
        // The median draws no randomness; the generator only satisfies the signature.
        let mut rng = rand_chacha::ChaCha8Rng::from_seed([0; 32]);
        agg.aggregate(inputs[0], &inputs, &[], &mut rng, &mut out)
            .ok()?;
        Some(out)
    }
}

/// The lower median of `rounds` (sorted in place), `None` if empty.
fn lower_median(rounds: &mut [u64]) -> Option<u64> {
    rounds.sort_unstable();
    rounds.get(rounds.len().checked_sub(1)? / 2).copied()
}

/// Start-up: a fresh start, a restart from a checkpoint, or a join through peers.
impl Engine {
    pub(super) fn on_start(
        &mut self,
        now: Duration,
        resume: Resume,
        join: bool,
    ) -> Result<(), InputError> {
        if !matches!(self.phase, Phase::Created) {
            return Err(InputError::AlreadyStarted);
        }
        self.rng = derive_rng(self.seed, &self.me, &resume);
        if self.config.codec.dithers() {
            self.dither.set(self.rng.random());
        }
        self.signed = resume.signed;
        self.round = resume.checkpoint.unwrap_or(0);
        self.checkpointed = self.round;
        // Without a checkpoint the setup's model is the run's initial model, every fresh
        // node's first estimate in the `top-k` chain.
        if let Some(c) = self.chain.as_mut()
            && resume.checkpoint.is_none()
        {
            c.set_genesis(&self.model.params());
        }
        // A key outside the run's members is refused by the list: a ban of it would only take
        // a place in the bounded table.
        for &(peer, reason) in &resume.bans {
            if !self.admits(&peer) {
                continue;
            }
            // A ban on the screen's word runs again from here (its end is not persisted).
            let until = (reason == Rejection::Outlier)
                .then(|| self.round.saturating_add(peers::SCREEN_BAN_ROUNDS));
            self.peers.restore(peer, reason, until);
            self.outputs.push_back(Output::Ban { peer, reason });
        }
        if join && self.config.join_peers > 0 {
            self.phase = Phase::Joining(Box::new(Joining::new(now, &self.config, resume)));
        } else {
            let origin = match resume.checkpoint {
                Some(_) => Origin::Checkpoint,
                None => Origin::Fresh,
            };
            self.begin(origin, self.round, None, 0);
        }
        Ok(())
    }

    /// Leaves start-up: rounds go on from `base` (a completed round), or from past the last
    /// signed round if that is later, so no round is ever signed twice.
    pub(super) fn begin(
        &mut self,
        origin: Origin,
        base: u64,
        model: Option<Vec<f32>>,
        peers: usize,
    ) {
        self.round = base.max(self.signed);
        if let Some(m) = &model {
            self.model = Own::Params(m.clone());
        }
        // A fresh node's estimate starts as the run's initial model, which its peers hold
        // already: its first update is an increment, not the model whole.
        if let Some(c) = self.chain.as_mut()
            && origin == Origin::Fresh
            && c.knows_genesis()
        {
            c.restart(0, &self.model.params());
        }
        // Stateful rules start from what the node holds now (centered clipping around its own
        // model, not around zero).
        self.aggregator.reset_to(&self.model.params());
        self.phase = Phase::Training;
        self.outputs.push_back(Output::Started {
            origin,
            round: self.round.saturating_add(1),
            model,
            peers,
        });
        self.start_round();
    }
}

/// The engine's generator: a function of the run's seed, the node's key and what it resumes
/// from (a restarted node does not repeat its earlier draws).
pub(super) fn derive_rng(seed: u64, me: &PeerKey, resume: &Resume) -> ChaCha8Rng {
    let mut h = blake3::Hasher::new();
    h.update(b"murmur/engine-rng/v1");
    h.update(&seed.to_le_bytes());
    h.update(&me.0);
    h.update(&resume.signed.to_le_bytes());
    h.update(&resume.checkpoint.map_or(u64::MAX, |c| c).to_le_bytes());
    ChaCha8Rng::from_seed(*h.finalize().as_bytes())
}
