//! The libp2p swarm, owned by one task.
//!
//! As in rust-libp2p's file-sharing example: [`spawn`] builds the swarm and starts the task that
//! owns it; [`Net`] is the cloneable handle (commands over a channel, each with a oneshot reply);
//! [`NetEvent`]s come out of a channel. The behaviour struct stays private. Job streams are
//! opened and accepted through `libp2p-stream`'s `Control`, so their bytes never pass through the
//! swarm task. Dropping every handle ends the task.
//!
//! Inbound connections are bounded by [`guard`]: per IP and in total while they are in the
//! handshake or not yet authenticated, each with a deadline.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle};
use libp2p::{
    Multiaddr, PeerId, Swarm, autonat, connection_limits, dcutr, identify, mdns, noise, ping,
    relay, rendezvous, tcp, upnp, yamux,
};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

mod counted;
mod guard;
pub(crate) mod identity;
mod reach;

pub(crate) use counted::{Counted, RelayedCounters};
pub(crate) use guard::Budget;
#[cfg(test)]
pub(crate) use guard::GuardStats;
pub use reach::Path;
pub(crate) use reach::{Bootstrap, parse_relay};

/// Environment variable that turns mDNS discovery on (`1`/`true`).
pub(crate) const MDNS_ENV: &str = "QUEUEXEC_MDNS";

/// Whether mDNS is asked for by `explicit` or, failing that, the environment.
pub(crate) fn mdns_wanted(explicit: Option<bool>) -> bool {
    explicit.unwrap_or_else(|| {
        std::env::var(MDNS_ENV).is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
    })
}

/// How to build a swarm.
#[derive(Debug, Clone)]
pub(crate) struct NetConfig {
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) mdns: bool,
    /// What peers that have not authenticated may hold.
    pub(crate) budget: Budget,
    /// Relays to meet through (reach beyond this host and LAN); `None`: none.
    pub(crate) bootstrap: Option<Bootstrap>,
    /// The node's keypair (kept in a file, see [`identity`]); `None`: a new one for this run.
    pub(crate) identity: Option<libp2p::identity::Keypair>,
}

impl NetConfig {
    /// A probe's network (tests and [`crate::testing::evil`]): listening on `listen`, no mDNS.
    pub(crate) fn for_tests(listen: Vec<Multiaddr>) -> Self {
        NetConfig {
            listen,
            mdns: false,
            budget: Budget::default(),
            bootstrap: None,
            identity: None,
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    // After `limits`: a connection `limits` refuses never reaches the guard's counts.
    guard: guard::Guard,
    stream: libp2p_stream::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    // Reach through relays (see `reach`): present in every swarm, active with a bootstrap.
    relay_client: relay::client::Behaviour,
    dcutr: Toggle<dcutr::Behaviour>,
    autonat: Toggle<autonat::Behaviour>,
    rendezvous: Toggle<rendezvous::client::Behaviour>,
    upnp: Toggle<upnp::tokio::Behaviour>,
}

/// What the swarm task reports.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// A listener reports a new address (without `/p2p`).
    ListenAddr(Multiaddr),
    /// mDNS found a peer.
    Discovered(PeerId, Multiaddr),
    /// A rendezvous point named a peer registered under this room's namespace, with its
    /// addresses (direct ones and relay circuits).
    Found(PeerId, Vec<Multiaddr>),
}

enum Command {
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId>>,
    },
    /// Dials a known peer at any of `addrs` (tried concurrently).
    DialPeer {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<PeerId>>,
    },
    /// How many direct and relayed connections this node has to `peer`.
    Paths {
        peer: PeerId,
        reply: oneshot::Sender<(usize, usize)>,
    },
    /// Asks the rendezvous points for this room's masters (answers come as [`NetEvent::Found`]).
    Discover,
    Disconnect {
        peer: PeerId,
    },
    Authenticated {
        peer: PeerId,
        yes: bool,
    },
    #[cfg(test)]
    GuardStats(oneshot::Sender<GuardStats>),
    Shutdown,
}

/// Handle to the swarm task.
#[derive(Clone)]
pub(crate) struct Net {
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    peer_id: PeerId,
}

