//! The driver: one loop that feeds the protocol engine from the swarm, its timer and the
//! training thread, and carries out what the engine asks. It decides nothing about the
//! protocol: every output of [`Engine::poll`] is one `match` arm that moves bytes, sets a timer
//! or queues a training command.
//!
//! Start-up ([`run`]): load the key, data and trainer ([`start::load`]); resume from the
//! checkpoint in the data directory if there is one; otherwise, with bootstrap peers, join the
//! run in progress by fetching signed models from several peers and starting from their median
//! ([`join`], [`murmur_protocol::engine::bootstrap`]). The engine starts past the highest round
//! the node ever signed, so a restart never equivocates.
//!
//! Standard output carries one JSON object per line for scripts and tests (`listening`, `http`,
//! `started`, `eval`, `checkpoint`, `finished`); logs go to standard error through `tracing`.

mod bridge;
mod join;
pub mod start;
mod swarm;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::{PeerId, Swarm};
use murmur_protocol::engine::{self, Adversary, Engine, Input, Output};
use murmur_protocol::sign::PeerKey;
use tracing::{info, warn};

use crate::config::Resolved;
use crate::metrics::Metrics;
use crate::net::{self, Behaviour, Names};
pub use bridge::{Bridge, BridgeError};
use murmur_learn::train::{Command, Reply};

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
    /// The swarm.
    #[error(transparent)]
    Net(#[from] net::Error),
    /// Listening on an address failed.
    #[error("listen on {0}: {1}")]
    Listen(libp2p::Multiaddr, String),
    /// The metrics endpoint could not be bound.
    #[error("metrics endpoint {0}: {1}")]
    Metrics(std::net::SocketAddr, std::io::Error),
    /// The training thread.
    #[error(transparent)]
    Trainer(#[from] BridgeError),
    /// A training command failed.
    #[error("training: {0}")]
    Training(String),
}

/// Prints one event line on standard output.
fn event(value: serde_json::Value) {
    println!("{value}");
}

/// What the next reply from the training thread answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Local training for the engine.
    Train,
    /// Setting the mixed parameters (a zero-step training call).
    Set,
    /// Evaluating the locally trained model.
    EvalLocal,
    /// Evaluating the mixed model.
    EvalMixed,
    /// Writing a checkpoint.
    Checkpoint,
}

/// A request in flight on the model protocol.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sent {
    Update { bytes: usize },
    Fetch,
}

/// The running node.
struct Driver {
    r: Resolved,
    names: Names,
    swarm: Swarm<Behaviour>,
    engine: Option<Engine>,
    joining: Option<join::Joining>,
    bridge: Option<Bridge>,
    local: Option<start::Local>,
    expect: VecDeque<Expect>,
    metrics: Arc<Mutex<Metrics>>,
    clock: Instant,
    /// Identified peers of this run, with their keys.
    up: BTreeMap<PeerId, PeerKey>,
    in_flight: BTreeMap<libp2p::request_response::OutboundRequestId, (PeerId, Sent)>,
    per_peer: BTreeMap<PeerId, usize>,
    dialing: BTreeSet<PeerId>,
    last_mixed: u64,
    test: murmur_learn::data::Dataset,
    local_steps: usize,
}

/// Runs a node until `shutdown` resolves (then checkpoints and returns) or an error occurs.
pub async fn run(r: Resolved, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let local = start::load(&r)?;
    let max_payload = net::codec_limit(local.trainer.params().len());
    let mut swarm = net::build(&local.identity, &r.run, &r.config.network, max_payload)?;
    for addr in &r.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| Error::Listen(addr.clone(), e.to_string()))?;
    }
    let metrics = Arc::new(Mutex::new(Metrics {
        peer_id: swarm.local_peer_id().to_string(),
        run: hex::encode(r.run.0),
        ..Metrics::default()
    }));
    if let Some(addr) = r.metrics {
        let listener = crate::status::bind(addr)
            .await
            .map_err(|e| Error::Metrics(addr, e))?;
        let bound = listener.local_addr().map_err(|e| Error::Metrics(addr, e))?;
        info!(%bound, "metrics and status endpoint");
        event(serde_json::json!({"event": "http", "addr": bound.to_string()}));
        tokio::spawn(crate::status::serve(listener, metrics.clone()));
    }
    swarm::dial_bootstrap(&mut swarm, &r.bootstrap);
    let joins = local.checkpoint.is_none() && !r.bootstrap.is_empty() && r.config.join.enabled;
    let mut d = Driver {
        names: Names::of(&r.run),
        test: local.test.clone(),
        local_steps: local.setup.local_steps,
        joining: joins.then(|| join::Joining::new(&r.config.join)),
        r,
        swarm,
        engine: None,
        bridge: None,
        local: Some(local),
        expect: VecDeque::new(),
        metrics,
        clock: Instant::now(),
        up: BTreeMap::new(),
        in_flight: BTreeMap::new(),
        per_peer: BTreeMap::new(),
        dialing: BTreeSet::new(),
        last_mixed: 0,
    };
    if d.joining.is_none() {
        d.start(None)?;
    }
    d.run(shutdown).await
}

