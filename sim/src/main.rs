//! `murmur-sim`: runs many murmur nodes in one process, in virtual time.
//!
//! ```text
//! murmur-sim run CONFIG [--out DIR] [--threads N] [--seed S] [--data-dir DIR] [--quiet]
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use murmur_sim::{Mode, Options, Scenario};
use std::io::Write as _;
use std::path::PathBuf;

// Large per-step allocations page-fault with glibc's allocator and make training speed swing
// from one process to the next; mimalloc keeps it steady (see the node's measurements).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(version, about = "Virtual-time simulator of many murmur nodes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario and write its outputs.
    Run {
        /// The scenario file (TOML, see configs/sim/).
        config: PathBuf,
        /// Output directory (default: runs/<name>-seed<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads for training and evaluation (default: the available cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Replace the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Directory of MNIST-format files, replacing the scenario's `learning.data.dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            config,
            out,
            threads,
            seed,
            data_dir,
            quiet,
        } => {
            let mut scenario = Scenario::load(&config)?;
            if let Some(seed) = seed {
                scenario.seed = seed;
            }
            let mut options = Options {
                progress: if quiet { Mode::Quiet } else { Mode::auto() },
                data_dir,
                ..Options::default()
            };
            if let Some(t) = threads {
                anyhow::ensure!(t >= 1, "--threads must be at least 1");
                options.threads = t;
            }
            let out = out.unwrap_or_else(|| {
                PathBuf::from("runs").join(format!("{}-seed{}", scenario.name, scenario.seed))
            });
            let report = murmur_sim::run(&scenario, &options)
                .with_context(|| format!("scenario {}", config.display()))?;
            report.write(&out)?;
            // A closed pipe (`| head`) is not an error worth a panic.
            let mut stdout = std::io::stdout().lock();
            let _ = write!(stdout, "{}", report.table());
            let _ = writeln!(stdout, "outputs in {}", out.display());
            Ok(())
        }
    }
}
