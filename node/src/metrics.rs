//! What a running node reports: the figures behind the Prometheus endpoint and the JSON status.
//!
//! The driver updates one [`Metrics`] value as things happen; the HTTP endpoint
//! ([`crate::status`]) renders it on request, as Prometheus text exposition format 0.0.4
//! ([`Metrics::prometheus`]) or as JSON ([`Metrics::status`]).

use std::collections::BTreeMap;
use std::fmt::Write;

use murmur_protocol::engine::{Rejection, Stats};
use serde::{Deserialize, Serialize};

/// The node's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// The node's peer id.
    pub peer_id: String,
    /// The run id (hex).
    pub run: String,
    /// Addresses the node listens on.
    pub listen: Vec<String>,
    /// The round being trained or collected.
    pub round: u64,
    /// Whether the configured rounds are done.
    pub finished: bool,
    /// The round the node started from (a checkpoint's, a joiner's, or 0).
    pub started_round: u64,
    /// How the node started: `fresh`, `checkpoint` or `joined`.
    pub start: String,
    /// Accuracy of the locally trained model at the last evaluation.
    pub local_accuracy: Option<f64>,
    /// Accuracy of the mixed model at the last evaluation.
    pub mixed_accuracy: Option<f64>,
    /// Round of the last evaluation.
    pub evaluated_round: Option<u64>,
    /// Peers connected (same run, identified).
    pub peers: usize,
    /// Bytes of model payloads and gossip received.
    pub bytes_in: u64,
    /// Bytes of model payloads and gossip sent.
    pub bytes_out: u64,
    /// Updates accepted.
    pub accepted: u64,
    /// Messages rejected, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Rounds mixed.
    pub mixes: u64,
    /// Peers banned.
    pub bans: u64,
    /// Updates sent.
    pub updates_sent: u64,
    /// Model requests dropped because too many were in flight to the peer or it failed.
    pub sends_dropped: u64,
    /// Total seconds spent aggregating.
    pub aggregation_seconds: f64,
    /// Aggregations timed.
    pub aggregations: u64,
    /// Training samples processed.
    pub samples: u64,
    /// Samples per second of the last local training.
    pub samples_per_sec: f64,
    /// Round of the last checkpoint written.
    pub checkpoint_round: Option<u64>,
}

impl Metrics {
    /// Copies the engine's counts.
    pub fn update_from(&mut self, stats: &Stats) {
        self.accepted = stats.accepted;
        self.rejected = Rejection::ALL
            .iter()
            .map(|r| {
                (
                    r.as_str().to_owned(),
                    stats.rejected.get(r).copied().unwrap_or(0),
                )
            })
            .collect();
        self.mixes = stats.mixes;
        self.bans = stats.bans;
        self.updates_sent = stats.updates_sent;
    }

    /// The status document (JSON).
    pub fn status(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data")
    }

    /// Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP murmur_{name} {help}");
            let _ = writeln!(out, "# TYPE murmur_{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "murmur_{name}{labels} {v}");
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        metric(
            "round",
            "gauge",
            "Round being trained or collected.",
            &one(self.round as f64),
        );
        if let Some(a) = self.local_accuracy {
            metric(
                "local_accuracy",
                "gauge",
                "Test accuracy of the locally trained model at the last evaluation.",
                &one(a),
            );
        }
        if let Some(a) = self.mixed_accuracy {
            metric(
                "mixed_accuracy",
                "gauge",
                "Test accuracy of the mixed model at the last evaluation.",
                &one(a),
            );
        }
        metric(
            "peers_connected",
            "gauge",
            "Peers of the run connected.",
            &one(self.peers as f64),
        );
        metric(
            "bytes_in_total",
            "counter",
            "Bytes of model payloads and gossip received.",
            &one(self.bytes_in as f64),
        );
        metric(
            "bytes_out_total",
            "counter",
            "Bytes of model payloads and gossip sent.",
            &one(self.bytes_out as f64),
        );
        metric(
            "updates_accepted_total",
            "counter",
            "Updates accepted.",
            &one(self.accepted as f64),
        );
        let rejected: Vec<(String, f64)> = self
            .rejected
            .iter()
            .map(|(r, c)| (format!("{{reason=\"{r}\"}}"), *c as f64))
            .collect();
        metric(
            "updates_rejected_total",
            "counter",
            "Messages rejected, by reason.",
            &rejected,
        );
        metric(
            "updates_sent_total",
            "counter",
            "Updates sent.",
            &one(self.updates_sent as f64),
        );
        metric(
            "sends_dropped_total",
            "counter",
            "Sends dropped: too many requests in flight, or failed.",
            &one(self.sends_dropped as f64),
        );
        metric(
            "mixes_total",
            "counter",
            "Rounds mixed.",
            &one(self.mixes as f64),
        );
        metric(
            "bans_total",
            "counter",
            "Peers banned.",
            &one(self.bans as f64),
        );
        metric(
            "aggregation_seconds_sum",
            "counter",
            "Seconds spent aggregating.",
            &one(self.aggregation_seconds),
        );
        metric(
            "aggregation_seconds_count",
            "counter",
            "Aggregations timed.",
            &one(self.aggregations as f64),
        );
        metric(
            "training_samples_total",
            "counter",
            "Training samples processed.",
            &one(self.samples as f64),
        );
        metric(
            "training_samples_per_second",
            "gauge",
            "Samples per second of the last local training.",
            &one(self.samples_per_sec),
        );
        metric(
            "finished",
            "gauge",
            "1 when the configured rounds are done.",
            &one(f64::from(u8::from(self.finished))),
        );
        out
    }
}

/// Reads one sample from Prometheus text: the value of `name` (with its labels, e.g.
/// `murmur_updates_rejected_total{reason="wrong_run"}`).
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_reason_and_reads_back() {
        let mut stats = Stats::default();
        stats.rejected.insert(Rejection::WrongRun, 3);
        stats.accepted = 7;
        let mut m = Metrics {
            round: 12,
            mixed_accuracy: Some(0.93),
            ..Metrics::default()
        };
        m.update_from(&stats);
        let text = m.prometheus();
        assert_eq!(sample(&text, "murmur_round"), Some(12.0));
        assert_eq!(sample(&text, "murmur_mixed_accuracy"), Some(0.93));
        assert_eq!(sample(&text, "murmur_local_accuracy"), None);
        assert_eq!(
            sample(&text, "murmur_updates_rejected_total{reason=\"wrong_run\"}"),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                "murmur_updates_rejected_total{reason=\"non_finite\"}"
            ),
            Some(0.0)
        );
        assert_eq!(sample(&text, "murmur_updates_accepted_total"), Some(7.0));
        let back: Metrics = serde_json::from_str(&m.status()).unwrap();
        assert_eq!(back, m);
    }
}
