//! A cluster of engines in virtual time: the one event loop that runs many nodes.
//!
//! [`Cluster`] owns N [`Engine`]s, a virtual clock and an event queue ordered by (time,
//! scheduling sequence). It pops the earliest event, feeds it to one engine, and carries out that
//! engine's outputs as a node's driver does: [`Output::Train`] becomes a training job that
//! finishes after the world's compute time, [`Output::Send`], [`Output::Fetch`] and
//! [`Output::Serve`] become messages that arrive after the world's link time, [`Output::Broadcast`]
//! is published and relayed as gossipsub relays it, [`Output::Ban`] closes the connection (until
//! an [`Output::Unban`]), the engine's timer becomes a tick. It makes no protocol decision: who is sent what, what
//! is accepted, when a round ends and whom to ban are the engines'.
//!
//! What the cluster does not know is plugged in through a [`World`]: the training (and how long
//! it takes) and how long a message takes on its link. murmur-sim plugs in burn trainers and its
//! network model; the protocol's tests plug in a toy objective. The cluster itself stays pure (no
//! threads, no clock): it hands the world each training job as soon as it is queued, while fewer
//! than [`JOBS_PER_BATCH`] results wait for their virtual time ([`World::train`]), so a world may
//! train in the background on worker threads while the events go on, and results are read back
//! in event order ([`World::trained`]).
//!
//! **Connections.** Nodes are linked by [`Cluster::link`] (who may connect to whom). A link is up
//! when both nodes are online, neither has banned the other, and no fault cuts it; every change
//! reaches both engines as [`Input::PeerUp`] / [`Input::PeerDown`], as a transport would report
//! it. Faults ([`Cluster::cut`], [`Cluster::isolate`], [`Cluster::partition`], [`Cluster::heal`])
//! take links down until healed; [`Cluster::set_drop`] loses a fraction of messages.
//!
//! **Gossip** ([`Gossip`]). A published message goes to `mesh` of the author's connected peers
//! (gossipsub's mesh degree; all of them with 0); a node that receives it for the first time hands
//! it to its engine with the author and the relayer ([`Input::GossipReceived`]) and, if the
//! engine accepts it ([`Output::GossipChecked`]), forwards it to `mesh` of its own peers, except
//! the one it came from, until `hops` forwards have been made.
//! Each node remembers the messages it has seen for `seen_for` (gossipsub's duplicate cache) and
//! drops copies. A copy sent to a node that has seen the message, and will still remember it when
//! the copy arrives, takes its link's bandwidth but is counted as a duplicate at once rather than
//! queued: on arrival it would change nothing else.
//!
//! **What attackers know.** An attacker engine beyond [`Knowledge::Own`] passes on what it
//! fetches ([`Output::Share`]); the cluster hands it at once to every other such attacker as
//! [`Input::Intel`] (a side channel between red-team processes, free and instant). An
//! [`Knowledge::Omniscient`] attacker is also handed each honest node's update the moment that
//! node signs it.
//!
//! **Lifecycle.** [`Cluster::start`] brings nodes online for the first time ([`Input::Start`]),
//! [`Cluster::leave`] takes one offline (its work in flight is lost), [`Cluster::restart`] brings
//! it back as a restarted process: a new engine from its last checkpoint (the model of its last
//! [`Output::Checkpoint`], kept for the nodes [`Cluster::keep_checkpoints`] names), the highest
//! round it signed, and its bans, with peers to join through.
//!
//! **Work done once.** An update a node serves to k peers reaches them as one allocation; the
//! engines share a [`Memo`] of the allocations whose signature and digest passed (and the
//! dimension their payload decodes at, and an announcement's decoded header), so those checks
//! are made once per message rather than once per receiver ([`Cluster::check_alone`]
//! turns this off). Every other check is still every engine's, and no verdict changes. The
//! engines also pass free model buffers on to one another ([`crate::spares`]): a mix writes
//! over the model another node has just trained from, still in the caches.
//!
//! **Determinism.** Ties in time are broken by the order events were scheduled; losses and mesh
//! draws come from one seeded generator drawn in event order. The same nodes, world and calls give
//! the same run.

mod events;
mod faults;
mod gossip;
mod outputs;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod toy;

use crate::attack::Knowledge;
use crate::engine::{
    ConfigError, Engine, Input, ModelView, Origin, Output, Rejection, Resume, Setup, Stats,
};
use crate::memo::Memo;
use crate::sign::PeerKey;
use events::{Event, Message};
use faults::Faults;
pub use gossip::Gossip;
use gossip::Seen;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Most training jobs handed to the world and not yet read back: enough to keep worker threads
/// busy, few enough that the trained models waiting for their jobs' virtual time stay a small
/// part of memory.
pub const JOBS_PER_BATCH: usize = 64;

