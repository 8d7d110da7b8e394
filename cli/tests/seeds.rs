//! `queuexec master --lookups --stats-file` with workers whose task.js (the embedded runtime)
//! reads and writes the master's lookups through `ctx`, and `--exit-when-drained` workers that
//! leave when the work is done. Real processes on loopback.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Procs, queuexec_with, read_results};

const TOKEN: &str = "seeds-test-room-token";
const TRANSFER: &str = "seeds-test-transfer-token-0123456789ab";

const TASK: &str = r#"
class Task {
  async run(job, ctx) {
    const fruit = await ctx.lookup('fruits', job.data.fruit);
    await ctx.setLookup('seen', job.id, { fruit });
    const back = await ctx.lookup('seen', job.id);
    let refused = null;
    try {
      await ctx.request('hello', {});
    } catch (e) {
      refused = e.message;
    }
    ctx.metric('pages', 2);
    return { fruit, back, refused, missing: (await ctx.lookup('fruits', 'zzz')) === undefined };
  }
}
module.exports = Task;
"#;

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "a process did not end within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn task_js_reads_and_writes_the_masters_lookups_and_workers_leave_when_drained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("task.js"), TASK).expect("task.js");
    std::fs::write(
        d.join("lookups.json"),
        r#"{"fruits": {"a": "apple", "b": "banana"}}"#,
    )
    .expect("lookups");
    let mut jobs = std::fs::File::create(d.join("jobs.jsonl")).expect("jobs");
    for n in 0..200u32 {
        let fruit = if n.is_multiple_of(2) { "a" } else { "b" };
        writeln!(
            jobs,
            "{{\"id\":\"j{n}\",\"data\":{{\"fruit\":\"{fruit}\"}}}}"
        )
        .expect("job");
    }
    drop(jobs);
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
            .args(["--task", "task.js", "--lookups", "lookups.json"])
            .args(["--stats-file", "stats.jsonl", "--stats-interval", "0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("master"),
    );
    for name in ["w1", "w2"] {
        procs.0.push(
            queuexec_with(d, TOKEN, TRANSFER)
                .args(["worker", "--name", name, "--exit-when-drained"])
                .args(["--stats-interval", "0.05", "--workplace"])
                .arg(d.join(format!("wp-{name}")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("worker"),
        );
    }
    // Both workers leave by themselves once every job is done.
    for i in [1, 2] {
        let status = wait_exit(&mut procs.0[i], Duration::from_secs(90));
        assert!(status.success(), "worker {i} ended with {status}");
    }
    let results = read_results(&d.join("results.jsonl"), true);
    assert_eq!(results.len(), 200);
    for (id, lines) in &results {
        assert_eq!(lines.len(), 1, "{id} once");
        let r = &lines[0];
        assert!(r.get("error").is_none(), "{id} failed: {r}");
        let n: u64 = id[1..].parse().expect("j<n>");
        let fruit = if n.is_multiple_of(2) {
            "apple"
        } else {
            "banana"
        };
        assert_eq!(r["data"]["fruit"], fruit, "{r}");
        assert_eq!(
            r["data"]["back"]["fruit"], fruit,
            "setLookup then lookup: {r}"
        );
        assert_eq!(r["data"]["missing"], true);
        let refused = r["data"]["refused"].as_str().unwrap_or("");
        assert!(refused.contains("no handler"), "{refused}");
    }
    let names: std::collections::HashSet<_> = results
        .values()
        .map(|l| l[0]["worker"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names.len(), 2, "both workers ran jobs: {names:?}");
    // The workers' counters reached the master's stats file (their last report on leaving).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(d.join("stats.jsonl")).unwrap_or_default();
        let last: Option<serde_json::Value> = text
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok());
        if let Some(report) = last
            && report["agg"]["last"]["jobsDone"] == 200.0
        {
            assert_eq!(report["agg"]["last"]["pages"], 400.0, "{report}");
            assert_eq!(report["raw"].as_object().map(|m| m.len()), Some(2));
            break;
        }
        assert!(Instant::now() < deadline, "no full stats report: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
