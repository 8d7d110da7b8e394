//! `queuexec worker --processes N --exit-when-drained`: a pool of worker processes that starts a
//! crashed one again and ends once the master has no more jobs. Real processes on loopback.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Procs, queuexec_with, read_results};

const TOKEN: &str = "pool-test-room-token";
const TRANSFER: &str = "pool-test-transfer-token-0123456789ab";

#[test]
fn a_pool_of_two_restarts_a_crashed_worker_and_ends_when_the_master_is_drained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let jobs: Vec<String> = (0..120).map(|i| format!("{{\"n\":{i}}}")).collect();
    std::fs::write(d.join("jobs.jsonl"), jobs.join("\n") + "\n").expect("jobs");
    let mut procs = Procs(Vec::new());
    procs.0.push(
        queuexec_with(d, TOKEN, TRANSFER)
            .args([
                "master",
                "--jobs",
                "jobs.jsonl",
                "--results",
                "results.jsonl",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("master"),
    );
    // The first job to run kills its worker (the command's parent) once: a crash mid-job.
    let exec = format!(
        "if mkdir {} 2>/dev/null; then kill -9 $PPID; sleep 5; fi; cat",
        d.join("crashed").display()
    );
    let pool = queuexec_with(d, TOKEN, TRANSFER)
        .args([
            "worker",
            "--processes",
            "2",
            "--exit-when-drained",
            "--name",
            "w",
        ])
        .args(["--exec", &exec, "--workplace"])
        .arg(d.join("wp"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pool");
    procs.0.push(pool);
    // The pool ends by itself once every job is done.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = procs.0[1].try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the pool did not end within 90 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = procs.0[1].stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(status.success(), "{stderr}");
    assert!(d.join("crashed").exists(), "a worker crashed");
    assert!(
        stderr.contains("worker_crash"),
        "the crash is reported: {stderr}"
    );
    let results = read_results(&d.join("results.jsonl"), true);
    assert_eq!(results.len(), 120, "every job has its result");
    assert!(results.values().all(|lines| lines.len() == 1), "each once");
    let names: std::collections::HashSet<String> = results
        .values()
        .map(|lines| {
            lines[0]["worker"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        names.contains("w-1") && names.contains("w-2"),
        "both pool workers ran jobs: {names:?}"
    );
    assert!(
        results
            .values()
            .all(|lines| lines[0].get("error").is_none()),
        "no job failed"
    );
}
