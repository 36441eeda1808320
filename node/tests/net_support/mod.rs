//! Shared helpers of the end-to-end tests: `murmur-node run` as child processes on 127.0.0.1,
//! observed through their standard-output event lines and their status endpoint. Every wait is
//! bounded by a deadline; children are killed when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use murmur_node::metrics::Metrics;
use serde_json::Value;

/// A `murmur-node run` child process.
pub struct Node {
    child: Child,
    events: Receiver<Value>,
    /// Events received but not yet returned by [`Node::wait`], in order.
    backlog: Vec<Value>,
    /// Its status endpoint.
    pub http: String,
    /// Its TCP listen address with `/p2p/ID`.
    pub addr: String,
    /// Its data directory.
    pub dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a node config for `partitions` nodes to `dir/node.toml`; `extra` is appended
/// (tables and keys not set here).
pub fn write_config(dir: &Path, partitions: usize, engine: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[run]
name = "e2e"
seed = 7
partitions = {partitions}

[learning]
model = {{ kind = "mlp", hidden = [32] }}
data = {{ kind = "digits" }}
partition = {{ kind = "iid" }}
optimizer = {{ kind = "sgd", lr = 0.05, momentum = 0.9 }}
batch-size = 32
local-steps = 10

[engine]
{engine}

[network]
mdns = false
random-walk-ms = 1000

{extra}
"#
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Prints the honest nodes' accuracies and their mean (`label` first), and asserts the mean is
/// at least `floor`.
pub fn assert_mean_accuracy(label: &str, accuracies: &[f64], floor: f64) {
    let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
    println!("{label}honest accuracies {accuracies:?}, mean {mean:.4}");
    assert!(
        mean >= floor,
        "{label}honest mean accuracy {mean:.4}: {accuracies:?}"
    );
}

/// Starts `n` nodes under `dir` (`n0`, `n1`, ...), node `i` on partition `i`: node 0 alone,
/// every other one bootstrapping from it, with `extra(i)` appended to its arguments.
pub fn spawn_network(
    config: &Path,
    dir: &Path,
    n: usize,
    extra: impl Fn(usize) -> Vec<String>,
) -> Vec<Node> {
    let first = extra(0);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let mut nodes = vec![spawn(config, &dir.join("n0"), 0, &first)];
    let boot = nodes[0].addr.clone();
    for i in 1..n {
        let mut args = vec!["--bootstrap".to_owned(), boot.clone()];
        args.extend(extra(i));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(spawn(config, &dir.join(format!("n{i}")), i, &args));
    }
    nodes
}

/// Waits (at most 600 s each) for every node of `nodes` to finish its rounds; their accuracies
/// at the end, in order.
pub fn finished_accuracies(nodes: &mut [Node]) -> Vec<f64> {
    nodes
        .iter_mut()
        .map(|node| {
            let done = node.wait(Duration::from_secs(600), |e| e["event"] == "finished");
            done["accuracy"].as_f64().unwrap()
        })
        .collect()
}

/// Updates `status` says the node rejected for any reason but those `allowed`.
pub fn rejected_but(status: &Metrics, allowed: &[&str]) -> u64 {
    status
        .rejected
        .iter()
        .filter(|(reason, _)| !allowed.contains(&reason.as_str()))
        .map(|(_, n)| n)
        .sum()
}

/// Starts a node with data directory `dir`, partition `index`, listening on a free loopback
/// port, with its endpoint on a free loopback port, and waits (at most 120 s) until it listens.
pub fn spawn(config: &Path, dir: &Path, index: usize, args: &[&str]) -> Node {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_murmur-node"))
        .arg("run")
        .arg(config)
        .arg("--state-dir")
        .arg(dir)
        .args(["--index", &index.to_string()])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--metrics", "127.0.0.1:0", "--no-mdns"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start murmur-node");
    let stdout = child.stdout.take().unwrap();
    let (tx, events) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let mut node = Node {
        child,
        events,
        backlog: Vec::new(),
        http: String::new(),
        addr: String::new(),
        dir: dir.to_owned(),
    };
    let deadline = Duration::from_secs(120);
    let http = node.wait(deadline, |e| e["event"] == "http");
    node.http = http["addr"].as_str().unwrap().to_owned();
    let listening = node.wait(deadline, |e| e["event"] == "listening");
    node.addr = listening["addr"].as_str().unwrap().to_owned();
    node
}

impl Node {
    /// Returns the first event matching `pred` that no earlier call returned, waiting at most
    /// `timeout` for it. Panics with the node's log on timeout or exit.
    pub fn wait(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(v) => self.backlog.push(v),
                Err(RecvTimeoutError::Timeout) => self.fail("timed out waiting for an event"),
                Err(RecvTimeoutError::Disconnected) => self.fail("the node exited"),
            }
        }
    }

    /// Every event the node has printed so far that no [`Node::wait`] returned, without waiting.
    pub fn seen(&mut self) -> Vec<Value> {
        while let Ok(v) = self.events.try_recv() {
            self.backlog.push(v);
        }
        self.backlog.clone()
    }

    fn fail(&self, why: &str) -> ! {
        let log = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{}: {why}; events: {:?}\nlog tail:\n{}",
            self.dir.display(),
            self.backlog.iter().rev().take(5).collect::<Vec<_>>(),
            tail.join("\n")
        );
    }

    /// The process's peak resident memory so far, in KiB (Linux's VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Every peer this node's bans file records a ban of, ended or not, as hex keys (`KEY
    /// REASON` is a ban, `KEY -` its end; a rewrite of the record keeps only the bans in force,
    /// and a short run never has one): a check that no honest peer was banned sees a ban that
    /// ended too.
    pub fn banned_keys(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("bans")).unwrap_or_default();
        let banned: std::collections::BTreeSet<String> = text
            .lines()
            .filter_map(|line| line.split_once(' '))
            .filter(|(_, what)| *what != "-")
            .map(|(key, _)| key.to_owned())
            .collect();
        banned.into_iter().collect()
    }

    /// The node's JSON status.
    pub fn status(&self) -> Metrics {
        let body = murmur_node::status::fetch(&self.http, "/status").unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// Reads the node's status until `pred` holds, at most `timeout`; returns that status.
    /// Panics with the node's log if it never does.
    pub fn wait_status(&self, timeout: Duration, pred: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out waiting for a status: last {s:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's Prometheus text.
    pub fn prometheus(&self) -> String {
        murmur_node::status::fetch(&self.http, "/metrics").unwrap()
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.clone()
    }

    /// Sends the process signal `name` (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{name} {pid}");
    }

    /// Sends SIGTERM and waits (at most `timeout`) for a clean exit; returns whether it was.
    pub fn terminate(self, timeout: Duration) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait_exit(timeout)
    }
}

impl Node {
    /// Waits (at most `timeout`) for the process to exit by itself; returns whether it exited
    /// successfully.
    pub fn wait_exit(mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => self.backlog.push(v),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
        matches!(self.child.wait(), Ok(s) if s.success())
    }
}
