//! `murmur-sim`: runs many murmur nodes in one process, in virtual time.
//!
//! ```text
//! murmur-sim run CONFIG [--out DIR] [--threads N] [--seed S] [--data-dir DIR] [--quiet]
//! murmur-sim bench CONFIG [--threads N] [--seconds S] [--data-dir DIR]
//! murmur-sim robustness CONFIG [--results docs/results.md] [--threads N] [--data-dir DIR]
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
    /// Training efficiency: the scenario's training throughput against one of its trainers
    /// alone in this process (see configs/sim/bench-mnist.toml).
    Bench {
        /// The scenario file.
        config: PathBuf,
        /// Worker threads (default: the available cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Seconds to time the standalone trainer.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Directory of MNIST-format files, replacing the scenario's `learning.data.dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The robustness table: the scenario against every attack under every rule, written into
    /// the marked section of a Markdown file.
    Robustness {
        /// The base scenario (its attacker count is used; see configs/sim/robustness.toml).
        config: PathBuf,
        /// The Markdown file whose robustness section is replaced.
        #[arg(long, default_value = "docs/results.md")]
        results: PathBuf,
        /// Worker threads (default: the available cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Directory of MNIST-format files, replacing the scenario's `learning.data.dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
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
        Command::Bench {
            config,
            threads,
            seconds,
            data_dir,
        } => {
            let scenario = Scenario::load(&config)?;
            let mut options = Options {
                data_dir,
                ..Options::default()
            };
            if let Some(t) = threads {
                anyhow::ensure!(t >= 1, "--threads must be at least 1");
                options.threads = t;
            }
            let e = murmur_sim::bench::efficiency(
                &scenario,
                &options,
                std::time::Duration::from_secs_f64(seconds),
            )?;
            println!(
                "{} nodes, {} params, {} threads\n\
                 standalone trainer:           {:>10.0} samples/s (1 thread)\n\
                 simulator, training batches:  {:>10.0} samples/s = {:.3} of standalone per core\n\
                 simulator, end to end:        {:>10.0} samples/s = {:.3} of standalone per core",
                e.nodes,
                e.params,
                e.threads,
                e.standalone,
                e.in_batches,
                e.batch_ratio_per_core,
                e.end_to_end,
                e.end_to_end_ratio_per_core
            );
            Ok(())
        }
        Command::Robustness {
            config,
            results,
            threads,
            data_dir,
        } => {
            let base = Scenario::load(&config)?;
            let mut options = Options {
                data_dir,
                ..Options::default()
            };
            if let Some(t) = threads {
                anyhow::ensure!(t >= 1, "--threads must be at least 1");
                options.threads = t;
            }
            let cells = murmur_sim::robustness::run(&base, &options, |cell, report| {
                eprintln!(
                    "{:<30} {:<14} {:>6.2}% (worst {:>6.2}%) in {:.1}s",
                    cell.rule,
                    cell.attack
                        .as_ref()
                        .map_or("none".to_owned(), murmur_sim::robustness::column),
                    100.0 * cell.accuracy,
                    100.0 * cell.worst,
                    report.summary.wall_s
                );
            })?;
            let command = format!("murmur-sim robustness {}", config.display());
            let section = murmur_sim::robustness::section(&base, &cells, &command);
            let old = std::fs::read_to_string(&results).unwrap_or_default();
            std::fs::write(&results, murmur_sim::robustness::splice(&old, &section))
                .with_context(|| format!("writing {}", results.display()))?;
            print!("{section}");
            Ok(())
        }
    }
}
