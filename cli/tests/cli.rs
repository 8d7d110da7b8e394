//! The `queuexec` binary as users run it: real processes, real files, loopback only.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "cli-test-room-token";
const TRANSFER: &str = "cli-test-transfer-token-0123456789ab";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_queuexec"))
}

/// A `queuexec` command with the tokens in its environment and a private room directory.
fn queuexec(dir: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir)
        .env("token", TOKEN)
        .env("transferEncryptToken", TRANSFER)
        .env("QUEUEXEC_ROOM_DIR", dir.join("rooms"))
        .env_remove("QUEUEXEC_MDNS")
        .env("LOG_LEVEL", "warn");
    cmd
}

/// Children are killed (by the PID we started) when the test ends, pass or fail.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_worker(dir: &Path, name: &str, exec: &str, extra: &[&str]) -> Child {
    queuexec(dir)
        .args(["worker", "--name", name, "--exec", exec, "--workplace"])
        .arg(dir.join(format!("wp-{name}")))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start worker")
}

fn write_jobs(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::File::create(path).expect("jobs file");
    for line in lines {
        writeln!(f, "{line}").expect("write");
    }
}

/// jobID -> number of lines for it, and the lines themselves.
fn read_results(path: &Path) -> (HashMap<String, usize>, Vec<serde_json::Value>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = HashMap::new();
    let mut lines = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each result line is JSON");
        *counts
            .entry(v["jobID"].as_str().expect("jobID").to_string())
            .or_insert(0) += 1;
        lines.push(v);
    }
    (counts, lines)
}

/// The file's lines once it has at least `n`.
fn wait_for_lines(path: &Path, n: usize, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            start.elapsed() < limit,
            "{} has {} of {n} lines after {limit:?}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() >= limit {
            // Not left running after the test.
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn output_with_timeout(mut child: Child, limit: Duration) -> Output {
    wait_with_timeout(&mut child, limit);
    child.wait_with_output().expect("output")
}

#[test]
fn setup_writes_both_tokens_and_never_prompts_without_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin())
        .current_dir(dir.path())
        .arg("setup")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(dir.path().join(".env")).expect(".env");
    let get = |key: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .expect(key)
    };
    assert!(get("token").len() >= 20 && get("token").chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(get("transferEncryptToken").len() == 32);
    let again = Command::new(bin())
        .current_dir(dir.path())
        .arg("setup")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".env")).expect(".env"),
        env,
        "tokens kept"
    );
}

