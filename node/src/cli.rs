//! The `run`, `keygen`, `status` and `inspect` subcommands: their arguments and handlers.
//! `main` only parses and dispatches to these.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use murmur_protocol::attack::Attack;

use crate::config::{Config, Overrides};
use crate::{driver, identity, net, status};
use murmur_learn::checkpoint::Checkpoint;

/// `murmur-node run`: run a node until SIGINT or SIGTERM (then checkpoint and exit). After the
/// configured rounds it keeps serving its model to late joiners, unless `--exit-when-finished`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The node's TOML config (see configs/node.toml).
    #[arg(value_name = "CONFIG")]
    pub config: PathBuf,
    /// Listen on this multiaddr instead of `network.listen` (repeatable), e.g.
    /// /ip4/0.0.0.0/tcp/7070 or /ip4/0.0.0.0/udp/7070/quic-v1.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Join through this peer, in addition to `network.bootstrap` (repeatable), e.g.
    /// /ip4/10.0.0.1/tcp/7070/p2p/12D3KooW....
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Directory of the node's state (key, checkpoint, signed-round record, bans), instead of
    /// `node.state-dir` (default murmur-state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Directory of MNIST-format files, replacing the config's `learning.data.dir` (for
    /// `data = { kind = "mnist" }` or `"fashion-mnist"`).
    #[arg(long, value_name = "DIR")]
    pub dataset_dir: Option<PathBuf>,
    /// Train on this partition of the training set instead of `node.index` (below
    /// `run.partitions`).
    #[arg(long)]
    pub index: Option<usize>,
    /// Admit only the keys listed in this file, replacing `run.members`: one peer id (what
    /// `murmur-node keygen` prints) or 64-digit hex public key per line. Every node of the run
    /// needs the same keys (they are part of the run id).
    #[arg(long, value_name = "FILE")]
    pub members: Option<PathBuf>,
    /// Behave as this Byzantine adversary, for red-team testing: sign-flip, gaussian, alie,
    /// ipm, label-flip, dissensus, mimic, non-finite, replay, equivocate, free-rider,
    /// round-lie, junk, gossip-abuse, min-max, min-sum, opt-alie, opt-ipm (parameters in
    /// `node.attack`).
    #[arg(long, value_name = "NAME")]
    pub attack: Option<Attack>,
    /// The attacker never trains: it serves its forgery the moment each round starts (sets
    /// `node.attack-free-timing`).
    #[arg(long)]
    pub attack_free_timing: bool,
    /// The attacker also asks every peer it did not draw for its next round, each round, to
    /// fill the honest uplinks ahead of the honest askers (sets `node.attack-hog`).
    #[arg(long)]
    pub attack_hog: bool,
    /// With `--attack-hog` and `--attack-identities` above 1: the identities take turns, one
    /// hogging each round (sets `node.attack-hog-in-turn`).
    #[arg(long)]
    pub attack_hog_in_turn: bool,
    /// What the attacker knows: `own` (what it mixes) or `colluding` (also what the other
    /// red-team nodes of `--attack-intel` fetched), replacing `node.attack-knowledge`.
    #[arg(long, value_name = "KNOWLEDGE")]
    pub attack_knowledge: Option<murmur_protocol::attack::Knowledge>,
    /// The directory the red-team nodes share for `colluding`, replacing `node.attack-intel`.
    #[arg(long, value_name = "DIR")]
    pub attack_intel: Option<PathBuf>,
    /// Sybil identities: hold K keys and join as K peers, replacing `node.attack-identities`
    /// (identity i > 0 keeps its state in STATE_DIR/identity-i and listens on the listen
    /// ports plus i; port 0 stays 0).
    #[arg(long, value_name = "K")]
    pub attack_identities: Option<usize>,
    /// Serve /metrics and /status on this address instead of `metrics.listen`
    /// (default 127.0.0.1:9464; port 0 picks a free port; "" disables).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Stop after this many rounds instead of `engine.rounds`.
    #[arg(long)]
    pub rounds: Option<u64>,
    /// Do not use mDNS, whatever `network.mdns` says.
    #[arg(long)]
    pub no_mdns: bool,
    /// Exit after the configured rounds (once the final checkpoint is written) instead of
    /// serving the model to late joiners until stopped.
    #[arg(long)]
    pub exit_when_finished: bool,
    /// Log format on standard error (filter with RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `murmur-node keygen`: create a key file.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key (mode 0600; an existing file is never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `murmur-node peer-id`: print the peer ids of key files.
#[derive(Debug, Args)]
pub struct PeerIdArgs {
    /// The key files (each must be readable by its owner alone, as `run` requires).
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<PathBuf>,
}

/// `murmur-node status`: print a running node's status.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The node's metrics endpoint (`metrics.listen`).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub addr: String,
    /// Print the Prometheus metrics instead of the JSON status.
    #[arg(long)]
    pub metrics: bool,
}

/// `murmur-node inspect`: describe a checkpoint file.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The checkpoint (a safetensors file).
    pub checkpoint: PathBuf,
}

