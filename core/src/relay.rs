//! The meeting point: a libp2p node anyone can run on a reachable host so that masters and
//! workers behind NATs find and reach each other with nothing but their tokens.
//!
//! It serves libp2p's own protocols, nothing of queuexec's: circuit relay v2 (with limits on
//! reservations and circuits), rendezvous (masters register under a namespace derived from the
//! room token, see [`crate::net::rendezvous_namespace`]), AutoNAT (it dials peers back so they
//! learn whether they are reachable), identify (peers learn the address they are seen at, which
//! hole punching needs) and ping. What it sees: peer ids, IP addresses and ports, opaque
//! namespaces, and the byte counts of relayed circuits, whose contents are Noise-encrypted end to
//! end and queuexec-encrypted inside that. It never sees a token, a room name, a job or a result.

use std::num::NonZeroU32;
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, autonat, connection_limits, identify, noise, ping, relay, rendezvous, tcp,
    yamux,
};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::net;

mod boxed;

/// What a relay serves and how much of it.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Multiaddrs to listen on (e.g. `/ip4/0.0.0.0/tcp/4001`, `/ip4/0.0.0.0/udp/4001/quic-v1`).
    pub listen: Vec<String>,
    /// Addresses others reach this host at (behind a port forward). `None`: every listen
    /// address that is not loopback or unspecified is taken as reachable.
    pub external: Vec<String>,
    /// Reservations held at once (peers reachable through this relay).
    pub max_reservations: usize,
    /// Reservations one peer may hold.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before the peer renews it.
    pub reservation_duration: Duration,
    /// Relayed circuits open at once.
    pub max_circuits: usize,
    /// Circuits one peer may have open.
    pub max_circuits_per_peer: usize,
    /// How long one circuit may stay open.
    pub max_circuit_duration: Duration,
    /// How many bytes one circuit may carry (both directions together).
    pub max_circuit_bytes: u64,
    /// Reservations one IP address may make per minute.
    pub reservations_per_ip_per_minute: u32,
    /// Circuits one IP address may open per minute.
    pub circuits_per_ip_per_minute: u32,
    /// Connections held at once.
    pub max_connections: u32,
    /// Connections from one peer.
    pub max_connections_per_peer: u32,
    /// Rendezvous registrations held at once.
    pub max_registrations: usize,
    /// AutoNAT: also dial back addresses that are not globally routable (private and
    /// documentation ranges). Off by default: a relay on the internet must not be used to probe
    /// private networks. On for a relay inside a LAN or a test network.
    pub autonat_any_ip: bool,
    /// A file keeping the relay's keypair, so its peer id (and the `/p2p/` addresses it prints)
    /// stay the same across restarts: made (0600) on the first start, read afterwards. `None`:
    /// a new peer id at every start.
    pub identity: Option<std::path::PathBuf>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            external: Vec::new(),
            max_reservations: 1024,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(60 * 60),
            max_circuits: 256,
            max_circuits_per_peer: 8,
            max_circuit_duration: Duration::from_secs(60 * 60),
            max_circuit_bytes: 256 << 20,
            reservations_per_ip_per_minute: 60,
            circuits_per_ip_per_minute: 120,
            max_connections: 4096,
            max_connections_per_peer: 8,
            max_registrations: 4096,
            autonat_any_ip: false,
            identity: None,
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    relay: relay::Behaviour,
    rendezvous: rendezvous::server::Behaviour,
    autonat: autonat::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// What a relay is doing now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Reservations held now.
    pub reservations: u64,
    /// Circuits open now.
    pub circuits: u64,
    /// Rendezvous registrations accepted since the start.
    pub registrations: u64,
    /// Connections open now.
    pub connections: u64,
}

enum Command {
    Stats(oneshot::Sender<RelayStats>),
    Shutdown,
}

