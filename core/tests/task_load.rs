//! A worker whose task cannot load: it takes no jobs and tells the master, which names it in an
//! event; the jobs it held go back to the queue unrun, using no attempt; once the master's
//! assets change, the worker loads the new task and runs them. Real libp2p on loopback.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use queuexec_core::{
    AssetSpec, Executor, JobInput, JobSpec, Manifest, Master, MasterEvent, TaskFailure, Worker,
};

mod common;

use common::{master_config, worker_config};

/// Loads `task.js` from the workplace: a task that says "broken" does not load.
struct Loader {
    loads: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
}

impl Executor for Loader {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        Box::pin(futures::future::ready(Ok(job.data)))
    }

    fn assets_changed(
        &self,
        workplace: &Path,
        _manifest: &Manifest,
    ) -> BoxFuture<'static, Result<(), TaskFailure>> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        let task = std::fs::read_to_string(workplace.join("task.js")).unwrap_or_default();
        Box::pin(futures::future::ready(if task.contains("broken") {
            Err(TaskFailure::new("Cannot find module 'qx-missing'"))
        } else {
            Ok(())
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_cannot_load_costs_no_attempt_and_the_master_names_the_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("task.js"), "broken").expect("write");
    let mut config = master_config(dir.path());
    config.asset_base_dir = src.clone();
    config.watch_assets = false;
    config.assets = vec![AssetSpec {
        name: "task.js".into(),
        master_path: "task.js".into(),
        worker_path: "task.js".into(),
    }];
    let (master, mut events) = Master::start(config).await.expect("master");
    const JOBS: usize = 12;
    for i in 0..JOBS {
        // No retries: a failed attempt would end the job with an error.
        let mut job = JobSpec::new(i.to_string());
        job.id = Some(i.to_string());
        job.retries = Some(0);
        master.push(job).await.expect("push");
    }
    let (loads, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let exec: Arc<dyn Executor> = Arc::new(Loader {
        loads: loads.clone(),
        runs: runs.clone(),
    });
    let mut wconfig = worker_config(dir.path(), dir.path().join("wp"), "loader");
    wconfig.concurrency = 2;
    wconfig.prefetch = 3;
    let (worker, _wevents) = Worker::start(wconfig, exec).await.expect("worker");

    let (who, reason) = loop {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Some(MasterEvent::TaskLoadFailed { worker, reason })) => break (worker, reason),
            Ok(Some(MasterEvent::Result(r))) => {
                panic!("a result while the task cannot load: {r:?}")
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the master's event stream ended"),
            Err(_) => panic!("the master did not hear within 20 s that the task cannot load"),
        }
    };
    assert_eq!(who.name, "loader");
    assert_eq!(who.id, worker.peer_id());
    assert!(
        reason.contains("Cannot find module 'qx-missing'"),
        "{reason}"
    );

    // The worker holds nothing and gets nothing more: every job is queued, none used an attempt.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stats = master.stats().await.expect("stats");
    assert_eq!(
        (
            stats.queued,
            stats.running,
            stats.retried,
            stats.done,
            stats.dead
        ),
        (JOBS as u64, 0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.workers, 1, "the worker stayed connected");
    assert_eq!(runs.load(Ordering::Relaxed), 0, "no job ran");
    assert_eq!(
        loads.load(Ordering::Relaxed),
        1,
        "one try until the assets change"
    );
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(
                event,
                MasterEvent::TaskLoadFailed { .. } | MasterEvent::Result(_)
            ),
            "{event:?}"
        );
    }

    // The master fixes the task: the worker fetches it, loads it and runs every job once.
    std::fs::write(src.join("task.js"), "fixed").expect("write");
    assert!(master.reload_assets().await.expect("reload"));
    let mut done = Vec::new();
    while done.len() < JOBS {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Some(MasterEvent::Result(r))) => {
                assert!(
                    r.outcome.is_ok(),
                    "job {} failed: {:?}",
                    r.job_id,
                    r.outcome
                );
                assert_eq!(r.worker.name, "loader");
                done.push(r.job_id);
            }
            Ok(Some(MasterEvent::TaskLoadFailed { reason, .. })) => {
                panic!("the fixed task failed to load: {reason}")
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the master's event stream ended"),
            Err(_) => panic!("{} of {JOBS} results within 20 s of the fix", done.len()),
        }
    }
    done.sort_by_key(|id| id.parse::<usize>().expect("numeric id"));
    assert_eq!(done, (0..JOBS).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(runs.load(Ordering::Relaxed), JOBS, "each job ran once");
    assert_eq!(loads.load(Ordering::Relaxed), 2);
    let stats = master.stats().await.expect("stats");
    assert_eq!((stats.retried, stats.dead), (0, 0), "{stats:?}");
    worker.close().await;
    master.close().await.expect("close");
}
