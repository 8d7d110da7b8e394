//! The dependency bundle is built lazily: not at the master's start, not for workers that install
//! dependencies themselves, once when workers that run task.js in the embedded runtime first ask
//! (however many ask at once), from the disk cache after a restart, and a build that fails
//! reaches the asking worker and the master's user. Real npm (through a wrapper on PATH that
//! counts its runs), real masters and workers on loopback.
//!
//! One test function: it sets the process environment (PATH, the bundle cache) before any
//! thread starts, which only a process of its own may do (nextest runs each test in one).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use queuexec_core::{
    AssetSpec, DEPENDENCY_CACHE_DIR_ENV, Executor, JobInput, JobResult, JobSpec, Master,
    MasterConfig, MasterEvent, TaskFailure, Worker, WorkerConfig,
};
use queuexec_js::JsExecutor;
use tokio::sync::mpsc::UnboundedReceiver;

mod common;

const TOKEN: &str = "lazy-bundle-room";
const TRANSFER: &str = "lazy-bundle-transfer-token-0123456789";

const TASK: &str = r#"
const Big = require('big.js');
const moment = require('moment');
class Task {
  async run(job) {
    const { a, b, days } = job.data;
    return {
      sum: new Big(a).plus(b).toString(),
      day: moment.utc('2024-01-01').add(days, 'days').format('YYYY-MM-DD'),
    };
  }
}
module.exports = Task;
"#;

const DEPENDENCIES: [&str; 2] = ["big.js@6.2.2", "moment@2.30.1"];

/// A worker that installs nothing: it never asks for the bundle.
struct Plain;

impl Executor for Plain {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        Box::pin(futures::future::ready(Ok(job.data)))
    }
}

/// An `npm` on PATH that records each run and hands it to the real npm, or fails when the file
/// `fail` exists next to it.
fn npm_wrapper(dir: &Path) -> PathBuf {
    let real = std::env::split_paths(&std::env::var_os("PATH").expect("PATH"))
        .map(|d| d.join("npm"))
        .find(|p| p.is_file())
        .expect("npm is installed (scripts/ensure-deps.sh)");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{log}'\nif [ -e '{fail}' ]; then echo 'npm error 503 registry unreachable (test)' >&2; exit 1; fi\nexec '{real}' \"$@\"\n",
        log = dir.join("npm.log").display(),
        fail = dir.join("fail").display(),
        real = real.display(),
    );
    let npm = bin.join("npm");
    std::fs::write(&npm, script).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&npm, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

fn npm_runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("npm.log"))
        .map(|log| log.lines().count())
        .unwrap_or(0)
}

fn master_config(dir: &Path, src: &Path, dependencies: &[&str]) -> MasterConfig {
    let mut config = MasterConfig::new(TOKEN, TRANSFER);
    config.room_dir = Some(dir.join("rooms"));
    config.mdns = Some(false);
    config.watch_assets = false;
    config.asset_base_dir = src.to_path_buf();
    config.assets = vec![AssetSpec {
        name: "task.js".into(),
        master_path: "task.js".into(),
        worker_path: "task.js".into(),
    }];
    config.dependencies = dependencies.iter().map(|d| d.to_string()).collect();
    config
}

async fn start_worker(dir: &Path, name: &str, executor: Arc<dyn Executor>) -> Worker {
    let mut config = WorkerConfig::new(TOKEN, TRANSFER);
    config.room_dir = Some(dir.join("rooms"));
    config.mdns = Some(false);
    config.workplace = dir.join(name);
    config.name = name.into();
    config.concurrency = 2;
    Worker::start(config, executor).await.expect("worker").0
}

fn js() -> Arc<dyn Executor> {
    Arc::new(JsExecutor::new(common::small_config(2)).expect("runtime"))
}

async fn push(master: &Master, n: usize) {
    for i in 0..n {
        let mut job = JobSpec::new(format!(r#"{{"a":"0.1","b":"0.{i}","days":{i}}}"#));
        job.id = Some(i.to_string());
        job.retries = Some(0);
        master.push(job).await.expect("push");
    }
}

async fn results(events: &mut UnboundedReceiver<MasterEvent>, n: usize) -> Vec<JobResult> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(120), events.recv()).await {
            Ok(Some(MasterEvent::Result(r))) => out.push(r),
            Ok(Some(MasterEvent::TaskLoadFailed { worker, reason })) => {
                panic!("worker {} could not load the task: {reason}", worker.name)
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the master's events ended"),
            Err(_) => panic!("{} of {n} results within 120 s", out.len()),
        }
    }
    out
}

