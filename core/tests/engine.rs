//! Masters and workers over real libp2p connections on loopback.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use queuexec_core::{
    AssetSpec, Error, Executor, JobInput, JobResult, JobSpec, Manifest, Master, MasterEvent,
    StoreConfig, TaskFailure, Worker, WorkerEvent,
};

mod common;

use common::{assert_no_more_results, collect, master_config, next_result, worker_config};

/// Returns `{"echo": data, "by": name}`, after an optional pause.
struct Echo {
    name: String,
    pause: Duration,
    runs: Arc<AtomicUsize>,
}

impl Executor for Echo {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        let (name, pause, runs) = (self.name.clone(), self.pause, self.runs.clone());
        Box::pin(async move {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            runs.fetch_add(1, Ordering::Relaxed);
            Ok(format!("{{\"echo\":{},\"by\":\"{name}\"}}", job.data))
        })
    }
}

fn echo(name: &str, pause_ms: u64) -> (Arc<dyn Executor>, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    (
        Arc::new(Echo {
            name: name.into(),
            pause: Duration::from_millis(pause_ms),
            runs: runs.clone(),
        }),
        runs,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_run_a_thousand_jobs_each_result_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let mut workers = Vec::new();
    for i in 0..3 {
        let name = format!("w{i}");
        let mut config = worker_config(dir.path(), dir.path().join(&name), &name);
        config.concurrency = 4;
        config.prefetch = 16;
        let (exec, _) = echo(&name, 0);
        workers.push(Worker::start(config, exec).await.expect("worker").0);
    }
    let jobs: Vec<JobSpec> = (0..1_000)
        .map(|i| JobSpec::new(format!("{{\"n\":{i}}}")))
        .collect();
    let receipts = master.push_many(jobs).await.expect("push");
    assert_eq!(receipts.len(), 1_000);

    let results = collect(&mut events, 1_000).await;
    let mut seen = HashMap::new();
    for r in &results {
        *seen.entry(r.job_id.clone()).or_insert(0) += 1;
        let data: serde_json::Value =
            serde_json::from_str(r.outcome.as_ref().expect("ok")).expect("json");
        assert!(data["echo"]["n"].is_u64());
        assert_eq!(
            data["by"].as_str(),
            Some(r.worker.name.as_str()),
            "the result names the worker that ran it"
        );
    }
    assert_eq!(seen.len(), 1_000, "every job has a result");
    assert!(seen.values().all(|c| *c == 1), "no job has two results");
    let receipt_ids: HashSet<_> = receipts.iter().map(|r| r.id.clone()).collect();
    assert_eq!(receipt_ids, seen.keys().cloned().collect::<HashSet<_>>());
    let names: HashSet<_> = results.iter().map(|r| r.worker.name.clone()).collect();
    assert!(
        names.len() >= 2,
        "work was spread over the workers: {names:?}"
    );
    assert_no_more_results(&mut events).await;
    let stats = master.stats().await.expect("stats");
    assert_eq!(
        (stats.done, stats.queued, stats.running, stats.workers),
        (1_000, 0, 0, 3)
    );
    for w in workers {
        w.close().await;
    }
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dropped_mid_job_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let (slow_exec, slow_runs) = echo("doomed", 200);
    let mut config = worker_config(dir.path(), dir.path().join("doomed"), "doomed");
    config.concurrency = 4;
    config.prefetch = 4;
    let (doomed, _) = Worker::start(config, slow_exec).await.expect("worker");
    master
        .push_many((0..40).map(|i| JobSpec::new(i.to_string())).collect())
        .await
        .expect("push");
    // Let the doomed worker take jobs and start them, then cut it off mid-job.
    let started = tokio::time::timeout(Duration::from_secs(30), async {
        while slow_runs.load(Ordering::Relaxed) < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        started.is_ok(),
        "the doomed worker started only {} of its 4 jobs within 30 s",
        slow_runs.load(Ordering::Relaxed)
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    doomed.close().await;
    let (exec, _) = echo("survivor", 5);
    let mut config = worker_config(dir.path(), dir.path().join("survivor"), "survivor");
    config.concurrency = 4;
    let (survivor, _) = Worker::start(config, exec).await.expect("worker");

    let results = collect(&mut events, 40).await;
    let ids: HashSet<_> = results.iter().map(|r| r.job_id.clone()).collect();
    assert_eq!(ids.len(), 40, "every job finished exactly once");
    assert!(results.iter().all(|r| r.outcome.is_ok()));
    assert!(
        results
            .iter()
            .any(|r| r.worker.name == "survivor" && r.attempts >= 2),
        "abandoned jobs were retried"
    );
    assert_no_more_results(&mut events).await;
    survivor.close().await;
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_reopened_on_its_store_finishes_every_accepted_job_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("jobs.sqlite");
    let mut config = master_config(dir.path());
    config.store = StoreConfig::Sqlite(store.clone());
    // Ids are idempotency keys here (by default a repeated id is queued again).
    config.idempotent_ids = true;
    let (master, mut events) = Master::start(config.clone()).await.expect("master");
    // Explicit ids: an automatic id is never taken as an explicit one, so only these can be
    // pushed again as duplicates at the end.
    let receipts = master
        .push_many(
            (0..300)
                .map(|i| JobSpec {
                    id: Some(format!("n-{i}")),
                    ..JobSpec::new(i.to_string())
                })
                .collect(),
        )
        .await
        .expect("push");
    let (exec, _) = echo("w", 2);
    let mut wconfig = worker_config(dir.path(), dir.path().join("w"), "w");
    wconfig.concurrency = 4;
    let (worker, _) = Worker::start(wconfig, exec).await.expect("worker");

    let mut first = Vec::new();
    while first.len() < 60 {
        first.push(next_result(&mut events).await);
    }
    master.close().await.expect("close");
    drop(master);
    // Whatever was already queued for delivery before the close still counts as delivered.
    while let Ok(event) = events.try_recv() {
        if let MasterEvent::Result(r) = event {
            first.push(r);
        }
    }

    // Same store, new process identity and port: the worker finds it again via the room file.
    let (master, mut events) = Master::start(config).await.expect("master again");
    let second = collect(&mut events, 300 - first.len()).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in first.iter().chain(&second) {
        assert!(r.outcome.is_ok(), "{r:?}");
        *counts.entry(r.job_id.clone()).or_default() += 1;
    }
    let accepted: HashSet<_> = receipts.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        counts.keys().cloned().collect::<HashSet<_>>(),
        accepted,
        "every accepted job finished"
    );
    assert!(counts.values().all(|c| *c == 1), "no job finished twice");
    assert_no_more_results(&mut events).await;

    // One master per store: a second one is refused with a clear error.
    let err = Master::start({
        let mut c = master_config(dir.path());
        c.store = StoreConfig::Sqlite(store.clone());
        c
    })
    .await
    .err()
    .expect("a second master on the same store is refused");
    assert!(
        err.to_string()
            .contains("another master is using this store"),
        "{err}"
    );

    // Pushing a job whose id the store already has does not queue it again.
    let again = master
        .push(JobSpec {
            id: Some(receipts[0].id.clone()),
            ..JobSpec::new("1")
        })
        .await
        .expect("push");
    assert!(again.duplicate);
    assert_no_more_results(&mut events).await;
    worker.close().await;
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_the_wrong_token_gets_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let task = dir.path().join("task.js");
    let task_source = "module.exports = class { run() { return 1 } }";
    std::fs::write(&task, task_source).expect("write");
    let mut config = master_config(dir.path());
    config.assets = vec![AssetSpec {
        name: "task.js".into(),
        master_path: task,
        worker_path: "task.js".into(),
    }];
    let (master, mut events) = Master::start(config).await.expect("master");
    master.push(JobSpec::new("1")).await.expect("push");
    let addr = master
        .listen_addrs()
        .into_iter()
        .find(|a| a.contains("/tcp/"))
        .expect("tcp addr");

    // Wrong room token: refused at the handshake, and the worker stops with a clear error.
    let (exec, runs) = echo("intruder", 0);
    let mut config = worker_config(dir.path(), dir.path().join("intruder"), "intruder");
    config.token = "another-room".into();
    config.master = Some(addr.clone());
    let (intruder, _) = Worker::start(config, exec).await.expect("start");
    let outcome = tokio::time::timeout(Duration::from_secs(10), intruder.wait())
        .await
        .expect("stops");
    match outcome {
        Err(Error::Unauthorized(reason)) => assert!(reason.contains("token"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Right room token, wrong transfer token: refused before any job is handed to it.
    let (exec2, runs2) = echo("eavesdropper", 0);
    let mut config = worker_config(dir.path(), dir.path().join("eavesdropper"), "eavesdropper");
    config.transfer_token = "a-different-transfer-token-0123456789".into();
    config.master = Some(addr);
    let (eavesdropper, _) = Worker::start(config, exec2).await.expect("start");
    let outcome = tokio::time::timeout(Duration::from_secs(10), eavesdropper.wait())
        .await
        .expect("stops");
    match outcome {
        Err(Error::TokenMismatch(reason)) => {
            assert!(reason.contains("transferEncryptToken"), "{reason}")
        }
        other => panic!("expected a token mismatch, got {other:?}"),
    }

    assert_eq!(
        runs.load(Ordering::Relaxed) + runs2.load(Ordering::Relaxed),
        0,
        "no job ran"
    );
    for name in ["intruder", "eavesdropper"] {
        assert!(
            !dir.path().join(name).join("task.js").exists(),
            "{name} received no file"
        );
    }
    let stats = master.stats().await.expect("stats");
    assert_eq!(stats.done, 0);
    // The job is still there for a worker that holds both tokens.
    let (exec, _) = echo("friend", 0);
    let (friend, _) = Worker::start(
        worker_config(dir.path(), dir.path().join("friend"), "friend"),
        exec,
    )
    .await
    .expect("start");
    let r = next_result(&mut events).await;
    assert_eq!(r.worker.name, "friend");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("friend").join("task.js")).expect("installed"),
        task_source
    );
    friend.close().await;
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_jobs_run_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let mut jobs = Vec::new();
    for i in 0..10 {
        jobs.push(JobSpec {
            id: Some(format!("low-{i}")),
            priority: 0,
            ..JobSpec::new("0")
        });
    }
    for i in 0..10 {
        jobs.push(JobSpec {
            id: Some(format!("high-{i}")),
            priority: 10,
            ..JobSpec::new("1")
        });
    }
    master.push_many(jobs).await.expect("push");
    let (exec, _) = echo("solo", 0);
    let mut config = worker_config(dir.path(), dir.path().join("solo"), "solo");
    config.concurrency = 1;
    config.prefetch = 0;
    let (worker, _) = Worker::start(config, exec).await.expect("worker");
    let order: Vec<String> = collect(&mut events, 20)
        .await
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("high-{i}"))
        .chain((0..10).map(|i| format!("low-{i}")))
        .collect();
    assert_eq!(order, expected);
    worker.close().await;
    master.close().await.expect("close");
}

/// Fails the first attempt of every job, succeeds on the second.
struct FlakyOnce {
    seen: Mutex<HashSet<String>>,
}

impl Executor for FlakyOnce {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        let first = self.seen.lock().expect("lock").insert(job.id.clone());
        Box::pin(async move {
            if first {
                Err(TaskFailure::new(format!(
                    "flaky failure on attempt {}",
                    job.attempt
                )))
            } else {
                Ok(job.data)
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_are_retried_then_dead_lettered_with_their_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let exec: Arc<dyn Executor> = Arc::new(FlakyOnce {
        seen: Mutex::new(HashSet::new()),
    });
    let (worker, _) = Worker::start(worker_config(dir.path(), dir.path().join("w"), "w"), exec)
        .await
        .expect("worker");
    master
        .push(JobSpec {
            id: Some("retried".into()),
            retries: Some(1),
            ..JobSpec::new("7")
        })
        .await
        .expect("push");
    master
        .push(JobSpec {
            id: Some("doomed".into()),
            retries: Some(0),
            ..JobSpec::new("8")
        })
        .await
        .expect("push");
    let results: HashMap<String, JobResult> = collect(&mut events, 2)
        .await
        .into_iter()
        .map(|r| (r.job_id.clone(), r))
        .collect();
    assert_eq!(results["retried"].outcome, Ok("7".to_string()));
    assert_eq!(results["retried"].attempts, 2);
    assert_eq!(
        results["doomed"].outcome,
        Err("flaky failure on attempt 1".to_string())
    );
    assert_eq!(results["doomed"].worker.name, "w");
    let stats = master.stats().await.expect("stats");
    assert_eq!((stats.done, stats.dead, stats.retried), (1, 1, 1));
    worker.close().await;
    master.close().await.expect("close");
}

/// Records what the workplace held when assets changed.
struct Recorder {
    installs: Arc<Mutex<Vec<(usize, String)>>>,
}

impl Executor for Recorder {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        Box::pin(futures::future::ready(Ok(job.data)))
    }

    fn assets_changed(
        &self,
        workplace: &Path,
        manifest: &Manifest,
    ) -> BoxFuture<'static, Result<(), TaskFailure>> {
        let task = std::fs::read_to_string(workplace.join("task.js")).unwrap_or_default();
        self.installs
            .lock()
            .expect("lock")
            .push((manifest.files.len(), task));
        Box::pin(futures::future::ready(Ok(())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_install_the_masters_files_and_follow_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("lib")).expect("mkdir");
    std::fs::write(src.join("task.js"), "v1").expect("write");
    std::fs::write(src.join("lib/helper.js"), "helper").expect("write");
    let mut config = master_config(dir.path());
    config.asset_base_dir = src.clone();
    config.assets = vec![
        AssetSpec {
            name: "task.js".into(),
            master_path: "task.js".into(),
            worker_path: "task.js".into(),
        },
        AssetSpec {
            name: "helper.js".into(),
            master_path: "lib/helper.js".into(),
            worker_path: "lib/helper.js".into(),
        },
    ];
    let (master, mut events) = Master::start(config).await.expect("master");
    let installs = Arc::new(Mutex::new(Vec::new()));
    let exec: Arc<dyn Executor> = Arc::new(Recorder {
        installs: installs.clone(),
    });
    let workplace = dir.path().join("wp");
    let (worker, mut wevents) =
        Worker::start(worker_config(dir.path(), workplace.clone(), "w"), exec)
            .await
            .expect("worker");
    master.push(JobSpec::new("1")).await.expect("push");
    next_result(&mut events).await;
    assert_eq!(
        std::fs::read_to_string(workplace.join("lib/helper.js")).expect("helper"),
        "helper"
    );
    assert_eq!(
        installs.lock().expect("lock").clone(),
        vec![(2, "v1".to_string())]
    );

    std::fs::write(src.join("task.js"), "v2").expect("write");
    assert!(master.reload_assets().await.expect("reload"));
    master.push(JobSpec::new("2")).await.expect("push");
    next_result(&mut events).await;
    assert_eq!(
        installs.lock().expect("lock").last().cloned(),
        Some((2, "v2".to_string())),
        "new task before the job"
    );
    let mut fetched = Vec::new();
    while let Ok(e) = wevents.try_recv() {
        if let WorkerEvent::AssetsInstalled { fetched: n, .. } = e {
            fetched.push(n);
        }
    }
    assert_eq!(
        fetched,
        vec![2, 1],
        "the second sync fetched only the changed file"
    );
    worker.close().await;
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut short = master_config(dir.path());
    short.transfer_token = "too-short".into();
    let err = Master::start(short).await.err().expect("refused");
    assert!(err.to_string().contains("32"), "{err}");

    let (master, _events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let err = master
        .push(JobSpec::new("{not json"))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("JSON"), "{err}");
    let stats = master.stats().await.expect("stats");
    assert_eq!(stats.queued, 0, "nothing of a refused push is queued");
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_can_join_over_quic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let quic = master
        .listen_addrs()
        .into_iter()
        .find(|a| a.contains("/quic-v1"))
        .expect("a QUIC address");
    let (exec, _) = echo("quic", 0);
    let mut config = worker_config(dir.path(), dir.path().join("quic"), "quic");
    config.master = Some(quic);
    let (worker, _) = Worker::start(config, exec).await.expect("worker");
    master.push(JobSpec::new("5")).await.expect("push");
    let r = next_result(&mut events).await;
    assert_eq!(r.worker.name, "quic");
    assert_eq!(r.outcome, Ok("{\"echo\":5,\"by\":\"quic\"}".to_string()));
    worker.close().await;
    master.close().await.expect("close");
}
