//! The network and compute models: how long a message takes from one node to another, whether it
//! arrives at all, who is connected to whom, and how long local training takes.
//!
//! Every draw is seeded: link latencies are a pure function of `(seed, pair)`, so a link keeps
//! its latency for the whole run; losses and gossip targets come from one generator drawn in
//! event order, which is the same for any number of worker threads.

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
    /// Losses and gossip targets.
    pub const NETWORK: u64 = 105;
    /// Connection sets.
    pub const CONNECTIONS: u64 = 106;
    /// Churn times and who churns.
    pub const CHURN: u64 = 107;
    /// Which honest nodes are evaluated.
    pub const EVAL: u64 = 108;
    /// Engines' own generators (the index is the node).
    pub const ENGINE: u64 = 109;

    /// A generator for `purpose` and `index` under `seed`.
    pub fn rng(seed: u64, purpose: u64, index: u64) -> rand_chacha::ChaCha8Rng {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ purpose.rotate_left(40));
        rng.set_stream(index);
        rng
    }
}

/// The state of the links: uplink queues, the current partition, the loss generator.
#[derive(Debug)]
pub(crate) struct Links {
    seed: u64,
    n: usize,
    latency: Latency,
    /// Bytes per second, if limited.
    bandwidth: Option<f64>,
    shared_uplink: bool,
    loss: f64,
    gossip_peers: usize,
    uplink_free: Vec<Duration>,
    rng: ChaCha8Rng,
    /// Sides of the partition in force, if any.
    sides: Option<usize>,
    /// Messages lost or cut by a partition.
    pub dropped: u64,
}

impl Links {
    pub(crate) fn new(net: &Network, n: usize, seed: u64) -> Links {
        Links {
            seed,
            n,
            latency: net.latency,
            bandwidth: net.bandwidth_mbps.map(|m| m * 1e6 / 8.0),
            shared_uplink: net.shared_uplink,
            loss: net.loss,
            gossip_peers: net.gossip_peers,
            uplink_free: vec![Duration::ZERO; n],
            rng: stream::rng(seed, stream::NETWORK, 0),
            sides: None,
            dropped: 0,
        }
    }

    /// The fixed one-way latency of the link between `a` and `b` (symmetric).
    pub(crate) fn latency(&self, a: usize, b: usize) -> Duration {
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let ms = match self.latency {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } => {
                let mut rng = stream::rng(self.seed, stream::LATENCY, (lo << 32) | hi);
                if max_ms > min_ms {
                    rng.random_range(min_ms..=max_ms)
                } else {
                    min_ms
                }
            }
            Latency::Lognormal { median_ms, sigma } => {
                let mut rng = stream::rng(self.seed, stream::LATENCY, (lo << 32) | hi);
                let d = LogNormal::new(0.0, sigma).expect("sigma validated");
                median_ms * d.sample(&mut rng)
            }
        };
        Duration::from_secs_f64(ms / 1e3)
    }

    /// Starts a partition into `sides` blocks, or heals it (`None`).
    pub(crate) fn set_partition(&mut self, sides: Option<usize>) {
        self.sides = sides;
    }

    /// The block of node `i` under `sides` blocks.
    pub(crate) fn side(&self, i: usize, sides: usize) -> usize {
        i * sides / self.n
    }

    /// Whether the partition in force separates `a` and `b`.
    pub(crate) fn cut(&self, a: usize, b: usize) -> bool {
        self.sides
            .is_some_and(|s| self.side(a, s) != self.side(b, s))
    }

    /// Puts `bytes` bytes from `from` to `to` on the wire at `now`; the arrival time, or `None`
    /// if the message is lost or cut. With `shared-uplink`, a sender's messages (updates and
    /// gossip alike) leave one after the other, in the order the engine emitted them.
    pub(crate) fn transmit(
        &mut self,
        now: Duration,
        from: usize,
        to: usize,
        bytes: usize,
    ) -> Option<Duration> {
        if self.cut(from, to) || (self.loss > 0.0 && self.rng.random::<f64>() < self.loss) {
            self.dropped += 1;
            return None;
        }
        let transfer = self.bandwidth.map_or(Duration::ZERO, |b| {
            Duration::from_secs_f64(bytes as f64 / b)
        });
        let sent = if self.shared_uplink {
            let start = now.max(self.uplink_free[from]);
            self.uplink_free[from] = start + transfer;
            start + transfer
        } else {
            now + transfer
        };
        Some(sent + self.latency(from, to))
    }

    /// The peers a gossip message from a node with these connected peers reaches.
    pub(crate) fn gossip_targets(&mut self, connected: &[usize]) -> Vec<usize> {
        if self.gossip_peers == 0 || self.gossip_peers >= connected.len() {
            return connected.to_vec();
        }
        let mut pool = connected.to_vec();
        pool.partial_shuffle(&mut self.rng, self.gossip_peers);
        pool.truncate(self.gossip_peers);
        pool.sort_unstable();
        pool
    }
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

    #[test]
    fn uplink_serialises_a_senders_messages() {
        let net = Network {
            latency: Latency::Fixed { ms: 10.0 },
            bandwidth_mbps: Some(8.0), // 1 MB/s
            ..Network::default()
        };
        let mut l = Links::new(&net, 4, 1);
        let a = l.transmit(Duration::ZERO, 0, 1, 1_000_000).unwrap();
        let b = l.transmit(Duration::ZERO, 0, 2, 1_000_000).unwrap();
        assert_eq!(a, Duration::from_millis(1010));
        assert_eq!(b, Duration::from_millis(2010));
        l.set_partition(Some(2));
        assert!(l.transmit(Duration::ZERO, 0, 3, 10).is_none());
        assert!(l.transmit(Duration::ZERO, 0, 1, 10).is_some());
        assert_eq!(l.dropped, 1);
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
