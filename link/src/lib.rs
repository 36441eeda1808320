//! murmur's TCP stack: one protocol, `/murmur/link/1`, that secures and multiplexes a
//! connection, built to move large models at a good fraction of the wire's speed.
//!
//! libp2p's usual TCP stack (noise, then yamux) caps a model transfer at a quarter to a third of
//! a plain TCP copy on loopback: noise encrypts 64 KiB messages with ChaCha20-Poly1305, and yamux
//! writes and flushes one 16 KiB frame at a time, so every 16 KiB costs a system call and two
//! copies between the layers. The link keeps what makes noise sound and drops what makes it
//! slow:
//! - [`handshake`]: a Noise XX handshake (X25519, AES-256-GCM, SHA-256, by `snow`) whose
//!   payloads bind each side's static key to its ed25519 identity, so the peer id is
//!   authenticated as with libp2p's noise;
//! - [`record`]: AES-256-GCM records of up to 256 KiB under the handshake's keys (AES runs in
//!   hardware on current CPUs), sealed and opened in place;
//! - [`mux`]: streams framed directly inside the records, with per-stream flow control,
//!   bounded buffers per connection and a receive budget shared by the node's links, several
//!   records per system call.
//!
//! Connections negotiate with multistream-select like any libp2p upgrade. A dialer offers the
//! link first and noise second ([`Stack`]); a listener accepts either, and after noise it
//! speaks yamux. So a node still talks to a peer with libp2p's default TCP stack, and QUIC is
//! unchanged.

pub mod handshake;
pub mod mux;
pub mod record;
#[cfg(test)]
pub(crate) mod testing;

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, timeout::TransportTimeout};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, Version};
use libp2p::core::{ConnectedPoint, Negotiated, Transport};
use libp2p::{PeerId, identity, noise, tcp, yamux};
use serde::{Deserialize, Serialize};

/// The multistream-select name of the link.
pub const PROTOCOL: &str = "/murmur/link/1";
const NOISE: &str = "/noise";
const YAMUX: &str = "/yamux/1.0.0";
/// Longest time from a TCP connection to an established link: a handshake takes a few round
/// trips, and a connection that does not finish one in this time holds a slot for nothing.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(5);

/// The stack a node offers first when it dials over TCP (the `tcp-stack` key). Either way it
/// accepts both when dialed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stack {
    /// `/murmur/link/1`, falling back to noise and yamux for peers without it.
    #[default]
    MurmurLink,
    /// libp2p's default: noise, then yamux.
    NoiseYamux,
}

