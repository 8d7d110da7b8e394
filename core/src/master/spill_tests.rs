//! Ready durable jobs beyond the resident window stay only in the SQLite store (real files in
//! temp dirs, a protocol-level worker over libp2p on loopback): their order, priorities,
//! restarts, cancels, lookups and results must be those of jobs kept in memory.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::inspect::JobStatus;
use super::{Master, MasterConfig, MasterEvent, StoreConfig};
use crate::job::{JobResult, JobSpec};
use crate::testing::evil::{EvilJob, EvilPeer, EvilSession};

const TOKEN: &str = "room-token-for-spilled-jobs";
const TRANSFER: &str = "transfer-token-spill-0123456789abcdef";

fn config(dir: &Path, window: usize) -> MasterConfig {
    let mut config = MasterConfig::new(TOKEN, TRANSFER);
    config.room_dir = Some(dir.join("rooms"));
    config.mdns = Some(false);
    config.store = StoreConfig::Sqlite(dir.join("jobs.db"));
    config.max_resident_jobs = window;
    config
}

fn spec(id: impl ToString, priority: i32) -> JobSpec {
    let mut job = JobSpec::new(format!("{{\"n\":\"{}\"}}", id.to_string()));
    job.id = Some(id.to_string());
    job.priority = priority;
    job
}

async fn join(master: &Master, window: u32) -> (EvilPeer, EvilSession) {
    let peer = EvilPeer::new(TOKEN, TRANSFER).expect("peer");
    let addr = master
        .listen_addrs()
        .into_iter()
        .find(|a| a.contains("/tcp/"))
        .expect("a TCP address");
    let session = peer.join(&addr, window).await.expect("join");
    (peer, session)
}

/// Takes `n` jobs (answering each with a result so the window refills), in the order they came.
async fn run_all(session: &mut EvilSession, n: usize, limit: Duration) -> Vec<EvilJob> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} jobs within {limit:?}",
            got.len()
        );
        let batch = session.take(Duration::from_millis(15)).await;
        let done: Vec<(String, u32)> = batch.iter().map(|j| (j.id.clone(), j.attempt)).collect();
        if !done.is_empty() {
            session.results(&done, true, b"\"ok\"");
        }
        got.extend(batch);
    }
    got
}

/// Results until `n` arrived, or panics after `limit`.
async fn results(
    events: &mut mpsc::UnboundedReceiver<MasterEvent>,
    n: usize,
    limit: Duration,
) -> Vec<JobResult> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(MasterEvent::Result(r))) => out.push(r),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the master's events ended"),
            Err(_) => panic!("only {} of {n} results within {limit:?}", out.len()),
        }
    }
    out
}

