//! Unit tests of what a panic inside the runtime does: a panicking op (through `ops::guarded`)
//! or a Rust panic in the slot while it runs a job (caught around the job) fails only the job
//! it happened in, the slot rebuilds its runtime, and the worker's other in-flight job
//! completes. The fault injection exists only in this crate's unit-test build
//! (`ops::test_faults`, and `TaskRuntime::run` panicking on the data `"panic-in-slot"`).

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
      case "slow": await new Promise((resolve) => setTimeout(resolve, 400)); return "slow done";
      case "count": return this.count;
      case "deno-ops": {
        const out = {};
        for (const [name, op] of Object.entries(__queuexecTestFaults.denoOps)) {
          try { op("PWNED-BY-TASK\n", false); out[name] = "ran"; } catch (e) { out[name] = e.message; }
        }
        return out;
      }
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
        shape: Default::default(),
    }
}

async fn executor(dir: &tempfile::TempDir, concurrency: usize) -> JsExecutor {
    std::fs::write(dir.path().join("task.js"), TASK).expect("write task.js");
    let executor = JsExecutor::new(JsConfig {
        concurrency,
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
    let executor = executor(&dir, 2).await;
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
async fn a_panic_in_the_slot_fails_only_its_job_and_the_worker_goes_on() {
    let message = tokio::time::timeout(DEADLINE, beside_a_slow_job("panic-in-slot"))
        .await
        .expect("deadline")
        .expect_err("the job during which the slot panicked fails");
    assert!(
        message.contains("failed internally")
            && message.contains("a test panic in the slot while running a job"),
        "{message}"
    );
}

#[tokio::test]
async fn a_runtime_whose_op_panicked_is_rebuilt_even_when_the_task_caught_the_error() {
    tokio::time::timeout(DEADLINE, async {
        let dir = tempfile::tempdir().expect("tempdir");
        // One slot, so the job after the panic runs where the panic happened.
        let executor = executor(&dir, 1).await;
        let caught = executor
            .run(job("caught", "panic-caught"))
            .await
            .expect("the task caught the op's error");
        assert!(caught.contains("caught: internal error"), "{caught}");
        // The rebuilt runtime built a fresh `new Task()`: its job counter starts again (the
        // runtime that ran the panic would say 2).
        assert_eq!(executor.run(job("c1", "count")).await.expect("count"), "1");
        assert_eq!(executor.run(job("c2", "count")).await.expect("count"), "2");
    })
    .await
    .expect("deadline");
}

#[tokio::test]
async fn deno_cores_dangerous_ops_are_disabled_even_if_reached() {
    tokio::time::timeout(DEADLINE, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let executor = executor(&dir, 1).await;
        let result = executor
            .run(job("ops", "deno-ops"))
            .await
            .expect("the job runs");
        let value: serde_json::Value = serde_json::from_str(&result).expect("json");
        for name in ["op_panic", "op_print", "op_resources", "op_load_ext_script"] {
            assert_eq!(value[name], "op is disabled", "{name}: {value}");
        }
        assert_eq!(
            executor.run(job("next", "ok")).await.expect("next"),
            r#""fine next""#
        );
    })
    .await
    .expect("deadline");
}
