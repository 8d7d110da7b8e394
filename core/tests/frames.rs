//! Frame sizes are capped at the sender too: a master never packs more jobs into a frame than a
//! worker accepts, a worker never packs more results into a frame than the master accepts, a
//! result over the cap fails only its own job, and a push whose data cannot fit one frame is
//! refused up front. Real masters and workers on loopback.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use queuexec_core::{
    Error, Executor, JobInput, JobResult, JobSpec, Master, MasterConfig, MasterEvent, TaskFailure,
    Worker, WorkerConfig,
};
use tokio::sync::mpsc::UnboundedReceiver;

const TOKEN: &str = "room-token-for-frame-tests";
const TRANSFER: &str = "transfer-token-0123456789abcdefghij";
const MIB: usize = 1024 * 1024;

/// Echoes the job's data back (`{"echo": data}`); the job whose data is `"big"` answers with a
/// 9 MiB string instead.
struct EchoOrBig;

impl Executor for EchoOrBig {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        Box::pin(async move {
            if job.data == "\"big\"" {
                return Ok(format!("\"{}\"", "b".repeat(9 * MIB)));
            }
            Ok(format!("{{\"echo\":{}}}", job.data))
        })
    }
}

fn master_config(room_dir: &Path) -> MasterConfig {
    let mut config = MasterConfig::new(TOKEN, TRANSFER);
    config.room_dir = Some(room_dir.to_path_buf());
    config.mdns = Some(false);
    config.retry_backoff = Duration::from_millis(10);
    // These tests are about frame sizes: a machine too busy to heartbeat in time must not turn
    // them into lease tests.
    config.lease_ttl = Duration::from_secs(120);
    config
}

fn worker_config(room_dir: &Path, concurrency: usize) -> WorkerConfig {
    let mut config = WorkerConfig::new(TOKEN, TRANSFER);
    config.room_dir = Some(room_dir.to_path_buf());
    config.mdns = Some(false);
    config.workplace = room_dir.join("workplace");
    config.concurrency = concurrency;
    config
}

async fn collect(events: &mut UnboundedReceiver<MasterEvent>, n: usize) -> Vec<JobResult> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
            Ok(Some(MasterEvent::Result(r))) => out.push(r),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the master's event stream ended"),
            Err(_) => panic!("only {} of {n} results within 60 s", out.len()),
        }
    }
    out
}

/// A JSON string of about `bytes` bytes, distinct per `n`.
fn big_data(n: usize, bytes: usize) -> String {
    format!("\"{n}{}\"", "a".repeat(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_3_mb_jobs_at_concurrency_4_all_complete_in_frames_under_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let (worker, _) = Worker::start(worker_config(dir.path(), 4), Arc::new(EchoOrBig))
        .await
        .expect("worker");
    let jobs: Vec<JobSpec> = (0..10)
        .map(|n| JobSpec::new(big_data(n, 3 * MIB)))
        .collect();
    master.push_many(jobs).await.expect("push ten 3 MB jobs");
    let results = collect(&mut events, 10).await;
    for r in &results {
        let json = r
            .outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("job {} failed: {e}", r.job_id));
        assert!(json.len() > 3 * MIB, "job {} echoed its data", r.job_id);
    }
    worker.close().await;
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_9_mb_result_fails_only_its_own_job_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let mut config = worker_config(dir.path(), 4);
    config.prefetch = 8;
    let (worker, _) = Worker::start(config, Arc::new(EchoOrBig))
        .await
        .expect("worker");
    let mut jobs: Vec<JobSpec> = (0..6)
        .map(|n| {
            let mut job = JobSpec::new(format!("{n}"));
            job.id = Some(format!("small-{n}"));
            job.retries = Some(0);
            job
        })
        .collect();
    let mut big = JobSpec::new("\"big\"");
    big.id = Some("big".into());
    big.retries = Some(0);
    jobs.insert(3, big);
    master.push_many(jobs).await.expect("push");
    let results = collect(&mut events, 7).await;
    for r in &results {
        if r.job_id == "big" {
            let err = r
                .outcome
                .as_ref()
                .expect_err("the 9 MB result cannot travel");
            assert!(err.contains("limit"), "the error names the limit: {err}");
            assert!(err.contains("bytes"), "the error names the size: {err}");
            assert_eq!(r.attempts, 1, "one attempt, not a lost worker: {err}");
        } else {
            assert!(
                r.outcome.is_ok(),
                "job {} was taken down with the big one: {:?}",
                r.job_id,
                r.outcome
            );
        }
    }
    worker.close().await;
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_of_9_mb_data_is_refused_naming_its_size_and_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, _events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let err = master
        .push(JobSpec::new(big_data(0, 9 * MIB)))
        .await
        .expect_err("a job that can never be delivered is refused");
    assert!(matches!(err, Error::Payload(..)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&(9 * MIB + 3).to_string()),
        "names the size: {text}"
    );
    assert!(text.contains("limit"), "names the limit: {text}");
    let stats = master.stats().await.expect("stats");
    assert_eq!(stats.queued, 0, "nothing of the refused push is queued");
    // A job just under the limit still goes through.
    master
        .push(JobSpec::new(big_data(1, 7 * MIB)))
        .await
        .expect("a 7 MB job is accepted");
    master.close().await.expect("close");
}
