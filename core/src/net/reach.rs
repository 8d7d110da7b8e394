//! Reach across NATs through relays, with libp2p's own protocols only.
//!
//! With a bootstrap (one or more `queuexec relay` addresses, each ending in `/p2p/<id>`):
//!
//! - every node listens beyond loopback (TCP and QUIC on all interfaces, a port of the system's
//!   choosing) so that hole punching has a port to punch from, and keeps a connection to each
//!   relay (identify tells it the address the relay sees it at);
//! - a master asks the relays whether it is reachable (AutoNAT) and, until one says it is, holds
//!   a relay v2 reservation (its circuit address becomes an external address), and registers its
//!   external addresses at each relay's rendezvous point under the room's namespace (an HKDF of
//!   the room token, [`crate::crypto::RoomKey::rendezvous_namespace`]);
//! - a worker asks the rendezvous points for that namespace and dials what it finds, directly or
//!   through a relay circuit; on a relayed connection DCUtR punches a hole for a direct one, and
//!   once it exists the relayed one is closed, so jobs flow directly. When hole punching fails
//!   (a symmetric NAT) the relayed connection stays, within the relay's limits.
//! - UPnP port mapping on the local gateway is opt-in.

use std::time::Duration;

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, autonat, dcutr, relay, rendezvous, upnp};
use tokio::time::Instant;

use super::{BehaviourEvent, EventLoop, NetEvent, is_loopback};
use crate::error::{Error, Result};

/// Environment variable with bootstrap relays (comma separated multiaddrs).
pub(crate) const BOOTSTRAP_ENV: &str = crate::config::BOOTSTRAP_VAR;

/// How often the relays are checked (redialled, reservation, registration).
pub(crate) const TICK: Duration = Duration::from_secs(2);

/// How often a master renews its rendezvous registration although nothing changed.
const REREGISTER: Duration = Duration::from_secs(30 * 60);

/// How long a dial to a relay may take before it is tried again.
const RELAY_DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How a peer is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// A direct connection (possibly hole-punched through NATs).
    Direct,
    /// Through a relay circuit: the relay passes the (encrypted) bytes, within its limits.
    Relayed,
}

impl Path {
    /// `"direct"` or `"relayed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Relayed => "relayed",
        }
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node needs to meet others through relays.
#[derive(Debug, Clone)]
pub(crate) struct Bootstrap {
    /// The relays, each with its `/p2p/` peer id.
    pub(crate) relays: Vec<(PeerId, Multiaddr)>,
    /// The room's rendezvous namespace.
    pub(crate) namespace: String,
    /// A master registers; a worker discovers.
    pub(crate) master: bool,
    /// Map ports on the local gateway with UPnP.
    pub(crate) upnp: bool,
    /// Also listen on every interface (when the listen addresses are the defaults).
    pub(crate) listen_wide: bool,
}

impl Bootstrap {
    /// Reads the bootstrap list: `explicit` (each a multiaddr), else [`BOOTSTRAP_ENV`]. `None`
    /// when neither gives an address.
    pub(crate) fn new(
        explicit: &[String],
        namespace: &str,
        master: bool,
        upnp: bool,
    ) -> Result<Option<Bootstrap>> {
        let texts: Vec<String> = if explicit.iter().any(|t| !t.trim().is_empty()) {
            explicit.to_vec()
        } else {
            std::env::var(BOOTSTRAP_ENV)
                .map(|v| crate::config::split_bootstrap(&v))
                .unwrap_or_default()
        };
        let mut relays = Vec::new();
        for text in texts.iter().filter(|t| !t.trim().is_empty()) {
            relays.push(parse_relay(text)?);
        }
        if relays.is_empty() {
            return Ok(None);
        }
        Ok(Some(Bootstrap {
            relays,
            namespace: namespace.to_owned(),
            master,
            upnp,
            listen_wide: true,
        }))
    }

    /// With only loopback listeners (the defaults), adds TCP and QUIC on every interface: hole
    /// punching and direct connections need a reachable port. Listen addresses the user chose
    /// are kept as they are.
    pub(crate) fn extend_listen(&self, listen: &mut Vec<Multiaddr>) {
        if self.listen_wide && listen.iter().all(is_loopback) {
            for addr in ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"] {
                if let Ok(addr) = addr.parse() {
                    listen.push(addr);
                }
            }
        }
    }
}

