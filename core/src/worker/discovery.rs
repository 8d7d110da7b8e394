//! Finding the master: an explicit address, else the room file on this host, else what mDNS
//! found on the local network (when enabled), else what the bootstrap relays' rendezvous points
//! name for this room (when a bootstrap is set).

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

use super::Runner;
use crate::net::NetEvent;
use crate::room;

/// How often a waiting worker asks the rendezvous points again.
const RENDEZVOUS_EVERY: Duration = Duration::from_secs(1);

/// A master to try.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// Its peer id, when known before dialling.
    pub(super) peer: Option<PeerId>,
    /// Addresses to dial (at once).
    pub(super) addrs: Vec<Multiaddr>,
    /// Found on a shared medium (mDNS, rendezvous), where other rooms' masters may answer:
    /// a refusal there means "not ours", not "stop".
    pub(super) shared: bool,
}

impl Target {
    fn addr(addr: Multiaddr, shared: bool) -> Target {
        Target {
            peer: None,
            addrs: vec![addr],
            shared,
        }
    }

    /// What a log line names it by.
    pub(super) fn describe(&self) -> String {
        match (&self.peer, self.addrs.first()) {
            (Some(peer), _) => peer.to_string(),
            (None, Some(addr)) => addr.to_string(),
            (None, None) => "nothing".into(),
        }
    }
}

impl Runner {
    fn take_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Discovered(peer, addr) => {
                let addr = addr.with_p2p(peer).unwrap_or_else(|a| a);
                if !self.mdns_found.contains(&addr) {
                    self.mdns_found.push_back(addr);
                }
            }
            NetEvent::Found(peer, addrs) => {
                if !addrs.is_empty() && !self.rendezvous_found.iter().any(|t| t.peer == Some(peer))
                {
                    self.rendezvous_found.push_back(Target {
                        peer: Some(peer),
                        addrs,
                        shared: true,
                    });
                }
            }
            NetEvent::ListenAddr(_) => {}
        }
    }

    /// Masters to try, in order: the explicit address; the room file; what mDNS found; what
    /// the rendezvous points named.
    pub(super) async fn discover(&mut self) -> Vec<Target> {
        if let Some(addr) = &self.master {
            return vec![Target::addr(addr.clone(), false)];
        }
        let mut waited = false;
        let mut asked: Option<Instant> = None;
        loop {
            while let Ok(event) = self.net_events.try_recv() {
                self.take_event(event);
            }
            let mut targets: Vec<Target> = room::lookup(&self.room_dir, self.room.room_id())
                .map(|entry| {
                    entry
                        .addrs
                        .iter()
                        .filter_map(|a| a.parse().ok())
                        .map(|a| Target::addr(a, false))
                        .collect()
                })
                .unwrap_or_default();
            targets.extend(self.mdns_found.drain(..).map(|a| Target::addr(a, true)));
            targets.extend(self.rendezvous_found.drain(..));
            if !targets.is_empty() {
                return targets;
            }
            if self.reaching && asked.is_none_or(|at| at.elapsed() >= RENDEZVOUS_EVERY) {
                self.net.discover_rendezvous().await;
                asked = Some(Instant::now());
            }
            if !waited {
                tracing::info!(
                    room_dir = %self.room_dir.display(),
                    "waiting for a master of this room (start one on this host, pass its address, enable mDNS, or give a bootstrap relay)"
                );
                waited = true;
            }
            // Same-host discovery reads a file; mDNS and rendezvous answers arrive as events.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                Some(event) = self.net_events.recv() => self.take_event(event),
            }
        }
    }
}
