//! libp2p: the behaviours a node speaks and the swarm that carries them.
//!
//! Behaviours say *what* and *to whom*; the driver ([`crate::driver`]) decides nothing about
//! the protocol and only moves bytes between them and the engine. The transports are TCP, with
//! murmur's [`link`] (or noise and yamux, for peers without it), and QUIC. A node speaks:
//! - identify, whose protocol version names the run ([`Names::identify`]): a peer of another
//!   run is disconnected and never reported to the engine;
//! - ping, to notice dead connections: one whose ping goes unanswered is closed;
//! - Kademlia on a run-specific protocol, seeded from the bootstrap addresses, with periodic
//!   random walks to find more peers;
//! - mDNS on the local network (optional);
//! - gossipsub on the run's topic for small announcements and equivocation evidence;
//! - request-response ([`codec`]) for model payloads, bounded by the largest valid update;
//! - a block list through which banned peers are refused at connection time, an allow list
//!   that refuses every key outside the run's members when the run lists them (before the
//!   engine hears of the connection), and connection limits.
//!
//! The libp2p identity is the node's update-signing ed25519 key ([`keypair`]), so a peer's
//! [`PeerId`] and its [`PeerKey`] name the same key ([`peer_key`], [`peer_id`]).

pub mod codec;
pub mod per_ip;
pub use murmur_link as link;

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, StreamProtocol, Swarm, allow_block_list, connection_limits, gossipsub, identify,
    identity, kad, mdns, ping, request_response, tcp,
};
use murmur_protocol::members::Members;
use murmur_protocol::sign::{Identity, PeerKey, RunId};
use serde::{Deserialize, Serialize};

/// Network settings (the `[network]` table). Every key has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Addresses to listen on (multiaddrs). Default: TCP and QUIC on port 7070 of every
    /// interface.
    pub listen: Vec<String>,
    /// Peers to join through (multiaddrs, ideally ending in `/p2p/PEER-ID`). Default none: the
    /// first node of a network.
    pub bootstrap: Vec<String>,
    /// Discover peers on the local network with mDNS. Default true.
    pub mdns: bool,
    /// Milliseconds between Kademlia random walks that look for more peers. Default 30000.
    pub random_walk_ms: u64,
    /// Dial newly discovered peers while this node has dialed fewer than this many of the
    /// connected ones (peers that connected to it do not count). Default 16.
    pub target_peers: usize,
    /// Most established connections in total. Default 128. A quarter stay for this node's own
    /// dials; the rest, incoming, are shared among remote addresses when full ([`per_ip`]).
    pub max_connections: u32,
    /// Most established connections to one peer. Default 2.
    pub max_connections_per_peer: u32,
    /// Most connections being set up (each direction). Default 32.
    pub max_pending_connections: u32,
    /// Most model requests in flight to one peer; further sends to it are dropped until one
    /// completes. Default 4.
    pub max_pending_requests: usize,
    /// Most concurrent request-response streams per connection. Default 16.
    pub max_streams: usize,
    /// Milliseconds before a model request without an answer fails. Default 60000.
    pub request_timeout_ms: u64,
    /// Milliseconds an idle connection is kept open. Default 3600000.
    pub idle_timeout_ms: u64,
    /// Milliseconds between pings on a connection. Default 15000.
    pub ping_interval_ms: u64,
    /// Milliseconds without an answer to a ping after which the connection counts as cut and
    /// is closed (the peer is then down). Default 20000.
    pub ping_timeout_ms: u64,
    /// MiB that peers may send a node, over all its connections, ahead of its reading them,
    /// beyond each link's first 16 streams: the links' receive windows draw on it (a stream a
    /// peer opens when it is spent is refused), and each QUIC connection gets an equal share of
    /// it (this over `max-connections`, at least 1 MiB). Default 256.
    pub receive_buffer_mib: u32,
    /// The stack offered first when dialing over TCP: `murmur-link` (default; falls back to
    /// noise and yamux for peers without it) or `noise-yamux`. Both are accepted when dialed.
    pub tcp_stack: link::Stack,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/7070".into(),
                "/ip4/0.0.0.0/udp/7070/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            random_walk_ms: 30_000,
            target_peers: 16,
            max_connections: 128,
            max_connections_per_peer: 2,
            max_pending_connections: 32,
            max_pending_requests: 4,
            max_streams: 16,
            request_timeout_ms: 60_000,
            idle_timeout_ms: 3_600_000,
            ping_interval_ms: 15_000,
            ping_timeout_ms: 20_000,
            receive_buffer_mib: 256,
            tcp_stack: link::Stack::default(),
        }
    }
}