impl Driver {
    fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.metrics.lock().expect("metrics lock")
    }

    /// Builds the engine (from the checkpoint, a joiner's start, or the initial model), starts
    /// the training thread and tells the engine about the peers already up.
    fn start(&mut self, joined: Option<engine::bootstrap::Start>) -> Result<(), Error> {
        let mut local = self.local.take().expect("started once");
        let c = &self.r.config;
        let (how, mut round) = match (&local.checkpoint, &joined) {
            (Some(r), _) => ("checkpoint", *r),
            (None, Some(s)) if s.model.is_some() => ("joined", s.round),
            _ => ("fresh", 0),
        };
        if let Some(model) = joined.as_ref().and_then(|s| s.model.as_ref())
            && local.checkpoint.is_none()
        {
            local
                .trainer
                .set_params(model)
                .map_err(|e| Error::Training(e.to_string()))?;
        }
        let resumed_from = round;
        round = round.max(local.signed_round);
        let me = local.identity.public();
        let seed = c.run.seed ^ u64::from_le_bytes(me.0[..8].try_into().expect("8 bytes"));
        let adversary = c.node.attack.clone().map(|attack| Adversary {
            attack,
            n: c.run.partitions.max(2),
            f: c.node.attack_f.unwrap_or(1),
        });
        let engine = Engine::new(engine::Setup {
            identity: local.identity.clone(),
            run: self.r.run,
            config: c.engine.clone(),
            model: local.trainer.params().to_vec(),
            round,
            seed,
            adversary,
        })?;
        info!(
            how,
            round,
            resumed_from,
            signed = local.signed_round,
            "engine started"
        );
        event(serde_json::json!({
            "event": "started", "start": how, "round": round, "checkpoint": local.checkpoint,
            "joined_from": joined.as_ref().map(|s| s.accepted.len()).unwrap_or(0),
        }));
        {
            let mut m = self.metrics();
            m.start = how.into();
            m.started_round = round;
        }
        self.bridge = Some(Bridge::spawn(local.trainer)?);
        self.engine = Some(engine);
        let now = self.now();
        let peers: Vec<PeerKey> = self.up.values().copied().collect();
        let engine = self.engine.as_mut().expect("just set");
        for peer in peers {
            engine.handle(now, Input::PeerUp { peer });
        }
        self.drain()
    }

    async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        use futures::StreamExt;
        tokio::pin!(shutdown);
        let walk_every = Duration::from_secs(self.r.config.network.random_walk_secs);
        let mut walk = tokio::time::interval(walk_every);
        walk.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.wake();
            let has_bridge = self.bridge.is_some();
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev)?,
                reply = recv(&mut self.bridge), if has_bridge => match reply {
                    Some(reply) => self.on_reply(reply)?,
                    None => return Err(Error::Trainer(BridgeError::Gone)),
                },
                () = sleep_until(wake) => self.on_timer()?,
                _ = walk.tick() => swarm::random_walk(&mut self.swarm),
                () = &mut shutdown => break,
            }
        }
        self.stop().await
    }

    /// When the engine's or the join's timer fires next.
    fn wake(&self) -> Option<tokio::time::Instant> {
        let at = match (&self.engine, &self.joining) {
            (Some(e), _) => e.poll_timeout(),
            (None, Some(j)) => Some(j.deadline),
            _ => None,
        }?;
        Some(tokio::time::Instant::from_std(self.clock + at))
    }

    fn on_timer(&mut self) -> Result<(), Error> {
        if self.engine.is_some() {
            return self.feed(Input::Tick);
        }
        self.maybe_finish_join(true)
    }

    /// Feeds an input to the engine (if running) and carries out its outputs. A call that
    /// mixed a round is timed as the aggregation time.
    fn feed(&mut self, input: Input) -> Result<(), Error> {
        let now = self.now();
        let Some(e) = self.engine.as_mut() else {
            return Ok(());
        };
        let mixes = e.stats().mixes;
        let started = Instant::now();
        e.handle(now, input);
        if e.stats().mixes > mixes {
            let mut m = self.metrics();
            m.aggregation_seconds += started.elapsed().as_secs_f64();
            m.aggregations += 1;
        }
        self.drain()
    }

    fn queue(&mut self, command: Command, expect: Expect) -> Result<(), Error> {
        self.bridge
            .as_ref()
            .ok_or(BridgeError::Gone)?
            .send(command)?;
        self.expect.push_back(expect);
        Ok(())
    }

    fn eval_due(&self, round: u64) -> bool {
        let every = self.r.config.metrics.eval_every;
        every > 0 && round.is_multiple_of(every)
    }

    /// Carries out every pending output of the engine.
    fn drain(&mut self) -> Result<(), Error> {
        while let Some(out) = self.engine.as_mut().and_then(Engine::poll) {
            match out {
                Output::Train { round } => {
                    self.queue(
                        Command::Train {
                            round,
                            params: None,
                            steps: self.local_steps,
                        },
                        Expect::Train,
                    )?;
                    if self.eval_due(round) {
                        let data = self.test.clone();
                        self.queue(Command::Evaluate { round, data }, Expect::EvalLocal)?;
                    }
                }
                Output::SetModel { params } => {
                    let round = self.last_mixed;
                    self.queue(
                        Command::Train {
                            round,
                            params: Some(params),
                            steps: 0,
                        },
                        Expect::Set,
                    )?;
                    if self.eval_due(round) {
                        let data = self.test.clone();
                        self.queue(Command::Evaluate { round, data }, Expect::EvalMixed)?;
                    }
                    let every = self.r.config.checkpoint.every;
                    if every > 0 && round.is_multiple_of(every) {
                        self.checkpoint(round)?;
                    }
                }
                Output::Send { to, bytes } => self.send_update(to, bytes),
                Output::Broadcast { bytes } => {
                    let topic = self.names.topic.clone();
                    self.metrics().bytes_out += bytes.len() as u64;
                    if let Err(e) = self
                        .swarm
                        .behaviour_mut()
                        .gossip
                        .publish(topic, bytes.to_vec())
                    {
                        tracing::debug!(%e, "gossip not published");
                    }
                }
                Output::Penalize {
                    peer,
                    reason,
                    points,
                } => info!(%peer, %reason, points, "peer penalised"),
                Output::Ban { peer, reason } => {
                    warn!(%peer, %reason, "peer banned");
                    if let Some(id) = net::peer_id(&peer) {
                        self.swarm.behaviour_mut().blocked.block_peer(id);
                        self.up.remove(&id);
                        self.metrics().peers = self.up.len();
                    }
                }
                Output::Mixed {
                    round,
                    inputs,
                    clipped,
                    skipped,
                } => {
                    self.last_mixed = round;
                    tracing::debug!(round, inputs, clipped, skipped, "mixed");
                }
                Output::Finished => {
                    info!(round = self.last_mixed, "finished the configured rounds");
                    self.metrics().finished = true;
                    let round = self.last_mixed;
                    let data = self.test.clone();
                    if !self.eval_due(round) {
                        self.queue(Command::Evaluate { round, data }, Expect::EvalMixed)?;
                    }
                    self.checkpoint(round)?;
                }
            }
        }
        if let Some(e) = &self.engine {
            let (round, stats) = (e.round(), e.stats().clone());
            let mut m = self.metrics();
            m.round = round;
            m.update_from(&stats);
        }
        Ok(())
    }

    fn checkpoint(&mut self, round: u64) -> Result<(), Error> {
        let command = Command::Checkpoint {
            round,
            run: self.r.run,
            path: self.r.checkpoint_path(),
        };
        self.queue(command, Expect::Checkpoint)
    }

    fn send_update(&mut self, to: PeerKey, bytes: Arc<[u8]>) {
        let Some(peer) = net::peer_id(&to) else {
            return;
        };
        let n = self.per_peer.entry(peer).or_default();
        if *n >= self.r.config.network.max_pending_requests {
            self.metrics().sends_dropped += 1;
            return;
        }
        *n += 1;
        let len = bytes.len();
        let id = self
            .swarm
            .behaviour_mut()
            .models
            .send_request(&peer, net::codec::Request::Update(bytes));
        self.in_flight
            .insert(id, (peer, Sent::Update { bytes: len }));
    }

    fn on_reply(&mut self, reply: Reply) -> Result<(), Error> {
        let Some(expect) = self.expect.pop_front() else {
            return Err(Error::Training("a reply nobody asked for".into()));
        };
        match (expect, reply) {
            (
                Expect::Train,
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
            (Expect::Set, Reply::Trained { .. }) => {}
            (kind @ (Expect::EvalLocal | Expect::EvalMixed), Reply::Evaluated { round, eval }) => {
                let (name, finished) = {
                    let mut m = self.metrics();
                    m.evaluated_round = Some(round);
                    if kind == Expect::EvalLocal {
                        m.local_accuracy = Some(eval.accuracy);
                        ("local", false)
                    } else {
                        m.mixed_accuracy = Some(eval.accuracy);
                        ("mixed", m.finished)
                    }
                };
                info!(
                    round,
                    model = name,
                    accuracy = eval.accuracy,
                    loss = eval.loss,
                    "evaluated"
                );
                event(serde_json::json!({
                    "event": "eval", "round": round, "model": name, "accuracy": eval.accuracy,
                }));
                if finished {
                    event(serde_json::json!({
                        "event": "finished", "round": round, "accuracy": eval.accuracy,
                    }));
                }
            }
            (Expect::Checkpoint, Reply::Checkpointed { round, path }) => {
                self.metrics().checkpoint_round = Some(round);
                tracing::debug!(round, path = %path.display(), "checkpoint written");
                event(serde_json::json!({"event": "checkpoint", "round": round}));
            }
            (_, Reply::Failed { round, error }) => {
                return Err(Error::Training(format!("round {round}: {error}")));
            }
            (expect, reply) => {
                return Err(Error::Training(format!(
                    "expected {expect:?}, got {reply:?}"
                )));
            }
        }
        Ok(())
    }

    /// Checkpoints the last completed round and stops the training thread.
    async fn stop(mut self) -> Result<(), Error> {
        let Some(engine) = &self.engine else {
            return Ok(());
        };
        let round = if engine.is_finished() {
            engine.round()
        } else {
            engine.round().saturating_sub(1)
        };
        info!(round, "stopping: writing a checkpoint");
        self.checkpoint(round)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !self.expect.is_empty() {
            let Ok(reply) = tokio::time::timeout_at(deadline, recv(&mut self.bridge)).await else {
                warn!("the trainer did not finish in time; exiting without a checkpoint");
                break;
            };
            let Some(reply) = reply else { break };
            let last = self.expect.len() == 1;
            match (last, reply) {
                (true, Reply::Checkpointed { round, .. }) => {
                    self.expect.pop_front();
                    event(serde_json::json!({"event": "checkpoint", "round": round}));
                }
                (true, Reply::Failed { error, .. }) => {
                    return Err(Error::Training(format!("final checkpoint: {error}")));
                }
                _ => {
                    self.expect.pop_front();
                }
            }
        }
        if let Some(b) = self.bridge.take() {
            tokio::task::spawn_blocking(move || b.close())
                .await
                .map_err(|e| Error::Training(e.to_string()))?;
        }
        Ok(())
    }
}

async fn recv(bridge: &mut Option<Bridge>) -> Option<Reply> {
    match bridge {
        Some(b) => b.replies.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