/// A running relay. Dropping it does not stop it; call [`Relay::close`].
pub struct Relay {
    peer_id: PeerId,
    addrs: Vec<Multiaddr>,
    commands: mpsc::Sender<Command>,
    done: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts listening and serving on the current tokio runtime; returns once every listener
    /// has reported its address.
    pub async fn start(config: RelayConfig) -> Result<Relay> {
        let listen = config
            .listen
            .iter()
            .map(|a| net::parse_addr(a, "relay listen address"))
            .collect::<Result<Vec<_>>>()?;
        if listen.is_empty() {
            return Err(Error::config(
                "a relay needs at least one --listen address, e.g. /ip4/0.0.0.0/tcp/4001",
            ));
        }
        let external = config
            .external
            .iter()
            .map(|a| net::parse_addr(a, "relay external address"))
            .collect::<Result<Vec<_>>>()?;
        let per_minute = |n: u32, what: &str| {
            NonZeroU32::new(n).ok_or_else(|| Error::config(format!("{what} must be at least 1")))
        };
        let reservations_per_ip = per_minute(
            config.reservations_per_ip_per_minute,
            "reservations per IP per minute",
        )?;
        let circuits_per_ip = per_minute(
            config.circuits_per_ip_per_minute,
            "circuits per IP per minute",
        )?;
        if config.max_circuit_duration.as_secs() > u64::from(u32::MAX) {
            return Err(Error::config("the circuit duration is too long"));
        }

        let identity = match &config.identity {
            Some(path) => net::identity::load_or_create(path)?,
            None => libp2p::identity::Keypair::generate_ed25519(),
        };
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
            .with_tokio()
            .with_tcp(
                tcp::Config::new().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| Error::network_from("could not set up TCP with Noise and Yamux", e))?
            .with_quic()
            .with_behaviour(|key| {
                let peer_id = key.public().to_peer_id();
                // libp2p's defaults hold per-IP limiters of their own (60 a minute) that would
                // cap ours: start from none, keep its per-peer ones (30 per 2 minutes), add ours.
                let per_peer = NonZeroU32::new(30).unwrap_or(NonZeroU32::MIN);
                let relay_config = relay::Config {
                    max_reservations: config.max_reservations,
                    max_reservations_per_peer: config.max_reservations_per_peer,
                    reservation_duration: config.reservation_duration,
                    max_circuits: config.max_circuits,
                    max_circuits_per_peer: config.max_circuits_per_peer,
                    max_circuit_duration: config.max_circuit_duration,
                    max_circuit_bytes: config.max_circuit_bytes,
                    reservation_rate_limiters: Vec::new(),
                    circuit_src_rate_limiters: Vec::new(),
                }
                .reservation_rate_per_peer(per_peer, Duration::from_secs(120))
                .circuit_src_per_peer(per_peer, Duration::from_secs(120))
                .reservation_rate_per_ip(reservations_per_ip, Duration::from_secs(60))
                .circuit_src_per_ip(circuits_per_ip, Duration::from_secs(60));
                let limits = connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(config.max_connections))
                    .with_max_established_per_peer(Some(config.max_connections_per_peer));
                // The handler of every connection, and the events to and from it, in boxes of
                // their own: about 13 KB less a connection (see relay/boxed.rs).
                boxed::Boxed(Behaviour {
                    limits: connection_limits::Behaviour::new(limits),
                    relay: relay::Behaviour::new(peer_id, relay_config),
                    rendezvous: rendezvous::server::Behaviour::new(
                        rendezvous::server::Config::default()
                            .with_max_registration_total(config.max_registrations)
                            .with_max_registration_per_peer(8),
                    ),
                    autonat: autonat::Behaviour::new(
                        peer_id,
                        autonat::Config {
                            only_global_ips: !config.autonat_any_ip,
                            // A relay only answers probes; it does not probe.
                            use_connected: false,
                            ..autonat::Config::default()
                        },
                    ),
                    identify: identify::Behaviour::new(
                        identify::Config::new("/queuexec/id/1".into(), key.public())
                            .with_agent_version(format!("queuexec-relay/{}", crate::VERSION)),
                    ),
                    ping: ping::Behaviour::default(),
                })
            })
            .map_err(|e| Error::network_from("could not set up the relay's behaviour", e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        for addr in &listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| Error::network_from(format!("cannot listen on {addr}"), e))?;
        }
        let peer_id = *swarm.local_peer_id();

        // Wait for the listeners' addresses (each listener reports at least one, or fails; one
        // on 0.0.0.0 reports every interface's).
        let mut addrs = Vec::new();
        let mut reported = std::collections::HashSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while reported.len() < listen.len() {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .map_err(|_| Error::network("the relay's listeners did not start within 10 s"))?;
            match event {
                SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                } => {
                    reported.insert(listener_id);
                    addrs.push(address);
                }
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(Error::network(format!(
                        "a relay listener failed: {}",
                        reason.err().map(|e| e.to_string()).unwrap_or_default()
                    )));
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(Error::network_from("a relay listener failed", error));
                }
                _ => {}
            }
        }
        let dialable: Vec<Multiaddr> = if external.is_empty() {
            let public: Vec<Multiaddr> = addrs
                .iter()
                .filter(|a| !net::is_loopback(a))
                .cloned()
                .collect();
            if public.is_empty() {
                addrs.clone()
            } else {
                public
            }
        } else {
            external
        };
        for addr in &dialable {
            swarm.add_external_address(addr.clone());
        }
        let with_id: Vec<Multiaddr> = dialable
            .iter()
            .map(|a| a.clone().with(Protocol::P2p(peer_id)))
            .collect();

        let (commands, command_rx) = mpsc::channel(8);
        let done = tokio::spawn(
            RelayLoop {
                swarm,
                commands: command_rx,
                stats: RelayStats::default(),
            }
            .run(),
        );
        Ok(Relay {
            peer_id,
            addrs: with_id,
            commands,
            done,
        })
    }

    /// The relay's peer id.
    pub fn peer_id(&self) -> String {
        self.peer_id.to_string()
    }

    /// Addresses peers dial (each ending in `/p2p/<peer id>`): pass one as `--bootstrap`.
    pub fn addrs(&self) -> Vec<String> {
        self.addrs.iter().map(ToString::to_string).collect()
    }

    /// What the relay holds now.
    pub async fn stats(&self) -> Result<RelayStats> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats(reply))
            .await
            .map_err(|_| Error::Closed("the relay"))?;
        rx.await.map_err(|_| Error::Closed("the relay"))
    }

    /// Stops the relay: every reservation, circuit and connection ends.
    pub async fn close(self) {
        let _ = self.commands.send(Command::Shutdown).await;
        let _ = self.done.await;
    }
}

