//! `murmur-sim`: runs many murmur nodes in one process, in virtual time.
//!
//! ```text
//! murmur-sim run CONFIG [--out DIR] [--overwrite] [--threads N] [--seed S] [--method M] [--dataset-dir DIR] [--quiet]
//! murmur-sim bench CONFIG [--threads N] [--slice-ms MS] [--runs N] [--dataset-dir DIR]
//! murmur-sim compare CONFIG... [--methods M,..] [--seeds 6-10] [--eval-every N] [--target ACC] [--out DIR] [--overwrite] [--splice FILE] [--threads N] [--dataset-dir DIR]
//! murmur-sim robustness CONFIG [--seeds 6-10] [--rows default,...] [--columns adaptive,...] [--cache DIR | --no-cache] [--out DIR] [--overwrite] [--splice FILE] [--threads N] [--dataset-dir DIR]
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use murmur_sim::{Method, Mode, Options, Scenario};
use std::io::Write as _;
use std::path::PathBuf;

// Large per-step allocations page-fault with glibc's allocator and make training speed swing
// from one process to the next; mimalloc keeps it steady (see the node's measurements).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps freed pages mapped rather than returning them to the OS 10 ms later (mimalloc's
/// default purge delay). A simulation frees and reallocates model-sized buffers all the time
/// (every update sent, received and mixed); with purging, the kernel zeroed each re-faulted page
/// again, a third of the CPU time of `murmur-sim bench`. Freed pages are reused, so the peak RSS
/// stays where it was (9,437 MB with purging, 9,455 MB without, for
/// configs/sim/scale-mlp-1000.toml). `MIMALLOC_PURGE_DELAY` in the environment still overrides
/// this.
#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
fn keep_freed_pages() {
    // `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (include/mimalloc.h).
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    unsafe extern "C" {
        fn mi_option_set_default(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // SAFETY: sets one integer option of the allocator linked into this binary, with the
    // signature of its header; any value is valid for this option (-1: never purge).
    unsafe { mi_option_set_default(MI_OPTION_PURGE_DELAY, -1) }
}

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
        /// Output directory (default: runs/<name>-seed<seed>); it must be empty or missing.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the files of a run already in the output directory.
        #[arg(long)]
        overwrite: bool,
        /// Threads for training and evaluation, the event loop's among them: with more than one,
        /// the loop runs the jobs it would wait for (default: the available cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Replace the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Replace the scenario's method: protocol, synchronous (D-PSGD, or Epidemic Learning
        /// on `sample`), parameter-server, robust-parameter-server or all-reduce.
        #[arg(long)]
        method: Option<Method>,
        /// Directory of MNIST-format files, replacing the scenario's `learning.data.dir`.
        #[arg(long)]
        dataset_dir: Option<PathBuf>,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
    },
    /// Training efficiency: the scenario's training throughput against one of its trainers
    /// alone in this process, and with more than one thread also against one trainer per thread
    /// at once, each timed in pauses of the run (see configs/sim/bench-mnist.toml).
    Bench {
        /// The scenario file.
        config: PathBuf,
        /// Threads, the event loop's among them (default: the available cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Milliseconds of the run between two pauses; in each pause (and one at the end) each
        /// standalone baseline is timed as long, so that it sees the machine as the run does.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
        slice_ms: u64,
        /// Directory of MNIST-format files, replacing the scenario's `learning.data.dir`.
        #[arg(long)]
        dataset_dir: Option<PathBuf>,
        /// Measurements to take one after another (baselines and run each time); with more than
        /// one, each is printed as it ends, then the least, median and greatest of each ratio.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
    },
    /// Scenarios under several methods (the protocol and the synchronous references) over
    /// several seeds: accuracy, bytes sent per node, virtual time, and time to a target
    /// accuracy. Prints the table, then writes compare.md and compare.csv into the output
    /// directory.
    Compare {
        /// The scenario files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
        /// Methods, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "protocol,synchronous,parameter-server,all-reduce"
        )]
        methods: Vec<Method>,
        /// An aggregation rule for the protocol rows (and robust-parameter-server's), as
        /// comma-separated TOML keys: `--rule 'rule = "trimmed-mean", f = 1'`. Repeat for one
        /// row per rule; without it, each scenario's own rule.
        #[arg(long = "rule", value_name = "KEYS")]
        rules: Vec<String>,
        /// Seeds: a list and/or ranges, `6-10` or `1,3,5`.
        #[arg(long, default_value = "6-10")]
        seeds: String,
        /// Evaluate every this many rounds (default: each scenario's schedule); the time to the
        /// target is read at evaluation points.
        #[arg(long)]
        eval_every: Option<u64>,
        /// The accuracy, in [0, 1], whose time to reach is reported.
        #[arg(long, default_value_t = 0.9)]
        target: f64,
        #[command(flatten)]
        table: Table,
    },
    /// The robustness table: the scenario against every attack under every rule. Prints the
    /// table, then writes robustness.md and robustness.csv into the output directory.
    Robustness {
        /// The base scenario (its attacker count is used; see configs/sim/robustness.toml).
        config: PathBuf,
        /// Seeds to run every cell with, e.g. `6-10` or `1,3,5` (default: the scenario's seed).
        /// With several, a cell shows the mean ± the standard deviation over them and the
        /// worst seed.
        #[arg(long)]
        seeds: Option<String>,
        /// Only these rows, comma-separated, case ignored: a row's whole label (`mean` is the
        /// plain mean alone), or the start of labels (`default` for the engine's defaults,
        /// `mean +` for the mean behind the screen).
        #[arg(long, value_delimiter = ',')]
        rows: Option<Vec<String>>,
        /// Only these attack columns besides "none" (always run), comma-separated, case
        /// ignored: a group (`model`, `protocol`, `adaptive`) or the start of a column heading
        /// (e.g. `min-max`).
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// Where each finished run's result is kept, keyed by its scenario, seed, dataset
        /// directory and this executable: a stopped table resumes, and shards run as separate
        /// processes with the same cache are put together by running the whole plan after them.
        #[arg(
            long,
            default_value = "runs/robustness-cache",
            conflicts_with = "no_cache"
        )]
        cache: PathBuf,
        /// Run every cell, reading and writing no cache.
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        table: Table,
    },
}

