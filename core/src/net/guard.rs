//! The connection guard: a network behaviour that bounds what peers that have not proved the
//! room token can hold, so that a flood of them never locks an honest worker out.
//!
//! - Inbound connections still in the transport handshake (TCP or QUIC, then Noise) are capped
//!   per IP address (per /64 for IPv6) here, in total by `connection_limits`, and each has the
//!   swarm's connection timeout as its deadline.
//! - Established inbound connections whose peer has not completed the queuexec handshake are
//!   capped per IP, and in total with eviction: when the budget is full, a new connection closes
//!   the oldest unauthenticated one (which is nearest its deadline anyway) instead of being
//!   refused, so the newest arrival, an honest worker among them, always gets its chance.
//! - Each of them is closed when its deadline passes without the session marking its peer
//!   authenticated ([`Guard::set_authenticated`]).
//! - Authenticated peers are outside this budget; the master limits them by `max_workers`.
//!
//! Outbound connections (the ones this node dials) are not limited here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure,
    NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use tokio::time::Instant;

/// What peers that have not authenticated may hold.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    /// Inbound connections in the transport handshake from one IP address (one /64 for IPv6).
    pub(crate) max_pending_per_ip: u32,
    /// Inbound connections in the transport handshake, in total.
    pub(crate) max_pending: u32,
    /// Established inbound connections not yet authenticated, from one IP address.
    pub(crate) max_unauthenticated_per_ip: u32,
    /// Established inbound connections not yet authenticated, in total (the oldest is evicted
    /// when a new one arrives over it).
    pub(crate) max_unauthenticated: u32,
    /// How long a connection may stay in the transport handshake, and then how long it may
    /// stay established without authenticating.
    pub(crate) deadline: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_pending_per_ip: 8,
            max_pending: 256,
            max_unauthenticated_per_ip: 8,
            max_unauthenticated: 128,
            deadline: Duration::from_secs(5),
        }
    }
}

/// The key connections are counted under: the IP address, or its /64 for IPv6 (one host usually
/// holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct IpKey(IpAddr);

impl IpKey {
    /// `None` for a relayed connection: its IP is the relay's, shared by every peer it relays
    /// (the relay caps circuits per IP itself); those count only in the totals.
    fn of(addr: &Multiaddr) -> Option<IpKey> {
        if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
            return None;
        }
        addr.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpKey(IpAddr::V4(ip))),
            Protocol::Ip6(ip) => {
                let masked = u128::from(ip) & !((1u128 << 64) - 1);
                Some(IpKey(IpAddr::V6(masked.into())))
            }
            _ => None,
        })
    }
}

struct Unauthenticated {
    peer: PeerId,
    ip: Option<IpKey>,
    since: Instant,
}

/// The behaviour. See the module documentation.
pub(crate) struct Guard {
    budget: Budget,
    pending: HashMap<ConnectionId, Option<IpKey>>,
    pending_per_ip: HashMap<IpKey, u32>,
    unauthenticated: HashMap<ConnectionId, Unauthenticated>,
    /// Unauthenticated connections, oldest first (entries no longer in the map are skipped).
    order: VecDeque<(Instant, ConnectionId)>,
    unauthenticated_per_ip: HashMap<IpKey, u32>,
    /// Inbound connections of authenticated peers, with their IP key.
    authenticated_connections: HashMap<ConnectionId, (PeerId, Option<IpKey>)>,
    authenticated: HashSet<PeerId>,
    to_close: VecDeque<(PeerId, ConnectionId)>,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    waker: Option<Waker>,
    stats: GuardStats,
}

/// What the guard has seen, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct GuardStats {
    /// Inbound connections in the transport handshake now.
    pub(crate) pending: usize,
    /// Established inbound connections not yet authenticated now.
    pub(crate) unauthenticated: usize,
    /// The most unauthenticated connections held at once.
    pub(crate) peak_unauthenticated: usize,
    /// Connections refused by a per-IP cap.
    pub(crate) denied: u64,
    /// Unauthenticated connections closed to make room for newer ones.
    pub(crate) evicted: u64,
    /// Unauthenticated connections closed at their deadline.
    pub(crate) expired: u64,
}

impl Guard {
    pub(crate) fn new(budget: Budget) -> Self {
        Guard {
            budget,
            pending: HashMap::new(),
            pending_per_ip: HashMap::new(),
            unauthenticated: HashMap::new(),
            order: VecDeque::new(),
            unauthenticated_per_ip: HashMap::new(),
            authenticated_connections: HashMap::new(),
            authenticated: HashSet::new(),
            to_close: VecDeque::new(),
            timer: None,
            waker: None,
            stats: GuardStats::default(),
        }
    }