#[test]
fn a_thread_count_that_is_not_a_number_is_refused_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = queuexec(dir.path())
        .env("QUEUEXEC_THREADS", "lots")
        .args(["master", "--jobs", "none.jsonl", "--results", "r.jsonl"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("master");
    let out = output_with_timeout(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("QUEUEXEC_THREADS=\"lots\"") && stderr.contains("from 1 to 256"),
        "{stderr}"
    );
}

#[test]
fn master_and_two_worker_processes_find_each_other_and_run_every_job_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_jobs(
        &d.join("jobs.jsonl"),
        (0..300).map(|i| format!("{{\"n\":{i}}}")),
    );
    let mut procs = Procs(Vec::new());
    // The master on three runtime threads, the workers on the default one: both ways serve.
    let master = queuexec(d)
        .env("QUEUEXEC_THREADS", "3")
        .args([
            "master",
            "--jobs",
            "jobs.jsonl",
            "--results",
            "results.jsonl",
            "--exit-when-done",
        ])
        .args(["--addr-file", "master.addr"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("master");
    // No address given: the workers find the master through the room file.
    procs
        .0
        .push(spawn_worker(d, "w1", "cat", &["--concurrency", "4"]));
    procs
        .0
        .push(spawn_worker(d, "w2", "cat", &["--concurrency", "4"]));
    let out = output_with_timeout(master, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = std::fs::read_to_string(d.join("master.addr")).expect("addr file");
    assert!(
        addr.starts_with("/ip4/127.0.0.1/tcp/") && addr.trim().contains("/p2p/12D3"),
        "{addr}"
    );
    let (counts, lines) = read_results(&d.join("results.jsonl"));
    assert_eq!(counts.len(), 300);
    assert!(counts.values().all(|c| *c == 1));
    let mut ns: Vec<u64> = lines
        .iter()
        .map(|v| v["data"]["n"].as_u64().expect("data echoed back"))
        .collect();
    ns.sort();
    assert_eq!(ns, (0..300).collect::<Vec<_>>());
    assert!(lines.iter().all(|v| {
        v["worker"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("12D3"))
    }));
    let names: std::collections::HashSet<_> = lines
        .iter()
        .map(|v| v["worker"]["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["w1", "w2"].into_iter().collect());
}

#[test]
fn a_killed_master_restarted_on_its_store_finishes_everything_without_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_jobs(
        &d.join("jobs.jsonl"),
        (0..400).map(|i| format!("{{\"id\":\"job-{i}\",\"data\":{i}}}")),
    );
    let mut procs = Procs(Vec::new());
    procs.0.push(spawn_worker(
        d,
        "w1",
        "sleep 0.01; cat",
        &["--concurrency", "4"],
    ));
    let master_cmd = |d: &Path| {
        let mut c = queuexec(d);
        c.args([
            "master",
            "--jobs",
            "jobs.jsonl",
            "--results",
            "results.jsonl",
            "--store",
            "jobs.sqlite",
        ])
        .arg("--exit-when-done")
        .stderr(Stdio::null());
        c
    };
    let mut first = master_cmd(d).spawn().expect("master");
    // Kill -9 once part of the work is done.
    let start = Instant::now();
    while read_results(&d.join("results.jsonl")).0.len() < 100 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().expect("kill -9");
    first.wait().expect("reap");
    let before = read_results(&d.join("results.jsonl")).0.len();
    assert!(before < 400, "the master was killed mid-run");

    // Restarted on the same store, fed the same jobs file again.
    let second = master_cmd(d).spawn().expect("master again");
    let out = output_with_timeout(second, Duration::from_secs(120));
    assert!(out.status.success());
    let (counts, _) = read_results(&d.join("results.jsonl"));
    assert_eq!(counts.len(), 400, "every accepted job finished");
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "results written twice: {twice:?}");
}

#[test]
fn a_hung_worker_loses_no_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_jobs(&d.join("jobs.jsonl"), (0..60).map(|i| i.to_string()));
    let mut procs = Procs(Vec::new());
    let master = queuexec(d)
        .args([
            "master",
            "--jobs",
            "jobs.jsonl",
            "--results",
            "results.jsonl",
            "--exit-when-done",
        ])
        .args(["--lease-ttl", "1"])
        .stderr(Stdio::null())
        .spawn()
        .expect("master");
    // Each job it starts is recorded, and none can finish within 3 s of starting.
    let hung = spawn_worker(
        d,
        "hung",
        "echo \"$QUEUEXEC_JOB_ID\" >> ../hung-started; sleep 3; cat",
        &["--concurrency", "2"],
    );
    let hung_pid = hung.id();
    procs.0.push(hung);
    // Once it is running a job (it holds that job's lease), freeze it (SIGSTOP): no results,
    // no heartbeats.
    let started = wait_for_lines(&d.join("hung-started"), 1, Duration::from_secs(60));
    let stopped = Command::new("kill")
        .args(["-STOP", &hung_pid.to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    procs
        .0
        .push(spawn_worker(d, "healthy", "cat", &["--concurrency", "2"]));
    let out = output_with_timeout(master, Duration::from_secs(90));
    let _ = Command::new("kill")
        .args(["-CONT", &hung_pid.to_string()])
        .status();
    assert!(out.status.success());
    let (counts, lines) = read_results(&d.join("results.jsonl"));
    assert_eq!(counts.len(), 60);
    assert!(counts.values().all(|c| *c == 1));
    assert!(lines.iter().any(|v| v["worker"]["name"] == "healthy"));
    // The job the frozen worker held was taken back and finished by the healthy one.
    let held = lines
        .iter()
        .find(|v| v["jobID"] == started[0].as_str())
        .expect("the held job has a result");
    assert_eq!(held["worker"]["name"], "healthy", "{held}");
}

#[test]
fn bad_job_lines_are_reported_and_the_rest_still_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_jobs(
        &d.join("jobs.jsonl"),
        [
            "1".to_string(),
            "{oops".to_string(),
            "{\"data\":3,\"prio\":1}".to_string(),
            "4".to_string(),
        ],
    );
    let mut procs = Procs(Vec::new());
    procs.0.push(spawn_worker(d, "w", "cat", &[]));
    let master = queuexec(d)
        .args([
            "master",
            "--jobs",
            "jobs.jsonl",
            "--results",
            "-",
            "--exit-when-done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("master");
    let out = output_with_timeout(master, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "skipped lines make the exit status non-zero"
    );
    assert!(
        stderr.contains("line 2") && stderr.contains("not JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 3") && stderr.contains("unknown field `prio`"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let data: Vec<i64> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["data"]
                .as_i64()
                .expect("n")
        })
        .collect();
    assert_eq!(data.len(), 2);
    assert!(data.contains(&1) && data.contains(&4));
}

#[test]
fn a_failing_command_reports_its_error_as_the_jobs_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_jobs(
        &d.join("jobs.jsonl"),
        ["{\"id\":\"bad\",\"data\":1,\"retries\":0}".to_string()],
    );
    let mut procs = Procs(Vec::new());
    procs.0.push(spawn_worker(
        d,
        "w",
        "echo 'cannot solve this' >&2; exit 2",
        &[],
    ));
    let master = queuexec(d)
        .args([
            "master",
            "--jobs",
            "jobs.jsonl",
            "--results",
            "results.jsonl",
            "--exit-when-done",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("master");
    let out = output_with_timeout(master, Duration::from_secs(60));
    assert!(out.status.success());
    let (_, lines) = read_results(&d.join("results.jsonl"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["jobID"], "bad");
    assert!(
        lines[0]["error"]
            .as_str()
            .expect("error")
            .contains("cannot solve this"),
        "{}",
        lines[0]
    );
    assert!(lines[0].get("data").is_none());
}

#[test]
fn a_restarted_master_does_not_redo_jobs_without_an_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // 200 lines without ids, 50 of them repeating an earlier line's text: each line is a job.
    write_jobs(
        &d.join("jobs.jsonl"),
        (0..200).map(|i| format!("{{\"n\":{}}}", i % 150)),
    );
    let mut procs = Procs(Vec::new());
    // Every run of the command is counted.
    procs.0.push(spawn_worker(
        d,
        "w",
        "echo run >> ../runs.log; cat",
        &["--concurrency", "4"],
    ));
    let master = |d: &Path| {
        let mut c = queuexec(d);
        c.args([
            "master",
            "--jobs",
            "jobs.jsonl",
            "--results",
            "results.jsonl",
            "--store",
            "jobs.sqlite",
            "--exit-when-done",
        ])
        .stderr(Stdio::piped());
        c.spawn().expect("master")
    };
    for run in 1..=2 {
        let out = output_with_timeout(master(d), Duration::from_secs(120));
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (counts, lines) = read_results(&d.join("results.jsonl"));
        assert_eq!(lines.len(), 200, "run {run}: one result per jobs line");
        assert_eq!(counts.len(), 200, "run {run}: 200 distinct job ids");
        let runs = std::fs::read_to_string(d.join("runs.log")).unwrap_or_default();
        assert_eq!(runs.lines().count(), 200, "run {run}: no job ran twice");
    }
}

#[test]
fn a_worker_cannot_plant_a_result_line_for_another_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_jobs(
        &d.join("jobs.jsonl"),
        [
            r#"{"id":"victim","data":1,"retries":0}"#.to_string(),
            r#"{"id":"victim-err","data":2,"retries":0}"#.to_string(),
            r#"{"id":"other","data":3,"retries":0}"#.to_string(),
        ],
    );
    // Valid JSON whose whitespace holds a complete line for job "other"; and an error text
    // doing the same.
    std::fs::write(
        d.join("forge.sh"),
        r#"case "$QUEUEXEC_JOB_ID" in
  victim) printf '[
{"jobID":"other","worker":{"id":"x","name":"x"},"data":"forged"}
]
' ;;
  victim-err) printf 'boom
{"jobID":"other","worker":{"id":"x","name":"x"},"data":"forged"}
' >&2; exit 1 ;;
  *) cat ;;
esac
"#,
    )
    .expect("script");
    let mut procs = Procs(Vec::new());
    procs.0.push(spawn_worker(d, "w", "sh ../forge.sh", &[]));
    let out = output_with_timeout(
        queuexec(d)
            .args([
                "master",
                "--jobs",
                "jobs.jsonl",
                "--results",
                "results.jsonl",
                "--exit-when-done",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .expect("master"),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(d.join("results.jsonl")).expect("results");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line per job:\n{text}");
    let parsed: HashMap<String, serde_json::Value> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a result line that is not JSON ({e}): {l}"));
            (v["jobID"].as_str().unwrap_or_default().to_string(), v)
        })
        .collect();
    assert_eq!(parsed["other"]["data"], 3, "{text}");
    assert_eq!(parsed["victim"]["data"][0]["data"], "forged", "{text}");
    assert!(
        parsed["victim-err"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("boom") && e.contains("\"jobID\":\"other\"")),
        "{text}"
    );
}

#[test]
fn control_characters_in_a_worker_name_reach_the_masters_terminal_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_jobs(&d.join("jobs.jsonl"), ["1".to_string()]);
    let mut procs = Procs(Vec::new());
    // Would retitle the terminal, clear it and ring its bell if printed raw.
    let name = "evil\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nfake line";
    procs.0.push(spawn_worker(d, name, "cat", &[]));
    let out = output_with_timeout(
        queuexec(d)
            // The core's own log lines name the worker too.
            .env("LOG_LEVEL", "info")
            .args([
                "master",
                "--jobs",
                "jobs.jsonl",
                "--results",
                "results.jsonl",
                "--exit-when-done",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .expect("master"),
        Duration::from_secs(60),
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("joined"), "{stderr}");
    assert!(
        !stderr.contains(['\u{1b}', '\u{7}', '\r']),
        "raw control characters on the terminal: {stderr:?}"
    );
    assert!(
        stderr.contains("evil\\u{1b}]0;pwned\\u{7}"),
        "the name is shown escaped: {stderr}"
    );
    // The result file keeps the name exactly (JSON escapes it).
    let (_, lines) = read_results(&d.join("results.jsonl"));
    assert_eq!(lines[0]["worker"]["name"], name);
}

#[test]
fn log_lines_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_jobs(&d.join("jobs.jsonl"), Vec::<String>::new());
    let out = output_with_timeout(
        queuexec(d)
            .env("LOG_LEVEL", "info")
            .env_remove("NO_COLOR")
            .args([
                "master",
                "--jobs",
                "jobs.jsonl",
                "--results",
                "results.jsonl",
                "--exit-when-done",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .expect("master"),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("master listening"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
}

#[test]
fn an_exec_worker_runs_jobs_far_bigger_than_a_pipe_buffer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // 1 MiB of data per job: a command fed all of it before its output is read would block.
    let big =
        |i: usize| serde_json::Value::String(format!("{i}{}", "x".repeat(1 << 20))).to_string();
    write_jobs(&d.join("jobs.jsonl"), (0..3).map(big));
    let mut procs = Procs(Vec::new());
    procs.0.push(spawn_worker(d, "w", "cat", &[]));
    let out = output_with_timeout(
        queuexec(d)
            .args([
                "master",
                "--jobs",
                "jobs.jsonl",
                "--results",
                "results.jsonl",
                "--exit-when-done",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .expect("master"),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (counts, lines) = read_results(&d.join("results.jsonl"));
    assert_eq!(counts.len(), 3);
    let mut data: Vec<String> = lines
        .iter()
        .map(|v| v["data"].as_str().expect("the data came back").to_string())
        .collect();
    data.sort();
    let expected: Vec<String> = (0..3)
        .map(|i| format!("{i}{}", "x".repeat(1 << 20)))
        .collect();
    assert!(data == expected, "the data came back whole");
}

/// `tests/fixtures/shared.env` (quotes, `export`, comments, CRLF) and the values every front
/// end must read from it (`shared.env.json`); Node and Python assert the same.
fn shared_env_fixture() -> (PathBuf, serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let expected = std::fs::read_to_string(dir.join("shared.env.json")).expect("fixture json");
    (
        dir.join("shared.env"),
        serde_json::from_str(&expected).expect("fixture json parses"),
    )
}

#[test]
fn a_cli_master_reads_the_shared_env_fixture_as_node_and_python_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (fixture, expected) = shared_env_fixture();
    std::fs::copy(&fixture, d.join(".env")).expect("copy fixture");
    assert!(
        std::fs::read(d.join(".env"))
            .expect("read")
            .windows(2)
            .any(|w| w == b"\r\n"),
        "the fixture keeps its CRLF line ends (see .gitattributes)"
    );
    write_jobs(
        &d.join("jobs.jsonl"),
        (0..5).map(|i| format!("{{\"n\":{i}}}")),
    );
    let mut procs = Procs(Vec::new());
    // The master has only ./.env to go by.
    let master = queuexec(d)
        .env_remove("token")
        .env_remove("transferEncryptToken")
        .args([
            "master",
            "--jobs",
            "jobs.jsonl",
            "--results",
            "results.jsonl",
            "--exit-when-done",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("master");
    // The worker is given the expected values outright, from its own folder: it can join and
    // open the jobs only if the master read exactly these tokens.
    let elsewhere = d.join("worker");
    std::fs::create_dir_all(&elsewhere).expect("worker dir");
    procs.0.push(
        queuexec(&elsewhere)
            .env("QUEUEXEC_ROOM_DIR", d.join("rooms"))
            .env("token", expected["token"].as_str().expect("token"))
            .env(
                "transferEncryptToken",
                expected["transferEncryptToken"].as_str().expect("transfer"),
            )
            .args(["worker", "--exec", "cat", "--workplace", "wp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker"),
    );
    let out = output_with_timeout(master, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (counts, _) = read_results(&d.join("results.jsonl"));
    assert_eq!(counts.len(), 5);
}
