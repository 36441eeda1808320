//! The network and compute models: how long a message takes from one node to another, whether it
//! arrives at all, who is connected to whom, and how long local training takes.
//!
//! Every draw is seeded: link latencies are a pure function of `(seed, pair)`, so a link keeps
//! its latency for the whole run. Losses, partitions and gossip targets are the cluster's
//! (`murmur_protocol::cluster`), drawn from its generator in event order, which is the same for
//! any number of worker threads.

use crate::scenario::{Compute, Latency, Network, Speed};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use std::time::Duration;

/// Named random streams of a run, beside the learning streams of `murmur_learn::data::stream`.
pub(crate) mod stream {
    /// Node identities.
    pub const IDENTITY: u64 = 101;
    /// Who is Byzantine.
    pub const ATTACKERS: u64 = 102;
    /// Per-node speed factors and stragglers.
    pub const SPEED: u64 = 103;
    /// Link latencies (the index is the pair).
    pub const LATENCY: u64 = 104;
    /// The cluster's losses and gossip targets.
    pub const NETWORK: u64 = 105;
    /// Connection sets.
    pub const CONNECTIONS: u64 = 106;
    /// Churn times and who churns.
    pub const CHURN: u64 = 107;
    /// Which honest nodes are evaluated.
    pub const EVAL: u64 = 108;

    /// A generator for `purpose` and `index` under `seed`.
    pub fn rng(seed: u64, purpose: u64, index: u64) -> rand_chacha::ChaCha8Rng {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ purpose.rotate_left(40));
        rng.set_stream(index);
        rng
    }
}

/// The links' timing: per-pair latency and the senders' uplink queues. (Losses, cuts and
/// partitions are the cluster's faults.)
#[derive(Debug)]
pub(crate) struct Links {
    seed: u64,
    latency: Latency,
    /// Bytes per second, if limited.
    bandwidth: Option<f64>,
    shared_uplink: bool,
    uplink_free: Vec<Duration>,
    /// The uplink each node sends on: its own, or its Sybil process's (see
    /// [`Links::with_processes`]).
    uplink: Vec<usize>,
    /// Whether the node shares its uplink with other identities (its messages always queue).
    crowded: Vec<bool>,
    /// Latencies drawn lately, by link (see [`Links::latency_of`]).
    drawn: Vec<(u64, Duration)>,
}

/// Slots of the memo of drawn latencies: a link's latency is a pure function of the pair and the
/// seed, but drawing it seeds a generator, which costs more than the rest of a message's
/// delivery. Each link has one slot, which another link may take over; 4,096 slots (96 KB) keep
/// most links of a run of a few dozen nodes, and the busiest of a larger one.
const DRAWN: usize = 1 << 12;

/// A slot no link's key can take: both of its ends would be node 2^32 - 1.
const EMPTY: u64 = u64::MAX;

impl Links {
    pub(crate) fn new(net: &Network, n: usize, seed: u64) -> Links {
        Links {
            seed,
            latency: net.latency,
            bandwidth: net.bandwidth_mbps.map(|m| m * 1e6 / 8.0),
            shared_uplink: net.shared_uplink,
            uplink_free: vec![Duration::ZERO; n],
            uplink: (0..n).collect(),
            crowded: vec![false; n],
            drawn: Vec::new(),
        }
    }

    /// The links with node `i` sending on process `process[i]`'s uplink: the identities of one
    /// Sybil process share one uplink, and their messages leave one after the other whatever
    /// `shared-uplink` says.
    pub(crate) fn with_processes(mut self, process: &[usize]) -> Links {
        let mut members = vec![0usize; self.uplink.len()];
        for &p in process {
            members[p] += 1;
        }
        self.crowded = process.iter().map(|&p| members[p] > 1).collect();
        self.uplink = process.to_vec();
        self
    }

