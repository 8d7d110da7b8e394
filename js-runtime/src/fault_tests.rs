//! Unit tests of what a panic inside the runtime does: a panicking op (through `ops::guarded`)
//! or a panic in the engine's event loop (caught by the slot) fails only the job it happened
//! in, the slot rebuilds its runtime, and the worker's other in-flight job completes. The
//! panicking ops exist only in this crate's unit-test build (`ops::test_faults`).

use std::time::Duration;

use queuexec_core::{Executor, JobInput};

use crate::{JsConfig, JsExecutor};

const TASK: &str = r#"
module.exports = class {
  constructor() { this.count = 0; }
  async run(job) {
    this.count += 1;
    switch (job.data) {
      case "panic": __queuexecTestFaults.panic(); return "not reached";
      case "panic-caught":
        try { __queuexecTestFaults.panic(); return "not reached"; } catch (e) { return "caught: " + e.message; }
      case "panic-async": await __queuexecTestFaults.panicAsync(); return "not reached";
      case "slow": await new Promise((resolve) => setTimeout(resolve, 400)); return "slow done";
      case "count": return this.count;
      default: return "fine " + job.id;
    }
  }
};
"#;

const DEADLINE: Duration = Duration::from_secs(60);

fn job(id: &str, what: &str) -> JobInput {
    JobInput {
        id: id.into(),
        data: format!("\"{what}\""),
        task_type: None,
        attempt: 1,
        timeout: None,
    }
}

async fn executor(dir: &tempfile::TempDir) -> JsExecutor {
    std::fs::write(dir.path().join("task.js"), TASK).expect("write task.js");
    let executor = JsExecutor::new(JsConfig {
        concurrency: 2,
        heap_limit_bytes: 64 * 1024 * 1024,
        default_timeout: Some(Duration::from_secs(20)),
        load_timeout: Duration::from_secs(20),
        ..JsConfig::default()
    })
    .expect("executor");
    executor.load_dir(dir.path(), None).await.expect("load");
    executor
}

/// Runs `what` while a slow job is in flight on the other slot; returns its outcome after
/// checking the slow job completed, and that both slots serve jobs afterwards.
async fn beside_a_slow_job(what: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let executor = executor(&dir).await;
    let (slow, outcome) = tokio::join!(
        executor.run(job("slow", "slow")),
        executor.run(job("faulty", what))
    );
    assert_eq!(
        slow.expect("the job in flight on the other slot completes"),
        r#""slow done""#
    );
    let (a, b) = tokio::join!(executor.run(job("a", "ok")), executor.run(job("b", "ok")));
    assert_eq!(a.expect("the next job works"), r#""fine a""#);
    assert_eq!(b.expect("the next job works"), r#""fine b""#);
    outcome.map_err(|failure| failure.message)
}

#[tokio::test]
async fn a_panicking_op_fails_only_its_job_and_the_worker_goes_on() {
    let message = tokio::time::timeout(DEADLINE, beside_a_slow_job("panic"))
        .await
        .expect("deadline")
        .expect_err("the job whose op panicked fails");
    assert!(
        message.contains("op_test_panic panicked")
            && message.contains("a test op panicked on purpose"),
        "{message}"
    );
}

#[tokio::test]
async fn a_panic_in_the_event_loop_fails_only_its_job_and_the_worker_goes_on() {
    let message = tokio::time::timeout(DEADLINE, beside_a_slow_job("panic-async"))
        .await
        .expect("deadline")
        .expect_err("the job whose async op panicked fails");
    assert!(
        message.contains("failed internally")
            && message.contains("a test async op panicked on purpose"),
        "{message}"
    );
}

#[tokio::test]
async fn a_runtime_whose_op_panicked_is_rebuilt_even_when_the_task_caught_the_error() {
    tokio::time::timeout(DEADLINE, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let executor = executor(&dir).await;
        let caught = executor
            .run(job("caught", "panic-caught"))
            .await
            .expect("the task caught the op's error");
        assert!(caught.contains("caught: internal error"), "{caught}");
        // The rebuilt runtime built a fresh `new Task()`: its job counter starts again. Two at
        // once, so the slot that ran the panic is among them.
        let (a, b) = tokio::join!(
            executor.run(job("c1", "count")),
            executor.run(job("c2", "count"))
        );
        let counts = [a.expect("count"), b.expect("count")];
        assert!(counts.iter().all(|c| c == "1"), "{counts:?}");
    })
    .await
    .expect("deadline");
}
