//! The master against workers that speak the protocol to take more than their share: a
//! hostile peer (this crate's own handshake and frames, over real libp2p on loopback) hoards
//! jobs with heartbeats, takes every job and disconnects again and again, and inflates its
//! credits; honest workers must still get the jobs, and no job may die of losses alone.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncReadExt;
use futures::future::BoxFuture;
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::{Master, MasterConfig, MasterEvent};
use crate::crypto::{RoomKey, TransferKey};
use crate::job::{JobResult, JobSpec};
use crate::net::{self, Net, NetConfig};
use crate::protocol::{
    self, Direction, SealedReader, SealedWriter, ToMaster, ToWorker, WireJob, WireResult,
    WorkerHandshake,
};
use crate::{Executor, JobInput, TaskFailure, Worker, WorkerConfig};

const TOKEN: &str = "room-token-for-hostile-peers";
const TRANSFER: &str = "transfer-token-0123456789abcdefghij";

fn master_config(room_dir: &Path) -> MasterConfig {
    let mut config = MasterConfig::new(TOKEN, TRANSFER);
    config.room_dir = Some(room_dir.to_path_buf());
    config.mdns = Some(false);
    config.lease_ttl = Duration::from_millis(500);
    config.retry_backoff = Duration::from_millis(10);
    config
}

/// Returns the job's data.
struct Echo;

impl Executor for Echo {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(job.data)
        })
    }
}

async fn honest_worker(room_dir: &Path, name: &str) -> Worker {
    let mut config = WorkerConfig::new(TOKEN, TRANSFER);
    config.room_dir = Some(room_dir.to_path_buf());
    config.mdns = Some(false);
    config.workplace = room_dir.join(name);
    config.name = name.into();
    config.concurrency = 2;
    config.prefetch = 1;
    Worker::start(config, Arc::new(Echo))
        .await
        .expect("honest worker")
        .0
}

/// A peer that holds the tokens and speaks the protocol, but does what it likes with it. One
/// identity (peer id) across all its sessions.
struct Hostile {
    net: Net,
    room: RoomKey,
    key: TransferKey,
    _events: mpsc::UnboundedReceiver<net::NetEvent>,
}

/// One session of the hostile peer: what it was sent arrives on `jobs`.
struct HostileSession {
    master: PeerId,
    out: mpsc::UnboundedSender<ToMaster>,
    jobs: mpsc::UnboundedReceiver<WireJob>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Hostile {
    fn new() -> Hostile {
        let (net, events) = net::spawn(NetConfig::for_tests(Vec::new())).expect("network");
        Hostile {
            net,
            room: RoomKey::from_token(TOKEN).expect("room key"),
            key: TransferKey::from_token(TRANSFER).expect("transfer key"),
            _events: events,
        }
    }

    /// Joins the master and announces `window` credits (trying again while the previous
    /// connection is still closing).
    async fn join(&self, master: &Master, window: u32) -> HostileSession {
        let addr = master
            .listen_addrs()
            .into_iter()
            .find(|a| a.contains("/tcp/"))
            .expect("a TCP address");
        let addr = net::parse_addr(&addr, "master").expect("addr");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let (peer, stream) = loop {
            match tokio::time::timeout_at(deadline, self.connect(addr.clone())).await {
                Ok(Ok(joined)) => break joined,
                Ok(Err(e)) => {
                    assert!(tokio::time::Instant::now() < deadline, "cannot join: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => panic!("no join within 10 s"),
            }
        };
        let (reader, writer) = stream.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<ToMaster>();
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        let mut writer = SealedWriter::new(self.key.clone(), Direction::ToMaster, writer);
        let write_task = tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if writer.send(&message).await.is_err() || writer.flush().await.is_err() {
                    return;
                }
            }
            writer.close().await;
        });
        let mut reader = SealedReader::new(self.key.clone(), Direction::ToWorker, reader);
        let read_task = tokio::spawn(async move {
            while let Ok(Some(message)) = reader.next::<ToWorker>().await {
                if let ToWorker::Jobs { jobs, .. } = message {
                    for job in jobs {
                        let _ = jobs_tx.send(job);
                    }
                }
            }
        });
        let _ = out.send(ToMaster::Credits(window));
        HostileSession {
            master: peer,
            out,
            jobs,
            tasks: vec![write_task, read_task],
        }
    }

    async fn connect(&self, addr: libp2p::Multiaddr) -> crate::Result<(PeerId, libp2p::Stream)> {
        let peer = self.net.dial(addr).await?;
        let mut stream = self
            .net
            .control()
            .open_stream(peer, protocol::JOB_PROTOCOL)
            .await
            .map_err(|e| crate::Error::network(e.to_string()))?;
        WorkerHandshake {
            room: &self.room,
            key: &self.key,
            master: &peer.to_string(),
            worker: &self.net.peer_id().to_string(),
            name: "hostile",
            concurrency: 1,
        }
        .run(&mut stream)
        .await?;
        Ok((peer, stream))
    }

    /// Ends the session and the connection.
    async fn leave(&self, session: HostileSession) {
        drop(session.out);
        for task in session.tasks {
            task.abort();
        }
        self.net.disconnect(session.master).await;
    }
}

impl HostileSession {
    /// Jobs received until none arrives for `quiet`.
    async fn take(&mut self, quiet: Duration) -> Vec<WireJob> {
        let mut jobs = Vec::new();
        while let Ok(Some(job)) = tokio::time::timeout(quiet, self.jobs.recv()).await {
            jobs.push(job);
        }
        jobs
    }

    /// Sends heartbeats every `period` while the returned task runs.
    fn heartbeat(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let out = self.out.clone();
        tokio::spawn(async move {
            while out.send(ToMaster::Heartbeat).is_ok() {
                tokio::time::sleep(period).await;
            }
        })
    }
}