    /// [`Links::latency`], remembered for the links used lately: the same value, drawn once.
    fn latency_of(&mut self, a: usize, b: usize) -> Duration {
        if matches!(self.latency, Latency::Fixed { .. }) {
            return self.latency(a, b);
        }
        let key = link_key(a, b);
        if self.drawn.is_empty() {
            self.drawn = vec![(EMPTY, Duration::ZERO); DRAWN];
        }
        // Fibonacci hashing: the top bits of the key times 2^64 / φ.
        let slot =
            (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - DRAWN.trailing_zeros())) as usize;
        match self.drawn[slot] {
            (k, d) if k == key => d,
            _ => {
                let d = self.latency(a, b);
                self.drawn[slot] = (key, d);
                d
            }
        }
    }

    /// The fixed one-way latency of the link between `a` and `b` (symmetric).
    pub(crate) fn latency(&self, a: usize, b: usize) -> Duration {
        let ms = match self.latency {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } => {
                let mut rng = stream::rng(self.seed, stream::LATENCY, link_key(a, b));
                if max_ms > min_ms {
                    rng.random_range(min_ms..=max_ms)
                } else {
                    min_ms
                }
            }
            Latency::Lognormal { median_ms, sigma } => {
                let mut rng = stream::rng(self.seed, stream::LATENCY, link_key(a, b));
                let d = LogNormal::new(0.0, sigma).expect("sigma validated");
                median_ms * d.sample(&mut rng)
            }
        };
        Duration::from_secs_f64(ms / 1e3)
    }

    /// When `bytes` bytes that `from` puts on the wire at `now` reach `to`: after the sender's
    /// uplink has carried them (with `shared-uplink`, a sender's messages, updates and gossip
    /// alike, leave one after the other in the order they were sent), and the link's latency.
    pub(crate) fn arrival(
        &mut self,
        now: Duration,
        from: usize,
        to: usize,
        bytes: usize,
    ) -> Duration {
        let transfer = self.bandwidth.map_or(Duration::ZERO, |b| {
            Duration::from_secs_f64(bytes as f64 / b)
        });
        let sent = if self.shared_uplink || self.crowded[from] {
            let uplink = self.uplink[from];
            let start = now.max(self.uplink_free[uplink]);
            self.uplink_free[uplink] = start + transfer;
            start + transfer
        } else {
            now + transfer
        };
        sent + self.latency_of(from, to)
    }
}

/// A link's key: its two ends, lower first (a link's latency is symmetric).
fn link_key(a: usize, b: usize) -> u64 {
    let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
    (lo << 32) | hi
}

/// Connection sets: everyone when there are at most `max` others; otherwise each node links to
/// `max / 2` seeded random others and the relation is made symmetric (so degrees are about
/// `max`). Sorted, without self.
pub(crate) fn connections(n: usize, max: usize, seed: u64) -> Vec<Vec<usize>> {
    if n <= max + 1 {
        return (0..n)
            .map(|i| (0..n).filter(|&j| j != i).collect())
            .collect();
    }
    let mut sets: Vec<std::collections::BTreeSet<usize>> = vec![Default::default(); n];
    let k = (max / 2).max(1);
    for i in 0..n {
        let mut rng = stream::rng(seed, stream::CONNECTIONS, i as u64);
        while sets[i].len() < k {
            let j = rng.random_range(0..n);
            if j != i {
                sets[i].insert(j);
                sets[j].insert(i);
            }
        }
    }
    sets.into_iter().map(|s| s.into_iter().collect()).collect()
}

/// Per-node time multipliers of local training: the speed distribution, times the slowdown for
/// the stragglers.
pub(crate) fn speed_factors(c: &Compute, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = stream::rng(seed, stream::SPEED, 0);
    let mut f: Vec<f64> = (0..n)
        .map(|_| match c.speed {
            Speed::Fixed {} => 1.0,
            Speed::Uniform { min, max } => {
                if max > min {
                    rng.random_range(min..=max)
                } else {
                    min
                }
            }
            Speed::Lognormal { sigma } => LogNormal::new(0.0, sigma)
                .expect("sigma validated")
                .sample(&mut rng),
        })
        .collect();
    if let Some(s) = c.stragglers {
        let count = (s.fraction * n as f64).round() as usize;
        let mut ids: Vec<usize> = (0..n).collect();
        ids.shuffle(&mut rng);
        for &i in &ids[..count.min(n)] {
            f[i] *= s.slowdown;
        }
    }
    f
}

