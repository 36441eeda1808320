//! A late joiner's start: ask several peers for their latest signed update, then start from
//! the median of those that pass the checks ([`murmur_protocol::engine::bootstrap::join`]).
//!
//! The driver asks identified peers, a few at a time, until `join.peers` of them have answered
//! with a model; a peer without one yet (it is joining too, or has not finished its first round)
//! makes room to ask another, up to [`ASK_FACTOR`] times `join.peers` peers in all. The join ends
//! when `join.peers` models are in, or at the deadline with what has come; with no valid answer
//! the node starts from the run's initial model at round 0 (the first nodes of a run all do).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use murmur_protocol::engine::bootstrap;
use murmur_protocol::sign::PeerKey;
use tracing::info;

use super::{Driver, Error, Sent};
use crate::config;
use crate::net::codec::Request;

/// At most this many times `join.peers` peers are asked.
pub const ASK_FACTOR: usize = 4;

/// The state of a join in progress.
#[derive(Debug)]
pub(super) struct Joining {
    /// Give up waiting at this time since the driver's clock started.
    pub deadline: Duration,
    want: usize,
    asked: BTreeMap<PeerId, Option<Option<Arc<[u8]>>>>,
}

impl Joining {
    pub fn new(c: &config::Join) -> Self {
        Self {
            deadline: Duration::from_millis(c.timeout_ms),
            want: c.peers,
            asked: BTreeMap::new(),
        }
    }

    fn models(&self) -> usize {
        self.asked
            .values()
            .filter(|a| matches!(a, Some(Some(_))))
            .count()
    }

    fn outstanding(&self) -> usize {
        self.asked.values().filter(|a| a.is_none()).count()
    }

    fn done(&self) -> bool {
        self.models() >= self.want
    }

    fn wants_more(&self) -> bool {
        self.models() + self.outstanding() < self.want && self.asked.len() < ASK_FACTOR * self.want
    }
}

impl Driver {
    /// Asks identified peers not asked yet for their model while more answers are wanted.
    pub(super) fn join_ask(&mut self) {
        let candidates: Vec<PeerId> = self.up.keys().copied().collect();
        for peer in candidates {
            let Some(j) = self.joining.as_mut() else {
                return;
            };
            if !j.wants_more() {
                return;
            }
            if j.asked.contains_key(&peer) {
                continue;
            }
            j.asked.insert(peer, None);
            let id = self
                .swarm
                .behaviour_mut()
                .models
                .send_request(&peer, Request::Fetch);
            self.in_flight.insert(id, (peer, Sent::Fetch));
        }
    }

    /// Records a peer's answer (`None` for a failed request).
    pub(super) fn join_answer(
        &mut self,
        peer: PeerId,
        model: Option<Arc<[u8]>>,
    ) -> Result<(), Error> {
        if let Some(j) = self.joining.as_mut()
            && let Some(slot) = j.asked.get_mut(&peer)
        {
            *slot = Some(model);
        }
        self.join_ask();
        self.maybe_finish_join(false)
    }

    /// Ends the join when every wanted answer is in, or when `timed_out`.
    pub(super) fn maybe_finish_join(&mut self, timed_out: bool) -> Result<(), Error> {
        let Some(j) = &self.joining else {
            return Ok(());
        };
        if !timed_out && !j.done() {
            return Ok(());
        }
        let j = self.joining.take().expect("checked");
        let answers: Vec<(PeerKey, Arc<[u8]>)> = j
            .asked
            .into_iter()
            .filter_map(|(peer, answer)| Some((crate::net::peer_key(&peer)?, answer??)))
            .collect();
        let dim = self
            .local
            .as_ref()
            .map(|l| l.trainer.params().len())
            .expect("not started");
        let start = bootstrap::join(self.r.run, dim, answers.iter().map(|(k, b)| (*k, &b[..])));
        for (peer, reason) in &start.rejected {
            tracing::warn!(%peer, %reason, "join: a peer's model failed the checks");
        }
        info!(
            answers = answers.len(),
            accepted = start.accepted.len(),
            round = start.round,
            timed_out,
            "join finished"
        );
        self.start(Some(start))
    }
}