impl Net {
    pub(crate) fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// A control to open or accept job streams.
    pub(crate) fn control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    /// Connects to `addr` (with or without `/p2p/<id>`) and returns the peer's id.
    pub(crate) async fn dial(&self, addr: Multiaddr) -> Result<PeerId> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Dial { addr, reply })
            .await
            .map_err(|_| Error::Closed("the network task"))?;
        rx.await.map_err(|_| Error::Closed("the network task"))?
    }

    /// Connects to `peer` at any of `addrs` and returns its id.
    pub(crate) async fn dial_peer(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<PeerId> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::DialPeer { peer, addrs, reply })
            .await
            .map_err(|_| Error::Closed("the network task"))?;
        rx.await.map_err(|_| Error::Closed("the network task"))?
    }

    /// How many direct and how many relayed connections this node has to `peer` now (a
    /// relayed one is closed as soon as a direct one replaces it).
    pub(crate) async fn paths(&self, peer: PeerId) -> (usize, usize) {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Paths { peer, reply })
            .await
            .is_err()
        {
            return (0, 0);
        }
        rx.await.unwrap_or((0, 0))
    }

    /// How this node reaches `peer`: relayed when its only connections run through a relay.
    pub(crate) async fn path(&self, peer: PeerId) -> Path {
        match self.paths(peer).await {
            (0, relayed) if relayed > 0 => Path::Relayed,
            _ => Path::Direct,
        }
    }

    /// Asks the rendezvous points (the bootstrap relays) for this room's masters.
    pub(crate) async fn discover_rendezvous(&self) {
        let _ = self.commands.send(Command::Discover).await;
    }

    /// Closes every connection to `peer`.
    pub(crate) async fn disconnect(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Disconnect { peer }).await;
    }

    /// Marks `peer` as having proved the room token (its connections leave the budget of
    /// unauthenticated peers), or as no longer doing so.
    pub(crate) async fn authenticated(&self, peer: PeerId, yes: bool) {
        let _ = self
            .commands
            .send(Command::Authenticated { peer, yes })
            .await;
    }

    /// What the connection guard has seen.
    #[cfg(test)]
    pub(crate) async fn guard_stats(&self) -> Result<GuardStats> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::GuardStats(reply))
            .await
            .map_err(|_| Error::Closed("the network task"))?;
        rx.await.map_err(|_| Error::Closed("the network task"))
    }

    /// Ends the swarm task: listeners and connections close.
    pub(crate) async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}

/// Parses a multiaddr given by a user, saying what is wrong with it.
pub(crate) fn parse_addr(text: &str, what: &str) -> Result<Multiaddr> {
    text.trim().parse().map_err(|e| {
        Error::config_from(
            format!(
                "{what} {text:?} is not a multiaddr ({e}); write it like /ip4/127.0.0.1/tcp/9000 or /ip4/127.0.0.1/udp/9000/quic-v1"
            ),
            e,
        )
    })
}