struct RelayLoop {
    swarm: libp2p::Swarm<boxed::Boxed<Behaviour>>,
    commands: mpsc::Receiver<Command>,
    stats: RelayStats,
}

impl RelayLoop {
    async fn run(mut self) {
        let mut summary = tokio::time::interval(Duration::from_secs(60));
        summary.tick().await;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Stats(reply)) => {
                        let _ = reply.send(self.stats);
                    }
                    Some(Command::Shutdown) | None => break,
                },
                _ = summary.tick() => {
                    let s = self.stats;
                    tracing::info!(
                        reservations = s.reservations,
                        circuits = s.circuits,
                        connections = s.connections,
                        registrations = s.registrations,
                        "relay serving"
                    );
                }
            }
        }
        tracing::info!("relay stopped");
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let s = &mut self.stats;
        match event {
            SwarmEvent::ConnectionEstablished { .. } => s.connections += 1,
            SwarmEvent::ConnectionClosed { .. } => s.connections = s.connections.saturating_sub(1),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => match event {
                relay::Event::ReservationReqAccepted {
                    src_peer_id,
                    renewed,
                } => {
                    if !renewed {
                        s.reservations += 1;
                        tracing::info!(peer = %src_peer_id, reservations = s.reservations, "reservation accepted");
                    }
                }
                relay::Event::ReservationReqDenied {
                    src_peer_id,
                    status,
                } => {
                    tracing::warn!(peer = %src_peer_id, ?status, "reservation denied");
                }
                relay::Event::ReservationClosed { src_peer_id }
                | relay::Event::ReservationTimedOut { src_peer_id } => {
                    s.reservations = s.reservations.saturating_sub(1);
                    tracing::info!(peer = %src_peer_id, reservations = s.reservations, "reservation ended");
                }
                relay::Event::CircuitReqAccepted {
                    src_peer_id,
                    dst_peer_id,
                } => {
                    s.circuits += 1;
                    tracing::info!(src = %src_peer_id, dst = %dst_peer_id, circuits = s.circuits, "circuit opened");
                }
                relay::Event::CircuitReqDenied {
                    src_peer_id,
                    dst_peer_id,
                    status,
                } => {
                    tracing::warn!(src = %src_peer_id, dst = %dst_peer_id, ?status, "circuit denied");
                }
                relay::Event::CircuitClosed {
                    src_peer_id,
                    dst_peer_id,
                    error,
                } => {
                    s.circuits = s.circuits.saturating_sub(1);
                    tracing::info!(src = %src_peer_id, dst = %dst_peer_id, circuits = s.circuits, error = ?error.map(|e| e.to_string()), "circuit closed");
                }
                other => tracing::debug!(?other, "relay"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Rendezvous(event)) => match event {
                rendezvous::server::Event::PeerRegistered { peer, registration } => {
                    s.registrations += 1;
                    tracing::info!(%peer, ttl = registration.ttl, "registered at the rendezvous");
                }
                rendezvous::server::Event::PeerNotRegistered { peer, error, .. } => {
                    tracing::warn!(%peer, ?error, "rendezvous registration refused");
                }
                rendezvous::server::Event::DiscoverServed {
                    enquirer,
                    registrations,
                } => {
                    tracing::debug!(peer = %enquirer, found = registrations.len(), "rendezvous discovery served");
                }
                other => tracing::debug!(?other, "rendezvous"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::InboundProbe(probe))) => {
                tracing::debug!(?probe, "AutoNAT probe");
            }
            SwarmEvent::ListenerError { error, .. } => tracing::warn!(%error, "listener error"),
            _ => {}
        }
    }
}