/// Results until `n` arrived (and the warnings seen meanwhile), or panics after `limit`.
async fn results(
    events: &mut mpsc::UnboundedReceiver<MasterEvent>,
    n: usize,
    limit: Duration,
) -> (Vec<JobResult>, Vec<String>) {
    let deadline = tokio::time::Instant::now() + limit;
    let (mut out, mut warnings) = (Vec::new(), Vec::new());
    while out.len() < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(MasterEvent::Result(r))) => out.push(r),
            Ok(Some(MasterEvent::Warning(w))) => warnings.push(w),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the master's events ended"),
            Err(_) => panic!(
                "only {} of {n} results within {limit:?}; warnings: {warnings:?}",
                out.len()
            ),
        }
    }
    (out, warnings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hoarding_worker_cannot_keep_the_queue_from_an_honest_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = master_config(dir.path());
    config.max_lease = Duration::from_secs(2);
    let (master, mut events) = Master::start(config).await.expect("master");
    let hostile = Hostile::new();
    // It asks for a million jobs and keeps every lease alive with heartbeats, running none.
    let mut hoard = hostile.join(&master, 1 << 20).await;
    let beat = hoard.heartbeat(Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(200)).await;
    master
        .push_many((0..50).map(|i| JobSpec::new(i.to_string())).collect())
        .await
        .expect("push");
    let first = hoard.take(Duration::from_millis(300)).await;
    assert_eq!(first.len(), 50, "it did take the whole queue at first");
    let honest = honest_worker(dir.path(), "honest").await;

    let (done, warnings) = results(&mut events, 50, Duration::from_secs(25)).await;
    assert!(
        done.iter()
            .all(|r| r.outcome.is_ok() && r.worker.name == "honest"),
        "{done:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("quarantined")),
        "the hoarder was quarantined: {warnings:?}"
    );
    beat.abort();
    hostile.leave(hoard).await;
    honest.close().await;
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_takes_everything_and_disconnects_again_and_again_kills_no_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = master_config(dir.path());
    config.max_credits = 1_000;
    let (master, mut events) = Master::start(config).await.expect("master");
    master
        .push_many((0..300).map(|i| JobSpec::new(i.to_string())).collect())
        .await
        .expect("push");
    let hostile = Hostile::new();
    let mut taken = Vec::new();
    for _ in 0..6 {
        let mut session = hostile.join(&master, 1_000).await;
        taken.push(session.take(Duration::from_millis(300)).await.len());
        hostile.leave(session).await;
        // Let the master see the connection go before the next round.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while master.stats().await.expect("stats").running > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "leases never came back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        taken[0], 300,
        "the first round took the whole queue: {taken:?}"
    );
    assert!(
        taken[3..].iter().all(|n| *n == 0),
        "after three rounds of losses the peer gets nothing: {taken:?}"
    );
    let honest = honest_worker(dir.path(), "honest").await;
    let (done, warnings) = results(&mut events, 300, Duration::from_secs(30)).await;
    let failed: Vec<&JobResult> = done.iter().filter(|r| r.outcome.is_err()).collect();
    assert!(failed.is_empty(), "jobs died of losses alone: {failed:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&hostile.net.peer_id().to_string()) && w.contains("quarantined")),
        "the looping peer was quarantined by its peer id: {warnings:?}"
    );
    honest.close().await;
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_never_exceed_the_announced_window_nor_the_masters_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = master_config(dir.path());
    config.max_credits = 4;
    let (master, _events) = Master::start(config).await.expect("master");
    master
        .push_many((0..40).map(|i| JobSpec::new(i.to_string())).collect())
        .await
        .expect("push");

    // Announces 2, then asks for more and sends results for jobs it never held.
    let hostile = Hostile::new();
    let mut small = hostile.join(&master, 2).await;
    let small_beat = small.heartbeat(Duration::from_millis(100));
    let got = small.take(Duration::from_millis(300)).await;
    assert_eq!(got.len(), 2);
    let _ = small.out.send(ToMaster::Credits(1_000));
    let key = TransferKey::from_token(TRANSFER).expect("key");
    let forged: Vec<WireResult> = (0..50)
        .map(|i| {
            let id = format!("no-such-job-{i}");
            WireResult {
                body: key.seal(&protocol::result_context(&id, true), b"1"),
                id,
                attempt: 1,
                ok: true,
            }
        })
        .collect();
    let _ = small.out.send(ToMaster::Results(forged));
    let more = small.take(Duration::from_millis(500)).await;
    assert!(
        more.is_empty(),
        "credits beyond the announced window gave {} more jobs",
        more.len()
    );

    // Announces a million: the master's cap holds.
    let other = Hostile::new();
    let mut greedy = other.join(&master, 1 << 20).await;
    let greedy_beat = greedy.heartbeat(Duration::from_millis(100));
    let got = greedy.take(Duration::from_millis(300)).await;
    assert_eq!(got.len(), 4, "the master's cap");

    // An accepted result frees exactly one place.
    let job = &got[0];
    let body = key.seal(&protocol::result_context(&job.id, true), b"{\"ok\":1}");
    let _ = greedy.out.send(ToMaster::Results(vec![WireResult {
        id: job.id.clone(),
        attempt: job.attempt,
        ok: true,
        body,
    }]));
    let next = greedy.take(Duration::from_millis(300)).await;
    assert_eq!(next.len(), 1);
    let stats = master.stats().await.expect("stats");
    assert_eq!((stats.done, stats.running), (1, 2 + 4));
    small_beat.abort();
    greedy_beat.abort();
    hostile.leave(small).await;
    other.leave(greedy).await;
    master.close().await.expect("close");
}