/// AutoNAT as a master's client: probe soon after the start, through the relays only.
pub(crate) fn autonat_config() -> autonat::Config {
    autonat::Config {
        timeout: Duration::from_secs(10),
        boot_delay: Duration::from_secs(1),
        retry_interval: Duration::from_secs(10),
        refresh_interval: Duration::from_secs(5 * 60),
        throttle_server_period: Duration::from_secs(5),
        use_connected: false,
        confidence_max: 2,
        ..autonat::Config::default()
    }
}

struct RelayState {
    peer: PeerId,
    addr: Multiaddr,
    connected: bool,
    dialing_since: Option<Instant>,
    /// The circuit listener (a master's reservation).
    listener: Option<ListenerId>,
    reserved: bool,
    registered: Option<Instant>,
}

/// The bootstrap state of one swarm.
pub(crate) struct Reach {
    master: bool,
    namespace: rendezvous::Namespace,
    relays: Vec<RelayState>,
    /// AutoNAT said this node is reachable directly.
    public: bool,
    /// A worker is looking for its master.
    discovering: bool,
}

impl Reach {
    pub(crate) fn new(bootstrap: Bootstrap) -> Reach {
        let namespace = rendezvous::Namespace::new(bootstrap.namespace.clone())
            .unwrap_or_else(|_| rendezvous::Namespace::from_static("queuexec"));
        Reach {
            master: bootstrap.master,
            namespace,
            relays: bootstrap
                .relays
                .into_iter()
                .map(|(peer, addr)| RelayState {
                    peer,
                    addr,
                    connected: false,
                    dialing_since: None,
                    listener: None,
                    reserved: false,
                    registered: None,
                })
                .collect(),
            public: false,
            discovering: false,
        }
    }
}

impl EventLoop {
    pub(super) fn reach_start(&mut self) {
        let Some(reach) = &self.reach else { return };
        if reach.master {
            let servers: Vec<(PeerId, Multiaddr)> = reach
                .relays
                .iter()
                .map(|r| (r.peer, r.addr.clone()))
                .collect();
            if let Some(autonat) = self.swarm.behaviour_mut().autonat.as_mut() {
                for (peer, addr) in servers {
                    autonat.add_server(peer, Some(addr));
                }
            }
        }
        self.reach_tick();
    }

