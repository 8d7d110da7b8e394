//! Setup shared by the core's integration tests: tokens, the configs of a master and a worker
//! that find each other through a room directory (no mDNS), and reading results with deadlines.
#![allow(dead_code)] // each test file uses its own part of it

use std::path::{Path, PathBuf};
use std::time::Duration;

use queuexec_core::{JobResult, MasterConfig, MasterEvent, WorkerConfig};
use tokio::sync::mpsc::UnboundedReceiver;

pub(crate) const TOKEN: &str = "room-token-for-tests";
pub(crate) const TRANSFER: &str = "transfer-token-0123456789abcdefghij";

pub(crate) fn master_config(room_dir: &Path) -> MasterConfig {
    let mut config = MasterConfig::new(TOKEN, TRANSFER);
    config.room_dir = Some(room_dir.to_path_buf());
    config.mdns = Some(false);
    config.lease_ttl = Duration::from_millis(1_500);
    config.retry_backoff = Duration::from_millis(10);
    config
}

pub(crate) fn worker_config(room_dir: &Path, workplace: PathBuf, name: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new(TOKEN, TRANSFER);
    config.room_dir = Some(room_dir.to_path_buf());
    config.mdns = Some(false);
    config.workplace = workplace;
    config.name = name.into();
    config
}

pub(crate) async fn next_result(events: &mut UnboundedReceiver<MasterEvent>) -> JobResult {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Some(MasterEvent::Result(r))) => return r,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the master's event stream ended"),
            Err(_) => panic!("no result within 30 s"),
        }
    }
}

pub(crate) async fn collect(
    events: &mut UnboundedReceiver<MasterEvent>,
    n: usize,
) -> Vec<JobResult> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(next_result(events).await);
    }
    out
}

/// Asserts that no further result arrives for a moment.
pub(crate) async fn assert_no_more_results(events: &mut UnboundedReceiver<MasterEvent>) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let MasterEvent::Result(r) = event {
            panic!("unexpected extra result for job {}", r.job_id);
        }
    }
}