/// Where a table command writes, and how it runs.
#[derive(clap::Args, Debug)]
struct Table {
    /// Output directory (default: runs/<command>-<scenario>); it must be empty or missing.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the files of a table already in the output directory.
    #[arg(long)]
    overwrite: bool,
    /// Also replace the table's marked section of this Markdown file (for example
    /// docs/results.md) with the table.
    #[arg(long, value_name = "FILE")]
    splice: Option<PathBuf>,
    /// Threads, the event loop's among them (default: the available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Directory of MNIST-format files, replacing the scenarios' `learning.data.dir`.
    #[arg(long)]
    dataset_dir: Option<PathBuf>,
}

impl Table {
    /// Prints `section`, writes it and `csv` as `<stem>.md` and `<stem>.csv` into the output
    /// directory, and splices it into the `--splice` file with `splice`.
    fn write(
        &self,
        out: &std::path::Path,
        stem: &str,
        section: &str,
        csv: String,
        splice: impl Fn(&str) -> String,
    ) -> anyhow::Result<()> {
        // Printed first: the table is not lost if a write fails.
        print!("{section}");
        let _ = std::io::stdout().flush();
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        for (name, text) in [
            (format!("{stem}.md"), section.to_owned()),
            (format!("{stem}.csv"), csv),
        ] {
            let path = out.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(file) = &self.splice {
            let old = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            std::fs::write(file, splice(&old))
                .with_context(|| format!("writing {}", file.display()))?;
        }
        eprintln!("table in {}", out.display());
        Ok(())
    }
}

/// `dir` when it can take a run's outputs: missing, empty, or `overwrite` given.
fn output_dir(dir: PathBuf, overwrite: bool) -> anyhow::Result<PathBuf> {
    let used = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
    anyhow::ensure!(
        !used || overwrite,
        "{} is not empty: choose another --out, or pass --overwrite to replace its files",
        dir.display()
    );
    Ok(dir)
}

/// Prints one efficiency measurement of `murmur-sim bench`.
fn print_efficiency(e: &murmur_sim::bench::Efficiency) {
    println!(
        "{} nodes, {} params, {} threads\n\
         standalone trainer:           {:>10.0} samples/s (1 thread)\n\
         standalone, {:>4} in turn:     {:>10.0} samples/s (1 thread, one job each in turn)",
        e.nodes, e.params, e.threads, e.standalone, e.in_turn, e.standalone_in_turn
    );
    if let Some(b) = e.standalone_every_core {
        println!(
            "standalone, every core busy:  {b:>10.0} samples/s per thread ({} at once)",
            e.threads
        );
    }
    println!(
        "simulator, training jobs:     {:>10.0} samples/s = {:.3} of standalone per core\n\
         {:>40.3} of the trainers in turn",
        e.in_batches, e.batch_ratio_per_core, e.batch_ratio_in_turn
    );
    if let Some(r) = e.batch_ratio_every_core {
        println!("{r:>40.3} of standalone with every core busy");
    }
    println!(
        "simulator, end to end:        {:>10.0} samples/s = {:.3} of standalone per core\n\
         {:>40.3} of the trainers in turn",
        e.end_to_end, e.end_to_end_ratio_per_core, e.end_to_end_ratio_in_turn
    );
    if let Some(r) = e.end_to_end_ratio_every_core {
        println!("{r:>40.3} of standalone with every core busy");
    }
    println!(
        "simulator, wall time:         {:>10.2} s = {:.3}x its training jobs' summed time ({:.2} s)",
        e.wall_s, e.wall_over_training, e.training_s
    );
}

/// `command` measures the protocol: a scenario naming a reference method is refused.
fn protocol_only(scenario: &Scenario, path: &std::path::Path, command: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        scenario.method.is_protocol(),
        "{}: `method` = \"{}\": `murmur-sim {command}` measures the protocol; remove the key",
        path.display(),
        scenario.method
    );
    Ok(())
}

