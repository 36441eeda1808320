//! Swarm events, turned into engine inputs; discovery (bootstrap, random walks, mDNS).

use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns, request_response};
use murmur_protocol::engine::Input;
use std::collections::BTreeMap;
use tracing::{debug, info};

use super::{Driver, Error, Outbound};
use crate::event::Event;
use crate::net::codec::{self, Request, Response};
use crate::net::{self, Behaviour, BehaviourEvent};

/// Dials every bootstrap address; those ending in `/p2p/ID` also seed Kademlia. Returns the
/// dials under way, so that a failure can name its address.
pub(super) fn dial_bootstrap(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
    identity: Option<usize>,
) -> BTreeMap<ConnectionId, Multiaddr> {
    let mut dials = BTreeMap::new();
    for addr in addrs {
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            let mut bare = addr.clone();
            bare.pop();
            swarm.behaviour_mut().kad.add_address(&peer, bare);
        }
        let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
        let id = opts.connection_id();
        match swarm.dial(opts) {
            Ok(()) => {
                dials.insert(id, addr.clone());
            }
            Err(e) => bootstrap_failed(addr, &super::causes(&e), identity),
        }
    }
    dials
}

fn bootstrap_failed(addr: &Multiaddr, reason: &str, identity: Option<usize>) {
    tracing::warn!(%addr, reason, "bootstrap peer unreachable");
    Event::BootstrapFailed {
        addr: addr.to_string(),
        reason: reason.to_owned(),
    }
    .emit(identity);
}

/// Starts a Kademlia query for a random key: its iterative lookup meets peers not yet known.
pub(super) fn random_walk(swarm: &mut Swarm<Behaviour>) {
    swarm
        .behaviour_mut()
        .kad
        .get_closest_peers(PeerId::random());
}

impl Driver {
    /// Whether the run lists its members and `peer` is not one: the allow list refuses its
    /// connections, so a discovered one is neither dialed nor added to Kademlia's table (where
    /// it would take a place and be handed on to other peers).
    fn outsider(&self, peer: &PeerId) -> bool {
        self.r
            .members
            .as_ref()
            .is_some_and(|m| net::peer_key(peer).is_none_or(|k| !m.admits(&k)))
    }

    /// Dials a discovered peer while this node has dialed fewer than `target-peers` of those
    /// connected.
    fn discovered(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id()
            || self.outsider(&peer)
            || self.swarm.is_connected(&peer)
            || self.dialing.contains(&peer)
            // Only peers this node dialed count: peers that connect to it, however many
            // identities they hold, cannot make it stop looking for others.
            || self.dialed.len() >= self.r.config.network.target_peers
            || self
                .swarm
                .behaviour()
                .blocked
                .blocked_peers()
                .contains(&peer)
        {
            return;
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
        if self.swarm.dial(opts).is_ok() {
            self.dialing.insert(peer);
        }
    }

    pub(super) fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) -> Result<(), Error> {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .with_p2p(*self.swarm.local_peer_id())
                    .expect("own id");
                info!(addr = %full, "listening");
                self.metrics().listen.push(full.to_string());
                Event::Listening {
                    addr: full.to_string(),
                }
                .emit(self.r.identity);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.dialing.remove(&peer_id);
                self.bootstrap_dials.remove(&connection_id);
                if endpoint.is_dialer() {
                    *self.dialed.entry(peer_id).or_default() += 1;
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                if let Some(peer) = peer_id {
                    self.dialing.remove(&peer);
                }
                if let Some(addr) = self.bootstrap_dials.remove(&connection_id) {
                    bootstrap_failed(&addr, &super::causes(&error), self.r.identity);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                cause,
                ..
            } => {
                if endpoint.is_dialer()
                    && let Some(n) = self.dialed.get_mut(&peer_id)
                {
                    *n -= 1;
                    if *n == 0 {
                        self.dialed.remove(&peer_id);
                    }
                }
                if num_established > 0 {
                    return Ok(());
                }
                self.per_peer.remove(&peer_id);
                let cut = self.cut.remove(&peer_id);
                if let Some(key) = self.up.remove(&peer_id) {
                    let reason = cut
                        .or_else(|| cause.map(|e| super::causes(&e)))
                        .unwrap_or_else(|| "closed".into());
                    debug!(peer = %peer_id, %reason, "peer down");
                    Event::PeerDown {
                        peer: peer_id.to_string(),
                        reason,
                    }
                    .emit(self.r.identity);
                    self.metrics().peers = self.up.len();
                    self.feed(Input::PeerDown { peer: key })?;
                }
            }
            SwarmEvent::Behaviour(b) => self.on_behaviour(b)?,
            _ => {}
        }
        Ok(())
    }

