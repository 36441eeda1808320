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
//! Established connections are capped for the whole node too (all of them, and the incoming ones
//! at the slots not kept for the node's own dials), and identities are free: one address that connects under as many
//! names as there are slots would fill them, and no newcomer could connect, so a restarted node or
//! a late joiner would meet only that address's peers. So when the slots are full, a connection
//! from an address that holds fewer than the address holding the most, by two or more, takes the
//! slot of that address's newest connection (closed at once). An address then keeps at most one
//! connection more than any other that wants in; several honest peers behind one address (a
//! lab's NAT) keep their share, and an attacker with k addresses holds about k shares. The
//! newest connection goes first: the longest-held are most likely the ones the node has used.
//!
//! An address is an IPv4 address or an IPv6 /64 (one host is commonly given a whole /64).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionEstablished, DialFailure, ListenFailure};
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
    /// Established outgoing connections, and the most established in all.
    outgoing: BTreeSet<ConnectionId>,
    max_total: usize,
    close: VecDeque<ToSwarm<Infallible, THandlerInEvent<Self>>>,
}

/// Every connection slot of the node is taken.
#[derive(Debug, thiserror::Error)]
#[error("all {0} connection slots are taken")]
pub struct AllTaken(usize);

/// Too many handshakes at once from one address.
#[derive(Debug, thiserror::Error)]
#[error("{0} already has {MAX_PENDING_PER_IP} connections in the handshake")]
pub struct TooManyPending(IpAddr);

/// The established incoming slots are full, and the address holds as many as any other.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("no connection slot is free ({incoming} incoming, at most {cap}), and {ip} holds {held}")]
pub struct SlotsFull {
    ip: IpAddr,
    held: usize,
    incoming: usize,
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

    /// Whether a connection from `ip` gets a slot; `full` when the node holds as many
    /// connections as it may in all (its own dials included).
    fn admit(&self, ip: IpAddr, full: bool) -> Admit {
        if self.conns.len() < self.cap && !full {
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
                incoming: self.conns.len(),
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

/// The address connections from `addr` are counted under: its IPv4 address, or its IPv6 /64.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(a) & !u128::from(u64::MAX),
        ))),
        _ => None,
    })
}

impl Behaviour {
    /// At most `total` established connections, of which at most `incoming` incoming, shared
    /// among remote addresses.
    pub fn new(total: usize, incoming: usize) -> Self {
        Self {
            pending: BTreeMap::new(),
            per_ip: BTreeMap::new(),
            incoming: Incoming {
                cap: incoming,
                ..Incoming::default()
            },
            outgoing: BTreeSet::new(),
            max_total: total,
            close: VecDeque::new(),
        }
    }

    fn established(&self) -> usize {
        self.incoming.conns.len() + self.outgoing.len()
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
        let full = self.established() >= self.max_total;
        match self.incoming.admit(ip, full) {
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
        connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if self.established() >= self.max_total {
            return Err(ConnectionDenied::new(AllTaken(self.max_total)));
        }
        self.outgoing.insert(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::DialFailure(DialFailure { connection_id, .. })
            | FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.done(&connection_id);
                self.incoming.remove(&connection_id);
                self.outgoing.remove(&connection_id);
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
            assert_eq!(inc.admit(sybil, false), Admit::Yes);
            let c = id();
            inc.insert(c, sybil, PeerId::random());
            theirs.push(c);
        }
        assert!(
            matches!(inc.admit(sybil, false), Admit::No(_)),
            "its own share"
        );
        // Newcomers from two other addresses take the sybil's newest slots.
        let mut newcomers = 0;
        for who in [ip(1), ip(2), ip(1), ip(2)] {
            match inc.admit(who, false) {
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
        let Admit::No(full) = inc.admit(ip(1), false) else {
            panic!("shares are even")
        };
        assert_eq!(
            full.to_string(),
            "no connection slot is free (6 incoming, at most 6), and 127.0.0.1 holds 2"
        );
        // A third address still gets in: it holds none, the others two.
        assert!(matches!(inc.admit(ip(3), false), Admit::Evict(..)));
        // A closed connection frees its slot.
        inc.remove(&theirs[0]);
        assert_eq!(inc.admit(sybil, false), Admit::Yes);
        assert_eq!(inc.conns.len(), 5);
    }

    /// The node's own dials may take more than their quarter while few peers connect; incoming
    /// connections then fill what is left, and a newcomer from another address still takes the
    /// slot of the busiest address's newest (before, the total's limit refused it before the
    /// slots were shared). The total holds for dials too, and every reason is said.
    #[test]
    fn dials_beyond_their_quarter_do_not_keep_newcomers_out() {
        let mut b = Behaviour::new(8, 6);
        let mut next = 0;
        let mut id = || {
            next += 1;
            ConnectionId::new_unchecked(next)
        };
        let remote =
            |last: u8| -> Multiaddr { format!("/ip4/127.0.0.{last}/tcp/1").parse().unwrap() };
        let local: Multiaddr = "/ip4/127.0.0.1/tcp/2".parse().unwrap();
        for _ in 0..4 {
            let dial = b.handle_established_outbound_connection(
                id(),
                PeerId::random(),
                &remote(20),
                Endpoint::Dialer,
                PortUse::New,
            );
            assert!(dial.is_ok());
        }
        let mut names = Vec::new();
        for _ in 0..4 {
            let c = id();
            assert!(
                b.handle_established_inbound_connection(c, PeerId::random(), &local, &remote(9))
                    .is_ok()
            );
            names.push(c);
        }
        let err = b
            .handle_established_inbound_connection(id(), PeerId::random(), &local, &remote(9))
            .map(|_| ())
            .unwrap_err();
        let full = err.downcast_ref::<SlotsFull>().expect("the reason");
        assert_eq!(
            full.to_string(),
            "no connection slot is free (4 incoming, at most 6), and 127.0.0.9 holds 4"
        );
        let dial = b.handle_established_outbound_connection(
            id(),
            PeerId::random(),
            &remote(21),
            Endpoint::Dialer,
            PortUse::New,
        );
        let err = dial.map(|_| ()).unwrap_err();
        let taken = err.downcast_ref::<AllTaken>().expect("the reason");
        assert_eq!(taken.to_string(), "all 8 connection slots are taken");
        let newcomer = id();
        assert!(
            b.handle_established_inbound_connection(newcomer, PeerId::random(), &local, &remote(1))
                .is_ok()
        );
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match b.poll(&mut cx) {
            Poll::Ready(ToSwarm::CloseConnection {
                connection: CloseConnection::One(c),
                ..
            }) => assert_eq!(Some(c), names.last().copied(), "the newest of 127.0.0.9"),
            _ => panic!("a connection to close"),
        }
        assert!(b.poll(&mut cx).is_pending());
        assert_eq!(b.established(), 8);
    }

    /// Connections from one IPv6 /64 count as one address.
    #[test]
    fn an_ipv6_slash_64_is_one_address() {
        let a: Multiaddr = "/ip6/2001:db8:1:2::1/tcp/1".parse().unwrap();
        let b: Multiaddr = "/ip6/2001:db8:1:2:ffff::9/tcp/1".parse().unwrap();
        let c: Multiaddr = "/ip6/2001:db8:1:3::1/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&a), ip_of(&b));
        assert_ne!(ip_of(&a), ip_of(&c));
        assert_eq!(
            ip_of(&"/ip4/10.0.0.7/tcp/1".parse().unwrap()),
            Some(IpAddr::from([10, 0, 0, 7]))
        );
    }
}