/// Every result is what big.js and moment compute.
fn check(results: &[JobResult], workers: &[&str]) {
    for r in results {
        let i: u32 = r.job_id.parse().expect("numeric id");
        let json: serde_json::Value =
            serde_json::from_str(r.outcome.as_ref().expect("ok")).expect("json");
        let sum: f64 = json["sum"].as_str().expect("sum").parse().expect("number");
        let b: f64 = format!("0.{i}").parse().expect("b");
        assert!((sum - (0.1 + b)).abs() < 1e-9, "{json}");
        assert_eq!(
            json["day"],
            expected_day(i),
            "moment computed the day of job {i}"
        );
        assert!(workers.contains(&r.worker.name.as_str()), "{:?}", r.worker);
    }
}

/// 2024-01-01 plus `days` (below 31), as YYYY-MM-DD.
fn expected_day(days: u32) -> String {
    format!("2024-01-{:02}", 1 + days)
}

#[test]
fn the_bundle_is_built_once_when_first_asked_for_cached_on_disk_and_its_failure_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let bin = npm_wrapper(dir);
    let cache = dir.join("cache");
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").expect("PATH"),
    )))
    .expect("PATH");
    // SAFETY: no other thread exists yet in this test's process (see the file's comment).
    unsafe {
        std::env::set_var("PATH", path);
        std::env::set_var(DEPENDENCY_CACHE_DIR_ENV, &cache);
    }
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("task.js"), TASK).expect("write");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // 1. The master starts without running npm, and a worker that installs nothing itself
        //    (as a Node worker does) runs jobs without the bundle being built or sent.
        let (master, mut events) = Master::start(master_config(dir, &src, &DEPENDENCIES))
            .await
            .expect("master");
        assert_eq!(npm_runs(dir), 0, "npm did not run at the master's start");
        let plain = start_worker(dir, "plain", Arc::new(Plain)).await;
        push(&master, 4).await;
        let got = results(&mut events, 4).await;
        assert!(
            got.iter()
                .all(|r| r.worker.name == "plain" && r.outcome.is_ok())
        );
        plain.close().await;
        assert_eq!(npm_runs(dir), 0, "no bundle for a worker that does not ask");
        assert!(
            !dir.join("plain/.queuexec").exists(),
            "nothing of the bundle was sent"
        );

        // 2. Two embedded-runtime workers ask at once: one build serves both.
        let (a, b) = (
            start_worker(dir, "js-a", js()).await,
            start_worker(dir, "js-b", js()).await,
        );
        push(&master, 16).await;
        check(&results(&mut events, 16).await, &["js-a", "js-b"]);
        assert_eq!(npm_runs(dir), 1, "one npm run for every request");
        let cached: Vec<_> = std::fs::read_dir(cache.join("bundles"))
            .expect("the bundle cache")
            .collect();
        assert_eq!(cached.len(), 1, "one bundle in the cache");
        a.close().await;
        b.close().await;
        master.close().await.expect("close");

        // 3. A restarted master with the same list takes the bundle from the disk cache.
        let (master, mut events) = Master::start(master_config(dir, &src, &DEPENDENCIES))
            .await
            .expect("master");
        let c = start_worker(dir, "js-c", js()).await;
        push(&master, 6).await;
        check(&results(&mut events, 6).await, &["js-c"]);
        assert_eq!(npm_runs(dir), 1, "npm did not run again after the restart");
        c.close().await;
        master.close().await.expect("close");

        // 4. A build that fails: the worker and the master's user hear why; no job is spent.
        std::fs::write(dir.join("fail"), "").expect("write");
        let (master, mut events) =
            Master::start(master_config(dir, &src, &["big.js@6.2.1", "moment@2.30.1"]))
                .await
                .expect("master");
        let d = start_worker(dir, "js-d", js()).await;
        push(&master, 3).await;
        let (mut warned, mut failed) = (None, None);
        while warned.is_none() || failed.is_none() {
            match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
                Ok(Some(MasterEvent::Warning(w))) if w.contains("dependency bundle") => {
                    warned = Some(w)
                }
                Ok(Some(MasterEvent::TaskLoadFailed { worker, reason })) => {
                    assert_eq!(worker.name, "js-d");
                    failed = Some(reason);
                }
                Ok(Some(MasterEvent::Result(r))) => panic!("a job ended: {r:?}"),
                Ok(Some(_)) => {}
                Ok(None) => panic!("the master's events ended"),
                Err(_) => panic!("no warning and task-load event within 60 s"),
            }
        }
        let (warned, failed) = (warned.expect("warning"), failed.expect("failure"));
        assert!(warned.contains("registry unreachable (test)"), "{warned}");
        assert!(
            failed.contains("could not provide the dependency bundle")
                && failed.contains("registry unreachable (test)"),
            "{failed}"
        );
        let stats = master.stats().await.expect("stats");
        assert_eq!(
            (stats.retried, stats.dead, stats.done),
            (0, 0, 0),
            "{stats:?}"
        );
        d.close().await;
        master.close().await.expect("close");
    });
}
