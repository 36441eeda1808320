//! What a run reports: one [`Row`] per evaluation point, a [`Summary`], and their renderings:
//! `rounds.csv`, `timing.csv`, `summary.json`, `plot.svg`, and a table for the terminal.
//!
//! `rounds.csv` holds only what the seed and the scenario determine, so two runs of one scenario
//! give the same bytes whatever the thread count; wall-clock times are in `timing.csv` and
//! `summary.json`.

use murmur_protocol::engine::Rejection;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Mixing counts since the previous evaluation point (honest nodes).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Window {
    /// Updates from peers that were mixed.
    pub received: u64,
    /// Of which the rule clipped or discarded.
    pub clipped: u64,
    /// Of which came from Byzantine peers.
    pub byzantine: u64,
}

/// The state of the honest nodes at one evaluation point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Index of the point, from 0.
    pub point: usize,
    /// Virtual time, seconds.
    pub virtual_s: f64,
    /// Wall time since the run started, seconds (not in `rounds.csv`).
    pub wall_s: f64,
    /// Fewest rounds completed by an online honest node.
    pub round_min: u64,
    /// Mean rounds completed.
    pub round_mean: f64,
    /// Most rounds completed.
    pub round_max: u64,
    /// Online honest nodes.
    pub online: usize,
    /// Honest nodes evaluated (all, or a seeded sample).
    pub evaluated: usize,
    /// Mean test accuracy of the evaluated nodes, in [0, 1].
    pub acc_mean: f64,
    /// Worst test accuracy.
    pub acc_worst: f64,
    /// Best test accuracy.
    pub acc_best: f64,
    /// Test accuracy of the average of the online honest models.
    pub acc_average: f64,
    /// Mean test loss of the evaluated nodes.
    pub loss_mean: f64,
    /// Consensus distance: mean squared l2 distance of the online honest models to their
    /// average.
    pub consensus: f64,
    /// Bytes of updates and gossip sent by honest nodes so far.
    pub bytes_sent: u64,
    /// Messages lost, cut by a partition, or sent to an offline node so far (a gossip copy
    /// sent to a node that had seen the message counts as a duplicate instead).
    pub dropped: u64,
    /// Messages rejected by honest nodes so far, in [`Rejection::ALL`] order (see
    /// [`Row::rejected_by_reason`]).
    #[serde(skip)]
    pub rejected: Vec<u64>,
    /// Fraction of the peer updates mixed by honest nodes since the previous point that the
    /// rule clipped or discarded.
    pub clipped_fraction: f64,
    /// Fraction of the peer updates mixed by honest nodes since the previous point that came
    /// from Byzantine peers.
    pub byzantine_share: f64,
    /// Bans in force by honest nodes against Byzantine peers (pairs of banning node and
    /// banned peer).
    pub bans_of_byzantine: u64,
    /// Bans in force by honest nodes against honest peers: false positives.
    pub bans_of_honest: u64,
    /// Training samples processed by all nodes so far.
    pub samples: u64,
    /// Received models the honest nodes' outlier screens pulled in to their limit so far
    /// (outliers not gross enough to drop; the dropped ones are `rejected_outlier`).
    pub screen_pulled_in: u64,
    /// Fetches honest nodes refused so far because their uplink would not carry the answer in
    /// time (`engine.uplink-mbps`): a sign of uplinks that do not carry what peers fetch.
    pub refused_busy: u64,
    /// Peers honest nodes drew so far in place of one that refused as busy.
    pub redrawn: u64,
    /// Fetches honest nodes sent again to a busy peer they could not replace.
    pub retried: u64,
}

impl Row {
    /// The rejection counts named by reason.
    pub fn rejected_by_reason(&self) -> BTreeMap<&'static str, u64> {
        Rejection::ALL
            .iter()
            .zip(&self.rejected)
            .map(|(r, c)| (r.as_str(), *c))
            .collect()
    }
}

