//! Meeting through a relay, on loopback: a master and workers that share no room directory and
//! use no mDNS find each other only through the relay's rendezvous point. (Hole punching and
//! relayed job traffic across real NATs: tests/netns-nat.sh.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use queuexec_core::relay::{Relay, RelayConfig};
use queuexec_core::{
    Executor, JobInput, JobSpec, Master, MasterConfig, StoreConfig, TaskFailure, Worker,
    WorkerConfig, WorkerEvent,
};

mod common;

use common::{TRANSFER, collect, master_config, worker_config};

struct Echo;

impl Executor for Echo {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        Box::pin(async move { Ok(job.data) })
    }
}

const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

async fn loopback_relay() -> Relay {
    Relay::start(RelayConfig {
        listen: vec![LOOPBACK.into(), "/ip4/127.0.0.1/udp/0/quic-v1".into()],
        autonat_any_ip: true,
        ..RelayConfig::default()
    })
    .await
    .expect("the relay starts")
}

/// A master on loopback, in a room directory of its own, that meets workers through `boot`.
fn master_through(room_dir: &Path, boot: &str) -> MasterConfig {
    let mut config = master_config(room_dir);
    config.listen = vec![LOOPBACK.into()];
    config.bootstrap = vec![boot.into()];
    config
}

/// A worker on loopback, in a room directory of its own, that finds its master through `boot`.
fn worker_through(dir: &Path, name: &str, boot: &str) -> WorkerConfig {
    let mut config = worker_config(
        &dir.join(format!("rooms-{name}")),
        dir.join(format!("wp-{name}")),
        name,
    );
    config.listen = vec![LOOPBACK.into()];
    config.bootstrap = vec![boot.into()];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_finds_its_master_only_through_the_relay_and_another_room_finds_nothing() {
    let relay = loopback_relay().await;
    let addrs = relay.addrs();
    assert_eq!(
        addrs.len(),
        2,
        "one dialable address per listener: {addrs:?}"
    );
    let boot = addrs
        .iter()
        .find(|a| a.contains("/tcp/"))
        .expect("a TCP address")
        .clone();
    assert!(
        boot.starts_with("/ip4/127.0.0.1/tcp/")
            && boot.ends_with(&format!("/p2p/{}", relay.peer_id())),
        "{boot}"
    );

    // Separate room directories: the room file cannot bring them together.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = master_through(&dir.path().join("rooms-master"), &boot);
    let (master, mut events) = Master::start(config).await.expect("master");

    let config = worker_through(dir.path(), "w", &boot);
    let (worker, mut worker_events) = Worker::start(config, Arc::new(Echo)).await.expect("worker");

    let mut config = WorkerConfig::new("another-room", TRANSFER);
    config.room_dir = Some(dir.path().join("rooms-x"));
    config.mdns = Some(false);
    config.workplace = dir.path().join("wp-x");
    config.name = "intruder".into();
    config.listen = vec![LOOPBACK.into()];
    config.bootstrap = vec![boot];
    let (intruder, mut intruder_events) = Worker::start(config, Arc::new(Echo))
        .await
        .expect("intruder");

    let path = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match worker_events.recv().await {
                Some(WorkerEvent::Connected { path, .. }) => return path,
                Some(_) => continue,
                None => panic!("the worker's events ended"),
            }
        }
    })
    .await
    .expect("the worker joins the master through the rendezvous within 20 s");
    // On loopback every address is reachable: the path is direct (through the circuit it
    // would have been upgraded by DCUtR).
    assert_eq!(path, queuexec_core::Path::Direct);

    let jobs: Vec<JobSpec> = (0..200).map(|i| JobSpec::new(format!("{i}"))).collect();
    master.push_many(jobs).await.expect("push");
    let results = collect(&mut events, 200).await;
    assert!(
        results
            .iter()
            .all(|r| r.worker.name == "w" && r.outcome.is_ok())
    );
    let stats = worker.stats();
    assert_eq!(stats.done, 200);
    assert_eq!(stats.path, Some(queuexec_core::Path::Direct));
    assert_eq!(stats.relayed_bytes, 0, "nothing went through the relay");
    let master_stats = master.stats().await.expect("stats");
    assert_eq!(master_stats.relayed_workers, 0);
    assert_eq!(master_stats.relayed_bytes, 0);

    // The relay served a registration; the other room's worker found nothing there.
    let relay_stats = relay.stats().await.expect("relay stats");
    assert!(relay_stats.registrations >= 1, "{relay_stats:?}");
    assert!(!intruder.stats().connected);
    while let Ok(event) = intruder_events.try_recv() {
        assert!(
            !matches!(event, WorkerEvent::Connected { .. }),
            "the other room's worker joined a master: {event:?}"
        );
    }

    intruder.close().await;
    worker.close().await;
    master.close().await.expect("close");
    relay.close().await;
}