/// Why a connection could not be upgraded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer speaks none of the offered protocols, or the negotiation broke off.
    #[error("protocol negotiation: {0}")]
    Negotiation(#[from] multistream_select::NegotiationError),
    /// The link's handshake failed.
    #[error("link handshake: {0}")]
    Handshake(#[from] handshake::Error),
    /// noise's handshake failed.
    #[error("noise: {0}")]
    Noise(#[from] noise::Error),
    /// yamux could not start.
    #[error("yamux: {0}")]
    Yamux(io::Error),
}

/// The TCP transport of a node with identity `key`: TCP with `tcp_config`, then the link (or
/// noise and yamux, see the module documentation), within [`UPGRADE_TIMEOUT`].
pub fn transport(
    key: &identity::Keypair,
    tcp_config: tcp::Config,
    stack: Stack,
    config: mux::Config,
) -> Boxed<(PeerId, StreamMuxerBox)> {
    let key = key.clone();
    let upgraded = tcp::tokio::Transport::new(tcp_config).and_then(move |io, point| async move {
        let (peer, muxer) = upgrade(io, point, key, stack, config).await?;
        Ok::<_, Error>((peer, muxer.boxed()))
    });
    TransportTimeout::new(upgraded, UPGRADE_TIMEOUT).boxed()
}

/// A connection's multiplexer: the link's, or yamux over noise.
pub enum Upgraded<S> {
    /// `/murmur/link/1`.
    Link(mux::Link<Negotiated<S>>),
    /// noise, then yamux.
    NoiseYamux(Box<yamux::Muxer<Negotiated<noise::Output<Negotiated<S>>>>>),
}

impl<S> std::fmt::Debug for Upgraded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Link(_) => "Upgraded::Link",
            Self::NoiseYamux(_) => "Upgraded::NoiseYamux",
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Upgraded<S> {
    /// The multiplexer as libp2p's connections take it.
    pub fn boxed(self) -> StreamMuxerBox {
        match self {
            Self::Link(m) => StreamMuxerBox::new(m),
            Self::NoiseYamux(m) => StreamMuxerBox::new(*m),
        }
    }
}

/// Negotiates and runs the upgrade of one connection.
pub async fn upgrade<S>(
    io: S,
    point: ConnectedPoint,
    key: identity::Keypair,
    stack: Stack,
    config: mux::Config,
) -> Result<(PeerId, Upgraded<S>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let dialer =
        matches!(point, ConnectedPoint::Dialer { role_override, .. } if role_override.is_dialer());
    let (protocol, mut io) = if dialer {
        let offer: Vec<&'static str> = match stack {
            Stack::MurmurLink => vec![PROTOCOL, NOISE],
            Stack::NoiseYamux => vec![NOISE],
        };
        multistream_select::dialer_select_proto(io, offer, Version::V1).await?
    } else {
        multistream_select::listener_select_proto(io, [PROTOCOL, NOISE]).await?
    };
    if protocol == PROTOCOL {
        let keys = if dialer {
            handshake::initiator(&mut io, &key).await?
        } else {
            handshake::responder(&mut io, &key).await?
        };
        let link = mux::Link::new(io, &keys.send, &keys.recv, dialer, config);
        return Ok((keys.peer, Upgraded::Link(link)));
    }
    let noise = noise::Config::new(&key)?;
    let (peer, io) = if dialer {
        noise.upgrade_outbound(io, NOISE).await?
    } else {
        noise.upgrade_inbound(io, NOISE).await?
    };
    let (_, io) = if dialer {
        multistream_select::dialer_select_proto(io, [YAMUX], Version::V1).await?
    } else {
        multistream_select::listener_select_proto(io, [YAMUX]).await?
    };
    // yamux gives each stream a 256 KiB window and grows one only as fast as it is read: with
    // as many streams as a link has of its own, a yamux peer can make the node buffer no more
    // than a link peer can without drawing on the node's shared budget.
    let mut yamux = yamux::Config::default();
    yamux.set_max_num_streams(config.own_streams.max(1));
    let muxer = if dialer {
        yamux.upgrade_outbound(io, YAMUX).await
    } else {
        yamux.upgrade_inbound(io, YAMUX).await
    }
    .map_err(Error::Yamux)?;
    Ok((peer, Upgraded::NoiseYamux(Box::new(muxer))))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    use libp2p::{Multiaddr, Swarm, SwarmBuilder, ping};

    use super::*;

    fn key(seed: u8) -> identity::Keypair {
        identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap()
    }

    /// A swarm with murmur's TCP transport offering `stack`.
    fn murmur(seed: u8, stack: Stack) -> Swarm<ping::Behaviour> {
        SwarmBuilder::with_existing_identity(key(seed))
            .with_tokio()
            .with_other_transport(|k| {
                transport(k, tcp::Config::default(), stack, mux::Config::default())
            })
            .unwrap()
            .with_behaviour(|_| ping::Behaviour::default())
            .unwrap()
            .build()
    }

    /// A swarm with libp2p's default TCP stack only (noise, yamux), as any libp2p peer has.
    fn vanilla(seed: u8) -> Swarm<ping::Behaviour> {
        SwarmBuilder::with_existing_identity(key(seed))
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| ping::Behaviour::default())
            .unwrap()
            .build()
    }

    async fn listen(s: &mut Swarm<ping::Behaviour>) -> Multiaddr {
        s.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = s.select_next_some().await {
                return address;
            }
        }
    }

    /// `a` dials `b`; returns once `a` has had a ping answered by `b` over the connection, and
    /// fails if that takes longer than the upgrade timeout.
    async fn ping(a: &mut Swarm<ping::Behaviour>, b: &mut Swarm<ping::Behaviour>) {
        tokio::time::timeout(UPGRADE_TIMEOUT, ping_once(a, b))
            .await
            .expect("a ping over the new connection within the upgrade timeout");
    }

    async fn ping_once(a: &mut Swarm<ping::Behaviour>, b: &mut Swarm<ping::Behaviour>) {
        let addr = listen(b).await;
        let b_id = *b.local_peer_id();
        a.dial(addr.with(libp2p::multiaddr::Protocol::P2p(b_id)))
            .unwrap();
        loop {
            tokio::select! {
                e = a.select_next_some() => match e {
                    SwarmEvent::Behaviour(ping::Event { peer, result: Ok(_), .. }) if peer == b_id => {
                        return;
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial failed: {error}"),
                    _ => {}
                },
                _ = b.select_next_some() => {}
            }
        }
    }

    #[tokio::test]
    async fn link_nodes_talk_to_each_other_and_to_noise_yamux_peers_both_ways() {
        // Both speak the link.
        ping(
            &mut murmur(1, Stack::MurmurLink),
            &mut murmur(2, Stack::MurmurLink),
        )
        .await;
        // A link dialer falls back to noise for a peer without the link.
        ping(&mut murmur(3, Stack::MurmurLink), &mut vanilla(4)).await;
        // A plain libp2p peer dials a node, which accepts noise.
        ping(&mut vanilla(5), &mut murmur(6, Stack::MurmurLink)).await;
        // A node told to offer noise first.
        ping(
            &mut murmur(7, Stack::NoiseYamux),
            &mut murmur(8, Stack::MurmurLink),
        )
        .await;
    }

    #[tokio::test]
    async fn upgrade_picks_the_link_when_both_sides_have_it_and_noise_otherwise() {
        use testing::pipe;
        let dialer = ConnectedPoint::Dialer {
            address: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            role_override: libp2p::core::Endpoint::Dialer,
            port_use: libp2p::core::transport::PortUse::New,
        };
        let listener = ConnectedPoint::Listener {
            local_addr: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            send_back_addr: "/ip4/127.0.0.1/tcp/2".parse().unwrap(),
        };
        for stack in [Stack::MurmurLink, Stack::NoiseYamux] {
            let (x, y) = pipe(1 << 16);
            let (a, b) = futures::join!(
                upgrade(x, dialer.clone(), key(1), stack, mux::Config::default()),
                upgrade(
                    y,
                    listener.clone(),
                    key(2),
                    Stack::MurmurLink,
                    mux::Config::default()
                ),
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(a.0, key(2).public().to_peer_id(), "{stack:?}");
            assert_eq!(b.0, key(1).public().to_peer_id(), "{stack:?}");
            let link = stack == Stack::MurmurLink;
            assert_eq!(
                matches!(a.1, Upgraded::Link(_)),
                link,
                "{stack:?}: {:?}",
                a.1
            );
            assert_eq!(
                matches!(b.1, Upgraded::Link(_)),
                link,
                "{stack:?}: {:?}",
                b.1
            );
        }
    }
}
