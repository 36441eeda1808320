//! The engine's outputs, carried out: each is one `match` arm that moves bytes, sets a timer,
//! writes a file or queues a training command.

use std::sync::Arc;

use libp2p::gossipsub;
use murmur_learn::train::Command;
use murmur_protocol::engine::{self, Input, Output};
use murmur_protocol::sign::PeerKey;
use tracing::{info, warn};

use super::{Driver, Error, Outbound, Phase, Purpose};
use crate::event::Event;
use crate::net;
use crate::net::codec::Response;

impl Driver {
    pub(super) fn carry_out(&mut self, out: Output) -> Result<(), Error> {
        match out {
            Output::Started {
                origin,
                round,
                model,
                peers,
            } => {
                if let Some(params) = model {
                    self.queue(Command::Set { params }, Purpose::Set)?;
                }
                info!(start = origin.as_str(), round, peers, "started");
                Event::Started {
                    start: origin.as_str(),
                    round,
                    checkpoint: self.checkpoint_round,
                    joined_from: peers,
                }
                .emit(self.r.identity);
                let mut m = self.metrics();
                m.start = origin.as_str().into();
                m.started_round = round;
            }
            Output::Train { round } => {
                let steps = self.local_steps;
                let command = Command::Train {
                    round,
                    params: None,
                    steps,
                };
                self.queue(command, Purpose::Train)?;
                self.evaluate(round, false, false)?;
            }
            Output::Mixed {
                round,
                params,
                inputs,
                clipped,
                skipped,
                ..
            } => {
                tracing::debug!(round, inputs, clipped, skipped, "mixed");
                self.last_mixed = round;
                self.round_served(round);
                // The node's engine hands over every mix (the default).
                if let Some(params) = params {
                    self.queue(Command::Mix { params }, Purpose::Set)?;
                }
                self.evaluate(round, true, false)?;
            }
            Output::Checkpoint { round } => self.checkpoint(round)?,
            Output::Send { to, bytes } => self.send_update(to, bytes),
            Output::Broadcast { bytes } => {
                let topic = self.names.topic.clone();
                self.metrics().bytes_out += bytes.len() as u64;
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(topic, bytes.to_vec())
                {
                    tracing::debug!(%e, "gossip not published");
                }
            }
            Output::Fetch { peer, round, have } => self.fetch(peer, round, have)?,
            Output::Serve {
                request, update, ..
            } => {
                if let Some((channel, id)) = self.serving.remove(&request) {
                    let n = update.as_ref().map_or(0, |u| u.len());
                    let models = &mut self.swarm.behaviour_mut().models;
                    if models
                        .send_response(channel, Response::Model(update))
                        .is_ok()
                    {
                        self.metrics().bytes_out += n as u64;
                        if n > 0 {
                            let now = self.now();
                            self.uplink.queued(id, now, n as u64);
                        }
                    }
                }
            }
            Output::Busy { request, .. } => {
                if let Some((channel, _)) = self.serving.remove(&request) {
                    let models = &mut self.swarm.behaviour_mut().models;
                    // An asker gone meanwhile is nothing to report.
                    let _ = models.send_response(channel, Response::Busy);
                }
            }
            // The asker went away or was banned: its channel is dropped, closing the stream.
            Output::Unanswered { request, .. } => {
                self.serving.remove(&request);
            }
            Output::Penalize {
                peer,
                reason,
                points,
            } => info!(%peer, %reason, points, "peer penalised"),
            Output::Share { update } => self.share_intel(&update),
            Output::GossipChecked { message, verdict } => {
                if let Some((id, source)) = self.checking.remove(&message) {
                    let acceptance = match verdict {
                        engine::GossipVerdict::Accept => gossipsub::MessageAcceptance::Accept,
                        engine::GossipVerdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                        engine::GossipVerdict::Reject => gossipsub::MessageAcceptance::Reject,
                    };
                    self.swarm
                        .behaviour_mut()
                        .gossip
                        .report_message_validation_result(&id, &source, acceptance);
                }
            }
            Output::Ban { peer, reason } => self.ban(peer, reason)?,
            Output::Unban { peer } => {
                if let Some(id) = net::peer_id(&peer) {
                    self.swarm.behaviour_mut().blocked.unblock_peer(id);
                    info!(peer = %id, "ban ended");
                }
                self.write_bans()?;
            }
            Output::Finished => {
                let round = self.last_mixed;
                info!(round, "finished the configured rounds");
                self.metrics().finished = true;
                self.evaluate(round, true, true)?;
                self.phase = if self.r.config.node.exit_when_finished {
                    Phase::Exiting
                } else {
                    Phase::Serving
                };
            }
        }
        Ok(())
    }

    /// Disconnects a banned peer, refuses it from now on, and records the bans.
    fn ban(&mut self, peer: PeerKey, reason: engine::Rejection) -> Result<(), Error> {
        // The block list holds the peers the engine keeps out (`Engine::keeps_out`), whose
        // bans it lifts when it forgets them: the list is no longer than its table.
        if let Some(id) = net::peer_id(&peer).filter(|_| self.engine.keeps_out(&peer)) {
            self.swarm.behaviour_mut().blocked.block_peer(id);
            if self.up.remove(&id).is_some() {
                warn!(peer = %id, %reason, "peer banned");
                Event::Banned {
                    peer: id.to_string(),
                    reason: reason.as_str(),
                }
                .emit(self.r.identity);
            }
            self.metrics().peers = self.up.len();
        }
        self.write_bans()
    }

    /// Records the bans in force that a restart keeps, when they changed.
    fn write_bans(&mut self) -> Result<(), Error> {
        self.bans.record(&self.engine.bans_kept())
    }

    fn send_update(&mut self, to: PeerKey, bytes: Arc<[u8]>) {
        let Some(peer) = net::peer_id(&to) else {
            return;
        };
        let n = self.per_peer.entry(peer).or_default();
        if *n >= self.r.config.network.max_pending_requests {
            self.metrics().sends_dropped += 1;
            return;
        }
        *n += 1;
        let len = bytes.len();
        let id = self
            .swarm
            .behaviour_mut()
            .models
            .send_request(&peer, net::codec::Request::Update(bytes));
        self.outbound
            .insert(id, Outbound::Update { peer, bytes: len });
    }

    fn fetch(&mut self, key: PeerKey, round: Option<u64>, have: Option<u64>) -> Result<(), Error> {
        let Some(peer) = net::peer_id(&key) else {
            return self.feed(Input::Fetched {
                peer: key,
                update: None,
            });
        };
        let id = self
            .swarm
            .behaviour_mut()
            .models
            .send_request(&peer, net::codec::Request::Fetch { round, have });
        self.outbound.insert(id, Outbound::Fetch { peer });
        Ok(())
    }
}