/// The end of a run, for `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The scenario's name.
    pub name: String,
    /// What ran: `protocol` or a reference method (see [`crate::scenario::Method`]).
    pub method: &'static str,
    /// Its seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Byzantine nodes.
    pub byzantine: usize,
    /// Parameters of the model.
    pub model_params: usize,
    /// How signed models were encoded (`engine.codec`; reference methods send `f32`).
    pub codec: String,
    /// Bytes sent per node per completed round, over the run (every message: models,
    /// announcements, fetch requests and gossip).
    pub bytes_per_node_round: f64,
    /// Worker threads used.
    pub threads: usize,
    /// Virtual time simulated, seconds.
    pub virtual_s: f64,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Events processed.
    pub events: u64,
    /// Messages handed to an engine.
    pub delivered: u64,
    /// Gossip copies a node dropped because it had seen the message (when they arrived, or
    /// when they were sent if it had seen it by then; those take no event).
    pub gossip_duplicates: u64,
    /// Messages handed to a node from a peer it had banned (0: a ban closes the connection).
    pub from_banned: u64,
    /// Local training jobs run.
    pub train_jobs: u64,
    /// Batches the jobs were handed to the trainers in.
    pub train_batches: u64,
    /// Training samples processed.
    pub samples: u64,
    /// Training throughput of the run's threads when all of them train, samples/s: the
    /// samples of the jobs run over their summed wall time, times the threads.
    pub train_samples_per_s: f64,
    /// Wall time the event loop spent training or waiting for a training result, seconds.
    pub train_wall_s: f64,
    /// Wall time inside training jobs, summed over the jobs (each runs on one thread), seconds.
    #[serde(default)]
    pub train_cpu_s: f64,
    /// Wall time in evaluations, seconds.
    pub eval_wall_s: f64,
    /// Peak resident memory of the process, bytes (Linux; 0 elsewhere).
    pub peak_rss_bytes: u64,
    /// Peak RSS divided by nodes.
    pub rss_per_node_bytes: u64,
    /// Messages rejected by honest nodes over the run, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// The last evaluation point.
    pub last: Row,
    /// Nodes that came back after leaving, and where they resumed.
    pub restarts: Vec<Restart>,
    /// Bans of an honest peer by an honest node over the whole run, ended or not (the rows
    /// count the bans in force).
    pub honest_bans_total: u64,
    /// Bans that ended (on the outlier screen's evidence alone, they last a while).
    pub unbans: u64,
    /// Mixes an honest node (or a robust parameter server) skipped because the rule refused
    /// the inputs it had (too few for its parameters).
    pub skipped_mixes: u64,
}

/// A node that came back after leaving: a restarted process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restart {
    /// The node.
    pub node: usize,
    /// When it started again (after its start-up), virtual seconds.
    pub virtual_s: f64,
    /// The round of the checkpoint it restarted from (none if it had none).
    pub checkpoint: Option<u64>,
    /// The highest round it had signed.
    pub signed: u64,
    /// How it started: `checkpoint`, `caught-up` (its checkpoint was too old: from its peers'
    /// models), or `fresh`.
    pub origin: &'static str,
    /// The first round it trained.
    pub round: u64,
    /// Peers whose models it fetched and started from.
    pub peers: usize,
}

/// Bytes per node per round of the run that ended at `last`.
pub fn bytes_per_node_round(last: &Row, nodes: usize) -> f64 {
    last.bytes_sent as f64 / (nodes.max(1) as f64 * last.round_mean.max(1.0))
}

/// A run's report: every evaluation point and the summary.
#[derive(Debug, Clone)]
pub struct Report {
    /// Evaluation points, in time order.
    pub rows: Vec<Row>,
    /// The summary.
    pub summary: Summary,
    /// The resolved scenario, as TOML.
    pub scenario_toml: String,
    /// The network splits, `(start, heal)` in virtual seconds (shaded in the plot).
    pub splits: Vec<(f64, f64)>,
}

/// An output file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

impl Report {
    /// `rounds.csv`: one line per evaluation point; deterministic for a seed and scenario.
    pub fn rounds_csv(&self) -> String {
        let mut s = String::from(
            "point,virtual_s,round_min,round_mean,round_max,online,evaluated,acc_mean,acc_worst,\
             acc_best,acc_average,loss_mean,consensus,bytes_sent,dropped",
        );
        for r in Rejection::ALL {
            let _ = write!(s, ",rejected_{}", r.as_str());
        }
        s.push_str(
            ",clipped_fraction,byzantine_share,bans_of_byzantine,bans_of_honest,samples,\
             screen_pulled_in,bytes_per_node_round,codec,refused_busy,redrawn,retried\n",
        );
        for r in &self.rows {
            let _ = write!(
                s,
                "{},{:.6},{},{:.3},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6e},{},{}",
                r.point,
                r.virtual_s,
                r.round_min,
                r.round_mean,
                r.round_max,
                r.online,
                r.evaluated,
                r.acc_mean,
                r.acc_worst,
                r.acc_best,
                r.acc_average,
                r.loss_mean,
                r.consensus,
                r.bytes_sent,
                r.dropped
            );
            for c in &r.rejected {
                let _ = write!(s, ",{c}");
            }
            let _ = writeln!(
                s,
                ",{:.6},{:.6},{},{},{},{},{:.1},{},{},{},{}",
                r.clipped_fraction,
                r.byzantine_share,
                r.bans_of_byzantine,
                r.bans_of_honest,
                r.samples,
                r.screen_pulled_in,
                bytes_per_node_round(r, self.summary.nodes),
                // Codec names hold no commas; a block is written "int8 (block 256)".
                self.summary.codec,
                r.refused_busy,
                r.redrawn,
                r.retried
            );
        }
        s
    }

