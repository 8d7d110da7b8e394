//! A behaviour whose connection handler lives in a box of its own, to keep a relay's memory per
//! connection down.
//!
//! libp2p's swarm runs every connection in a task whose future holds the connection handler by
//! value, and the events to and from it in the places it sends or receives one. The relay's
//! handler (relay v2, rendezvous, AutoNAT, identify, ping and the connection limits together) is
//! about 4.7 KB, and the task future came to 17.5 KB a connection (heaptrack of
//! `core/examples/relay_serve` with 1,000 reservations): the compiler's layout had room for the
//! handler several times over. With the handler and its events behind pointers, the future is
//! 2.7 KB, the handler is allocated once, and the swarm's channels keep smaller nodes: 13 KB
//! less a connection in all. Nothing else changes: every call is passed through.

use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::handler::ConnectionEvent;
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// `B` with its connection handler boxed (see the module's documentation).
pub(crate) struct Boxed<B>(pub(crate) B);

/// A connection handler in a box; every call goes to the handler inside.
pub(crate) struct BoxedHandler<H>(Box<H>);

impl<H: ConnectionHandler> ConnectionHandler for BoxedHandler<H> {
    // The events between the behaviour and the handler are boxed too: the task future holds an
    // event in each of the places it sends one from, and the swarm's channels keep a node the
    // size of an event each; the relay's events (a reservation request holds its stream) are
    // hundreds of bytes.
    type FromBehaviour = Box<H::FromBehaviour>;
    type ToBehaviour = Box<H::ToBehaviour>;
    type InboundProtocol = H::InboundProtocol;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = H::InboundOpenInfo;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        self.0.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        self.0.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        self.0.poll(cx).map(|event| event.map_custom(Box::new))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.0.poll_close(cx).map(|event| event.map(Box::new))
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        self.0.on_behaviour_event(*event);
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        self.0.on_connection_event(event);
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Boxed<B> {
    type ConnectionHandler = BoxedHandler<B::ConnectionHandler>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.0
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.0
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
            .map(|handler| BoxedHandler(Box::new(handler)))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.0.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.0
            .handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
            .map(|handler| BoxedHandler(Box::new(handler)))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.0.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.0
            .on_connection_handler_event(peer_id, connection_id, *event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.0.poll(cx).map(|action| action.map_in(Box::new))
    }
}