/// No more results arrive for a while.
async fn no_more_results(events: &mut mpsc::UnboundedReceiver<MasterEvent>) {
    let quiet = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(event)) = tokio::time::timeout_at(quiet, events.recv()).await {
        assert!(
            !matches!(event, MasterEvent::Result(_)),
            "an unexpected result: {event:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_beyond_the_window_run_by_priority_then_push_order_each_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(config(dir.path(), 5)).await.expect("master");
    // Several pushes, so jobs are spilled across pushes; priorities 0..=2, then a late urgent
    // one pushed when the window is long full.
    let mut expected = Vec::new();
    for chunk in 0..4 {
        let jobs: Vec<JobSpec> = (0..10)
            .map(|k| {
                let n = chunk * 10 + k;
                let priority = [0, 2, 1][n % 3];
                expected.push((priority, n));
                spec(n, priority)
            })
            .collect();
        master.push_many(jobs).await.expect("push");
    }
    master.push(spec("urgent", 7)).await.expect("push");
    assert_eq!(master.stats().await.expect("stats").queued, 41);
    expected.sort_by_key(|(p, n)| (std::cmp::Reverse(*p), *n));
    let mut want = vec!["urgent".to_string()];
    want.extend(expected.iter().map(|(_, n)| n.to_string()));

    let (_peer, mut session) = join(&master, 256).await;
    let got = run_all(&mut session, 41, Duration::from_secs(20)).await;
    let order: Vec<String> = got.iter().map(|j| j.id.clone()).collect();
    assert_eq!(order, want);
    let done = results(&mut events, 41, Duration::from_secs(20)).await;
    let ids: HashSet<String> = done.iter().map(|r| r.job_id.clone()).collect();
    assert_eq!(ids.len(), 41, "each job's result once");
    assert!(done.iter().all(|r| r.outcome.is_ok()));
    no_more_results(&mut events).await;
    assert!(master.idle().await.expect("idle"));
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_more_jobs_than_the_window_runs_every_job_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _events) = Master::start(config(dir.path(), 8)).await.expect("master");
        let jobs: Vec<JobSpec> = (0..60).map(|n| spec(n, i32::from(n >= 50))).collect();
        master.push_many(jobs).await.expect("push");
        master.close().await.expect("close");
    }
    let (master, mut events) = Master::start(config(dir.path(), 8)).await.expect("restart");
    let stats = master.stats().await.expect("stats");
    assert_eq!(stats.queued, 60, "{stats:?}");
    // A pushed id the store holds (spilled, not in memory) is still known.
    let receipt = master.push(spec(59, 0)).await.expect("push");
    assert!(receipt.repeated, "{receipt:?}");
    let (_peer, mut session) = join(&master, 16).await;
    let got = run_all(&mut session, 61, Duration::from_secs(20)).await;
    let order: Vec<&str> = got.iter().map(|j| j.id.as_str()).collect();
    let mut want: Vec<String> = (50..60).chain(0..50).map(|n| n.to_string()).collect();
    want.push(format!("59\u{1f}{}", 61));
    assert_eq!(order, want);
    let done = results(&mut events, 61, Duration::from_secs(20)).await;
    let keys: HashSet<String> = done.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), 61);
    no_more_results(&mut events).await;
    master.close().await.expect("close");
}

