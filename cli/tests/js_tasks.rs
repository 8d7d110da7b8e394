//! The master's task.js, with real npm dependencies, run by `queuexec worker` processes that
//! have never seen it, in their embedded JavaScript runtime.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "js-test-room-token";
const TRANSFER: &str = "js-test-transfer-token-0123456789abc";

fn queuexec(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_queuexec"));
    cmd.current_dir(dir)
        .env("token", TOKEN)
        .env("transferEncryptToken", TRANSFER)
        .env("QUEUEXEC_ROOM_DIR", dir.join("rooms"))
        .env("QUEUEXEC_CACHE_DIR", dir.join("cache"))
        .env_remove("QUEUEXEC_MDNS")
        .env("LOG_LEVEL", "warn");
    cmd
}

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const TASK_V1: &str = r#"
const Big = require('big.js');
const moment = require('moment');
const { label } = require('./lib/label.js');
class Task {
  async run(job) {
    const input = typeof job.data === 'string' ? JSON.parse(job.data) : job.data;
    return {
      version: 1,
      label: label(input.n),
      tenth: new Big(input.n).times('0.1').toFixed(1),
      day: moment.utc(0).add(input.n, 'days').format('YYYY-MM-DD'),
    };
  }
}
module.exports = Task;
"#;

fn results(path: &Path) -> HashMap<String, serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("result line is JSON");
            (v["jobID"].as_str().expect("jobID").to_string(), v)
        })
        .collect()
}

fn wait_for_results(path: &Path, n: usize) -> HashMap<String, serde_json::Value> {
    let start = Instant::now();
    loop {
        let r = results(path);
        if r.len() >= n {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "only {} of {n} results",
            r.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn day(n: u64) -> String {
    // 1970-01-01 plus n days, computed independently of moment.
    let days = n as i64;
    let (mut y, mut remaining) = (1970i64, days);
    loop {
        let len = if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
            366
        } else {
            365
        };
        if remaining < len {
            break;
        }
        remaining -= len;
        y += 1;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let months = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut m = 0;
    while remaining >= months[m] {
        remaining -= months[m];
        m += 1;
    }
    format!("{y:04}-{:02}-{:02}", m + 1, remaining + 1)
}

#[test]
fn workers_run_the_masters_task_with_its_npm_dependencies_and_follow_its_changes() {
    if Command::new("npm")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        panic!("npm is needed on the master to bundle dependencies: run scripts/ensure-deps.sh");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir_all(d.join("lib")).expect("mkdir");
    std::fs::write(d.join("task.js"), TASK_V1).expect("task.js");
    std::fs::write(
        d.join("lib/label.js"),
        "exports.label = (n) => `job #${n}`;\n",
    )
    .expect("label.js");

    let mut procs = Procs(Vec::new());
    let mut master = queuexec(d)
        .args([
            "master",
            "--jobs",
            "-",
            "--results",
            "results.jsonl",
            "--exit-when-done",
        ])
        .args([
            "--task",
            "task.js",
            "--file",
            "lib/label.js",
            "--dep",
            "big.js",
            "--dep",
            "moment",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("master");
    for name in ["w1", "w2"] {
        // Fresh workplaces: the workers have never seen the task; they have no npm of their own
        // to run (PATH without node/npm proves they never need it).
        procs.0.push(
            queuexec(d)
                .args([
                    "worker",
                    "--name",
                    name,
                    "--concurrency",
                    "2",
                    "--workplace",
                ])
                .arg(d.join(format!("wp-{name}")))
                .env("PATH", "/nonexistent")
                .stderr(Stdio::inherit())
                .spawn()
                .expect("worker"),
        );
    }
    let mut stdin = master.stdin.take().expect("stdin");
    for n in 0..500 {
        writeln!(stdin, "{{\"id\":\"a{n}\",\"data\":{{\"n\":{n}}}}}").expect("push");
    }
    stdin.flush().expect("flush");

    let first = wait_for_results(&d.join("results.jsonl"), 500);
    for n in 0..500u64 {
        let r = &first[&format!("a{n}")];
        assert!(r.get("error").is_none(), "job a{n} failed: {r}");
        let data = &r["data"];
        assert_eq!(data["version"], 1);
        assert_eq!(data["label"], format!("job #{n}"));
        assert_eq!(data["tenth"], format!("{}.{}", n / 10, n % 10));
        assert_eq!(data["day"], day(n), "moment's date for {n}");
    }
    let workers: std::collections::HashSet<_> = first
        .values()
        .map(|r| r["worker"]["name"].clone())
        .collect();
    assert_eq!(workers.len(), 2, "both workers ran the task");

    // The master's task.js changes: the workers must run the new version for further jobs.
    std::fs::write(
        d.join("task.js"),
        TASK_V1.replace("version: 1", "version: 2"),
    )
    .expect("task.js v2");
    std::thread::sleep(Duration::from_millis(2_500));
    for n in 0..50 {
        writeln!(stdin, "{{\"id\":\"b{n}\",\"data\":{{\"n\":{n}}}}}").expect("push");
    }
    drop(stdin);
    let all = wait_for_results(&d.join("results.jsonl"), 550);
    for n in 0..50 {
        assert_eq!(
            all[&format!("b{n}")]["data"]["version"],
            2,
            "job b{n} ran the new task.js"
        );
    }
    let start = Instant::now();
    while master.try_wait().expect("wait").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "master did not exit when done"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(master.wait().expect("status").success());
}

#[test]
fn the_demo_estimates_pi_with_a_javascript_task() {
    let out = Command::new(env!("CARGO_BIN_EXE_queuexec"))
        .args([
            "demo",
            "--workers",
            "2",
            "--jobs",
            "20",
            "--samples",
            "20000",
        ])
        .env(
            "QUEUEXEC_ROOM_DIR",
            std::env::temp_dir().join("queuexec-demo-test-rooms"),
        )
        .output()
        .expect("demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("demo: 20 jobs, 2 workers, ") && last.ends_with(" jobs/s"),
        "{last}"
    );
    let pi_line = stdout
        .lines()
        .find(|l| l.contains("pi is about"))
        .expect("pi line");
    let pi: f64 = pi_line
        .split_whitespace()
        .nth(4)
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!((pi - std::f64::consts::PI).abs() < 0.05, "{pi_line}");
}