/// Protocol names and the gossip topic of one run: nodes of different runs do not share them.
#[derive(Debug, Clone)]
pub struct Names {
    /// The identify protocol version, `/murmur/1/<run id hex>`.
    pub identify: String,
    /// The gossipsub topic.
    pub topic: gossipsub::IdentTopic,
    /// The Kademlia protocol.
    pub kad: StreamProtocol,
    /// The request-response protocol.
    pub models: StreamProtocol,
}

impl Names {
    /// The names of `run`.
    pub fn of(run: &RunId) -> Self {
        let hex = hex::encode(run.0);
        let short = &hex[..16];
        let proto = |s: String| StreamProtocol::try_from_owned(s).expect("starts with a slash");
        Self {
            identify: format!("/murmur/1/{hex}"),
            topic: gossipsub::IdentTopic::new(format!("murmur/{hex}")),
            kad: proto(format!("/murmur/{short}/kad/1")),
            // 2: answers may be "busy" (a frame tag version 1 did not have, which a node of
            // version 1 would charge as malformed): the versions do not talk models.
            models: proto(format!("/murmur/{short}/models/2")),
        }
    }
}

/// The libp2p keypair of a node: its update-signing key.
pub fn keypair(identity: &Identity) -> identity::Keypair {
    identity::Keypair::ed25519_from_bytes(identity.secret()).expect("32-byte ed25519 secret")
}

/// The peer id of a signing key.
pub fn peer_id(key: &PeerKey) -> Option<PeerId> {
    let pk = identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(identity::PublicKey::from(pk).to_peer_id())
}

/// The signing key inside a peer id, when the peer's identity is an ed25519 key (inlined in the
/// id). Peers with other key types have none and are not spoken to.
pub fn peer_key(id: &PeerId) -> Option<PeerKey> {
    let mh: &libp2p::multihash::Multihash<64> = id.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let pk = identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(PeerKey(pk.try_into_ed25519().ok()?.to_bytes()))
}

/// Everything a node speaks. See the module documentation.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Refuses banned peers.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Refuses every key outside the run's members, when the run lists them.
    pub members: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    /// Connection limits.
    pub limits: connection_limits::Behaviour,
    /// Handshakes in progress per remote IP, and the incoming slots shared among addresses.
    pub per_ip: per_ip::Behaviour,
    /// Run check and address exchange.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Discovery through bootstrap peers.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Local discovery.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Announcements and evidence.
    pub gossip: gossipsub::Behaviour,
    /// Model payloads.
    pub models: request_response::Behaviour<codec::Codec>,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour").finish_non_exhaustive()
    }
}

/// Why the swarm could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The transport could not be set up.
    #[error("transport: {0}")]
    Transport(String),
    /// A behaviour could not be set up.
    #[error("{0}")]
    Behaviour(String),
    /// Subscribing to the run's topic failed.
    #[error("gossipsub subscription: {0}")]
    Subscribe(String),
}

/// Largest gossip message: announcements and evidence are a few hundred bytes.
pub const MAX_GOSSIP_BYTES: usize = 16 * 1024;

