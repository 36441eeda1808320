//! Incoming connections by remote IP address: a cap on those one address may hold open while
//! they are still being set up, and a fair share of the established ones.
//!
//! `connection_limits` counts pending incoming connections for the whole node: one process that
//! opens a few dozen TCP connections and never completes a handshake (reopening each one the
//! upgrade timeout closes) holds every slot, and an honest newcomer is refused for as long as it
//! keeps at it. Counted per remote IP, such a process holds [`MAX_PENDING_PER_IP`] slots and the
//! rest stay open to others. (An attacker with many addresses is bounded by the node-wide limit
//! only.)
//!
//! Established incoming connections are capped for the whole node too (`cap`: the slots not kept
//! for the node's own dials), and identities are free: one address that connects under as many
//! names as there are slots would fill them, and no newcomer could connect, so a restarted node or
//! a late joiner would meet only that address's peers. So when the slots are full, a connection
//! from an address that holds fewer than the address holding the most, by two or more, takes the
//! slot of that address's newest connection (closed at once). An address then keeps at most one
//! connection more than any other that wants in; several honest peers behind one address (a
//! lab's NAT) keep their share.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionEstablished, ListenFailure};
use libp2p::swarm::{
    CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Connections one remote IP may have in the handshake at once.
pub const MAX_PENDING_PER_IP: usize = 4;

/// Refuses a new incoming connection from an IP that already has [`MAX_PENDING_PER_IP`]
/// connections in the handshake, and shares the established incoming slots among addresses.
#[derive(Debug)]
pub struct Behaviour {
    pending: BTreeMap<ConnectionId, IpAddr>,
    per_ip: BTreeMap<IpAddr, usize>,
    incoming: Incoming,
    close: VecDeque<ToSwarm<Infallible, THandlerInEvent<Self>>>,
}

/// Too many handshakes at once from one address.
#[derive(Debug, thiserror::Error)]
#[error("{0} already has {MAX_PENDING_PER_IP} connections in the handshake")]
pub struct TooManyPending(IpAddr);

/// The established incoming slots are full, and the address holds as many as any other.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("all {cap} incoming connection slots are taken, {held} of them by {ip}")]
pub struct SlotsFull {
    ip: IpAddr,
    held: usize,
    cap: usize,
}

/// Established incoming connections, by remote address.
#[derive(Debug, Default)]
struct Incoming {
    cap: usize,
    conns: BTreeMap<ConnectionId, (IpAddr, PeerId)>,
    by_ip: BTreeMap<IpAddr, BTreeSet<ConnectionId>>,
}

/// What [`Incoming::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    /// A slot is free.
    Yes,
    /// Take the slot of this connection (the newest of the address holding the most).
    Evict(ConnectionId, PeerId),
    /// Full, and this address holds its share.
    No(SlotsFull),
}

impl Incoming {
    fn held(&self, ip: &IpAddr) -> usize {
        self.by_ip.get(ip).map_or(0, BTreeSet::len)
    }

    fn admit(&self, ip: IpAddr) -> Admit {
        if self.conns.len() < self.cap {
            return Admit::Yes;
        }
        let held = self.held(&ip);
        // The address holding the most (the lowest address on ties, so the choice depends on
        // nothing else), and its newest connection.
        let top = self
            .by_ip
            .iter()
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)));
        match top {
            Some((_, conns)) if conns.len() >= held + 2 => {
                let victim = *conns.last().expect("no empty sets are kept");
                Admit::Evict(victim, self.conns[&victim].1)
            }
            _ => Admit::No(SlotsFull {
                ip,
                held,
                cap: self.cap,
            }),
        }
    }

    fn insert(&mut self, id: ConnectionId, ip: IpAddr, peer: PeerId) {
        self.conns.insert(id, (ip, peer));
        self.by_ip.entry(ip).or_default().insert(id);
    }

    fn remove(&mut self, id: &ConnectionId) {
        if let Some((ip, _)) = self.conns.remove(id)
            && let Some(set) = self.by_ip.get_mut(&ip)
        {
            set.remove(id);
            if set.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })
}