/// A seeded generator for a sim-level purpose, for callers outside this module.
pub(crate) fn rng(seed: u64, purpose: u64, index: u64) -> ChaCha8Rng {
    stream::rng(seed, purpose, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_per_link_symmetric_and_seeded() {
        let net = Network {
            latency: Latency::Uniform {
                min_ms: 10.0,
                max_ms: 50.0,
            },
            ..Network::default()
        };
        let l = Links::new(&net, 10, 7);
        assert_eq!(l.latency(2, 5), l.latency(5, 2));
        assert_eq!(l.latency(2, 5), Links::new(&net, 10, 7).latency(2, 5));
        let all: Vec<Duration> = (1..10).map(|j| l.latency(0, j)).collect();
        assert!(all.iter().any(|d| *d != all[0]));
        assert!(
            all.iter()
                .all(|d| (0.010..=0.050).contains(&d.as_secs_f64()))
        );
    }

    /// The memo of drawn latencies gives the drawn values, also for links whose slots other
    /// links took: three passes of 300 random links of 300 nodes, 900 in all, in 4,096 slots (by
    /// the birthday count, about a hundred pairs of them share a slot).
    #[test]
    fn remembered_latencies_are_the_drawn_ones() {
        for latency in [
            Latency::Uniform {
                min_ms: 10.0,
                max_ms: 50.0,
            },
            Latency::Lognormal {
                median_ms: 30.0,
                sigma: 0.5,
            },
            Latency::Fixed { ms: 20.0 },
        ] {
            let net = Network {
                latency,
                ..Network::default()
            };
            let mut l = Links::new(&net, 300, 11);
            let mut rng = rng(5, 0, 0);
            for _ in 0..3 {
                for a in 0..300 {
                    let b = rng.random_range(0..300);
                    if a != b {
                        assert_eq!(l.latency_of(a, b), l.latency(a, b), "{latency:?} {a}-{b}");
                        assert_eq!(l.latency_of(b, a), l.latency(a, b), "{latency:?} {b}-{a}");
                    }
                }
            }
            let filled = l.drawn.iter().filter(|(k, _)| *k != EMPTY).count();
            assert_eq!(filled > 0, !matches!(latency, Latency::Fixed { .. }));
        }
    }

    #[test]
    fn uplink_serialises_a_senders_messages() {
        let net = Network {
            latency: Latency::Fixed { ms: 10.0 },
            bandwidth_mbps: Some(8.0), // 1 MB/s
            ..Network::default()
        };
        let mut l = Links::new(&net, 4, 1);
        let a = l.arrival(Duration::ZERO, 0, 1, 1_000_000);
        let b = l.arrival(Duration::ZERO, 0, 2, 1_000_000);
        assert_eq!(a, Duration::from_millis(1010));
        assert_eq!(b, Duration::from_millis(2010));
        let other = l.arrival(Duration::ZERO, 3, 2, 1_000_000);
        assert_eq!(
            other,
            Duration::from_millis(1010),
            "another sender's uplink is free"
        );
    }

    /// The identities of one Sybil process (nodes 1 and 2 here) send on one uplink, one message
    /// after the other, even where senders' messages do not queue (`shared-uplink = false`);
    /// any other node's messages leave at once.
    #[test]
    fn sybil_identities_share_their_process_uplink() {
        let net = Network {
            latency: Latency::Fixed { ms: 10.0 },
            bandwidth_mbps: Some(8.0), // 1 MB/s
            shared_uplink: false,
            ..Network::default()
        };
        let mut l = Links::new(&net, 4, 1).with_processes(&[0, 1, 1, 3]);
        let a = l.arrival(Duration::ZERO, 1, 0, 1_000_000);
        let b = l.arrival(Duration::ZERO, 2, 3, 1_000_000);
        assert_eq!(a, Duration::from_millis(1010));
        assert_eq!(
            b,
            Duration::from_millis(2010),
            "behind its sibling's message"
        );
        for _ in 0..2 {
            let lone = l.arrival(Duration::ZERO, 0, 3, 1_000_000);
            assert_eq!(lone, Duration::from_millis(1010), "no queue of its own");
        }
    }

    #[test]
    fn bounded_connections_are_symmetric() {
        let c = connections(200, 16, 3);
        for (i, peers) in c.iter().enumerate() {
            assert!(peers.len() >= 8 && !peers.contains(&i));
            assert!(peers.iter().all(|&j| c[j].contains(&i)));
        }
        assert_eq!(connections(5, 16, 3)[0], vec![1, 2, 3, 4]);
    }
}