    fn on_behaviour(&mut self, ev: BehaviourEvent) -> Result<(), Error> {
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.identified(peer_id, info)?;
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                self.discovered(peer, addresses.into_vec());
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            }) => {
                for p in ok.peers {
                    self.discovered(p.peer_id, p.addrs);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    if self.outsider(&peer) {
                        continue;
                    }
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    self.discovered(peer, vec![addr]);
                }
            }
            BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                self.metrics().bytes_in += message.data.len() as u64;
                // The author is the message's signed source (gossipsub checks the signature);
                // the relayer is the peer that delivered it. Gossipsub forwards nothing before
                // the engine's verdict, which comes back as `Output::GossipChecked`. Gossip comes
                // only through peers identified as of the run (the engine's peers): what an
                // unidentified connection delivers is dropped unjudged.
                let author = message.source.as_ref().and_then(net::peer_key);
                let relayer = net::peer_key(&propagation_source);
                let verdict = match (author, relayer) {
                    (Some(author), Some(relayer)) if self.up.contains_key(&propagation_source) => {
                        Ok((author, relayer))
                    }
                    (Some(_), Some(_)) => Err(gossipsub::MessageAcceptance::Ignore),
                    _ => Err(gossipsub::MessageAcceptance::Reject),
                };
                let (author, relayer) = match verdict {
                    Ok(keys) => keys,
                    Err(acceptance) => {
                        let gossip = &mut self.swarm.behaviour_mut().gossip;
                        gossip.report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance,
                        );
                        return Ok(());
                    }
                };
                self.next_gossip += 1;
                let handle = self.next_gossip;
                self.checking
                    .insert(handle, (message_id, propagation_source));
                self.feed(Input::GossipReceived {
                    author,
                    relayer,
                    message: handle,
                    bytes: message.data.into(),
                })?;
            }
            BehaviourEvent::Models(ev) => self.on_models(ev)?,
            // A failed ping is a dead link: close it now rather than after a minute of timeouts,
            // so the engine hears the peer is down.
            BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result: Err(e),
            }) => {
                debug!(%peer, error = %e, "ping failed: closing the connection");
                self.cut
                    .insert(peer, format!("ping failed: {}", super::causes(&e)));
                self.swarm.close_connection(connection);
            }
            _ => {}
        }
        Ok(())
    }

    /// A peer told us who it is: a peer of this run goes up; another run's is disconnected.
    fn identified(&mut self, peer: PeerId, info: identify::Info) -> Result<(), Error> {
        if info.protocol_version != self.names.identify {
            debug!(%peer, version = %info.protocol_version, "a peer of another run: disconnecting");
            self.swarm.behaviour_mut().kad.remove_peer(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
            return Ok(());
        }
        for addr in info.listen_addrs {
            self.swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
        let Some(key) = net::peer_key(&peer) else {
            let _ = self.swarm.disconnect_peer_id(peer);
            return Ok(());
        };
        if self.up.insert(peer, key).is_some() {
            return Ok(());
        }
        debug!(%peer, "peer up");
        Event::PeerUp {
            peer: peer.to_string(),
            outbound: self.dialed.contains_key(&peer),
        }
        .emit(self.r.identity);
        self.metrics().peers = self.up.len();
        self.feed(Input::PeerUp { peer: key })
    }

    fn on_models(&mut self, ev: request_response::Event<Request, Response>) -> Result<(), Error> {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request,
                        channel,
                        request_id,
                    },
                ..
            } => {
                // The sender is the transport-authenticated peer id. Only identified peers of
                // this run are heard: anyone else gets an empty answer (or an ack) and nothing
                // reaches the engine, so a connection that never identified cannot make the
                // node hash, hold or serve anything.
                let Some(from) = self.up.get(&peer).copied() else {
                    let models = &mut self.swarm.behaviour_mut().models;
                    let empty = match request {
                        Request::Update(_) => Response::Ack,
                        Request::Fetch { .. } => Response::Model(None),
                    };
                    let _ = models.send_response(channel, empty);
                    return Ok(());
                };
                match request {
                    Request::Update(bytes) => {
                        let models = &mut self.swarm.behaviour_mut().models;
                        let _ = models.send_response(channel, Response::Ack);
                        self.metrics().bytes_in += bytes.len() as u64;
                        self.feed(Input::UpdateReceived { from, bytes })?;
                    }
                    Request::Fetch { round, have } => {
                        self.next_serving += 1;
                        let request = self.next_serving;
                        self.serving.insert(request, (channel, request_id));
                        self.feed(Input::FetchRequested {
                            from,
                            request,
                            round,
                            have,
                        })?;
                    }
                }
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => match (self.outbound.remove(&request_id), response) {
                (Some(Outbound::Update { bytes, .. }), _) => {
                    self.request_done(peer);
                    self.metrics().bytes_out += bytes as u64;
                }
                (Some(Outbound::Fetch { .. }), Response::Model(update)) => {
                    self.metrics().bytes_in += update.as_ref().map_or(0, |m| m.len()) as u64;
                    if let Some(key) = net::peer_key(&peer) {
                        self.feed(Input::Fetched { peer: key, update })?;
                    }
                }
                (Some(Outbound::Fetch { .. }), Response::Busy) => {
                    debug!(%peer, "fetch refused: the peer's uplink is full");
                    if let Some(key) = net::peer_key(&peer) {
                        self.feed(Input::Busy { peer: key })?;
                    }
                }
                // An acknowledgement answers a push, not a fetch: a well-framed answer of the
                // wrong kind is the peer's doing, as a frame the codec refuses is.
                (Some(Outbound::Fetch { .. }), Response::Ack) => {
                    info!(%peer, "fetch answered with an acknowledgement");
                    if let Some(key) = net::peer_key(&peer) {
                        self.feed(Input::Unframed {
                            peer: key,
                            oversize: false,
                        })?;
                        self.feed(Input::Fetched {
                            peer: key,
                            update: None,
                        })?;
                    }
                }
                (None, _) => {}
            },
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, "model request failed");
                match self.outbound.remove(&request_id) {
                    Some(Outbound::Update { .. }) => {
                        self.request_done(peer);
                        self.metrics().sends_dropped += 1;
                    }
                    Some(Outbound::Fetch { .. }) => {
                        if let Some(key) = net::peer_key(&peer) {
                            // An answer the codec refused on its frame is the peer's doing (a
                            // closed stream or a timeout is not): the engine charges it.
                            if let request_response::OutboundFailure::Io(e) = &error
                                && let Some(frame) = codec::FrameError::of(e)
                            {
                                info!(%peer, error = %frame, "answer refused on its frame");
                                let oversize = matches!(frame, codec::FrameError::Oversize { .. });
                                self.feed(Input::Unframed {
                                    peer: key,
                                    oversize,
                                })?;
                            }
                            self.feed(Input::Fetched {
                                peer: key,
                                update: None,
                            })?;
                        }
                    }
                    None => {}
                }
            }
            Event::InboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                debug!(%peer, %error, "inbound model request failed");
                self.uplink.failed(&request_id);
            }
            Event::ResponseSent { request_id, .. } => {
                let now = self.now();
                self.uplink.sent(&request_id, now);
            }
        }
        Ok(())
    }

    fn request_done(&mut self, peer: PeerId) {
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
    }
}