impl Behaviour {
    /// At most `incoming` established incoming connections, shared among remote addresses.
    pub fn new(incoming: usize) -> Self {
        Self {
            pending: BTreeMap::new(),
            per_ip: BTreeMap::new(),
            incoming: Incoming {
                cap: incoming,
                ..Incoming::default()
            },
            close: VecDeque::new(),
        }
    }

    fn done(&mut self, id: &ConnectionId) {
        if let Some(ip) = self.pending.remove(id)
            && let Some(n) = self.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        let n = self.per_ip.entry(ip).or_default();
        if *n >= MAX_PENDING_PER_IP {
            return Err(ConnectionDenied::new(TooManyPending(ip)));
        }
        *n += 1;
        self.pending.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.done(&connection_id);
        let Some(ip) = ip_of(remote) else {
            return Ok(dummy::ConnectionHandler);
        };
        match self.incoming.admit(ip) {
            Admit::Yes => {}
            Admit::Evict(victim, peer_id) => {
                tracing::info!(%ip, %peer_id, "incoming slots full: closing the newest connection of the address holding the most");
                self.incoming.remove(&victim);
                self.close.push_back(ToSwarm::CloseConnection {
                    peer_id,
                    connection: CloseConnection::One(victim),
                });
            }
            Admit::No(full) => return Err(ConnectionDenied::new(full)),
        }
        self.incoming.insert(connection_id, ip, peer);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.done(&connection_id);
                self.incoming.remove(&connection_id);
            }
            FromSwarm::ConnectionEstablished(ConnectionEstablished { connection_id, .. }) => {
                self.done(&connection_id)
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.close.pop_front() {
            Some(close) => Poll::Ready(close),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// One address that fills every slot under many names gives them up one by one to others,
    /// newest first, down to one more than any other that wants in; an address at its share is
    /// refused, with the reason.
    #[test]
    fn a_full_node_shares_its_incoming_slots_among_addresses() {
        let mut inc = Incoming {
            cap: 6,
            ..Incoming::default()
        };
        let mut next = 0;
        let mut id = || {
            next += 1;
            ConnectionId::new_unchecked(next)
        };
        let sybil = ip(9);
        let mut theirs = Vec::new();
        for _ in 0..6 {
            assert_eq!(inc.admit(sybil), Admit::Yes);
            let c = id();
            inc.insert(c, sybil, PeerId::random());
            theirs.push(c);
        }
        assert!(matches!(inc.admit(sybil), Admit::No(_)), "its own share");
        // Newcomers from two other addresses take the sybil's newest slots.
        let mut newcomers = 0;
        for who in [ip(1), ip(2), ip(1), ip(2)] {
            match inc.admit(who) {
                Admit::Evict(victim, _) => {
                    assert_eq!(Some(victim), theirs.pop(), "the newest first");
                    inc.remove(&victim);
                    inc.insert(id(), who, PeerId::random());
                    newcomers += 1;
                }
                other => panic!("{who}: {other:?}"),
            }
        }
        assert_eq!(newcomers, 4);
        assert_eq!(inc.held(&sybil), 2);
        // Now every address holds 2: the next is refused, and says why.
        let Admit::No(full) = inc.admit(ip(1)) else {
            panic!("shares are even")
        };
        assert_eq!(
            full.to_string(),
            "all 6 incoming connection slots are taken, 2 of them by 127.0.0.1"
        );
        // A third address still gets in: it holds none, the others two.
        assert!(matches!(inc.admit(ip(3)), Admit::Evict(..)));
        // A closed connection frees its slot.
        inc.remove(&theirs[0]);
        assert_eq!(inc.admit(sybil), Admit::Yes);
        assert_eq!(inc.conns.len(), 5);
    }
}
