//! `murmur-node`: the command-line entry point of a murmur node.
//!
//! Each subcommand is one variant of [`Command`] and one function below; `main` only parses
//! and dispatches.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use murmur_learn::data::{self, fetch};
use murmur_learn::model;
use murmur_learn::train::{self, Backend, bench};
use murmur_node::cli::{
    self, ExportArgs, InspectArgs, KeygenArgs, PeerIdArgs, RunArgs, StatusArgs,
};

// Large per-step allocations page-fault with glibc's allocator and make training speed swing
// from one process to the next; mimalloc keeps them steady (measured, see the README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "murmur-node",
    version,
    about = "A murmur node: decentralized, Byzantine-robust training"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: train, gossip with peers and mix robustly until SIGINT or SIGTERM (then
    /// write a checkpoint and exit). After the configured rounds it keeps serving its model to
    /// late joiners, unless --exit-when-finished.
    Run(RunArgs),
    /// Create a key file: the node's libp2p identity and update-signing key.
    Keygen(KeygenArgs),
    /// Print the peer id of each key file, one a line: the lines of a run's members file
    /// (`run.members`).
    PeerId(PeerIdArgs),
    /// Print a running node's status (JSON) or its Prometheus metrics.
    Status(StatusArgs),
    /// Describe a checkpoint file: run id, round, model and parameter summary.
    Inspect(InspectArgs),
    /// Write a checkpoint's model for another framework (`--torch FILE`: a PyTorch state dict).
    Export(ExportArgs),
    /// Manage datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Measure local training speed (samples/s) per CPU backend, model and batch size.
    BenchTrain(BenchTrainArgs),
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Download a dataset's official files and check their SHA-256.
    Fetch(FetchArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FetchSource {
    Mnist,
    FashionMnist,
}

#[derive(Debug, Args)]
struct FetchArgs {
    /// Which dataset.
    source: FetchSource,
    /// Directory to write the files to (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Base URL to download from instead of the official one (files are BASE/NAME).
    #[arg(long)]
    base_url: Option<String>,
}

#[derive(Debug, Args)]
struct BenchTrainArgs {
    /// Backends to measure (default: every CPU backend built in).
    #[arg(long, value_delimiter = ',')]
    backend: Vec<Backend>,
    /// Models to measure.
    #[arg(long, value_delimiter = ',', default_values = ["mlp", "cnn"])]
    model: Vec<BenchModel>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 128])]
    batch: Vec<usize>,
    /// Seconds of training per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// MNIST directory: measure on the real training images instead of random 28x28 inputs.
    #[arg(long)]
    mnist: Option<PathBuf>,
    /// Also time flattening and writing back ~100k and ~1M parameter models.
    #[arg(long)]
    flat: bool,
    /// Also time evaluations of the MLP (784-128-10, one thread) on the test images (with
    /// `--mnist`) or the random inputs: the product that skips zero inputs against burn's dense
    /// product, in turn in the same run.
    #[arg(long)]
    eval: bool,
    /// Instead of measuring speed, train the MLP (784-128-10, SGD lr 0.05 momentum 0.9 with a
    /// cosine schedule, batch 32) on all of MNIST in this directory for `--epochs` and print
    /// test accuracy after each epoch.
    #[arg(long, value_name = "DIR")]
    full_mnist: Option<PathBuf>,
    /// Epochs of the full-MNIST run.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Run seed of the full-MNIST run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BenchModel {
    /// MLP 784-128-10 (101,770 parameters).
    Mlp,
    /// LeNet-like CNN, channels 8/16, hidden 64.
    Cnn,
    /// Logistic regression.
    Logreg,
}

