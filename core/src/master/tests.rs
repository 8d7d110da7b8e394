//! The master against workers that speak the protocol to take more than their share: a
//! hostile peer (this crate's own handshake and frames, over real libp2p on loopback) hoards
//! jobs with heartbeats, takes every job and disconnects again and again, and inflates its
//! credits; honest workers must still get the jobs, and no job may die of losses alone.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::{Master, MasterConfig, MasterEvent};
use crate::crypto::TransferKey;
use crate::job::{JobResult, JobSpec};
use crate::protocol::{self, ToMaster, WireResult};
use crate::testing::evil::{EvilPeer, EvilSession};
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

/// The evil peer of [`crate::testing::evil`] with this file's tokens.
fn evil_peer() -> EvilPeer {
    EvilPeer::new(TOKEN, TRANSFER).expect("evil peer")
}

/// Joins `master` over TCP, announcing `window` credits.
async fn join(peer: &EvilPeer, master: &Master, window: u32) -> EvilSession {
    let addr = master
        .listen_addrs()
        .into_iter()
        .find(|a| a.contains("/tcp/"))
        .expect("a TCP address");
    peer.join(&addr, window).await.expect("join")
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
    let hostile = evil_peer();
    // It asks for a million jobs and keeps every lease alive with heartbeats, running none.
    let mut hoard = join(&hostile, &master, 1 << 20).await;
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
    let hostile = evil_peer();
    let mut taken = Vec::new();
    for _ in 0..6 {
        let mut session = join(&hostile, &master, 1_000).await;
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
    let hostile = evil_peer();
    let mut small = join(&hostile, &master, 2).await;
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
    let other = evil_peer();
    let mut greedy = join(&other, &master, 1 << 20).await;
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

/// Answers every call as a front end does, counting the lookup writes it was asked to make.
fn answer_calls(
    master: &Master,
    mut events: mpsc::UnboundedReceiver<MasterEvent>,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicUsize>,
    mpsc::UnboundedReceiver<String>,
) {
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (warn_tx, warnings) = mpsc::unbounded_channel();
    let (master, seen) = (master.clone(), writes.clone());
    let task = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                MasterEvent::Call(call) => {
                    if matches!(call.request, crate::calls::WorkerRequest::SetLookup { .. }) {
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    master.answer(call.id, Ok("null".into()));
                }
                MasterEvent::Warning(w) => {
                    let _ = warn_tx.send(w);
                }
                _ => {}
            }
        }
    });
    (task, writes, warnings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_writes_beyond_the_byte_cap_are_refused_before_they_reach_the_master() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let (answering, writes, _warnings) = answer_calls(&master, events);
    let hostile = evil_peer();
    let mut session = join(&hostile, &master, 1).await;
    // 70 distinct keys of 1 MiB each: 63 fit in the 64 MiB workers may write.
    let value = format!("\"{}\"", "x".repeat(1 << 20));
    for i in 0..70u64 {
        session.call(
            i,
            crate::calls::WorkerRequest::SetLookup {
                name: "blobs".into(),
                key: format!("k{i}"),
                value: value.clone(),
            },
        );
    }
    let replies = session.replies(70, Duration::from_secs(20)).await;
    assert_eq!(replies.len(), 70, "every call is answered");
    let (ok, refused): (Vec<_>, Vec<_>) = replies.iter().partition(|(_, ok, _)| *ok);
    assert_eq!(ok.len(), 63, "{:?}", refused.first());
    assert!(
        refused
            .iter()
            .all(|(_, _, why)| why.contains("at most 67108864")),
        "{:?}",
        refused.first()
    );
    assert_eq!(
        writes.load(std::sync::atomic::Ordering::SeqCst),
        63,
        "the master's user saw only the admitted writes"
    );
    // Rewriting an admitted key is still taken, and the session is still served.
    session.call(
        100,
        crate::calls::WorkerRequest::SetLookup {
            name: "blobs".into(),
            key: "k0".into(),
            value: "1".into(),
        },
    );
    let again = session.replies(1, Duration::from_secs(10)).await;
    assert_eq!(again.first().map(|r| (r.0, r.1)), Some((100, true)));
    hostile.leave(session).await;
    master.close().await.expect("close");
    answering.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_asks_without_waiting_for_answers_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let hostile = evil_peer();
    let mut session = join(&hostile, &master, 1).await;
    // Nobody answers: the master's user is slow. 1,024 calls may wait; the next one ends it.
    for i in 0..(crate::calls::MAX_CALLS_PER_WORKER as u64 + 10) {
        session.call(
            i,
            crate::calls::WorkerRequest::Message {
                cmd: "ping".into(),
                data: "null".into(),
            },
        );
    }
    assert!(
        session.cut_off(Duration::from_secs(10)).await,
        "the master kept a session with more than {} calls waiting",
        crate::calls::MAX_CALLS_PER_WORKER
    );
    let mut calls = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut warned = false;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        match event {
            MasterEvent::Call(_) => calls += 1,
            MasterEvent::Warning(w) if w.contains("calls waiting") => {
                warned = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        warned,
        "the master's user is told why the worker was cut off"
    );
    assert_eq!(
        calls,
        crate::calls::MAX_CALLS_PER_WORKER,
        "calls beyond the cap never reach the user"
    );
    // Its waiting calls are forgotten: answering one now reaches nobody.
    assert!(!master.answer(1, Ok("null".into())));
    hostile.leave(session).await;
    master.close().await.expect("close");
}