/// Builds the swarm of a node with `identity` in `run`, whose model payloads are at most
/// `max_payload` bytes, connecting only `members` when the run lists them. Nothing listens or
/// dials yet.
pub fn build(
    identity: &Identity,
    run: &RunId,
    members: Option<&Members>,
    config: &Config,
    max_payload: usize,
) -> Result<Swarm<Behaviour>, Error> {
    let allowed = members.map(|m| {
        let mut allowed = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for id in m.iter().filter_map(peer_id) {
            allowed.allow_peer(id);
        }
        allowed
    });
    let names = Names::of(run);
    let key = keypair(identity);
    let local = key.public().to_peer_id();
    let mdns_on = config.mdns;
    let c = config.clone();
    let receive = (config.receive_buffer_mib as usize) << 20;
    let link_config = link::mux::Config {
        shared: link::mux::Budget::new(receive),
        ..link::mux::Config::default()
    };
    let quic_window =
        (receive / config.max_connections.max(1) as usize).clamp(1 << 20, u32::MAX as usize) as u32;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_quic_config(|mut q| {
            // Bytes a QUIC peer may send ahead of the node's reading them: one connection's
            // share of the receive budget.
            q.max_connection_data = quic_window;
            q.max_stream_data = q.max_stream_data.min(quic_window);
            q
        })
        .with_other_transport(|key| {
            link::transport(
                key,
                tcp::Config::default().nodelay(true),
                c.tcp_stack,
                link_config,
            )
        })
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .max_transmit_size(MAX_GOSSIP_BYTES)
                .validation_mode(gossipsub::ValidationMode::Strict)
                // Nothing is forwarded before the engine has checked it (the driver reports
                // accept, ignore or reject), so junk stops at the first honest node.
                .validate_messages()
                .message_id_fn(|m: &gossipsub::Message| {
                    use sha2::Digest;
                    gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
                })
                .build()
                .map_err(|e| e.to_string())?;
            let gossip = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )
            .map_err(str::to_string)?;
            let mut kad_config = kad::Config::new(names.kad.clone());
            kad_config.set_query_timeout(Duration::from_secs(30));
            // murmur stores nothing in the DHT: records and provider announcements peers push
            // are handed to the driver (which drops them) instead of filling the store.
            kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
            let mut kad =
                kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), kad_config);
            kad.set_mode(Some(kad::Mode::Server));
            let mdns = if mdns_on {
                Some(
                    mdns::tokio::Behaviour::new(mdns::Config::default(), local)
                        .map_err(|e| e.to_string())?,
                )
            } else {
                None
            };
            let rr_config = request_response::Config::default()
                .with_request_timeout(Duration::from_millis(c.request_timeout_ms))
                .with_max_concurrent_streams(c.max_streams);
            // A quarter of the slots stay for the node's own dials, however many peers connect
            // to it; the rest are shared among remote addresses, and `per_ip` keeps the total
            // (so that a newcomer can take a slot when the node's dials took more than theirs).
            let total = c.max_connections as usize;
            let incoming = total - total / 4;
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_established_per_peer(Some(c.max_connections_per_peer))
                .with_max_pending_incoming(Some(c.max_pending_connections))
                .with_max_pending_outgoing(Some(c.max_pending_connections));
            Ok(Behaviour {
                blocked: Default::default(),
                members: allowed.into(),
                limits: connection_limits::Behaviour::new(limits),
                per_ip: per_ip::Behaviour::new(total, incoming),
                identify: identify::Behaviour::new(
                    identify::Config::new(names.identify.clone(), key.public())
                        .with_agent_version(format!("murmur-node/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(Duration::from_millis(c.ping_interval_ms))
                        .with_timeout(Duration::from_millis(c.ping_timeout_ms)),
                ),
                kad,
                mdns: mdns.into(),
                gossip,
                models: request_response::Behaviour::with_codec(
                    codec::Codec::new(max_payload),
                    [(
                        names.models.clone(),
                        request_response::ProtocolSupport::Full,
                    )],
                    rr_config,
                ),
            })
        })
        .map_err(|e| Error::Behaviour(e.to_string()))?
        .with_swarm_config(|s| {
            s.with_idle_connection_timeout(Duration::from_millis(config.idle_timeout_ms))
        })
        .build();
    swarm
        .behaviour_mut()
        .gossip
        .subscribe(&names.topic)
        .map_err(|e| Error::Subscribe(e.to_string()))?;
    Ok(swarm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_and_signing_keys_name_the_same_key() {
        let id = Identity::from_secret([7; 32]);
        let kp = keypair(&id);
        let pid = kp.public().to_peer_id();
        assert_eq!(peer_key(&pid), Some(id.public()));
        assert_eq!(peer_id(&id.public()), Some(pid));
        assert_eq!(
            peer_key(&PeerId::random()),
            None,
            "not an inlined ed25519 key"
        );
    }

    #[test]
    fn runs_have_distinct_names() {
        let a = Names::of(&RunId::derive(b"a"));
        let b = Names::of(&RunId::derive(b"b"));
        assert_ne!(a.identify, b.identify);
        assert_ne!(a.topic.hash(), b.topic.hash());
        assert_ne!(a.kad, b.kad);
        assert_ne!(a.models, b.models);
    }
}