fn options(threads: Option<usize>, dataset_dir: Option<PathBuf>) -> anyhow::Result<Options> {
    let mut options = Options {
        dataset_dir,
        ..Options::default()
    };
    if let Some(t) = threads {
        anyhow::ensure!(t >= 1, "--threads must be at least 1");
        options.threads = t;
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "mimalloc")]
    keep_freed_pages();
    match Cli::parse().command {
        Command::Run {
            config,
            out,
            overwrite,
            threads,
            seed,
            method,
            dataset_dir,
            quiet,
        } => {
            let mut scenario = Scenario::load(&config)?;
            if let Some(seed) = seed {
                scenario.seed = seed;
            }
            if let Some(method) = method {
                scenario.method = method;
                scenario
                    .validate()
                    .with_context(|| format!("{} with --method {method}", config.display()))?;
            }
            let out = out.unwrap_or_else(|| {
                let method = match scenario.method {
                    Method::Protocol => String::new(),
                    m => format!("-{m}"),
                };
                PathBuf::from("runs")
                    .join(format!("{}{method}-seed{}", scenario.name, scenario.seed))
            });
            let out = output_dir(out, overwrite)?;
            let mut options = options(threads, dataset_dir)?;
            options.progress = if quiet { Mode::Quiet } else { Mode::auto() };
            let report = murmur_sim::run(&scenario, &options)
                .with_context(|| format!("scenario {}", config.display()))?;
            // A closed pipe (`| head`) is not an error worth a panic.
            let mut stdout = std::io::stdout().lock();
            let _ = write!(stdout, "{}", report.table());
            report.write(&out)?;
            let _ = writeln!(stdout, "outputs in {}", out.display());
            Ok(())
        }
        Command::Bench {
            config,
            threads,
            slice_ms,
            dataset_dir,
            runs,
        } => {
            let scenario = Scenario::load(&config)?;
            protocol_only(&scenario, &config, "bench")?;
            let options = options(threads, dataset_dir)?;
            let mut measured = Vec::new();
            for k in 1..=runs {
                if runs > 1 {
                    println!("run {k} of {runs}:");
                }
                let e = murmur_sim::bench::efficiency(
                    &scenario,
                    &options,
                    std::time::Duration::from_millis(slice_ms),
                )?;
                print_efficiency(&e);
                measured.push(e);
            }
            if runs > 1 {
                println!("over {runs} runs (least / median / greatest):");
                for (what, s) in murmur_sim::bench::spreads(&measured) {
                    println!(
                        "  {what:<50} {:.3} / {:.3} / {:.3}",
                        s.least, s.median, s.greatest
                    );
                }
            }
            Ok(())
        }
        Command::Compare {
            configs,
            methods,
            rules,
            seeds,
            eval_every,
            target,
            table,
        } => {
            let seeds = murmur_sim::compare::parse_seeds(&seeds).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(!seeds.is_empty(), "--seeds names no seed");
            anyhow::ensure!((0.0..=1.0).contains(&target), "--target must be in [0, 1]");
            anyhow::ensure!(eval_every != Some(0), "--eval-every must be at least 1");
            let rule_configs = rules
                .iter()
                .map(|r| murmur_sim::compare::parse_rule(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            let mut bases = Vec::with_capacity(configs.len());
            for config in &configs {
                let base = Scenario::load(config)?;
                for &m in &methods {
                    murmur_sim::compare::scenario(&base, m, base.seed, eval_every)
                        .validate()
                        .with_context(|| format!("{} with method {m}", config.display()))?;
                }
                bases.push(base);
            }
            let entries = murmur_sim::compare::entries(&bases, &methods, &rule_configs, eval_every);
            let out = table.out.clone().unwrap_or_else(|| {
                PathBuf::from("runs").join(format!("compare-{}", bases[0].name))
            });
            let out = output_dir(out, table.overwrite)?;
            let options = options(table.threads, table.dataset_dir.clone())?;
            let lines = murmur_sim::compare::run(
                &entries,
                &seeds,
                target,
                &options,
                |label, report| {
                    let last = &report.summary.last;
                    eprintln!(
                        "{label:<40} seed {:>3}: {:>6.2}% (average model {:>6.2}%) at {:.1}s virtual, {:.1}s wall",
                        report.summary.seed,
                        100.0 * last.acc_mean,
                        100.0 * last.acc_average,
                        report.summary.virtual_s,
                        report.summary.wall_s
                    );
                },
            )?;
            let paths: Vec<String> = configs.iter().map(|c| c.display().to_string()).collect();
            let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
            let mut command = format!(
                "murmur-sim compare {} --methods {} --seeds {}",
                paths.join(" "),
                names.join(","),
                seeds
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            for rule in &rules {
                command += &format!(" --rule '{rule}'");
            }
            if let Some(every) = eval_every {
                command += &format!(" --eval-every {every}");
            }
            let key = bases[0].name.clone();
            let section = murmur_sim::compare::section(&key, &lines, &seeds, &command, target);
            table.write(
                &out,
                "compare",
                &section,
                murmur_sim::compare::csv(&lines)?,
                |old| murmur_sim::compare::splice(old, &key, &section),
            )
        }
        Command::Robustness {
            config,
            seeds,
            rows,
            columns,
            cache,
            no_cache,
            table,
        } => {
            let base = Scenario::load(&config)?;
            protocol_only(&base, &config, "robustness")?;
            let mut plan = murmur_sim::robustness::Plan::single(&base);
            if let Some(text) = &seeds {
                plan.seeds = murmur_sim::compare::parse_seeds(text).map_err(anyhow::Error::msg)?;
                anyhow::ensure!(!plan.seeds.is_empty(), "--seeds names no seed");
            }
            plan.rows = rows.clone();
            plan.labels().map_err(anyhow::Error::msg)?;
            plan.columns = columns.clone();
            plan.attacks().map_err(anyhow::Error::msg)?;
            let out = table.out.clone().unwrap_or_else(|| {
                PathBuf::from("runs").join(match &seeds {
                    Some(text) => format!("robustness-seeds{text}"),
                    None => format!("robustness-seed{}", base.seed),
                })
            });
            let out = output_dir(out, table.overwrite)?;
            let options = options(table.threads, table.dataset_dir.clone())?;
            let cache = if no_cache {
                None
            } else {
                Some(
                    murmur_sim::robustness::Cache::open(&cache)
                        .with_context(|| format!("opening the cache {}", cache.display()))?,
                )
            };
            let total = plan.labels().map_err(anyhow::Error::msg)?.len()
                * (1 + plan.attacks().map_err(anyhow::Error::msg)?.len())
                * plan.seeds.len();
            let mut done = 0;
            let cells = murmur_sim::robustness::run(
                &base,
                &plan,
                &options,
                cache.as_ref(),
                |cell, wall| {
                    done += 1;
                    eprintln!(
                        "[{done}/{total}] {:<30} {:<14} seed {:<3} {:>6.2}% (worst {:>6.2}%) {}",
                        cell.rule,
                        cell.attack
                            .as_ref()
                            .map_or("none".to_owned(), murmur_sim::robustness::column),
                        cell.seed,
                        100.0 * cell.accuracy,
                        100.0 * cell.worst,
                        wall.map_or("cached".to_owned(), |w| format!("in {w:.1}s"))
                    );
                },
            )?;
            let mut command = format!("murmur-sim robustness {}", config.display());
            if let Some(text) = &seeds {
                command.push_str(&format!(" --seeds {text}"));
            }
            if let Some(rows) = &rows {
                command.push_str(&format!(" --rows {}", rows.join(",")));
            }
            if let Some(columns) = &columns {
                command.push_str(&format!(" --columns {}", columns.join(",")));
            }
            let section = murmur_sim::robustness::section(&base, &cells, &command);
            table.write(
                &out,
                "robustness",
                &section,
                murmur_sim::robustness::csv(&cells)?,
                |old| murmur_sim::robustness::splice(&base, old, &section),
            )
        }
    }
}
