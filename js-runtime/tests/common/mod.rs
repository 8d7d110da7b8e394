//! Helpers shared by the integration tests: task directories in tempdirs, jobs, executors.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::time::Duration;

use queuexec_core::{Executor, JobInput};
use queuexec_js::{JsConfig, JsExecutor};

/// Writes `files` (relative path, contents) under a new temporary directory.
pub fn task_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(dir.path(), files);
    dir
}

/// Writes `files` (relative path, contents) under `root`.
pub fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
}

/// A job with JSON `data` and no timeout of its own.
pub fn job(id: &str, data: &str) -> JobInput {
    JobInput {
        id: id.into(),
        data: data.into(),
        task_type: None,
        attempt: 1,
        timeout: None,
        shape: Default::default(),
    }
}

/// A job with JSON `data` and a timeout.
pub fn job_with_timeout(id: &str, data: &str, timeout: Duration) -> JobInput {
    JobInput {
        timeout: Some(timeout),
        ..job(id, data)
    }
}

/// An executor with small limits, so failure tests are quick.
pub fn small_config(concurrency: usize) -> JsConfig {
    JsConfig {
        concurrency,
        heap_limit_bytes: 64 * 1024 * 1024,
        default_timeout: Some(Duration::from_secs(20)),
        load_timeout: Duration::from_secs(20),
        ..JsConfig::default()
    }
}

/// An executor with `files` loaded from a tempdir (kept alive by the returned guard).
pub async fn loaded(files: &[(&str, &str)], config: JsConfig) -> (JsExecutor, tempfile::TempDir) {
    let dir = task_dir(files);
    let executor = JsExecutor::new(config).expect("executor");
    executor
        .load_dir(dir.path(), None)
        .await
        .expect("load task");
    (executor, dir)
}

/// Runs a job and returns its result, panicking with the failure message otherwise.
pub async fn ok(executor: &JsExecutor, id: &str, data: &str) -> String {
    match executor.run(job(id, data)).await {
        Ok(result) => result,
        Err(failure) => panic!("job {id} failed: {failure}"),
    }
}

/// Runs a job and returns its failure message, panicking if it succeeds.
pub async fn fails(executor: &JsExecutor, input: JobInput) -> String {
    let id = input.id.clone();
    match executor.run(input).await {
        Ok(result) => panic!("job {id} should have failed but returned {result}"),
        Err(failure) => failure.message,
    }
}