impl BenchModel {
    fn spec(self) -> model::Spec {
        match self {
            BenchModel::Mlp => model::Spec::Mlp { hidden: vec![128] },
            BenchModel::Cnn => model::Spec::Cnn {
                channels: [8, 16],
                hidden: 64,
            },
            BenchModel::Logreg => model::Spec::LogisticRegression,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => cli::run(args),
        Command::Keygen(args) => cli::keygen(args),
        Command::PeerId(args) => cli::peer_id(args),
        Command::Status(args) => cli::status(args),
        Command::Inspect(args) => cli::inspect(args),
        Command::Export(args) => cli::export(args),
        Command::Data {
            command: DataCommand::Fetch(args),
        } => data_fetch(args),
        Command::BenchTrain(args) => bench_train(args),
    }
}

fn data_fetch(args: FetchArgs) -> anyhow::Result<()> {
    let source = match args.source {
        FetchSource::Mnist => fetch::Source::Mnist,
        FetchSource::FashionMnist => fetch::Source::FashionMnist,
    };
    let base = args
        .base_url
        .unwrap_or_else(|| source.default_base_url().to_owned());
    let mut last_percent = None;
    let mut stderr = std::io::stderr();
    let paths = fetch::fetch(source, &args.dir, &base, &mut |p| {
        if p.cached {
            let _ = writeln!(stderr, "{}: present, sha256 ok", p.name);
            return;
        }
        let percent = p.total.map(|t| p.done * 100 / t.max(1));
        if percent != last_percent {
            last_percent = percent;
            let _ = match percent {
                Some(pc) => write!(
                    stderr,
                    "\r{}: {pc:3}% of {} bytes",
                    p.name,
                    p.total.unwrap_or(0)
                ),
                None => write!(stderr, "\r{}: {} bytes", p.name, p.done),
            };
            if p.total == Some(p.done) {
                let _ = writeln!(stderr, ", sha256 ok");
            }
        }
    })
    .with_context(|| format!("fetching {source} from {base}"))?;
    eprintln!();
    for path in paths {
        println!("{}", path.display());
    }
    Ok(())
}

fn bench_train(args: BenchTrainArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.full_mnist {
        return full_mnist(dir, args.epochs, args.seed);
    }
    let backends: Vec<Backend> = if args.backend.is_empty() {
        [Backend::Flex, Backend::Ndarray]
            .into_iter()
            .filter(|b| b.available())
            .collect()
    } else {
        args.backend.clone()
    };
    let (data, test) = match &args.mnist {
        Some(dir) => {
            let split = data::Spec::Mnist { dir: dir.clone() }.load(0)?;
            (split.train, split.test)
        }
        None => {
            let data = bench::mnist_shaped(10_000, 0);
            (data.clone(), data)
        }
    };
    let min_time = Duration::from_secs_f64(args.seconds);
    println!("backend  model  params   batch  samples/s  steps/s");
    for &backend in &backends {
        for &m in &args.model {
            for &batch in &args.batch {
                let t = bench::throughput(backend, m.spec(), &data, batch, min_time)?;
                println!(
                    "{:<8} {:<6} {:>7} {:>6} {:>10.0} {:>8.0}",
                    backend.name(),
                    format!("{m:?}").to_lowercase(),
                    t.params,
                    batch,
                    t.samples_per_sec,
                    t.samples_per_sec / batch as f64
                );
            }
        }
    }
    if args.eval {
        let mlp = BenchModel::Mlp.spec();
        let e = bench::eval_throughput(mlp, &test, min_time)?;
        println!(
            "\nevaluation of the MLP ({} params) on {} samples (flex, one thread):",
            e.params, e.samples
        );
        println!("  burn's dense product:  {:>9.0} samples/s", e.dense);
        match e.skipping_zeros {
            Some(fast) => println!(
                "  skipping zero inputs:  {fast:>9.0} samples/s = {:.2}x",
                fast / e.dense
            ),
            None => println!("  skipping zero inputs:  not used (most inputs are not zero)"),
        }
    }
    if args.flat {
        println!("\nbackend  params    flatten   write-back  build-from-flat");
        let shape = data.shape();
        for hidden in [vec![128], vec![1270]] {
            let arch = model::Arch::new(&model::Spec::Mlp { hidden }, shape, 10)?;
            for &backend in &backends {
                let c = bench::flat_cost(&arch, backend, 50)?;
                println!(
                    "{:<8} {:>8} {:>9.1?} {:>11.1?} {:>14.1?}",
                    backend.name(),
                    c.params,
                    c.flatten,
                    c.write_back,
                    c.from_flat
                );
            }
        }
    }
    Ok(())
}

fn full_mnist(dir: &std::path::Path, epochs: usize, seed: u64) -> anyhow::Result<()> {
    let spec: train::Spec = toml::from_str(&format!(
        r#"
model = {{ kind = "mlp", hidden = [128] }}
data = {{ kind = "mnist", dir = {dir:?} }}
optimizer = {{ kind = "sgd", lr = 0.05, momentum = 0.9, schedule = "cosine", total-steps = {steps} }}
batch-size = 32
"#,
        dir = dir.display().to_string(),
        steps = epochs * 60_000usize.div_ceil(32),
    ))?;
    let (setup, split) = spec.load(seed)?;
    println!(
        "MLP 784-128-10 ({} params) on MNIST: {} train, {} test, seed {seed}",
        setup.arch.num_params(),
        split.train.len(),
        split.test.len()
    );
    let epochs_run = bench::train_to_accuracy(&setup, &split, epochs, seed, &mut |e| {
        println!(
            "epoch {:>2}  train loss {:.4}  test loss {:.4}  test accuracy {:.2}%  {:.0} samples/s",
            e.epoch,
            e.train_loss,
            e.test.loss,
            100.0 * e.test.accuracy,
            e.samples_per_sec
        );
    })?;
    let Some(last) = epochs_run.last() else {
        bail!("no epochs run");
    };
    println!("final test accuracy {:.2}%", 100.0 * last.test.accuracy);
    Ok(())
}
