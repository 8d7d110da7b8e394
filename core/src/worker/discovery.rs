//! Finding the master: an explicit address, else the room file on this host, else what mDNS
//! found on the local network (when enabled).

use std::time::Duration;

use libp2p::Multiaddr;

use super::Runner;
use crate::net::NetEvent;
use crate::room;

impl Runner {
    /// Addresses to try, in order: the explicit address; the room file; what mDNS found (marked
    /// true).
    pub(super) async fn discover(&mut self) -> Vec<(Multiaddr, bool)> {
        if let Some(addr) = &self.master {
            return vec![(addr.clone(), false)];
        }
        let mut waited = false;
        loop {
            while let Ok(event) = self.net_events.try_recv() {
                if let NetEvent::Discovered(peer, addr) = event {
                    let addr = addr.with_p2p(peer).unwrap_or_else(|a| a);
                    if !self.mdns_found.contains(&addr) {
                        self.mdns_found.push_back(addr);
                    }
                }
            }
            let mut addrs: Vec<(Multiaddr, bool)> =
                room::lookup(&self.room_dir, self.room.room_id())
                    .map(|entry| {
                        entry
                            .addrs
                            .iter()
                            .filter_map(|a| a.parse().ok())
                            .map(|a| (a, false))
                            .collect()
                    })
                    .unwrap_or_default();
            addrs.extend(self.mdns_found.drain(..).map(|a| (a, true)));
            if !addrs.is_empty() {
                return addrs;
            }
            if !waited {
                tracing::info!(
                    room_dir = %self.room_dir.display(),
                    "waiting for a master of this room (start one on this host, pass its address, or enable mDNS)"
                );
                waited = true;
            }
            // Same-host discovery reads a file; mDNS answers arrive as events.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                Some(event) = self.net_events.recv() => {
                    if let NetEvent::Discovered(peer, addr) = event {
                        self.mdns_found.push_back(addr.with_p2p(peer).unwrap_or_else(|a| a));
                    }
                }
            }
        }
    }
}