/// `murmur-node export`: write a checkpoint's model for another framework.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The checkpoint (a safetensors file).
    pub checkpoint: PathBuf,
    /// Write the model as a PyTorch state dict (safetensors; see docs/pytorch.md for the module
    /// it loads into) to this file. An existing file is replaced.
    #[arg(long, value_name = "FILE")]
    pub torch: PathBuf,
}

/// Sets up `tracing` on standard error with `RUST_LOG` (default `info`).
pub fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs a node (see [`RunArgs`]).
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logs(args.log_format);
    let config = Config::read(&args.config)?;
    let overrides = Overrides {
        listen: args.listen,
        bootstrap: args.bootstrap,
        state_dir: args.state_dir,
        dataset_dir: args.dataset_dir,
        index: args.index,
        attack: args.attack,
        attack_knowledge: args.attack_knowledge,
        attack_free_timing: args.attack_free_timing,
        attack_hog: args.attack_hog,
        attack_hog_in_turn: args.attack_hog_in_turn,
        attack_intel: args.attack_intel,
        attack_identities: args.attack_identities,
        members: args.members,
        metrics: args.metrics,
        rounds: args.rounds,
        no_mdns: args.no_mdns,
        exit_when_finished: args.exit_when_finished,
    };
    let resolved = config.resolve(overrides, &args.config)?;
    let identities = resolved.identities();
    for r in &identities {
        std::fs::create_dir_all(&r.state_dir)
            .with_context(|| format!("creating {}", r.state_dir.display()))?;
        let saved = r.state_dir.join("node.resolved.toml");
        std::fs::write(&saved, toml::to_string(&r.config)?)
            .with_context(|| format!("writing {}", saved.display()))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_identities(identities))
}

/// Runs every identity of the process on this thread's runtime until SIGINT or SIGTERM (or
/// until each is done, with `exit-when-finished`). One node is one identity. A Sybil red-team
/// process runs several, which share one training thread at a time (one CPU), the data set
/// (loaded once) and the process's uplink; their logs carry `identity = i`. The first error
/// stops them all, naming its identity and state directory. A lone node's logs and errors name
/// no identity.
async fn run_identities(identities: Vec<crate::config::Resolved>) -> anyhow::Result<()> {
    use futures::FutureExt;
    use tracing::Instrument;
    let shutdown = shutdown_signal().shared();
    let process = driver::Process::default();
    if identities.len() == 1 {
        let r = identities.into_iter().next().expect("one identity");
        return Ok(driver::run(r, process, shutdown).await?);
    }
    let runs = identities.into_iter().enumerate().map(|(i, r)| {
        let dir = r.state_dir.clone();
        driver::run(r, process.clone(), shutdown.clone())
            .instrument(tracing::info_span!("sybil", identity = i))
            .map(move |done| {
                done.with_context(|| format!("Sybil identity {i} (state in {})", dir.display()))
            })
    });
    futures::future::try_join_all(runs).await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        _ = term.recv() => tracing::info!("SIGTERM"),
    }
}

/// Creates a key file and prints its peer id.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let id = identity::create(&args.out)?;
    let peer = net::keypair(&id).public().to_peer_id();
    println!("{peer}");
    eprintln!(
        "wrote {} (peer id {peer}, public key {})",
        args.out.display(),
        hex::encode(id.public().0)
    );
    Ok(())
}

/// Prints the peer id of each key file, one a line, in the order given.
pub fn peer_id(args: PeerIdArgs) -> anyhow::Result<()> {
    for path in &args.keys {
        let id = identity::load(path)?;
        let peer = net::peer_id(&id.public()).expect("a key file holds an ed25519 key");
        println!("{peer}");
    }
    Ok(())
}

/// Prints a running node's JSON status or Prometheus metrics.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let path = if args.metrics { "/metrics" } else { "/status" };
    let body = status::fetch(&args.addr, path)
        .with_context(|| format!("is a node running with metrics.listen = {:?}?", args.addr))?;
    print!("{body}");
    if !body.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// Writes a checkpoint's model as a PyTorch state dict.
pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.checkpoint)
        .with_context(|| format!("reading {}", args.checkpoint.display()))?;
    let c = Checkpoint::from_bytes(&bytes, &args.checkpoint)?;
    std::fs::write(&args.torch, c.torch_state_dict())
        .with_context(|| format!("writing {}", args.torch.display()))?;
    eprintln!(
        "wrote {} ({:?} on {} inputs, {} classes, round {})",
        args.torch.display(),
        c.model,
        c.input,
        c.classes,
        c.round
    );
    Ok(())
}

/// Prints what a checkpoint holds.
pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.checkpoint)
        .with_context(|| format!("reading {}", args.checkpoint.display()))?;
    let c = Checkpoint::from_bytes(&bytes, &args.checkpoint)?;
    let norm = c
        .params
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    let doc = serde_json::json!({
        "file": args.checkpoint.display().to_string(),
        "run": hex::encode(c.run.0),
        "round": c.round,
        "model": c.model,
        "input": c.input.to_string(),
        "classes": c.classes,
        "parameters": c.params.len(),
        "parameter_l2_norm": norm,
        "optimizer_step": c.optim.step,
        "optimizer_buffers": [c.optim.m.len(), c.optim.v.len()],
        "bytes": bytes.len(),
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