/// Builds the swarm, starts listening, and spawns its task on the current tokio runtime.
pub(crate) fn spawn(config: NetConfig) -> Result<(Net, mpsc::UnboundedReceiver<NetEvent>)> {
    let mut listen = config.listen.clone();
    if let Some(bootstrap) = &config.bootstrap {
        bootstrap.extend_listen(&mut listen);
    }
    let reaching = config.bootstrap.is_some();
    let master = config.bootstrap.as_ref().is_some_and(|b| b.master);
    let upnp_on = config.bootstrap.as_ref().is_some_and(|b| b.upnp);
    let identity = config
        .identity
        .clone()
        .unwrap_or_else(libp2p::identity::Keypair::generate_ed25519);
    let (dns_cfg, dns_opts) = resolver_config();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::new().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| Error::network_from("could not set up TCP with Noise and Yamux", e))?
        .with_quic()
        .with_dns_config(dns_cfg, dns_opts)
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| Error::network_from("could not set up the relay client", e))?
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let mdns = if config.mdns {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            // Totals of unauthenticated peers are the guard's (it evicts rather than refuses);
            // authenticated ones are bounded by the master's max_workers.
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_pending_incoming(Some(config.budget.max_pending))
                .with_max_established_per_peer(Some(4));
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                guard: guard::Guard::new(config.budget.clone()),
                stream: libp2p_stream::Behaviour::new(),
                identify: identify::Behaviour::new(
                    identify::Config::new("/queuexec/id/1".into(), key.public())
                        .with_agent_version(format!("queuexec/{}", crate::VERSION)),
                ),
                ping: ping::Behaviour::default(),
                mdns: Toggle::from(mdns),
                relay_client,
                dcutr: Toggle::from(reaching.then(|| dcutr::Behaviour::new(peer_id))),
                autonat: Toggle::from(
                    master.then(|| autonat::Behaviour::new(peer_id, reach::autonat_config())),
                ),
                rendezvous: Toggle::from(
                    reaching.then(|| rendezvous::client::Behaviour::new(key.clone())),
                ),
                upnp: Toggle::from(upnp_on.then(upnp::tokio::Behaviour::default)),
            })
        })
        .map_err(|e| Error::network_from("could not set up the network behaviour", e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        // The deadline of a connection in the transport handshake (TCP or QUIC, then Noise).
        .with_connection_timeout(config.budget.deadline)
        .build();

    for addr in &listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| Error::network_from(format!("cannot listen on {addr}"), e))?;
    }

    let (commands, command_rx) = mpsc::channel(64);
    let (events, event_rx) = mpsc::unbounded_channel();
    let net = Net {
        commands,
        control: swarm.behaviour().stream.new_control(),
        peer_id: *swarm.local_peer_id(),
    };
    let reach = config.bootstrap.map(reach::Reach::new);
    tokio::spawn(
        EventLoop {
            swarm,
            commands: command_rx,
            events,
            pending_dials: HashMap::new(),
            connections: HashMap::new(),
            reach,
        }
        .run(),
    );
    Ok((net, event_rx))
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<NetEvent>,
    pending_dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId>>>,
    /// Every open connection: its peer and whether it runs through a relay.
    connections: HashMap<ConnectionId, (PeerId, bool)>,
    /// Bootstrap state (relays, reservations, registrations); `None` without a bootstrap.
    reach: Option<reach::Reach>,
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(reach::TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.reach_start();
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                _ = tick.tick(), if self.reach.is_some() => self.reach_tick(),
            }
        }
        self.reach_leave().await;
        tracing::debug!("network task ends");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => {
                let peer = addr.iter().find_map(|p| match p {
                    Protocol::P2p(peer) => Some(peer),
                    _ => None,
                });
                let opts = match peer {
                    Some(peer) if self.swarm.is_connected(&peer) => {
                        let _ = reply.send(Ok(peer));
                        return;
                    }
                    Some(peer) => DialOpts::peer_id(peer)
                        .addresses(vec![addr.clone()])
                        .condition(PeerCondition::Always)
                        .build(),
                    None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
                };
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ =
                            reply.send(Err(Error::network_from(format!("cannot dial {addr}"), e)));
                    }
                }
            }
            Command::DialPeer { peer, addrs, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::Always)
                    .build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ =
                            reply.send(Err(Error::network_from(format!("cannot dial {peer}"), e)));
                    }
                }
            }
            Command::Paths { peer, reply } => {
                let _ = reply.send(self.paths(peer));
            }
            Command::Discover => self.reach_discover(),
            Command::Disconnect { peer } => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Authenticated { peer, yes } => {
                self.swarm
                    .behaviour_mut()
                    .guard
                    .set_authenticated(peer, yes);
            }
            #[cfg(test)]
            Command::GuardStats(reply) => {
                let _ = reply.send(self.swarm.behaviour().guard.stats());
            }
            Command::Shutdown => {}
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::debug!(%address, "listening");
                let _ = self.events.send(NetEvent::ListenAddr(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    tracing::debug!(%peer_id, %address, "connected");
                }
                let relayed = endpoint.is_relayed();
                self.connections.insert(connection_id, (peer_id, relayed));
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.reach_connected(peer_id, connection_id, relayed);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.connections.remove(&connection_id);
                if num_established == 0 {
                    self.reach_disconnected(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(Error::network_from("dial failed", error)));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    let _ = self.events.send(NetEvent::Discovered(peer, addr));
                }
            }
            SwarmEvent::ListenerError { error, .. } => tracing::warn!(%error, "listener error"),
            other => self.reach_event(other),
        }
    }
}

impl EventLoop {
    /// Direct and relayed connections to `peer`.
    fn paths(&self, peer: PeerId) -> (usize, usize) {
        let mut counts = (0, 0);
        for (p, relayed) in self.connections.values() {
            if *p == peer {
                if *relayed {
                    counts.1 += 1;
                } else {
                    counts.0 += 1;
                }
            }
        }
        counts
    }
}

/// Whether `addr` is a loopback address (what a same-host room file announces).
pub(crate) fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// The system's resolver configuration for `/dns4`, `/dns6` and `/dns` addresses (a relay or
/// master given by name). Without a readable one (no /etc/resolv.conf) names resolve from the
/// hosts file only, and the user is told why other names do not resolve.
fn resolver_config() -> (libp2p::dns::ResolverConfig, libp2p::dns::ResolverOpts) {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok(conf) => conf,
        Err(e) => {
            tracing::warn!(
                "no DNS configuration ({e}): /dns addresses resolve from the hosts file only"
            );
            (
                libp2p::dns::ResolverConfig::default(),
                libp2p::dns::ResolverOpts::default(),
            )
        }
    }
}
