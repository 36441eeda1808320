//! What a running node reports: the figures behind the Prometheus endpoint and the JSON status.
//!
//! The driver updates one [`Metrics`] value as things happen; the HTTP endpoint
//! ([`crate::status`]) renders it on request, as OpenMetrics text through `prometheus-client`
//! ([`Metrics::prometheus`]) or as JSON ([`Metrics::status`]).

use std::collections::BTreeMap;

use murmur_protocol::engine::{Rejection, Stats};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};

/// Upper bounds of the aggregation-time histogram's buckets, in seconds.
pub const AGGREGATION_BUCKETS: [f64; 10] =
    [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0];

/// How long aggregations took: a histogram over [`AGGREGATION_BUCKETS`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    /// Seconds, summed.
    pub sum: f64,
    /// Aggregations timed.
    pub count: u64,
    /// Aggregations at or below each bucket's bound (not cumulative).
    pub buckets: Vec<u64>,
}

impl Timings {
    /// Records one aggregation of `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        self.buckets.resize(AGGREGATION_BUCKETS.len(), 0);
        self.sum += seconds;
        self.count += 1;
        if let Some(k) = AGGREGATION_BUCKETS.iter().position(|&b| seconds <= b) {
            self.buckets[k] += 1;
        }
    }
}

impl TypedMetric for Timings {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Timings {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per-bucket counts: the encoder makes them cumulative.
        let mut buckets: Vec<(f64, u64)> = AGGREGATION_BUCKETS
            .iter()
            .enumerate()
            .map(|(k, &bound)| (bound, self.buckets.get(k).copied().unwrap_or(0)))
            .collect();
        let counted: u64 = buckets.iter().map(|(_, c)| c).sum();
        buckets.push((f64::INFINITY, self.count - counted));
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

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
    /// The first round the node trained after it started.
    pub started_round: u64,
    /// How the node started: `fresh`, `checkpoint`, `joined` or `caught-up`.
    pub start: String,
    /// Accuracy of the locally trained model at the last evaluation.
    pub local_accuracy: Option<f64>,
    /// Accuracy of the mixed model at the last evaluation.
    pub mixed_accuracy: Option<f64>,
    /// Mean test loss at the last evaluation.
    pub loss: Option<f64>,
    /// Round of the last evaluation.
    pub evaluated_round: Option<u64>,
    /// Peers connected (same run, identified).
    pub peers: usize,
    /// Bytes of model payloads and gossip received.
    pub bytes_in: u64,
    /// Bytes of model payloads and gossip sent.
    pub bytes_out: u64,
    /// How this node's signed models are encoded (`engine.codec`, e.g. `int8 (block 256)`).
    #[serde(default)]
    pub codec: String,
    /// Updates accepted.
    pub accepted: u64,
    /// Messages rejected, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Rounds mixed.
    pub mixes: u64,
    /// Received models the outlier screen pulled in to its limit before mixing (far, but not
    /// gross outliers; those are rejected as `outlier`).
    #[serde(default)]
    pub screen_pulled_in: u64,
    /// Fetches refused because the uplink would not carry the answer in time
    /// (`engine.uplink-mbps`).
    #[serde(default)]
    pub refused_busy: u64,
    /// Peers drawn in place of one that refused a fetch as busy.
    #[serde(default)]
    pub redrawn: u64,
    /// Fetches sent again to a busy peer that could not be replaced.
    #[serde(default)]
    pub retried: u64,
    /// Peers banned.
    pub bans: u64,
    /// Updates sent.
    pub updates_sent: u64,
    /// Model requests dropped because too many were in flight to the peer or it failed.
    pub sends_dropped: u64,
    /// Time spent aggregating.
    pub aggregation: Timings,
    /// Training samples processed.
    pub samples: u64,
    /// Samples per second of the last local training.
    pub samples_per_sec: f64,
    /// Round of the last checkpoint written.
    pub checkpoint_round: Option<u64>,
    /// Models served to peers that the transport reported sent.
    #[serde(default)]
    pub served_models: u64,
    /// Seconds those models spent leaving (queued to sent), summed.
    #[serde(default)]
    pub serve_seconds: f64,
    /// Rounds in which a served model took longer to leave than the round: the uplink does not
    /// carry what peers fetch.
    #[serde(default)]
    pub uplink_saturated_rounds: u64,
    /// A colluding red-team node: honest updates it wrote to the red team's directory.
    #[serde(default)]
    pub intel_shared: u64,
    /// A colluding red-team node: updates it read from the other red-team nodes.
    #[serde(default)]
    pub intel_received: u64,
    /// A colluding red-team node: other red-team nodes it learned of.
    #[serde(default)]
    pub attack_allies: u64,
    /// A red-team node hogging the uplinks (`node.attack-hog`): rounds in which it did.
    #[serde(default)]
    pub attack_hog_rounds: u64,
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
        self.screen_pulled_in = stats.pulled_in;
        self.refused_busy = stats.refused_busy;
        self.redrawn = stats.redrawn;
        self.retried = stats.retried;
        self.attack_hog_rounds = stats.hog_rounds;
        self.bans = stats.bans;
        self.updates_sent = stats.updates_sent;
    }