    /// What the guard has seen so far.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn stats(&self) -> GuardStats {
        GuardStats {
            pending: self.pending.len(),
            unauthenticated: self.unauthenticated.len(),
            ..self.stats
        }
    }

    /// Marks `peer` as having proved the room token (its connections leave the budget and lose
    /// their deadline), or as no longer doing so (they re-enter it with a fresh deadline).
    pub(crate) fn set_authenticated(&mut self, peer: PeerId, yes: bool) {
        if yes {
            self.authenticated.insert(peer);
            let ids: Vec<ConnectionId> = self
                .unauthenticated
                .iter()
                .filter(|(_, c)| c.peer == peer)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                if let Some(c) = self.remove_unauthenticated(id) {
                    self.authenticated_connections.insert(id, (peer, c.ip));
                }
            }
        } else if self.authenticated.remove(&peer) {
            let ids: Vec<(ConnectionId, Option<IpKey>)> = self
                .authenticated_connections
                .iter()
                .filter(|(_, (p, _))| *p == peer)
                .map(|(id, (_, ip))| (*id, *ip))
                .collect();
            for (id, ip) in ids {
                self.authenticated_connections.remove(&id);
                self.add_unauthenticated(id, peer, ip);
            }
        }
    }

    fn add_unauthenticated(&mut self, id: ConnectionId, peer: PeerId, ip: Option<IpKey>) {
        let since = Instant::now();
        if let Some(ip) = ip {
            *self.unauthenticated_per_ip.entry(ip).or_default() += 1;
        }
        self.unauthenticated
            .insert(id, Unauthenticated { peer, ip, since });
        self.order.push_back((since, id));
        self.stats.peak_unauthenticated = self
            .stats
            .peak_unauthenticated
            .max(self.unauthenticated.len());
        if self.timer.is_none() {
            self.arm_timer();
        }
        self.wake();
    }

    fn remove_unauthenticated(&mut self, id: ConnectionId) -> Option<Unauthenticated> {
        let c = self.unauthenticated.remove(&id)?;
        if let Some(ip) = c.ip {
            decrement(&mut self.unauthenticated_per_ip, ip);
        }
        Some(c)
    }

    /// Closes the oldest unauthenticated connection (to make room for a new one).
    fn evict_oldest(&mut self) {
        while let Some((_, id)) = self.order.pop_front() {
            if let Some(c) = self.remove_unauthenticated(id) {
                tracing::debug!(peer = %c.peer, "closing the oldest unauthenticated connection to make room");
                self.to_close.push_back((c.peer, id));
                self.stats.evicted += 1;
                self.wake();
                return;
            }
        }
    }

    /// Closes every unauthenticated connection past its deadline; re-arms the timer.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&(since, id)) = self.order.front() {
            let live = self
                .unauthenticated
                .get(&id)
                .is_some_and(|c| c.since == since);
            if !live {
                self.order.pop_front();
                continue;
            }
            if since + self.budget.deadline > now {
                break;
            }
            self.order.pop_front();
            if let Some(c) = self.remove_unauthenticated(id) {
                tracing::debug!(peer = %c.peer, "closing a connection that did not authenticate in time");
                self.to_close.push_back((c.peer, id));
                self.stats.expired += 1;
            }
        }
        self.arm_timer();
    }

    fn arm_timer(&mut self) {
        self.timer = self
            .order
            .iter()
            .find(|(since, id)| {
                self.unauthenticated
                    .get(id)
                    .is_some_and(|c| c.since == *since)
            })
            .map(|(since, _)| Box::pin(tokio::time::sleep_until(*since + self.budget.deadline)));
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

fn decrement(counts: &mut HashMap<IpKey, u32>, ip: IpKey) {
    if let Some(n) = counts.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(&ip);
        }
    }
}

fn denied(what: String) -> ConnectionDenied {
    ConnectionDenied::new(std::io::Error::other(what))
}

