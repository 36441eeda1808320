//! Partitions and churn: connections going down and up, nodes leaving, coming back and joining.
//!
//! The simulator only changes who is reachable and tells the engines, as a real transport would
//! (`PeerDown`, `PeerUp`); what a node does about it is the engine's business. A node that comes
//! back is a restarted process: a new engine from its last model and completed round (what its
//! checkpoint holds), with the same key, and fresh connections. A late joiner starts from the
//! engine's [`bootstrap::join`] of its peers' latest updates.

use super::Simulation;
use crate::network::{self, stream};
use murmur_protocol::engine::{Engine, Input, Setup, bootstrap};
use murmur_protocol::sign::PeerKey;
use rand::seq::SliceRandom;
use std::sync::Arc;

impl Simulation {
    /// Starts partition `k` (`Some`), or heals the one in force (`None`).
    pub(super) fn partition(&mut self, k: Option<usize>) {
        let sides = k.map(|k| self.scenario.network.partitions[k].sides);
        let n = self.nodes.len();
        // Pairs whose reachability changes, in node order.
        let before: Vec<Vec<usize>> = (0..n).map(|i| self.connected(i)).collect();
        self.links.set_partition(sides);
        for (i, was) in before.iter().enumerate() {
            if !self.nodes[i].online {
                continue;
            }
            let now = self.connected(i);
            for &j in was.iter().filter(|j| !now.contains(j)) {
                let peer = self.nodes[j].key;
                self.nodes[i]
                    .engine
                    .handle(self.now, Input::PeerDown { peer });
            }
            for &j in now.iter().filter(|j| !was.contains(j)) {
                let peer = self.nodes[j].key;
                self.nodes[i]
                    .engine
                    .handle(self.now, Input::PeerUp { peer });
            }
            self.drain(i);
        }
    }

    /// Node `i` leaves: its peers see the connection drop; its pending work is abandoned.
    pub(super) fn leave(&mut self, i: usize) {
        if !self.nodes[i].online {
            return;
        }
        let peers = self.connected(i);
        let node = &mut self.nodes[i];
        node.online = false;
        node.epoch += 1;
        node.armed = None;
        if !node.byzantine {
            self.honest_online -= 1;
            if node.finished {
                self.honest_finished -= 1;
            }
        }
        let key = node.key;
        for j in peers {
            self.nodes[j]
                .engine
                .handle(self.now, Input::PeerDown { peer: key });
            self.drain(j);
        }
        self.results.retain(|(node, _), _| *node != i);
        self.recount_behind();
    }

    /// Node `i` joins for the first time, or comes back after leaving.
    pub(super) fn join(&mut self, i: usize) {
        self.pending_churn = self.pending_churn.saturating_sub(1);
        if self.nodes[i].online {
            return;
        }
        let restarted = self.nodes[i].epoch > 0;
        let node = &mut self.nodes[i];
        node.online = true;
        if restarted {
            // A restart from the checkpoint: the last model, and the last round the node
            // signed an update for (a node that left while collecting had already sent its
            // update for the current round; signing that round again would be equivocation).
            let old = &node.engine;
            let signed = if old.poll_timeout().is_some() {
                old.round()
            } else {
                node.completed
            };
            let setup = Setup {
                model: old.model().to_vec(),
                round: signed,
                ..node.setup.clone()
            };
            let stats = old.stats().clone();
            add_stats(&mut node.carried, &stats);
            node.engine = Engine::new(setup).expect("the setup was valid at the start");
            node.trainer
                .set_params(node.engine.model())
                .expect("same dimension");
            node.finished = false;
        }
        if !node.byzantine {
            self.honest_online += 1;
        }
        if !restarted {
            self.bootstrap(i);
        }
        self.connect(i);
        self.drain(i);
        self.recount_behind();
    }
}

/// Peers a late joiner asks for their latest update.
const BOOTSTRAP_PEERS: usize = 8;

impl Simulation {
    /// A late joiner asks up to [`BOOTSTRAP_PEERS`] of its reachable peers (a seeded draw) for
    /// their latest signed update and starts from what [`bootstrap::join`] makes of the answers;
    /// with no usable answer it keeps the initial model. The exchange is taken to be
    /// instantaneous.
    fn bootstrap(&mut self, i: usize) {
        let mut peers = self.connected(i);
        peers.shuffle(&mut network::rng(
            self.scenario.seed,
            stream::CHURN,
            1 + i as u64,
        ));
        peers.truncate(BOOTSTRAP_PEERS);
        peers.sort_unstable();
        let answers: Vec<(PeerKey, Arc<[u8]>)> = peers
            .iter()
            .filter_map(|&j| Some((self.nodes[j].key, self.nodes[j].engine.last_update()?)))
            .collect();
        let node = &mut self.nodes[i];
        let start = bootstrap::join(
            node.setup.run,
            node.engine.dim(),
            answers.iter().map(|(k, b)| (*k, &b[..])),
        );
        if let Some(model) = start.model {
            let setup = Setup {
                model,
                round: start.round,
                ..node.setup.clone()
            };
            node.engine = Engine::new(setup).expect("the setup was valid at the start");
            node.trainer
                .set_params(node.engine.model())
                .expect("same dimension");
        }
    }
}

/// Adds the counts of `b` to `a`.
pub(super) fn add_stats(
    a: &mut murmur_protocol::engine::Stats,
    b: &murmur_protocol::engine::Stats,
) {
    a.accepted += b.accepted;
    for (r, c) in &b.rejected {
        *a.rejected.entry(*r).or_default() += c;
    }
    a.mixes += b.mixes;
    a.skipped_mixes += b.skipped_mixes;
    a.inputs_mixed += b.inputs_mixed;
    a.clipped += b.clipped;
    a.updates_sent += b.updates_sent;
    a.bytes_sent += b.bytes_sent;
    a.bans += b.bans;
}
