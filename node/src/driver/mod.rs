//! The driver: one loop that feeds the protocol engine from the swarm, its timer and the
//! training thread, and carries out what the engine asks. It decides nothing about the
//! protocol: where the node starts, whom it asks for models, when rounds end, whom it bans are
//! the engine's; every output of [`Engine::poll`] is one `match` arm that moves bytes, sets a
//! timer, writes a file or queues a training command.
//!
//! Start-up ([`run`]): load the key, data, trainer and what the state directory remembers
//! ([`start::load`]: checkpoint, signed-round record, bans), build the engine and start it
//! ([`Input::Start`]), with peers to join through when bootstrap addresses are given.
//!
//! Standard output carries one JSON object per line ([`crate::event::Event`]); logs go to
//! standard error through `tracing`.

mod bans;
mod intel;
mod outputs;
pub mod start;
mod swarm;
mod trainer;
mod uplink;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::request_response::{InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::{PeerId, Swarm, gossipsub};
use murmur_learn::data::Dataset;
use murmur_learn::train::{Command, Reply};
use murmur_protocol::engine::{self, Adversary, Engine, Input};
use murmur_protocol::sign::PeerKey;
use murmur_protocol::wire;
use tracing::{info, warn};

use crate::config::Resolved;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::net::codec::Response;
use crate::net::{self, Behaviour, Names};
pub use start::Process;
pub use trainer::{Bridge, BridgeError, Cpu};

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be used.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The key file.
    #[error(transparent)]
    Key(#[from] crate::identity::KeyError),
    /// The learning config or data.
    #[error(transparent)]
    Learning(#[from] murmur_learn::train::ConfigError),
    /// The checkpoint.
    #[error(transparent)]
    Checkpoint(#[from] murmur_learn::checkpoint::CheckpointError),
    /// The engine's config.
    #[error("engine: {0}")]
    Engine(#[from] engine::ConfigError),
    /// The engine was fed something it did not ask for (a bug of the driver).
    #[error("engine: {0}")]
    EngineInput(#[from] engine::InputError),
    /// The swarm.
    #[error(transparent)]
    Net(#[from] net::Error),
    /// Listening on an address failed.
    #[error("listen on {0}: {1}")]
    Listen(libp2p::Multiaddr, String),
    /// The metrics endpoint could not be bound.
    #[error("metrics endpoint {0}: {1}")]
    Metrics(std::net::SocketAddr, std::io::Error),
    /// The red team's side channel (`node.attack-intel`) could not be used.
    #[error("red-team intel directory {0}: {1}")]
    Intel(PathBuf, std::io::Error),
    /// The training thread.
    #[error(transparent)]
    Trainer(#[from] BridgeError),
    /// A training command failed.
    #[error("training: {0}")]
    Training(String),
    /// The run lists its members and this node's key is not among them: every peer would refuse
    /// it.
    #[error(
        "this node's key {key} (peer id {peer}) is not in the run's members file {path}: add the \
         line {peer} to every node's copy"
    )]
    NotMember {
        /// The key file.
        key: PathBuf,
        /// The node's peer id.
        peer: String,
        /// The members file.
        path: PathBuf,
    },
}

/// What a command to the training thread was for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Purpose {
    /// Local training for the engine.
    Train,
    /// Setting the model the engine mixed or started from.
    Set,
    /// Evaluating the locally trained (`false`) or the mixed (`true`) model.
    Eval { mixed: bool },
    /// Writing a checkpoint.
    Checkpoint,
}

/// A request in flight on the model protocol.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outbound {
    Update { peer: PeerId, bytes: usize },
    Fetch { peer: PeerId },
}

/// Where the node is in its life.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Starting and running rounds.
    Running,
    /// The configured rounds are done: it serves its model to late joiners until stopped.
    Serving,
    /// The configured rounds are done and the node exits once the trainer is idle.
    Exiting,
}

/// The running node.
struct Driver {
    r: Resolved,
    names: Names,
    swarm: Swarm<Behaviour>,
    engine: Engine,
    trainer: Bridge,
    phase: Phase,
    /// Commands to the training thread not yet answered, by request id.
    commands: BTreeMap<u64, Purpose>,
    next_command: u64,
    metrics: Arc<Mutex<Metrics>>,
    clock: Instant,
    /// Identified peers of this run, with their keys.
    up: BTreeMap<PeerId, PeerKey>,
    outbound: BTreeMap<OutboundRequestId, Outbound>,
    /// Fetches of peers waiting for the engine's answer, by the engine's request handle.
    serving: BTreeMap<u64, (ResponseChannel<Response>, InboundRequestId)>,
    next_serving: u64,
    /// How long served models take to leave, against the round's duration.
    uplink: uplink::Uplink<InboundRequestId>,
    /// Gossip messages the engine is checking, by handle: the id and the peer that delivered
    /// each, for gossipsub's validation report.
    checking: BTreeMap<u64, (gossipsub::MessageId, PeerId)>,
    next_gossip: u64,
    per_peer: BTreeMap<PeerId, usize>,
    /// Peers whose ping went unanswered, with why, until their connection closes.
    cut: BTreeMap<PeerId, String>,
    /// Connections this node dialed, by peer: only these count towards `target-peers`.
    dialed: BTreeMap<PeerId, usize>,
    dialing: BTreeSet<PeerId>,
    /// Bootstrap dials under way, to name the address if one fails.
    bootstrap_dials: BTreeMap<libp2p::swarm::ConnectionId, libp2p::Multiaddr>,
    test: Dataset,
    local_steps: usize,
    /// Rounds of the last evaluations of the local and the mixed model.
    evaluated: (Option<u64>, Option<u64>),
    checkpoint_round: Option<u64>,
    /// The last round mixed.
    last_mixed: u64,
    /// The bans record.
    bans: bans::BansFile,
    /// The red team's side channel, for a colluding attacker.
    intel: Option<intel::Channel>,
}

/// Runs a node until `shutdown` resolves (then checkpoints and returns), until it is done with
/// `exit-when-finished`, or until an error occurs. It shares `process` with the other nodes of
/// its process: its training runs while it holds the process's CPU.
pub async fn run(
    r: Resolved,
    process: Process,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let local = start::load(&r, &process)?;
    let max_payload = wire::max_update_len(local.trainer.params().len());
    let mut swarm = net::build(
        &local.identity,
        &r.run,
        r.members.as_deref(),
        &r.config.network,
        max_payload,
    )?;
    for addr in &r.listen {
        port_free(addr).map_err(|e| Error::Listen(addr.clone(), causes(&e)))?;
        swarm
            .listen_on(addr.clone())
            .map_err(|e| Error::Listen(addr.clone(), causes(&e)))?;
    }
    let metrics = Arc::new(Mutex::new(Metrics {
        peer_id: swarm.local_peer_id().to_string(),
        run: hex::encode(r.run.0),
        codec: r.config.engine.codec.to_string(),
        ..Metrics::default()
    }));
    if let Some(addr) = r.metrics {
        let bound =
            crate::status::serve(addr, metrics.clone()).map_err(|e| Error::Metrics(addr, e))?;
        info!(%bound, "metrics and status endpoint");
        Event::Http {
            addr: bound.to_string(),
        }
        .emit(r.identity);
    }
    let bootstrap_dials = swarm::dial_bootstrap(&mut swarm, &r.bootstrap, r.identity);
    let engine = engine(&r, &local)?;
    let intel = match &r.config.node.attack_intel {
        Some(dir) if r.config.node.attack.is_some() => Some(
            intel::Channel::open(dir, local.identity.public(), max_payload)
                .map_err(|e| Error::Intel(dir.clone(), e))?,
        ),
        _ => None,
    };
    let mut d = Driver {
        names: Names::of(&r.run),
        test: local.test.clone(),
        local_steps: local.setup.local_steps,
        trainer: Bridge::spawn(local.trainer, process.cpu.clone())?,
        engine,
        phase: Phase::Running,
        commands: BTreeMap::new(),
        next_command: 0,
        swarm,
        metrics,
        clock: Instant::now(),
        up: BTreeMap::new(),
        outbound: BTreeMap::new(),
        serving: BTreeMap::new(),
        next_serving: 0,
        uplink: uplink::Uplink::new(),
        checking: BTreeMap::new(),
        next_gossip: 0,
        per_peer: BTreeMap::new(),
        cut: BTreeMap::new(),
        dialed: BTreeMap::new(),
        dialing: BTreeSet::new(),
        bootstrap_dials,
        evaluated: (None, None),
        checkpoint_round: local.resume.checkpoint,
        last_mixed: 0,
        bans: local.bans,
        intel,
        r,
    };
    let join = !d.r.bootstrap.is_empty();
    info!(
        checkpoint = ?local.resume.checkpoint,
        signed = local.resume.signed,
        bans = local.resume.bans.len(),
        join,
        "starting"
    );
    d.feed(Input::Start {
        resume: local.resume,
        join,
    })?;
    d.run(shutdown).await
}

/// The node's engine, from its config and what it loaded (not started yet: the driver gives it
/// [`Input::Start`] with `local.resume`).
pub fn engine(r: &Resolved, local: &start::Local) -> Result<Engine, Error> {
    let c = &r.config;
    Ok(Engine::new(engine::Setup {
        identity: local.identity.clone(),
        run: r.run,
        config: c.engine.clone(),
        model: local.trainer.params().to_vec(),
        seed: c.run.seed,
        adversary: c.node.attack.clone().map(|attack| Adversary {
            n: c.node.attack_n,
            f: c.node.attack_f,
            push: c.node.attack_push,
            free_timing: c.node.attack_free_timing,
            hog: c.node.attack_hog,
            hog_turn: r.hog_turn(),
            knowledge: c.node.attack_knowledge,
            aim: c.node.attack_aim,
            ..Adversary::new(attack)
        }),
        weights: Default::default(),
        members: r.members.clone(),
    })?)
}

impl Driver {
    /// The end of a round: warns, and counts, when serving the round's models took longer than
    /// the round (see [`uplink`]).
    fn round_served(&mut self, round: u64) {
        let now = self.now();
        if let Some(s) = self.uplink.round_end(now) {
            tracing::warn!(
                round,
                slowest_s = s.slowest.as_secs_f64(),
                round_s = s.round.as_secs_f64(),
                served = s.served,
                mb = s.bytes as f64 / 1e6,
                "uplink saturated: a model served to a peer took longer to leave than the round; \
                 peers will mix without it (set engine.uplink-mbps to the link's upload rate: \
                 the node then refuses, as busy, the fetches it cannot answer in time, and its \
                 askers draw other peers)"
            );
        }
        let (served, seconds, saturated) = (
            self.uplink.total_served,
            self.uplink.total_seconds,
            self.uplink.saturated_rounds,
        );
        let mut m = self.metrics();
        m.served_models = served;
        m.serve_seconds = seconds;
        m.uplink_saturated_rounds = saturated;
    }

    fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Writes an honest update the attacker fetched to the red team's directory. A failed
    /// write is logged: the run goes on with what the allies already have.
    fn share_intel(&mut self, update: &[u8]) {
        let Some(channel) = &mut self.intel else {
            return;
        };
        match channel.share(update) {
            Ok(()) => self.metrics().intel_shared += 1,
            Err(e) => tracing::warn!(error = %e, "writing red-team intel"),
        }
    }

    /// Reads the red team's directory: new allies go to the engine, new updates as intel.
    fn poll_intel(&mut self) -> Result<(), Error> {
        let Some(channel) = &mut self.intel else {
            return Ok(());
        };
        let found = match channel.poll() {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "reading red-team intel");
                return Ok(());
            }
        };
        for ally in found.allies {
            info!(ally = %ally, "red-team ally");
            self.engine.add_ally(ally);
            self.metrics().attack_allies += 1;
        }
        for update in found.updates {
            self.metrics().intel_received += 1;
            self.feed(Input::Intel { update })?;
        }
        Ok(())
    }

    fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.metrics.lock().expect("metrics lock")
    }

    async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        use futures::StreamExt;
        tokio::pin!(shutdown);
        let walk_every = Duration::from_millis(self.r.config.network.random_walk_ms);
        let mut walk = tokio::time::interval(walk_every);
        walk.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut intel_poll = tokio::time::interval(intel::POLL);
        intel_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let colluding = self.intel.is_some();
        while !(self.phase == Phase::Exiting && self.commands.is_empty()) {
            let wake = self
                .engine
                .poll_timeout()
                .map(|at| tokio::time::Instant::from_std(self.clock + at));
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev)?,
                reply = self.trainer.replies.recv() => match reply {
                    Some((id, reply)) => self.on_reply(id, reply)?,
                    None => return Err(Error::Trainer(BridgeError::Gone)),
                },
                () = sleep_until(wake) => self.feed(Input::Tick)?,
                _ = walk.tick() => swarm::random_walk(&mut self.swarm),
                _ = intel_poll.tick(), if colluding => self.poll_intel()?,
                () = &mut shutdown => return self.stop().await,
            }
        }
        info!("finished the configured rounds: exiting");
        self.trainer_close().await
    }

    /// Feeds an input to the engine and carries out its outputs. A call that mixed a round is
    /// timed as the aggregation time.
    fn feed(&mut self, input: Input) -> Result<(), Error> {
        let now = self.now();
        let mixes = self.engine.stats().mixes;
        let started = Instant::now();
        self.engine.handle(now, input)?;
        if self.engine.stats().mixes > mixes {
            self.metrics()
                .aggregation
                .observe(started.elapsed().as_secs_f64());
        }
        self.drain()
    }

    fn queue(&mut self, command: Command, purpose: Purpose) -> Result<(), Error> {
        self.next_command += 1;
        self.trainer.send(self.next_command, command)?;
        self.commands.insert(self.next_command, purpose);
        Ok(())
    }

    /// Queues an evaluation of the local (`mixed` false) or mixed model of `round` when at least
    /// `eval-every` rounds passed since the last one (or `force`).
    fn evaluate(&mut self, round: u64, mixed: bool, force: bool) -> Result<(), Error> {
        let every = self.r.config.metrics.eval_every;
        let last = if mixed {
            &mut self.evaluated.1
        } else {
            &mut self.evaluated.0
        };
        let due = every > 0 && last.is_none_or(|l| round >= l.saturating_add(every));
        if !(due || force) || *last == Some(round) {
            return Ok(());
        }
        *last = Some(round);
        let data = self.test.clone();
        self.queue(Command::Evaluate { round, data }, Purpose::Eval { mixed })
    }

    fn checkpoint(&mut self, round: u64) -> Result<(), Error> {
        let command = Command::Checkpoint {
            round,
            run: self.r.run,
            path: self.r.checkpoint_path(),
        };
        self.queue(command, Purpose::Checkpoint)
    }

    /// Carries out every pending output of the engine.
    fn drain(&mut self) -> Result<(), Error> {
        while let Some(out) = self.engine.poll() {
            self.carry_out(out)?;
        }
        let (round, stats) = (self.engine.round(), self.engine.stats().clone());
        let mut m = self.metrics();
        m.round = round;
        m.update_from(&stats);
        Ok(())
    }

    fn on_reply(&mut self, id: u64, reply: Reply) -> Result<(), Error> {
        let Some(purpose) = self.commands.remove(&id) else {
            return Err(Error::Training(format!(
                "a reply to command {id}, which is not outstanding"
            )));
        };
        match (purpose, reply) {
            (
                Purpose::Train,
                Reply::Trained {
                    round,
                    params,
                    report,
                },
            ) => {
                {
                    let mut m = self.metrics();
                    m.samples += report.samples as u64;
                    m.samples_per_sec = report.samples_per_sec();
                }
                // Record the round as signed before anything signed for it can leave.
                start::write_signed_round(&self.r.signed_round_path(), round)?;
                self.feed(Input::Trained {
                    round,
                    params,
                    samples: report.samples as u64,
                })?;
            }
            (Purpose::Set, Reply::Set) => {}
            (Purpose::Eval { mixed }, Reply::Evaluated { round, eval }) => {
                let model = if mixed { "mixed" } else { "local" };
                let finished = {
                    let mut m = self.metrics();
                    m.evaluated_round = Some(round);
                    if mixed {
                        m.mixed_accuracy = Some(eval.accuracy);
                    } else {
                        m.local_accuracy = Some(eval.accuracy);
                    }
                    m.loss = Some(eval.loss);
                    mixed && m.finished
                };
                info!(
                    round,
                    model,
                    accuracy = eval.accuracy,
                    loss = eval.loss,
                    "evaluated"
                );
                Event::Eval {
                    round,
                    model,
                    accuracy: eval.accuracy,
                    loss: eval.loss,
                }
                .emit(self.r.identity);
                if finished {
                    Event::Finished {
                        round,
                        accuracy: eval.accuracy,
                    }
                    .emit(self.r.identity);
                }
            }
            (Purpose::Checkpoint, Reply::Checkpointed { round, path }) => {
                self.checkpoint_round = Some(round);
                self.metrics().checkpoint_round = Some(round);
                tracing::debug!(round, path = %path.display(), "checkpoint written");
                Event::Checkpoint { round }.emit(self.r.identity);
            }
            (_, Reply::Failed { round, error }) => {
                return Err(Error::Training(format!(
                    "{purpose:?} (round {round}): {error}"
                )));
            }
            (purpose, reply) => {
                return Err(Error::Training(format!(
                    "command {id} was {purpose:?}, the reply is {reply:?}"
                )));
            }
        }
        Ok(())
    }

    /// Checkpoints the last completed round, waits for the trainer and stops it.
    async fn stop(mut self) -> Result<(), Error> {
        let round = self.engine.completed_round();
        info!(round, "stopping: writing a checkpoint");
        self.checkpoint(round)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !self.commands.is_empty() {
            let Ok(reply) = tokio::time::timeout_at(deadline, self.trainer.replies.recv()).await
            else {
                warn!("the trainer did not finish in time; exiting without a checkpoint");
                break;
            };
            let Some((id, reply)) = reply else { break };
            match (self.commands.remove(&id), reply) {
                (Some(Purpose::Checkpoint), Reply::Checkpointed { round, .. }) => {
                    Event::Checkpoint { round }.emit(self.r.identity);
                }
                (Some(Purpose::Checkpoint), Reply::Failed { error, .. }) => {
                    return Err(Error::Training(format!("final checkpoint: {error}")));
                }
                _ => {}
            }
        }
        self.trainer_close().await
    }

    async fn trainer_close(self) -> Result<(), Error> {
        let bridge = self.trainer;
        tokio::task::spawn_blocking(move || bridge.close())
            .await
            .map_err(|e| Error::Training(e.to_string()))
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// An error with every cause in its chain, skipping empty messages (libp2p's transport errors
/// print nothing themselves: the reason is in their source).
pub(crate) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() {
        format!("{e:?}")
    } else {
        parts.join(": ")
    }
}

/// Checks that a fixed TCP or UDP port of `addr` is free. libp2p binds its listeners with
/// SO_REUSEPORT, so a second node on a port already in use would share it silently (the kernel
/// then splits the incoming connections between the two) instead of failing.
fn port_free(addr: &libp2p::Multiaddr) -> std::io::Result<()> {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(port) if port != 0 => {
                if let Some(ip) = ip {
                    std::net::TcpListener::bind((ip, port))?;
                }
            }
            Protocol::Udp(port) if port != 0 => {
                if let Some(ip) = ip {
                    std::net::UdpSocket::bind((ip, port))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}
