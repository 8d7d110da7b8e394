//! `queuexec relay`: the meeting point masters and workers behind NATs find each other through
//! (relay v2, rendezvous, AutoNAT, identify, ping; see `queuexec_core::relay`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use queuexec_core::relay::{Relay, RelayConfig};

#[derive(Args, Debug, Clone)]
pub(crate) struct RelayArgs {
    /// Multiaddr to listen on (repeatable). Default: TCP and QUIC on port 4001 of every
    /// interface.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// The address others reach this host at, when it is not a listen address (behind a port
    /// forward; repeatable). Default: every listen address that is not loopback.
    #[arg(long = "external", value_name = "MULTIADDR")]
    external: Vec<String>,
    /// Write the relay's dialable multiaddrs (with /p2p/<peer id>), one a line, to this file.
    #[arg(long, value_name = "PATH")]
    addr_file: Option<PathBuf>,
    /// Reservations held at once (peers reachable through this relay).
    #[arg(long, default_value_t = RelayConfig::default().max_reservations)]
    max_reservations: usize,
    /// Reservations one peer may hold.
    #[arg(long, default_value_t = RelayConfig::default().max_reservations_per_peer)]
    max_reservations_per_peer: usize,
    /// Seconds a reservation lasts before it must be renewed.
    #[arg(long, default_value_t = RelayConfig::default().reservation_duration.as_secs())]
    reservation_secs: u64,
    /// Relayed circuits open at once.
    #[arg(long, default_value_t = RelayConfig::default().max_circuits)]
    max_circuits: usize,
    /// Circuits one peer may have open.
    #[arg(long, default_value_t = RelayConfig::default().max_circuits_per_peer)]
    max_circuits_per_peer: usize,
    /// Seconds one circuit may stay open.
    #[arg(long, default_value_t = RelayConfig::default().max_circuit_duration.as_secs())]
    max_circuit_secs: u64,
    /// Bytes one circuit may carry (both directions together).
    #[arg(long, default_value_t = RelayConfig::default().max_circuit_bytes)]
    max_circuit_bytes: u64,
    /// Reservations one IP address may make per minute.
    #[arg(long, default_value_t = RelayConfig::default().reservations_per_ip_per_minute)]
    reservations_per_ip_per_minute: u32,
    /// Circuits one IP address may open per minute.
    #[arg(long, default_value_t = RelayConfig::default().circuits_per_ip_per_minute)]
    circuits_per_ip_per_minute: u32,
    /// Connections held at once.
    #[arg(long, default_value_t = RelayConfig::default().max_connections)]
    max_connections: u32,
    /// Connections one peer may hold.
    #[arg(long, default_value_t = RelayConfig::default().max_connections_per_peer)]
    max_connections_per_peer: u32,
    /// Rendezvous registrations held at once.
    #[arg(long, default_value_t = RelayConfig::default().max_registrations)]
    max_registrations: usize,
    /// AutoNAT: also dial back private and documentation addresses (a relay inside a LAN or a
    /// test network). Off by default: an internet relay must not probe private networks.
    #[arg(long)]
    autonat_any_ip: bool,
    /// Keep the relay's key in this file, so its peer id and printed addresses stay the same
    /// across restarts (made, readable by its owner only, on the first start; read afterwards).
    /// Without it the peer id is new at every start.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

/// A relay holds many small, long-lived connections. mimalloc (the CLI's allocator) asks for
/// transparent huge pages for its arenas, so that each 2 MiB page touched by a few connections
/// is resident whole: 111 MB with 1,000 reservations against 69 MB without (bench/nat.sh,
/// release build). Huge pages buy a relay nothing; turn them off for this process (the CLI's
/// mimalloc is also built with `no_thp`, so that it does not ask for them before `main`).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag of this process.
    unsafe {
        if libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0 {
            tracing::debug!(
                "could not turn transparent huge pages off: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// mimalloc's options for a relay, set at its start (`mi_option_set`; the same as the
/// environment variables `MIMALLOC_PURGE_DELAY=0 MIMALLOC_PAGE_COMMIT_ON_DEMAND=1`, which a user
/// may still set to override them, since mimalloc reads its environment before `main`):
/// - purge delay 0: pages a burst of handshakes leaves free go back to the system at once
///   instead of a second later (mimalloc 3's default, and it only looks again when it
///   allocates);
/// - commit on demand: a page's memory is committed as it is used rather than whole.
///
/// With 1,000 reservations (core/examples/relay_serve with mimalloc, one thread): 47.7 MB
/// resident against 54.8 MB with mimalloc's defaults. The option numbers are those of
/// mimalloc 3's `mi_option_t` (libmimalloc-sys builds mimalloc 3 unless its `v2` feature is on);
/// with another major version the options are left alone.
fn tune_allocator() {
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const MI_OPTION_PAGE_COMMIT_ON_DEMAND: libmimalloc_sys::mi_option_t = 40;
    // SAFETY: mi_version and mi_option_set take and return plain integers; mimalloc's options
    // are atomics that may be set while it allocates.
    unsafe {
        let version = libmimalloc_sys::mi_version();
        if !(30000..40000).contains(&version) {
            tracing::debug!(
                version,
                "mimalloc is not version 3: its options are left alone"
            );
            return;
        }
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
        if std::env::var_os("MIMALLOC_PAGE_COMMIT_ON_DEMAND").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_PAGE_COMMIT_ON_DEMAND, 1);
        }
    }
}

pub(crate) async fn run(args: RelayArgs) -> Result<()> {
    no_huge_pages();
    tune_allocator();
    let defaults = RelayConfig::default();
    let config = RelayConfig {
        listen: if args.listen.is_empty() {
            defaults.listen
        } else {
            args.listen
        },
        external: args.external,
        max_reservations: args.max_reservations,
        max_reservations_per_peer: args.max_reservations_per_peer,
        reservation_duration: Duration::from_secs(args.reservation_secs),
        max_circuits: args.max_circuits,
        max_circuits_per_peer: args.max_circuits_per_peer,
        max_circuit_duration: Duration::from_secs(args.max_circuit_secs),
        max_circuit_bytes: args.max_circuit_bytes,
        reservations_per_ip_per_minute: args.reservations_per_ip_per_minute,
        circuits_per_ip_per_minute: args.circuits_per_ip_per_minute,
        max_connections: args.max_connections,
        max_connections_per_peer: args.max_connections_per_peer,
        max_registrations: args.max_registrations,
        autonat_any_ip: args.autonat_any_ip,
        identity: args.identity,
    };
    tracing::info!(
        max_reservations = config.max_reservations,
        max_circuits = config.max_circuits,
        max_circuit_secs = config.max_circuit_duration.as_secs(),
        max_circuit_bytes = config.max_circuit_bytes,
        "relay limits"
    );
    let relay = Relay::start(config).await?;
    let addrs = relay.addrs();
    if let Some(path) = &args.addr_file {
        crate::master_cmd::write_atomic(path, &format!("{}\n", addrs.join("\n")))?;
    }
    for addr in &addrs {
        println!("{addr}");
    }
    tracing::info!(
        peer = %relay.peer_id(),
        "relay serving: circuit relay v2, rendezvous, AutoNAT, identify, ping; pass an address above as --bootstrap"
    );
    tokio::signal::ctrl_c().await?;
    tracing::info!("interrupted: closing the relay");
    relay.close().await;
    Ok(())
}