impl NetworkBehaviour for Guard {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let ip = IpKey::of(remote);
        if let Some(ip) = ip {
            let n = self.pending_per_ip.get(&ip).copied().unwrap_or(0);
            if n >= self.budget.max_pending_per_ip {
                self.stats.denied += 1;
                return Err(denied(format!(
                    "{} connections from {} are already in the handshake",
                    n, ip.0
                )));
            }
            *self.pending_per_ip.entry(ip).or_default() += 1;
        }
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
        let ip = match self.pending.remove(&connection_id) {
            Some(ip) => {
                if let Some(ip) = ip {
                    decrement(&mut self.pending_per_ip, ip);
                }
                ip
            }
            None => IpKey::of(remote),
        };
        if self.authenticated.contains(&peer) {
            self.authenticated_connections
                .insert(connection_id, (peer, ip));
            return Ok(dummy::ConnectionHandler);
        }
        if let Some(ip) = ip {
            let n = self.unauthenticated_per_ip.get(&ip).copied().unwrap_or(0);
            if n >= self.budget.max_unauthenticated_per_ip {
                self.stats.denied += 1;
                return Err(denied(format!(
                    "{n} unauthenticated connections from {} are already open",
                    ip.0
                )));
            }
        }
        while self.unauthenticated.len() >= self.budget.max_unauthenticated as usize
            && !self.unauthenticated.is_empty()
        {
            self.evict_oldest();
        }
        self.add_unauthenticated(connection_id, peer, ip);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _maybe_peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.remove_unauthenticated(connection_id);
                self.authenticated_connections.remove(&connection_id);
            }
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                if let Some(Some(ip)) = self.pending.remove(&connection_id) {
                    decrement(&mut self.pending_per_ip, ip);
                }
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

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(timer) = self.timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            self.expire();
            // Poll the new timer so it wakes this task.
            if let Some(timer) = self.timer.as_mut() {
                let _ = timer.as_mut().poll(cx);
            }
        }
        if let Some((peer_id, id)) = self.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::One(id),
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/4000").parse().expect("multiaddr")
    }

    fn local() -> Multiaddr {
        addr("127.0.0.1")
    }

    /// Brings a connection from `ip` through both inbound steps.
    fn connect(guard: &mut Guard, n: usize, ip: &str) -> Result<PeerId, ConnectionDenied> {
        let id = ConnectionId::new_unchecked(n);
        let peer = PeerId::random();
        guard.handle_pending_inbound_connection(id, &local(), &addr(ip))?;
        guard.handle_established_inbound_connection(id, peer, &local(), &addr(ip))?;
        Ok(peer)
    }

    /// The connections the guard asks the swarm to close, in order.
    fn closes(guard: &mut Guard) -> Vec<ConnectionId> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(ToSwarm::CloseConnection {
            connection: CloseConnection::One(id),
            ..
        }) = guard.poll(&mut cx)
        {
            out.push(id);
        }
        out
    }

    fn small() -> Budget {
        Budget {
            max_pending_per_ip: 2,
            max_pending: 100,
            max_unauthenticated_per_ip: 3,
            max_unauthenticated: 4,
            deadline: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn one_address_gets_at_most_its_share_of_handshakes_and_unauthenticated_connections() {
        let mut guard = Guard::new(small());
        for n in 0..2 {
            guard
                .handle_pending_inbound_connection(
                    ConnectionId::new_unchecked(n),
                    &local(),
                    &addr("10.0.0.1"),
                )
                .expect("within the per-IP handshake cap");
        }
        let third = guard.handle_pending_inbound_connection(
            ConnectionId::new_unchecked(2),
            &local(),
            &addr("10.0.0.1"),
        );
        assert!(third.is_err(), "a third handshake from one IP is refused");
        assert!(
            connect(&mut guard, 3, "10.0.0.2").is_ok(),
            "another IP is not"
        );

        let mut guard = Guard::new(small());
        for n in 0..3 {
            connect(&mut guard, n, "10.0.0.1").expect("within the per-IP cap");
        }
        assert!(connect(&mut guard, 3, "10.0.0.1").is_err());
        assert_eq!(guard.stats().denied, 1);
    }

    #[tokio::test]
    async fn a_full_budget_closes_the_oldest_unauthenticated_connection_not_the_newcomer() {
        let mut guard = Guard::new(small());
        for n in 0..4 {
            connect(&mut guard, n, &format!("10.0.0.{n}")).expect("within the budget");
        }
        connect(&mut guard, 4, "10.0.1.1").expect("the newcomer is let in");
        assert_eq!(closes(&mut guard), [ConnectionId::new_unchecked(0)]);
        assert_eq!(guard.stats().unauthenticated, 4);
        assert_eq!(guard.stats().evicted, 1);
    }

    #[tokio::test]
    async fn a_connection_that_does_not_authenticate_in_time_is_closed_and_one_that_does_is_kept() {
        let mut guard = Guard::new(Budget {
            deadline: Duration::from_millis(200),
            ..small()
        });
        connect(&mut guard, 1, "10.0.0.1").expect("connect");
        let honest = connect(&mut guard, 2, "10.0.0.2").expect("connect");
        guard.set_authenticated(honest, true);
        assert!(closes(&mut guard).is_empty());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(closes(&mut guard), [ConnectionId::new_unchecked(1)]);
        assert_eq!(guard.stats().expired, 1);
        // The honest peer leaves its session: its connection gets a fresh deadline.
        guard.set_authenticated(honest, false);
        assert!(closes(&mut guard).is_empty());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(closes(&mut guard), [ConnectionId::new_unchecked(2)]);
    }
}