    /// `timing.csv`: wall time at each evaluation point.
    pub fn timing_csv(&self) -> String {
        let mut s = String::from("point,virtual_s,wall_s\n");
        for r in &self.rows {
            let _ = writeln!(s, "{},{:.6},{:.3}", r.point, r.virtual_s, r.wall_s);
        }
        s
    }

    /// `summary.json`.
    pub fn summary_json(&self) -> String {
        serde_json::to_string_pretty(&self.summary).expect("a summary serialises") + "\n"
    }

    /// Writes `scenario.toml` (resolved), `rounds.csv`, `timing.csv`, `summary.json` and
    /// `plot.svg` into `dir`, creating it.
    pub fn write(&self, dir: &Path) -> Result<(), WriteError> {
        let io = |path: PathBuf| move |source| WriteError { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.to_owned()))?;
        for (name, text) in [
            ("scenario.toml", self.scenario_toml.clone()),
            ("rounds.csv", self.rounds_csv()),
            ("timing.csv", self.timing_csv()),
            ("summary.json", self.summary_json()),
            (
                "plot.svg",
                crate::plot::svg(&self.rows, &self.summary.name, &self.splits),
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(io(path.clone()))?;
        }
        Ok(())
    }

    /// A readable table of the evaluation points (at most about 25 lines) and the totals.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:>9} {:>6} {:>7} {:>7} {:>7} {:>7} {:>11} {:>10} {:>9} {:>8}",
            "virtual",
            "round",
            "acc",
            "worst",
            "best",
            "avg-mdl",
            "consensus",
            "MB sent",
            "rejected",
            "clipped"
        );
        let step = self.rows.len().div_ceil(25).max(1);
        let last = self.rows.len().saturating_sub(1);
        for (k, r) in self.rows.iter().enumerate() {
            if k % step != 0 && k != last {
                continue;
            }
            let _ = writeln!(
                s,
                "{:>8.1}s {:>6} {:>6.2}% {:>6.2}% {:>6.2}% {:>6.2}% {:>11.3e} {:>10.1} {:>9} {:>7.1}%",
                r.virtual_s,
                r.round_min,
                100.0 * r.acc_mean,
                100.0 * r.acc_worst,
                100.0 * r.acc_best,
                100.0 * r.acc_average,
                r.consensus,
                r.bytes_sent as f64 / 1e6,
                r.rejected.iter().sum::<u64>(),
                100.0 * r.clipped_fraction
            );
        }
        let m = &self.summary;
        let _ = writeln!(
            s,
            "{} nodes ({} Byzantine), {} params: {:.1}s virtual in {:.1}s wall, {} events, \
             {} training jobs, {:.0} samples/s in training, peak RSS {:.1} MB; models in {}, \
             {:.1} KB sent per node and round",
            m.nodes,
            m.byzantine,
            m.model_params,
            m.virtual_s,
            m.wall_s,
            m.events,
            m.train_jobs,
            m.train_samples_per_s,
            m.peak_rss_bytes as f64 / 1e6,
            m.codec,
            m.bytes_per_node_round / 1e3
        );
        let rejected: Vec<String> = Rejection::ALL
            .iter()
            .zip(&m.last.rejected)
            .filter(|(_, c)| **c > 0)
            .map(|(r, c)| format!("{r} {c}"))
            .collect();
        if !rejected.is_empty() {
            let _ = writeln!(s, "rejected by honest nodes: {}", rejected.join(", "));
        }
        if m.last.refused_busy > 0 {
            let _ = writeln!(
                s,
                "fetches refused by honest nodes with a full uplink: {} ({} other peers drawn \
                 in their place, {} asked again)",
                m.last.refused_busy, m.last.redrawn, m.last.retried
            );
        }
        if m.last.bans_of_byzantine + m.last.bans_of_honest > 0 {
            let _ = writeln!(
                s,
                "bans by honest nodes: {} of Byzantine peers, {} of honest peers",
                m.last.bans_of_byzantine, m.last.bans_of_honest
            );
        }
        s
    }
}

/// Peak resident set size of this process, from `/proc/self/status` (`VmHWM`); 0 if unknown.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