    /// Bytes sent per round since the node started: `bytes_out` over the rounds from the first
    /// it trained to the one it is on (at least one).
    pub fn bytes_out_per_round(&self) -> f64 {
        let rounds = (self.round + 1).saturating_sub(self.started_round).max(1);
        self.bytes_out as f64 / rounds as f64
    }

    /// The status document (JSON).
    pub fn status(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data")
    }

    /// The metrics in the OpenMetrics text format, every name prefixed `murmur_`.
    pub fn prometheus(&self) -> String {
        let mut registry = Registry::with_prefix("murmur");
        let gauge = |r: &mut Registry, name: &str, help: &str, v: f64| {
            r.register(name, help, ConstGauge::new(v));
        };
        let counter = |r: &mut Registry, name: &str, help: &str, v: u64| {
            r.register(name, help, ConstCounter::new(v));
        };
        let r = &mut registry;
        gauge(
            r,
            "round",
            "Round being trained or collected.",
            self.round as f64,
        );
        if let Some(a) = self.local_accuracy {
            gauge(
                r,
                "local_accuracy",
                "Test accuracy of the locally trained model at the last evaluation.",
                a,
            );
        }
        if let Some(a) = self.mixed_accuracy {
            gauge(
                r,
                "mixed_accuracy",
                "Test accuracy of the mixed model at the last evaluation.",
                a,
            );
        }
        if let Some(l) = self.loss {
            gauge(r, "loss", "Mean test loss at the last evaluation.", l);
        }
        gauge(
            r,
            "peers_connected",
            "Peers of the run connected.",
            self.peers as f64,
        );
        counter(
            r,
            "bytes_in",
            "Bytes of model payloads and gossip received.",
            self.bytes_in,
        );
        counter(
            r,
            "bytes_out",
            "Bytes of model payloads and gossip sent.",
            self.bytes_out,
        );
        gauge(
            r,
            "bytes_out_per_round",
            "Bytes sent per round since the node started (in the codec of the codec info).",
            self.bytes_out_per_round(),
        );
        let codec = Family::<Vec<(String, String)>, Gauge>::default();
        codec
            .get_or_create(&vec![("codec".to_owned(), self.codec.clone())])
            .set(1);
        r.register(
            "codec_info",
            "How this node's signed models are encoded (the label; the value is 1).",
            codec,
        );
        counter(r, "updates_accepted", "Updates accepted.", self.accepted);
        let rejected = Family::<Vec<(String, String)>, Counter>::default();
        for (reason, &c) in &self.rejected {
            rejected
                .get_or_create(&vec![("reason".to_owned(), reason.clone())])
                .inc_by(c);
        }
        r.register(
            "updates_rejected",
            "Messages rejected, by reason.",
            rejected,
        );
        counter(r, "updates_sent", "Updates sent.", self.updates_sent);
        if self.intel_shared + self.intel_received + self.attack_allies > 0 {
            counter(
                r,
                "intel_shared",
                "Red team: honest updates written to the red team's directory.",
                self.intel_shared,
            );
            counter(
                r,
                "intel_received",
                "Red team: updates read from the other red-team nodes.",
                self.intel_received,
            );
            gauge(
                r,
                "attack_allies",
                "Red team: other red-team nodes learned of.",
                self.attack_allies as f64,
            );
        }
        if self.attack_hog_rounds > 0 {
            counter(
                r,
                "attack_hog_rounds",
                "Red team: rounds in which this node hogged the uplinks.",
                self.attack_hog_rounds,
            );
        }
        counter(
            r,
            "sends_dropped",
            "Sends dropped: too many requests in flight, or failed.",
            self.sends_dropped,
        );
        counter(r, "mixes", "Rounds mixed.", self.mixes);
        counter(
            r,
            "served_models",
            "Models served to peers that the transport reported sent.",
            self.served_models,
        );
        r.register(
            "serve_seconds",
            "Seconds served models spent leaving the node, from queued to sent, summed.",
            ConstCounter::new(self.serve_seconds),
        );
        counter(
            r,
            "uplink_saturated_rounds",
            "Rounds in which a served model took longer to leave than the round.",
            self.uplink_saturated_rounds,
        );
        counter(
            r,
            "screen_pulled_in",
            "Received models the outlier screen pulled in to its limit before mixing.",
            self.screen_pulled_in,
        );
        counter(
            r,
            "fetches_refused_busy",
            "Fetches refused because the uplink would not carry the answer in time.",
            self.refused_busy,
        );
        counter(
            r,
            "fetches_redrawn",
            "Peers drawn in place of one that refused a fetch as busy.",
            self.redrawn,
        );
        counter(
            r,
            "fetches_retried",
            "Fetches sent again to a busy peer that could not be replaced.",
            self.retried,
        );
        counter(r, "bans", "Peers banned.", self.bans);
        r.register_with_unit(
            "aggregation",
            "Time spent mixing one round.",
            Unit::Seconds,
            self.aggregation.clone(),
        );
        counter(
            r,
            "training_samples",
            "Training samples processed.",
            self.samples,
        );
        gauge(
            r,
            "training_samples_per_second",
            "Samples per second of the last local training.",
            self.samples_per_sec,
        );
        gauge(
            r,
            "finished",
            "1 when the configured rounds are done.",
            f64::from(u8::from(self.finished)),
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a string");
        out
    }
}

impl Metrics {
    /// The metrics in Prometheus's text format 0.0.4 (what `promtool check metrics` reads, and
    /// what scrapers that do not ask for OpenMetrics get): the OpenMetrics text with counter
    /// families named by their `_total` samples, and without `# UNIT` and `# EOF`.
    pub fn prometheus_text(&self) -> String {
        let open = self.prometheus();
        let counters: Vec<&str> = open
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .collect();
        let mut out = String::with_capacity(open.len());
        for line in open.lines() {
            if line.starts_with("# UNIT ") || line == "# EOF" {
                continue;
            }
            let meta = ["# HELP ", "# TYPE "]
                .into_iter()
                .find_map(|p| Some((p, line.strip_prefix(p)?)));
            match meta {
                Some((p, rest)) => {
                    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    let total = if counters.contains(&name) {
                        "_total"
                    } else {
                        ""
                    };
                    out.push_str(&format!("{p}{name}{total} {tail}"));
                }
                None => out.push_str(line),
            }
            out.push('\n');
        }
        out
    }
}

/// Reads one sample from the metrics text: the value of `name` (with its labels, e.g.
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
    fn metrics_text_has_every_reason_and_reads_back() {
        let mut stats = Stats::default();
        stats.rejected.insert(Rejection::WrongRun, 3);
        stats.accepted = 7;
        let mut m = Metrics {
            round: 12,
            started_round: 3,
            bytes_out: 1000,
            codec: "int8 (block 256)".into(),
            mixed_accuracy: Some(0.93),
            ..Metrics::default()
        };
        m.update_from(&stats);
        m.aggregation.observe(0.002);
        m.aggregation.observe(5.0);
        let text = m.prometheus();
        assert_eq!(sample(&text, "murmur_round"), Some(12.0));
        assert_eq!(sample(&text, "murmur_mixed_accuracy"), Some(0.93));
        // Rounds 3 to 12: ten.
        assert_eq!(sample(&text, "murmur_bytes_out_per_round"), Some(100.0));
        assert_eq!(
            sample(&text, "murmur_codec_info{codec=\"int8 (block 256)\"}"),
            Some(1.0)
        );
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
        assert_eq!(sample(&text, "murmur_aggregation_seconds_count"), Some(2.0));
        assert_eq!(
            sample(&text, "murmur_aggregation_seconds_bucket{le=\"0.003\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "murmur_aggregation_seconds_bucket{le=\"+Inf\"}"),
            Some(2.0)
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        let back: Metrics = serde_json::from_str(&m.status()).unwrap();
        assert_eq!(back, m);
    }

    /// Every family has one `# TYPE` line, its samples carry its name (with the suffixes its
    /// type allows), and names and label names are valid.
    #[test]
    fn every_family_is_well_formed() {
        let mut m = Metrics {
            local_accuracy: Some(0.5),
            mixed_accuracy: Some(0.6),
            loss: Some(1.0),
            ..Metrics::default()
        };
        m.update_from(&Stats::default());
        m.aggregation.observe(0.01);
        let text = m.prometheus();
        let mut families: BTreeMap<String, String> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    families.insert(name.into(), kind.into()).is_none(),
                    "{name} twice"
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{line}"
            );
            let family = families
                .iter()
                .filter(|(f, _)| name.starts_with(f.as_str()))
                .max_by_key(|(f, _)| f.len())
                .unwrap_or_else(|| panic!("{line}: no # TYPE before it"));
            let suffix = &name[family.0.len()..];
            let allowed: &[&str] = match family.1.as_str() {
                "counter" => &["_total"],
                "gauge" => &[""],
                "histogram" => &["_bucket", "_sum", "_count"],
                other => panic!("unexpected type {other}"),
            };
            assert!(allowed.contains(&suffix), "{line} in {family:?}");
        }
        assert!(families.len() >= 15, "{families:?}");
        let text = m.prometheus_text();
        assert!(
            text.contains("# TYPE murmur_bans_total counter\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        for (name, kind) in &families {
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.clone()
            };
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
        }
        promtool_check(&text);
    }

    /// `promtool check metrics` on `text`, where promtool is installed (Debian's `prometheus`).
    fn promtool_check(text: &str) {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let Ok(mut child) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            println!("promtool not installed: not run");
            return;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}"
        );
    }
}
