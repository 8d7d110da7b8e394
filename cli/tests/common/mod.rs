//! Helpers shared by the CLI's process-level tests (`kill_loops.rs`, `evil_peer.rs`): starting
//! `queuexec` processes with private tokens and room directory, killing them by the PIDs the
//! test started, and reading results.jsonl. Each test binary uses only some of them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// `full` under `QUEUEXEC_SLOW=1`, else `bounded`.
pub(crate) fn count(full: usize, bounded: usize) -> usize {
    match std::env::var("QUEUEXEC_SLOW") {
        Ok(v) if v == "1" => full,
        _ => bounded,
    }
}

/// The CLI binary cargo built for this test.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_queuexec"))
}

/// A `queuexec` command with the tokens in its environment and a private room directory.
pub(crate) fn queuexec_with(dir: &Path, token: &str, transfer: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir)
        .env("token", token)
        .env("transferEncryptToken", transfer)
        .env("QUEUEXEC_ROOM_DIR", dir.join("rooms"))
        .env_remove("QUEUEXEC_MDNS")
        .env("LOG_LEVEL", "warn");
    cmd
}

/// Children are killed (by the PID we started) when the test ends, pass or fail.
pub(crate) struct Procs(pub(crate) Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Appends to `log` (a file in the test's folder), so a failure can show what a process said.
pub(crate) fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("opening a log file")
}

/// Appends `lines` to the jobs file at `path`.
pub(crate) fn append_jobs(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("jobs file");
    for line in lines {
        writeln!(f, "{line}").expect("write");
    }
}

/// jobID -> result lines for it. `strict`: every line must be whole JSON (a torn last line is
/// allowed only while a master may be writing or was just killed).
pub(crate) fn read_results(path: &Path, strict: bool) -> HashMap<String, Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = if strict {
        &text[..]
    } else {
        &text[..text.rfind('\n').map_or(0, |i| i + 1)]
    };
    let mut results: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for line in whole.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a result line is not JSON ({e}): {line:?}"));
        let id = v["jobID"]
            .as_str()
            .expect("every result line has a jobID")
            .to_string();
        results.entry(id).or_default().push(v);
    }
    results
}

/// Waits for `ready` up to `limit`, polling every 10 ms.
pub(crate) fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every job in `ids` has exactly one result line, and it is a success with the job's data.
pub(crate) fn assert_each_result_once(
    results: &HashMap<String, Vec<serde_json::Value>>,
    ids: &[String],
) {
    let lost: Vec<_> = ids.iter().filter(|id| !results.contains_key(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} jobs lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let twice: Vec<_> = results
        .iter()
        .filter(|(_, lines)| lines.len() > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "results delivered more than once: {twice:?}"
    );
    let failed: Vec<_> = results
        .values()
        .flatten()
        .filter(|v| v.get("data").is_none())
        .collect();
    assert!(
        failed.is_empty(),
        "jobs failed instead of running: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(results.len(), ids.len(), "results for jobs nobody pushed");
}
