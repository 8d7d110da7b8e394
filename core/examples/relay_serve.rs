//! For bench/nat.sh: the relay of `queuexec relay` (queuexec_core::relay) in a program of its
//! own, with the system allocator instead of the CLI's mimalloc (on one thread, as the CLI runs
//! it), so that the bench can tell the relay's own memory from the allocator's. Prints its
//! address (as `queuexec relay` does) and serves until stdin closes.
//!
//!   relay_serve LISTEN_MULTIADDR MAX_RESERVATIONS RESERVATIONS_PER_IP_PER_MINUTE

use queuexec_core::relay::{Relay, RelayConfig};

// One thread, as `queuexec relay` runs it (cli/src/main.rs).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!(
            "usage: relay_serve LISTEN_MULTIADDR MAX_RESERVATIONS RESERVATIONS_PER_IP_PER_MINUTE"
        );
        std::process::exit(2);
    }
    let number = |i: usize| -> u64 {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!(
                "relay_serve: argument {} must be a number, got {:?}",
                i + 1,
                args[i]
            );
            std::process::exit(2);
        })
    };
    let config = RelayConfig {
        listen: vec![args[0].clone()],
        max_reservations: number(1) as usize,
        reservations_per_ip_per_minute: number(2) as u32,
        max_connections: (number(1) * 2 + 100) as u32,
        ..RelayConfig::default()
    };
    let relay = match Relay::start(config).await {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("relay_serve: {e}");
            std::process::exit(1);
        }
    };
    for addr in relay.addrs() {
        println!("{addr}");
    }
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await;
    relay.close().await;
}