/// A job pushed on its own with no id (so its key cannot clash with the store's), with `priority`.
fn lone(n: usize, priority: i32) -> JobSpec {
    let mut job = JobSpec::new(format!("{{\"n\":{n}}}"));
    job.priority = priority;
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_pushed_one_at_a_time_before_their_commit_still_respect_the_window() {
    // Lone jobs without ids go to the engine while their insert commits, but only while the
    // engine can keep them resident: past half the window they are committed first and spilled
    // as usual, so the order across the window and the memory bound are those of any push.
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(config(dir.path(), 8)).await.expect("master");
    let mut expected = Vec::new();
    for n in 0..40 {
        let priority = [0, 2, 1][n % 3];
        let receipt = master.push(lone(n, priority)).await.expect("push");
        expected.push((priority, n, receipt.id));
    }
    // The engine answers in its own turn; stats waits for it.
    assert_eq!(master.stats().await.expect("stats").queued, 40);
    assert!(
        !master.inner.takes_uncommitted.load(Ordering::Relaxed),
        "with 40 ready jobs and a window of 8, pushes must commit before the engine has them"
    );
    expected.sort_by_key(|(p, n, _)| (std::cmp::Reverse(*p), *n));
    let (_peer, mut session) = join(&master, 256).await;
    let got = run_all(&mut session, 40, Duration::from_secs(20)).await;
    let order: Vec<String> = got
        .iter()
        .map(|j| crate::job::label_of(&j.id).to_string())
        .collect();
    let want: Vec<String> = expected.iter().map(|(_, _, id)| id.clone()).collect();
    assert_eq!(order, want);
    let done = results(&mut events, 40, Duration::from_secs(20)).await;
    let ids: HashSet<String> = done.iter().map(|r| r.job_id.clone()).collect();
    assert_eq!(ids.len(), 40, "each job's result once");
    no_more_results(&mut events).await;
    assert!(master.inner.takes_uncommitted.load(Ordering::Relaxed));
    master.close().await.expect("close");
    // Every one of them was committed, and ran: nothing is left after a restart.
    let (master, _events) = Master::start(config(dir.path(), 8)).await.expect("restart");
    assert_eq!(master.stats().await.expect("stats").queued, 0);
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_insert_fails_gives_no_result_whether_or_not_it_reached_a_worker() {
    // Another connection holds the SQLite write lock, so inserts fail after the store's busy
    // timeout. A lone job pushed to an idle store is committed before it goes out: it never
    // reaches the worker. One pushed while the store thread is busy goes out while its insert
    // waits, and the worker answers it at once. Either push must fail, and its job must leave
    // no result, no stored row and no count behind.
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(config(dir.path(), 64)).await.expect("master");
    let (_peer, mut session) = join(&master, 16).await;
    master.push(lone(0, 0)).await.expect("a first push");
    let first = run_all(&mut session, 1, Duration::from_secs(10)).await;
    results(&mut events, 1, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 1);
    // A result goes out while its write commits; `idle` answers after the commit.
    assert!(master.idle().await.expect("idle"));

    let blocker = rusqlite::Connection::open(dir.path().join("jobs.db")).expect("open");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    // The store is idle: the insert is tried first, and nothing goes out.
    let err = tokio::time::timeout(Duration::from_secs(30), master.push(lone(1, 0)))
        .await
        .expect("the push ends within the busy timeout")
        .expect_err("its insert cannot commit");
    assert!(err.to_string().contains("lock"), "{err}");
    assert!(
        session.take(Duration::from_millis(300)).await.is_empty(),
        "a job whose insert failed first must not reach a worker"
    );

    // The store thread is busy with a big push (65 jobs: too many to commit on the caller's
    // thread, or to run before their commit), so the next lone job goes out meanwhile.
    let big = {
        let master = master.clone();
        tokio::spawn(async move {
            master
                .push_many((0..65).map(|n| spec(n, 0)).collect())
                .await
        })
    };
    let store = master.inner.durable.clone().expect("a durable store");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.backlog() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the big push never reached the store thread"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(store);
    let push = {
        let master = master.clone();
        tokio::spawn(async move { master.push(lone(2, 0)).await })
    };
    let taken = run_all(&mut session, 1, Duration::from_secs(10)).await;
    assert_eq!(
        taken.len(),
        1,
        "the job reached the worker before its commit"
    );
    let lone_err = tokio::time::timeout(Duration::from_secs(30), push)
        .await
        .expect("the lone push ends within the busy timeouts")
        .expect("join")
        .expect_err("its insert cannot commit");
    let big_err = tokio::time::timeout(Duration::from_secs(30), big)
        .await
        .expect("the big push ends within the busy timeouts")
        .expect("join")
        .expect_err("its insert cannot commit");
    for err in [lone_err, big_err] {
        assert!(err.to_string().contains("lock"), "{err}");
    }
    no_more_results(&mut events).await;
    blocker.execute_batch("ROLLBACK").expect("release the lock");
    drop(blocker);
    let stats = master.stats().await.expect("stats");
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    assert!(master.idle().await.expect("idle"));
    // The master goes on: the next lone job runs and gives its result.
    master
        .push(lone(3, 0))
        .await
        .expect("a push after the lock");
    run_all(&mut session, 1, Duration::from_secs(10)).await;
    let done = results(&mut events, 1, Duration::from_secs(10)).await;
    assert!(done[0].outcome.is_ok());
    master.close().await.expect("close");
    let (master, _events) = Master::start(config(dir.path(), 64))
        .await
        .expect("restart");
    assert_eq!(master.stats().await.expect("stats").queued, 0);
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spilled_job_can_be_looked_up_and_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(config(dir.path(), 3)).await.expect("master");
    let mut jobs: Vec<JobSpec> = (0..20).map(|n| spec(n, 0)).collect();
    jobs[15].task_type = Some("resize".into());
    master.push_many(jobs).await.expect("push");

    let info = master
        .job("15")
        .await
        .expect("job")
        .expect("a spilled job is found");
    assert_eq!(info.status, JobStatus::Queued);
    assert_eq!(info.task_type.as_deref(), Some("resize"));
    assert!(info.pushed_ms.is_some());
    assert_eq!(master.cancel("15").await.expect("cancel"), 1);
    assert_eq!(
        master.cancel("15").await.expect("cancel"),
        0,
        "already cancelled"
    );
    let cancelled = results(&mut events, 1, Duration::from_secs(10)).await;
    assert_eq!(cancelled[0].job_id, "15");
    assert!(
        cancelled[0]
            .outcome
            .as_ref()
            .is_err_and(|e| e.contains("cancel"))
    );
    assert_eq!(master.stats().await.expect("stats").queued, 19);
    let info = master.job("15").await.expect("job").expect("known");
    assert_eq!(info.status, JobStatus::Dead);

    let (_peer, mut session) = join(&master, 4).await;
    let got = run_all(&mut session, 19, Duration::from_secs(20)).await;
    let order: Vec<&str> = got.iter().map(|j| j.id.as_str()).collect();
    let want: Vec<String> = (0..20)
        .filter(|n| *n != 15)
        .map(|n| n.to_string())
        .collect();
    assert_eq!(order, want);
    results(&mut events, 19, Duration::from_secs(20)).await;
    no_more_results(&mut events).await;
    master.close().await.expect("close");
    // After the restart the cancelled job stays dead.
    let (master, _events) = Master::start(config(dir.path(), 3)).await.expect("restart");
    assert_eq!(master.stats().await.expect("stats").queued, 0);
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_jobs_with_a_window_of_a_hundred() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(config(dir.path(), 100))
        .await
        .expect("master");
    for chunk in 0..10 {
        let jobs: Vec<JobSpec> = (0..10_000)
            .map(|k| {
                let mut job = JobSpec::new("1");
                job.id = Some((chunk * 10_000 + k).to_string());
                job
            })
            .collect();
        master.push_many(jobs).await.expect("push");
    }
    assert_eq!(master.stats().await.expect("stats").queued, 100_000);
    let (_peer, mut session) = join(&master, 256).await;
    let got = run_all(&mut session, 100_000, Duration::from_secs(120)).await;
    let order: Vec<u32> = got
        .iter()
        .map(|j| j.id.parse().expect("a number"))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "push order");
    assert_eq!(order.len(), 100_000);
    let done = results(&mut events, 100_000, Duration::from_secs(120)).await;
    let ids: HashSet<String> = done.iter().map(|r| r.job_id.clone()).collect();
    assert_eq!(ids.len(), 100_000);
    no_more_results(&mut events).await;
    master.close().await.expect("close");
}

/// A push whose data is not JSON is refused whole, naming the first such job in push order,
/// whether it is checked on the caller's thread (a small push) or on several sealing threads
/// (megabytes, each thread with its own part); nothing of it is queued or stored, and the
/// master takes the next push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_with_data_that_is_not_json_names_the_first_such_job_and_queues_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, _events) = Master::start(config(dir.path(), 64)).await.expect("master");
    let big = format!("\"{}\"", "x".repeat(600 * 1024));
    for (label, data) in [("small", "1".to_string()), ("big", big)] {
        // Jobs 3 and 6 of 8 are malformed: 8 × 600 KiB is sealed on several threads, and the
        // two land in different threads' parts.
        let jobs: Vec<JobSpec> = (1..=8)
            .map(|n| {
                let mut job = spec(format!("{label}-{n}"), 0);
                job.data = if n == 3 || n == 6 {
                    format!("{data} trailing")
                } else {
                    data.clone()
                };
                job
            })
            .collect();
        let error = master
            .push_many(jobs)
            .await
            .expect_err("a push with data that is not JSON")
            .to_string();
        assert!(
            error.contains("job 3 of this push") && error.contains("must be JSON text"),
            "{label}: {error}"
        );
        assert!(
            error.contains("nothing of this push was queued"),
            "{label}: {error}"
        );
    }
    let stats = master.stats().await.expect("stats");
    assert_eq!(stats.queued, 0, "nothing was queued");
    // Ids of the refused pushes are new to the master.
    let receipts = master
        .push_many(vec![spec("small-1", 0), spec("big-8", 0)])
        .await
        .expect("the next push");
    assert!(
        receipts.iter().all(|r| !r.repeated && !r.duplicate),
        "no job of the refused pushes was stored: {receipts:?}"
    );
    assert_eq!(master.stats().await.expect("stats").queued, 2);
    master.close().await.expect("close");
}