    /// Redials lost relays, takes reservations, renews registrations.
    pub(super) fn reach_tick(&mut self) {
        let Some(reach) = &mut self.reach else { return };
        let now = Instant::now();
        let mut dial = Vec::new();
        let mut listen = Vec::new();
        let mut register = Vec::new();
        for relay in &mut reach.relays {
            if !relay.connected {
                if relay
                    .dialing_since
                    .is_none_or(|since| now.duration_since(since) > RELAY_DIAL_TIMEOUT)
                {
                    relay.dialing_since = Some(now);
                    dial.push(relay.addr.clone());
                }
                continue;
            }
            if reach.master && !reach.public && relay.listener.is_none() {
                listen.push(relay.peer);
            }
            if reach.master
                && relay
                    .registered
                    .is_none_or(|at| now.duration_since(at) > REREGISTER)
            {
                register.push(relay.peer);
            }
        }
        for addr in dial {
            tracing::debug!(%addr, "dialling the relay");
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, "cannot dial the relay: {e}");
            }
        }
        for peer in listen {
            self.reach_listen(peer);
        }
        for peer in register {
            self.reach_register(peer);
        }
    }

    /// Listens on a relay's circuit address: asks it for a reservation.
    fn reach_listen(&mut self, peer: PeerId) {
        let Some(reach) = &mut self.reach else { return };
        let Some(relay) = reach.relays.iter_mut().find(|r| r.peer == peer) else {
            return;
        };
        let circuit = relay.addr.clone().with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => relay.listener = Some(id),
            Err(e) => tracing::warn!(%circuit, "cannot ask the relay for a reservation: {e}"),
        }
    }

    /// Registers this master's external addresses at a relay's rendezvous point.
    fn reach_register(&mut self, peer: PeerId) {
        let Some(reach) = &mut self.reach else { return };
        let namespace = reach.namespace.clone();
        let Some(rendezvous) = self.swarm.behaviour_mut().rendezvous.as_mut() else {
            return;
        };
        match rendezvous.register(namespace, peer, None) {
            Ok(()) => {
                if let Some(relay) = reach.relays.iter_mut().find(|r| r.peer == peer) {
                    relay.registered = Some(Instant::now());
                }
            }
            // Nothing to register yet: the reservation (or AutoNAT) will give an address.
            Err(rendezvous::client::RegisterError::NoExternalAddresses) => {}
            Err(e) => tracing::warn!(relay = %peer, "cannot register at the rendezvous: {e}"),
        }
    }

    /// A worker asks every connected relay for this room's masters.
    pub(super) fn reach_discover(&mut self) {
        let Some(reach) = &mut self.reach else { return };
        if reach.master {
            return;
        }
        reach.discovering = true;
        let namespace = reach.namespace.clone();
        let peers: Vec<PeerId> = reach
            .relays
            .iter()
            .filter(|r| r.connected)
            .map(|r| r.peer)
            .collect();
        if let Some(rendezvous) = self.swarm.behaviour_mut().rendezvous.as_mut() {
            for peer in peers {
                rendezvous.discover(Some(namespace.clone()), None, None, peer);
            }
        }
    }

    pub(super) fn reach_connected(&mut self, peer: PeerId, _id: ConnectionId, relayed: bool) {
        if self.reach.is_none() {
            return;
        }
        // A direct connection (hole punched, or dialled at a direct address) replaces relayed
        // ones at once, so that job streams are opened on it.
        if !relayed {
            self.close_relayed(peer);
        }
        let Some(reach) = &mut self.reach else { return };
        let Some(relay) = reach.relays.iter_mut().find(|r| r.peer == peer) else {
            return;
        };
        if relayed || relay.connected {
            return;
        }
        relay.connected = true;
        relay.dialing_since = None;
        tracing::info!(relay = %relay.addr, "connected to the relay");
        let discovering = reach.discovering;
        if reach.master {
            self.reach_tick();
        } else if discovering {
            self.reach_discover();
        }
    }

    pub(super) fn reach_disconnected(&mut self, peer: PeerId) {
        let Some(reach) = &mut self.reach else { return };
        if let Some(relay) = reach.relays.iter_mut().find(|r| r.peer == peer) {
            tracing::info!(relay = %relay.addr, "lost the relay; dialling it again");
            relay.connected = false;
            relay.reserved = false;
            relay.registered = None;
        }
    }

    /// Closes relayed connections to `peer` (a direct one has replaced them). A job stream on
    /// one of them ends; its worker joins again on the direct connection.
    fn close_relayed(&mut self, peer: PeerId) {
        let ids: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, (p, relayed))| *p == peer && *relayed)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.swarm.close_connection(id);
        }
    }

    pub(super) fn reach_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if self.reach.is_none() {
            return;
        }
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted {
                    relay_peer_id,
                    renewal,
                    ..
                },
            )) => {
                if let Some(reach) = &mut self.reach
                    && let Some(relay) = reach.relays.iter_mut().find(|r| r.peer == relay_peer_id)
                {
                    relay.reserved = true;
                    if !renewal {
                        tracing::info!(relay = %relay.addr, "reservation at the relay accepted: reachable through it");
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rendezvous(event)) => match event {
                rendezvous::client::Event::Discovered { registrations, .. } => {
                    let me = *self.swarm.local_peer_id();
                    for registration in registrations {
                        let peer = registration.record.peer_id();
                        if peer == me {
                            continue;
                        }
                        let addrs = registration.record.addresses().to_vec();
                        tracing::debug!(%peer, ?addrs, "the rendezvous named a master");
                        let _ = self.events.send(NetEvent::Found(peer, addrs));
                    }
                }
                rendezvous::client::Event::Registered {
                    rendezvous_node, ..
                } => {
                    tracing::info!(relay = %rendezvous_node, "registered at the rendezvous");
                }
                rendezvous::client::Event::RegisterFailed {
                    rendezvous_node,
                    error,
                    ..
                } => {
                    tracing::warn!(relay = %rendezvous_node, ?error, "the rendezvous refused the registration");
                }
                rendezvous::client::Event::DiscoverFailed {
                    rendezvous_node,
                    error,
                    ..
                } => {
                    tracing::debug!(relay = %rendezvous_node, ?error, "rendezvous discovery failed");
                }
                rendezvous::client::Event::Expired { .. } => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => match result {
                Ok(_) => {
                    tracing::info!(peer = %remote_peer_id, "hole punched: direct connection");
                    self.close_relayed(remote_peer_id);
                }
                Err(e) => {
                    tracing::info!(peer = %remote_peer_id, "no direct connection ({e}); staying on the relay");
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::StatusChanged {
                new,
                ..
            })) => {
                let public = new.is_public();
                tracing::info!(status = ?new, "AutoNAT: reachability changed");
                let mut drop = Vec::new();
                if let Some(reach) = &mut self.reach {
                    reach.public = public;
                    for relay in &mut reach.relays {
                        relay.registered = None;
                        if public && let Some(id) = relay.listener.take() {
                            relay.reserved = false;
                            drop.push(id);
                        }
                    }
                }
                for id in drop {
                    self.swarm.remove_listener(id);
                }
                self.reach_tick();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Upnp(event)) => match event {
                upnp::Event::NewExternalAddr { external_addr, .. } => {
                    tracing::info!(%external_addr, "UPnP mapped a port");
                }
                upnp::Event::GatewayNotFound => tracing::info!("UPnP: no gateway found"),
                upnp::Event::NonRoutableGateway => {
                    tracing::info!("UPnP: the gateway is not on the public network")
                }
                upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                    tracing::info!(%external_addr, "UPnP mapping expired")
                }
            },
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address");
                self.reach_reregister();
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::debug!(%address, "external address expired");
                self.reach_reregister();
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                if let Some(reach) = &mut self.reach {
                    for relay in &mut reach.relays {
                        if relay.listener == Some(listener_id) {
                            relay.listener = None;
                            relay.reserved = false;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The external addresses changed: a master registers them again.
    fn reach_reregister(&mut self) {
        let Some(reach) = &mut self.reach else { return };
        if !reach.master {
            return;
        }
        let peers: Vec<PeerId> = reach
            .relays
            .iter()
            .filter(|r| r.connected)
            .map(|r| r.peer)
            .collect();
        for peer in peers {
            self.reach_register(peer);
        }
    }

    /// A master leaving unregisters, so workers do not find a stale address.
    pub(super) async fn reach_leave(&mut self) {
        let Some(reach) = &self.reach else { return };
        if !reach.master {
            return;
        }
        let namespace = reach.namespace.clone();
        let peers: Vec<PeerId> = reach
            .relays
            .iter()
            .filter(|r| r.connected)
            .map(|r| r.peer)
            .collect();
        if peers.is_empty() {
            return;
        }
        if let Some(rendezvous) = self.swarm.behaviour_mut().rendezvous.as_mut() {
            for peer in peers {
                rendezvous.unregister(namespace.clone(), peer);
            }
        }
        // Let the requests go out.
        let deadline = tokio::time::sleep(Duration::from_millis(300));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = futures::StreamExt::select_next_some(&mut self.swarm) => {}
            }
        }
    }
}

/// Parses one bootstrap address: a multiaddr ending in `/p2p/<relay peer id>`.
pub(crate) fn parse_relay(text: &str) -> Result<(PeerId, Multiaddr)> {
    let addr = super::parse_addr(text, "bootstrap address")?;
    let peer = addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    });
    let peer = peer.ok_or_else(|| {
        Error::config(format!(
            "bootstrap address {text:?} has no /p2p/<peer id>; use the whole address `queuexec relay` prints, e.g. /ip4/198.51.100.1/tcp/4001/p2p/12D3KooW..."
        ))
    })?;
    Ok((peer, addr))
}
