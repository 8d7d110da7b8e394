//! Load for bench/nat.sh: N peers (each its own libp2p identity and swarm, in this one process)
//! take a circuit relay v2 reservation at a relay and hold it until stdin closes or the given
//! seconds pass. Prints `reservations: N accepted in S s` once every one is accepted (or says
//! how many were, and why the others were not).
//!
//!   cargo run -p queuexec-core --example relay_reservations -- RELAY_MULTIADDR N [HOLD_SECS]
//!
//! RELAY_MULTIADDR ends in /p2p/<relay peer id> (what `queuexec relay` prints). The relay's
//! per-IP rate caps must allow N reservations a minute from one address (`queuexec relay
//! --reservations-per-ip-per-minute`), or the peers must come from many addresses.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, noise, relay, tcp, yamux};
use tokio::sync::mpsc;

#[derive(Debug)]
enum Outcome {
    Accepted,
    Failed(String),
}

async fn one_peer(relay_addr: Multiaddr, hold: Duration, report: mpsc::UnboundedSender<Outcome>) {
    let built = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::new().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .and_then(|b| b.with_relay_client(noise::Config::new, yamux::Config::default));
    let builder = match built {
        Ok(builder) => builder,
        Err(e) => {
            let _ = report.send(Outcome::Failed(format!("building the swarm: {e}")));
            return;
        }
    };
    let mut swarm = match builder.with_behaviour(|_, relay_client| relay_client) {
        Ok(b) => b
            .with_swarm_config(|c| c.with_idle_connection_timeout(hold))
            .build(),
        Err(e) => {
            let _ = report.send(Outcome::Failed(format!("building the swarm: {e}")));
            return;
        }
    };
    if let Err(e) = swarm.listen_on(relay_addr.with(Protocol::P2pCircuit)) {
        let _ = report.send(Outcome::Failed(format!("listen on the circuit: {e}")));
        return;
    }
    let deadline = tokio::time::sleep(hold);
    tokio::pin!(deadline);
    let mut reported = false;
    loop {
        tokio::select! {
            () = &mut deadline => break,
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(relay::client::Event::ReservationReqAccepted { .. }) if !reported => {
                    reported = true;
                    let _ = report.send(Outcome::Accepted);
                }
                SwarmEvent::ListenerClosed { reason, .. } if !reported => {
                    reported = true;
                    let why = match reason {
                        Ok(()) => "the circuit listener closed".to_string(),
                        Err(e) => format!("the reservation failed: {e}"),
                    };
                    let _ = report.send(Outcome::Failed(why));
                }
                SwarmEvent::OutgoingConnectionError { error, .. } if !reported => {
                    reported = true;
                    let _ = report.send(Outcome::Failed(format!("dial: {error}")));
                }
                _ => {}
            },
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: relay_reservations RELAY_MULTIADDR N [HOLD_SECS]");
        std::process::exit(2);
    }
    let relay_addr: Multiaddr = match args[0].parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("relay_reservations: {:?} is not a multiaddr: {e}", args[0]);
            std::process::exit(2);
        }
    };
    let n: usize = args[1].parse().unwrap_or_else(|_| {
        eprintln!("relay_reservations: N must be a number, got {:?}", args[1]);
        std::process::exit(2);
    });
    let hold = Duration::from_secs(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(600));

    let started = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for i in 0..n {
        tokio::spawn(one_peer(relay_addr.clone(), hold, tx.clone()));
        // A gentle ramp: 50 new peers at a time.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(tx);
    let (mut accepted, mut failed) = (0usize, Vec::new());
    let wait = tokio::time::sleep(Duration::from_secs(120));
    tokio::pin!(wait);
    while accepted + failed.len() < n {
        tokio::select! {
            () = &mut wait => break,
            outcome = rx.recv() => match outcome {
                Some(Outcome::Accepted) => accepted += 1,
                Some(Outcome::Failed(why)) => failed.push(why),
                None => break,
            },
        }
    }
    if accepted == n {
        println!(
            "reservations: {n} accepted in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "reservations: {accepted} of {n} accepted; {} failed (first: {:?})",
            failed.len(),
            failed.first()
        );
    }
    // Hold them until stdin closes (the bench reads the relay's memory meanwhile) or the hold
    // time ends.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    });
    tokio::select! {
        _ = stdin_closed => {}
        () = tokio::time::sleep(hold) => {}
    }
    std::process::exit(if accepted == n { 0 } else { 1 });
}