/// What the cluster leaves to its user: training, and the time things take.
pub trait World {
    /// How long `node`'s next local training job takes, in virtual time.
    fn train_time(&mut self, node: usize) -> Duration;
    /// Runs one local training job for each of `jobs` (nodes ascending, distinct), each from
    /// the model the world holds for the node, or, if it holds none (a world may drop the mix
    /// [`World::mixed`] hands it), from the given model: the engine's, which is that mix. The
    /// cluster hands jobs over as soon as they are queued (the due first, at most
    /// [`JOBS_PER_BATCH`] not yet read back), so the world may run them in parallel, now or in
    /// the background; each result is read back with [`World::trained`] when its job's virtual
    /// time comes. Every job handed over counts, even if its node leaves before that time: a
    /// world that runs jobs in the background still runs that one (its trainer's state then
    /// does not depend on when the job ran).
    fn train(&mut self, jobs: &[(usize, ModelView<'_>)]);
    /// The parameters and the number of samples of `node`'s finished job. They go to the
    /// node's engine, so the world may hand over its own buffer: until [`World::mixed`] or
    /// [`World::set_model`], `node` trains nothing.
    fn trained(&mut self, node: usize) -> (Vec<f32>, u64);
    /// `node`'s trainer continues from `params` (a join, or a restart's checkpoint).
    fn set_model(&mut self, node: usize, params: &[f32]);
    /// Whether [`World::mixed`] is handed a copy of each mix (`true` by default). A world
    /// whose jobs start from the engine's model ([`World::train`]) need not: its engines then
    /// do not copy their mixes.
    fn takes_mixes(&self) -> bool {
        true
    }
    /// `node`'s trainer continues from its round's mix: `params`, a copy the world may keep or
    /// drop (a trainer with an outer optimiser steps towards it; by default the mix replaces
    /// the model), or `None` if the world does not take mixes ([`World::takes_mixes`]), when
    /// its trainer must start the next job from the engine's model, which is the mix.
    fn mixed(&mut self, node: usize, params: Option<Vec<f32>>) {
        if let Some(params) = params {
            self.set_model(node, &params);
        }
    }
    /// Another thread that may take part of what the engines compute on the event loop (see
    /// [`crate::assist`]); `None` by default.
    fn assist(&self) -> Option<Arc<dyn crate::assist::Assist>> {
        None
    }
    /// `node` finished its rounds: it trains nothing more unless it restarts (and a restart
    /// gives it a model with [`World::set_model`]), so the world may free its model.
    fn finished(&mut self, _node: usize) {}
    /// When a message of `bytes` bytes that `from` sends to `to` at `now` arrives.
    fn arrival(&mut self, now: Duration, from: usize, to: usize, bytes: usize) -> Duration;
}

/// Something the cluster's user may want to see, returned by [`Cluster::step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// An event of [`Cluster::schedule`] is due.
    Scheduled(u64),
    /// A node started (its first start, or a restart).
    Started {
        /// The node.
        node: usize,
        /// How.
        origin: Origin,
        /// The first round it trains.
        round: u64,
        /// Peers whose models it started from.
        peers: usize,
        /// What it resumed from.
        resume: Resume,
    },
    /// A node mixed a round.
    Mixed {
        /// The node.
        node: usize,
        /// The round that ended.
        round: u64,
        /// Its completed round now (later than `round` if it caught up).
        completed: u64,
        /// The nodes whose models it mixed.
        peers: Vec<usize>,
        /// Models mixed, its own included.
        inputs: usize,
        /// Inputs the rule clipped or discarded.
        clipped: usize,
        /// Whether it kept its own model for lack of inputs.
        skipped: bool,
    },
    /// `node` banned `peer`.
    Banned {
        /// The node.
        node: usize,
        /// The peer it banned.
        peer: usize,
        /// Why.
        reason: Rejection,
    },
    /// `node` lifted its ban on `peer` (a ban on the outlier screen's evidence alone ended); the
    /// connection comes back unless the peer bans the node.
    Unbanned {
        /// The node.
        node: usize,
        /// The peer let back in.
        peer: usize,
    },
    /// A node finished its configured rounds.
    Finished {
        /// The node.
        node: usize,
    },
}

/// Running counts of a cluster.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counters {
    /// Events handled.
    pub events: u64,
    /// Messages handed to an engine.
    pub delivered: u64,
    /// Messages lost, cut by a fault, or sent over a connection that closed.
    pub dropped: u64,
    /// Gossip messages handed to an engine (part of `delivered`).
    pub gossip_delivered: u64,
    /// Gossip copies dropped because the node had seen the message: on arrival, or when sent
    /// if the node had seen it by then and would still remember it on arrival (such a copy is
    /// counted here even if its connection goes down on the way).
    pub duplicates: u64,
    /// Gossip messages a node's engine did not accept, and so did not forward.
    pub gossip_refused: u64,
    /// Messages handed to an engine from a peer it had banned: 0, since a ban closes the
    /// connection (counted to show it).
    pub from_banned: u64,
    /// Training jobs run.
    pub train_jobs: u64,
    /// Batches they ran in.
    pub train_batches: u64,
}

/// One node of the cluster.
#[derive(Debug)]
struct Member {
    /// What its engines are built from (without the model: see `initial`).
    setup: Setup,
    /// The setup's model, shared with the node added just before it when theirs is the same
    /// (a run starts all its nodes from one model; a copy each would be a model per node for
    /// the restarts alone).
    initial: Arc<[f32]>,
    engine: Engine,
    /// The timer deadline already queued.
    armed: Option<Duration>,
    /// Whether its checkpoints are kept (it may restart).
    keeps_checkpoints: bool,
    /// Its last checkpoint: round and model.
    checkpoint: Option<(u64, Vec<f32>)>,
    /// Gossip messages seen.
    seen: Seen,
    /// What its current engine resumed from.
    resume: Resume,
    /// The counts of its earlier engines.
    lives: Stats,
    /// The last update of it handed to omniscient attackers.
    told: Option<Arc<[u8]>>,
}

/// Whether a node is online, and in which life: read for every message and event, so kept apart
/// from the members (each holds an engine: thousands of nodes' engines do not stay in cache).
#[derive(Debug, Default, Clone, Copy)]
struct Status {
    online: bool,
    /// Incarnation: bumped when the node leaves, so the events of its earlier life are ignored.
    epoch: u64,
}

/// N engines, their connections, and the events between them. See the module documentation.
#[derive(Debug)]
pub struct Cluster<W> {
    world: W,
    members: Vec<Member>,
    /// Each member's [`Status`], by index.
    status: Vec<Status>,
    index: BTreeMap<PeerKey, usize>,
    /// Who may connect to whom, sorted.
    links: Vec<Vec<usize>>,
    /// Pairs `(low, high)` closed by a ban.
    banned: BTreeSet<(usize, usize)>,
    /// Changes that may have taken a connection down: each ban, and each [`Cluster::rewire`]
    /// (leaves, faults and heals, but also starts, restarts and unbans, counted all the same).
    /// A message delivered with no change since it was sent skips looking its connection up.
    downs: u64,
    faults: Faults,
    gossip: Gossip,
    queue: events::Queue,
    now: Duration,
    rng: ChaCha8Rng,
    /// Training jobs queued and not yet run, due first on top: (when done, node, epoch). Jobs
    /// of nodes no longer in that life stay until they come up, and are skipped then.
    jobs: BinaryHeap<Reverse<(Duration, usize, u64)>>,
    /// Jobs run whose results are not yet delivered.
    ready: BTreeSet<(usize, u64)>,
    /// Queued jobs looked at while choosing the jobs to run (for a test of that cost).
    #[cfg(test)]
    jobs_looked_at: u64,
    /// Whether gossip copies a receiver will surely refuse are queued anyway (to show that not
    /// queuing them changes nothing).
    #[cfg(test)]
    queue_seen_copies: bool,
    next_request: u64,
    steps: VecDeque<Step>,
    counters: Counters,
    /// The gossip message an engine is checking: forwarded once it is accepted.
    checking: Option<Relay>,
    /// The attackers that know more than their own mixes, and what.
    insiders: Vec<(usize, Knowledge)>,
    /// The checks the engines share; `None` after [`Cluster::check_alone`].
    memo: Option<Arc<Memo>>,
    /// Free model buffers the engines pass on to one another.
    spares: Arc<crate::spares::Spares>,
}

/// A gossip message to forward from `at` if its engine accepts it.
#[derive(Debug)]
struct Relay {
    at: usize,
    author: usize,
    from: usize,
    id: u64,
    hops: Option<u32>,
    bytes: Arc<[u8]>,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl<W: World> Cluster<W> {
    /// An empty cluster; `seed` drives its losses and gossip draws.
    pub fn new(world: W, seed: u64, gossip: Gossip) -> Self {
        Cluster {
            world,
            members: Vec::new(),
            status: Vec::new(),
            index: BTreeMap::new(),
            links: Vec::new(),
            banned: BTreeSet::new(),
            downs: 0,
            faults: Faults::default(),
            gossip,
            queue: events::Queue::default(),
            now: Duration::ZERO,
            rng: ChaCha8Rng::seed_from_u64(seed),
            jobs: BinaryHeap::new(),
            #[cfg(test)]
            jobs_looked_at: 0,
            #[cfg(test)]
            queue_seen_copies: false,
            ready: BTreeSet::new(),
            next_request: 0,
            steps: VecDeque::new(),
            counters: Counters::default(),
            checking: None,
            insiders: Vec::new(),
            memo: Some(Arc::new(Memo::new())),
            spares: Arc::default(),
        }
    }

    /// Makes every engine added or restarted from now on check every update alone (each
    /// receiver verifies the signature and hashes the payload), as separate processes do.
    pub fn check_alone(&mut self) {
        self.memo = None;
    }

    /// The checks shared between the engines (`None` after [`Cluster::check_alone`]).
    pub fn memo(&self) -> Option<&Memo> {
        self.memo.as_deref()
    }

    fn built(&self, setup: Setup) -> Result<Engine, ConfigError> {
        let mut engine = Engine::new(setup)?;
        engine.hand_over_mixes(self.world.takes_mixes());
        if let Some(m) = &self.memo {
            engine.share_checks(Arc::clone(m));
        }
        engine.share_spares(Arc::clone(&self.spares));
        if let Some(a) = self.world.assist() {
            engine.assist_with(a);
        }
        Ok(engine)
    }

    /// Adds a node, offline until [`Cluster::start`]; returns its index.
    pub fn add(&mut self, mut setup: Setup) -> Result<usize, ConfigError> {
        let initial: Arc<[f32]> = match self.members.last() {
            Some(m) if *m.initial == *setup.model => Arc::clone(&m.initial),
            _ => setup.model.as_slice().into(),
        };
        let model = std::mem::take(&mut setup.model);
        let engine = self.built(Setup {
            model,
            ..setup.clone()
        })?;
        let i = self.members.len();
        self.index.insert(engine.id(), i);
        if let Some(k) = engine.knowledge().filter(|k| !k.is_own()) {
            self.insiders.push((i, k));
        }
        self.status.push(Status::default());
        self.members.push(Member {
            setup,
            initial,
            engine,
            armed: None,
            keeps_checkpoints: false,
            checkpoint: None,
            seen: Seen::default(),
            resume: Resume::default(),
            lives: Stats::default(),
            told: None,
        });
        self.links.push(Vec::new());
        Ok(i)
    }

    /// Lets `a` and `b` connect (both ways) whenever both are online and nothing cuts them.
    pub fn link(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        for (x, y) in [(a, b), (b, a)] {
            if let Err(k) = self.links[x].binary_search(&y) {
                self.links[x].insert(k, y);
            }
        }
    }

    /// Keeps `node`'s checkpoints (a model per checkpoint asked for), so that it can restart
    /// from them.
    pub fn keep_checkpoints(&mut self, node: usize) {
        self.members[node].keeps_checkpoints = true;
    }

    /// Schedules [`Step::Scheduled`]`(tag)` at `at`.
    pub fn schedule(&mut self, at: Duration, tag: u64) {
        self.push(at, Event::Scheduled(tag));
    }

    /// The world.
    pub fn world(&self) -> &W {
        &self.world
    }

    /// The world, mutably.
    pub fn world_mut(&mut self) -> &mut W {
        &mut self.world
    }

    /// Virtual time now.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Node `i`'s current engine.
    pub fn engine(&self, i: usize) -> &Engine {
        &self.members[i].engine
    }

    /// The counts of node `i`'s engines before its current one (earlier lives).
    pub fn earlier_lives(&self, i: usize) -> &Stats {
        &self.members[i].lives
    }

    /// Whether node `i` is online.
    pub fn is_online(&self, i: usize) -> bool {
        self.status[i].online
    }

    /// The node with this key.
    pub fn node_of(&self, key: &PeerKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// Running counts.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether the connection between `a` and `b` is up.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        a != b
            && self.status[a].online
            && self.status[b].online
            && self.links[a].binary_search(&b).is_ok()
            && !self.banned.contains(&pair(a, b))
            && !self.faults.cuts(a, b)
    }

    /// Node `i`'s peers whose connection to it is up, in index order.
    pub fn peers_of(&self, i: usize) -> Vec<usize> {
        self.links[i]
            .iter()
            .copied()
            .filter(|&j| self.connected(i, j))
            .collect()
    }

    /// Brings `nodes` online for the first time: their connections come up, then each engine
    /// starts ([`Input::Start`] with nothing to resume, fetching its peers' models first when
    /// `join`).
    pub fn start(&mut self, nodes: &[usize], join: bool) {
        self.rewire(Some(nodes), |c| {
            for &i in nodes {
                c.status[i].online = true;
            }
        });
        for &i in nodes {
            let resume = Resume::default();
            self.feed(i, Input::Start { resume, join });
        }
    }

    /// Takes node `i` offline: its peers see the connection drop, its work in flight is lost.
    pub fn leave(&mut self, i: usize) {
        if !self.status[i].online {
            return;
        }
        self.rewire(Some(&[i]), |c| {
            c.status[i].online = false;
            c.status[i].epoch += 1;
            c.members[i].armed = None;
        });
        self.ready.retain(|(node, _)| *node != i);
    }

    /// Brings node `i` back as a restarted process: a new engine from its last checkpoint (or
    /// the setup's model without one), with the highest round it signed and its bans, fetching
    /// its peers' models first.
    pub fn restart(&mut self, i: usize) {
        if self.status[i].online {
            return;
        }
        let m = &mut self.members[i];
        let (model, checkpoint) = match &m.checkpoint {
            Some((round, model)) => (model.clone(), Some(*round)),
            None => (m.initial.to_vec(), None),
        };
        let resume = Resume {
            checkpoint,
            signed: m.engine.signed_round(),
            bans: m.engine.bans_kept(),
        };
        let setup = Setup {
            model,
            ..m.setup.clone()
        };
        let engine = self
            .built(setup)
            .expect("the setup was valid when the node was added");
        let m = &mut self.members[i];
        let old = std::mem::replace(&mut m.engine, engine);
        m.lives.add(old.stats());
        m.resume = resume.clone();
        self.world
            .set_model(i, &self.members[i].engine.model().to_cow());
        // The new process keeps the bans of peers it met; the others (keys it never met, which
        // a node does not persist) are over, unless the peer bans it too.
        let me = self.members[i].engine.id();
        let kept: BTreeSet<PeerKey> = resume.bans.iter().map(|(k, _)| *k).collect();
        self.rewire(Some(&[i]), |c| {
            c.status[i].online = true;
            let members = &c.members;
            c.banned.retain(|&(a, b)| {
                let j = if a == i {
                    b
                } else if b == i {
                    a
                } else {
                    return true;
                };
                kept.contains(&members[j].engine.id()) || members[j].engine.is_banned(&me)
            });
        });
        self.feed(i, Input::Start { resume, join: true });
    }

    /// Cuts the link between `a` and `b` until [`Cluster::heal`].
    pub fn cut(&mut self, a: usize, b: usize) {
        self.rewire(Some(&[a, b]), |c| c.faults.cut(a, b));
    }

    /// Cuts every link of `node` until [`Cluster::heal`].
    pub fn isolate(&mut self, node: usize) {
        self.rewire(Some(&[node]), |c| c.faults.isolate(node));
    }

    /// Splits the network: `groups[i]` is node `i`'s side; links across sides are cut until
    /// [`Cluster::heal`].
    pub fn partition(&mut self, groups: Vec<usize>) {
        self.rewire(None, |c| c.faults.partition(groups));
    }

    /// Heals every cut, isolation and partition (bans stay).
    pub fn heal(&mut self) {
        self.rewire(None, |c| c.faults.heal());
    }

    /// Node `i` publishes `bytes` as gossip now, whatever its engine would do (an attacker's
    /// junk, replayed or forged announcements; the red team's tool). Relayed like any message.
    pub fn publish(&mut self, i: usize, bytes: Arc<[u8]>) {
        self.carry_out(i, Output::Broadcast { bytes });
    }

    /// Loses each message with probability `fraction` from now on.
    pub fn set_drop(&mut self, fraction: f64) {
        self.faults.drop = fraction;
    }

    /// Handles events until something the caller wants to see happens, and returns it. `None`
    /// when nothing is left to happen, or the next event is after `limit` (then the clock is at
    /// `limit`).
    pub fn step(&mut self, limit: Duration) -> Option<Step> {
        loop {
            if let Some(s) = self.steps.pop_front() {
                return Some(s);
            }
            if self.queue.next_at()? > limit {
                self.now = self.now.max(limit);
                return None;
            }
            let (at, event) = self.queue.pop().expect("one is due");
            self.now = at;
            self.counters.events += 1;
            self.handle(event);
            self.run_ahead();
        }
    }
}