#[tokio::test]
async fn a_bootstrap_address_without_a_peer_id_is_refused_with_what_to_give() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = master_config(dir.path());
    config.bootstrap = vec!["/ip4/127.0.0.1/tcp/4001".into()];
    let err = match Master::start(config).await {
        Ok(_) => panic!("a bootstrap without /p2p/ was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("/p2p/") && err.contains("queuexec relay"),
        "{err}"
    );

    let mut config = worker_config(dir.path(), dir.path().join("wp"), "w");
    config.bootstrap = vec!["not an address".into()];
    let err = match Worker::start(config, Arc::new(Echo)).await {
        Ok(_) => panic!("a bad bootstrap was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not a multiaddr"), "{err}");
}

#[tokio::test]
async fn a_relay_with_a_bad_listen_address_says_so() {
    let err = match Relay::start(RelayConfig {
        listen: vec!["127.0.0.1:4001".into()],
        ..RelayConfig::default()
    })
    .await
    {
        Ok(_) => panic!("a bad listen address was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not a multiaddr"), "{err}");
}

#[tokio::test]
async fn a_relay_with_an_identity_file_keeps_its_peer_id_and_addresses_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("relay.key");
    let start = || {
        Relay::start(RelayConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            identity: Some(key.clone()),
            ..RelayConfig::default()
        })
    };
    let first = start().await.expect("the relay starts");
    let id = first.peer_id();
    first.close().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(
            mode, 0o600,
            "the relay's key must be readable by its owner only"
        );
    }
    let second = start().await.expect("the relay starts again");
    assert_eq!(
        second.peer_id(),
        id,
        "the same key file gives the same peer id"
    );
    assert!(
        second
            .addrs()
            .iter()
            .all(|a| a.ends_with(&format!("/p2p/{id}")))
    );
    second.close().await;

    // Without the file, a new peer id each time.
    let other = Relay::start(RelayConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        ..RelayConfig::default()
    })
    .await
    .expect("the relay starts");
    assert_ne!(other.peer_id(), id);
    other.close().await;

    // A file that is not a key is refused, naming it.
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not a key").expect("write");
    let err = match Relay::start(RelayConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        identity: Some(bad),
        ..RelayConfig::default()
    })
    .await
    {
        Ok(_) => panic!("a bad identity file was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("bad.key") && err.contains("identity"), "{err}");
}

#[tokio::test]
async fn a_master_on_a_store_keeps_its_peer_id_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("jobs.sqlite");
    let start = || {
        let mut config = master_config(&dir.path().join("rooms"));
        config.listen = vec![LOOPBACK.into()];
        config.store = StoreConfig::Sqlite(store.clone());
        Master::start(config)
    };
    let (first, _events) = start().await.expect("master");
    let id = first.peer_id();
    first.close().await.expect("close");
    let (second, _events) = start().await.expect("master again");
    assert_eq!(second.peer_id(), id, "the store's key keeps the peer id");
    second.close().await.expect("close");
    assert!(dir.path().join("jobs.sqlite.key").exists());

    // Without a store, a new one each run.
    let mut config = master_config(&dir.path().join("rooms"));
    config.listen = vec![LOOPBACK.into()];
    let (memory, _events) = Master::start(config).await.expect("master");
    assert_ne!(memory.peer_id(), id);
    memory.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_given_by_name_is_found_through_dns() {
    let relay = loopback_relay().await;
    let boot = relay
        .addrs()
        .into_iter()
        .find(|a| a.contains("/tcp/"))
        .expect("a TCP address")
        .replacen("/ip4/127.0.0.1/", "/dns4/localhost/", 1);
    assert!(boot.starts_with("/dns4/localhost/tcp/"), "{boot}");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = master_through(&dir.path().join("rooms-master"), &boot);
    let (master, mut events) = Master::start(config).await.expect("master");
    let config = worker_through(dir.path(), "named", &boot);
    let (worker, _worker_events) = Worker::start(config, Arc::new(Echo)).await.expect("worker");

    let jobs: Vec<JobSpec> = (0..20).map(|i| JobSpec::new(format!("{i}"))).collect();
    master.push_many(jobs).await.expect("push");
    let results = collect(&mut events, 20).await;
    assert!(
        results
            .iter()
            .all(|r| r.worker.name == "named" && r.outcome.is_ok())
    );
    let relay_stats = relay.stats().await.expect("relay stats");
    assert!(relay_stats.registrations >= 1, "{relay_stats:?}");
    worker.close().await;
    master.close().await.expect("close");
    relay.close().await;
}
