//! The dashboard over HTTP, against a real `queuexec master --dashboard` process with real
//! `queuexec worker` processes on loopback: the JSON API, the event stream, /metrics, retrying
//! and discarding dead letters, and the rules that keep other sites and other hosts out.
//!
//! The HTTP client is hyper's (the same library axum serves with), one connection per request.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Procs, append_jobs, queuexec_with, read_results};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

const TOKEN: &str = "dashboard-test-room-token";
const TRANSFER: &str = "dashboard-test-transfer-token-0123456789";
const DASH_TOKEN: &str = "dashboard-secret-0123456789";

struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection, with a deadline.
async fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let work = async {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connect to the dashboard");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("HTTP handshake");
        tokio::spawn(conn);
        let mut builder = hyper::Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            builder = builder.header("host", authority.as_str());
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    };
    tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 20 s"))
}

async fn get(base: &str, path: &str) -> Reply {
    request(base, "GET", path, &[], None).await
}

/// Polls `check` every 100 ms until it gives a value, for at most `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of one sample in Prometheus text (`name` or `name{labels}`).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
}

/// A worker whose command echoes its input, except that data containing "poison" fails
/// (stderr "poisoned input", exit 3) until the file `cure` exists in the test folder.
fn worker(dir: &Path, name: &str) -> Child {
    let script = dir.join("solve.sh");
    if !script.exists() {
        std::fs::write(
            &script,
            format!(
                "x=$(cat)\ncase \"$x\" in\n  *poison*) if [ -f '{cure}' ]; then echo '{{\"cured\":true}}'; \
                 else echo 'poisoned input' >&2; exit 3; fi ;;\n  *) echo \"$x\" ;;\nesac\n",
                cure = dir.join("cure").display()
            ),
        )
        .expect("script");
    }
    queuexec_with(dir, TOKEN, TRANSFER)
        .args(["worker", "--name", name, "--concurrency", "4", "--exec"])
        .arg(format!("sh {}", script.display()))
        .arg("--workplace")
        .arg(dir.join(format!("wp-{name}")))
        .stdout(Stdio::null())
        .stderr(Stdio::from(common::log_file(dir, &format!("{name}.log"))))
        .spawn()
        .expect("start a worker")
}

/// Starts a master with a dashboard; returns it and the dashboard's URL.
fn master(dir: &Path, extra: &[&str]) -> (Child, String) {
    let url_file = dir.join("dashboard.url");
    let _ = std::fs::remove_file(&url_file);
    let mut child = queuexec_with(dir, TOKEN, TRANSFER)
        .args([
            "master",
            "--jobs",
            "jobs.jsonl",
            "--results",
            "results.jsonl",
            "--store",
            "jobs.sqlite",
            "--retries",
            "0",
            "--dashboard",
            "127.0.0.1:0",
            "--dashboard-url-file",
            "dashboard.url",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::from(common::log_file(dir, "master.log")))
        .spawn()
        .expect("start the master");
    let start = Instant::now();
    loop {
        if let Ok(url) = std::fs::read_to_string(&url_file)
            && url.ends_with('\n')
        {
            return (child, url.trim().to_string());
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the master exited ({status}): {}",
                std::fs::read_to_string(dir.join("master.log")).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no dashboard URL within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_metrics_show_real_workers_and_dead_letters_can_be_retried_and_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut jobs: Vec<String> = (0..200)
        .map(|i| format!("{{\"id\":\"ok-{i}\",\"data\":{{\"n\":{i}}}}}"))
        .collect();
    jobs.push(r#"{"id":"poison","data":"poison","retries":1}"#.into());
    jobs.push(r#"{"id":"poison-2","data":"poison"}"#.into());
    append_jobs(&d.join("jobs.jsonl"), jobs);
    let (m, base) = master(d, &[]);
    let mut procs = Procs(vec![m]);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    procs.0.push(worker(d, "alpha"));
    procs.0.push(worker(d, "beta"));

    // Everything ends: 200 done, two dead letters.
    let overview = eventually("all jobs answered", Duration::from_secs(90), || async {
        let o = get(&base, "/api/overview").await.json();
        (o["stats"]["done"] == 200 && o["dead_letters"] == 2).then_some(o)
    })
    .await;
    assert_eq!(overview["stats"]["queued"], 0, "{overview}");
    assert_eq!(overview["stats"]["running"], 0, "{overview}");
    assert_eq!(overview["eta_ms"], 0, "nothing left: {overview}");
    let answered: u64 = overview["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|s| s["done"].as_u64().unwrap_or(0) + s["failed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(answered, 203, "200 done + 3 failed runs: {overview}");

    // Workers: both, connected directly, their counts adding up.
    let workers = get(&base, "/api/workers").await.json();
    let workers = workers.as_array().expect("array");
    assert_eq!(workers.len(), 2, "{workers:?}");
    let mut names: Vec<&str> = workers.iter().filter_map(|w| w["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
    for w in workers {
        assert!(
            w["peer_id"].as_str().expect("peer").starts_with("12D3"),
            "{w}"
        );
        assert_eq!(w["path"], "direct");
        assert_eq!(w["held"], 0);
    }
    let done: u64 = workers
        .iter()
        .map(|w| w["done"].as_u64().expect("done"))
        .sum();
    let failed: u64 = workers
        .iter()
        .map(|w| w["failed"].as_u64().expect("failed"))
        .sum();
    assert_eq!((done, failed), (200, 3));

    // A job by id: state, worker, timings.
    let job = get(&base, "/api/jobs/ok-7").await;
    assert_eq!(job.status, 200, "{}", job.body);
    let job = job.json();
    assert_eq!(job["status"], "done");
    assert_eq!(job["attempts"], 1);
    assert!(
        ["alpha", "beta"].contains(&job["worker"]["name"].as_str().expect("worker")),
        "{job}"
    );
    assert!(
        job["run_ms"].is_u64() && job["queue_wait_ms"].is_u64(),
        "{job}"
    );
    assert!(
        job["finished_ms"].as_i64() >= job["started_ms"].as_i64(),
        "{job}"
    );
    let missing = get(&base, "/api/jobs/no-such-job").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.json()["error"]
            .as_str()
            .expect("error")
            .contains("no job")
    );

    // The dead letters, newest first, with their last error.
    let dead = get(&base, "/api/dead").await.json();
    let dead = dead.as_array().expect("array").clone();
    let ids: Vec<&str> = dead.iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{dead:?}");
    assert!(
        ids.contains(&"poison") && ids.contains(&"poison-2"),
        "{ids:?}"
    );
    let poison = dead.iter().find(|j| j["id"] == "poison").expect("poison");
    assert_eq!(poison["status"], "dead");
    assert_eq!(poison["attempts"], 2, "retries 1: two runs");
    assert!(
        poison["last_error"]
            .as_str()
            .expect("error")
            .contains("poisoned input"),
        "{poison}"
    );

    // /metrics in the Prometheus text format.
    let metrics = get(&base, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with("application/openmetrics-text"),
    );
    let m = metrics.body;
    assert_eq!(sample(&m, "queuexec_jobs_pushed_total"), 202.0);
    assert_eq!(sample(&m, "queuexec_jobs_done_total"), 200.0);
    assert_eq!(sample(&m, "queuexec_jobs_failed_total"), 3.0);
    assert_eq!(sample(&m, "queuexec_jobs_retried_total"), 1.0);
    assert_eq!(sample(&m, "queuexec_jobs_dead_total"), 2.0);
    assert_eq!(sample(&m, "queuexec_job_run_seconds_count"), 203.0);
    assert_eq!(sample(&m, "queuexec_job_queue_wait_seconds_count"), 203.0);
    assert_eq!(sample(&m, "queuexec_jobs_queued"), 0.0);
    assert_eq!(sample(&m, "queuexec_jobs_running"), 0.0);
    assert_eq!(sample(&m, "queuexec_workers_connected"), 2.0);
    assert_eq!(sample(&m, "queuexec_connections{path=\"direct\"}"), 2.0);
    assert_eq!(sample(&m, "queuexec_connections{path=\"relayed\"}"), 0.0);
    assert!(
        m.contains("# TYPE queuexec_job_run_seconds histogram"),
        "{m}"
    );

    // The event stream sends an update at once.
    let events = tokio::time::timeout(Duration::from_secs(20), async {
        let authority = base.trim_start_matches("http://").trim_end_matches('/');
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri("/api/events")
            .header("host", authority)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        assert_eq!(
            resp.headers()["content-type"].to_str().expect("type"),
            "text/event-stream"
        );
        let mut body = resp.into_body();
        let mut text = String::new();
        while !text.contains("\n\n") {
            let frame = body.frame().await.expect("a frame").expect("frame");
            if let Some(data) = frame.data_ref() {
                text.push_str(&String::from_utf8_lossy(data));
            }
        }
        text
    })
    .await
    .expect("an event within 20 s");
    assert!(events.starts_with("event: update\n"), "{events}");
    let data = events
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    let update: Value = serde_json::from_str(data).expect("JSON update");
    assert_eq!(update["overview"]["stats"]["done"], 200);
    assert_eq!(update["workers"].as_array().map(Vec::len), Some(2));

    // Actions refuse requests from other sites and requests without the CSRF token.
    let body = r#"{"id":"poison"}"#;
    let json = ("content-type", "application/json");
    let no_csrf = request(&base, "POST", "/api/dead/retry", &[json], Some(body)).await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    assert!(no_csrf.body.contains("X-Queuexec-Csrf"), "{}", no_csrf.body);
    let csrf = get(&base, "/api/csrf").await.json()["csrf"]
        .as_str()
        .expect("csrf")
        .to_string();
    let with_csrf = ("x-queuexec-csrf", csrf.as_str());
    let cross = request(
        &base,
        "POST",
        "/api/dead/retry",
        &[json, with_csrf, ("origin", "http://evil.example")],
        Some(body),
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    let cross = request(
        &base,
        "POST",
        "/api/dead/retry",
        &[json, with_csrf, ("sec-fetch-site", "cross-site")],
        Some(body),
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    // A name that is not loopback (DNS rebinding) is refused, reads too.
    let rebound = request(
        &base,
        "GET",
        "/api/overview",
        &[("host", "evil.example:80")],
        None,
    )
    .await;
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    assert_eq!(
        get(&base, "/api/dead")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(2),
        "nothing was retried by the refused requests"
    );

    // Retry: the cure is in place, the job runs again and finishes; its result follows the
    // error in results.jsonl.
    std::fs::write(d.join("cure"), "").expect("cure");
    let own_origin = base.trim_end_matches('/').to_string();
    let retried = request(
        &base,
        "POST",
        "/api/dead/retry",
        &[
            json,
            with_csrf,
            ("origin", own_origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        Some(body),
    )
    .await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.json()["retried"], "poison");
    let job = eventually(
        "the retried job finishes",
        Duration::from_secs(60),
        || async {
            let j = get(&base, "/api/jobs/poison").await.json();
            (j["status"] == "done").then_some(j)
        },
    )
    .await;
    assert_eq!(job["attempts"], 1, "attempts start again: {job}");
    let lines: HashMap<String, Vec<Value>> = eventually(
        "the retried job's result line",
        Duration::from_secs(30),
        || async {
            let r = read_results(&d.join("results.jsonl"), false);
            (r.get("poison").map_or(0, Vec::len) == 2).then_some(r)
        },
    )
    .await;
    let poison_lines = &lines["poison"];
    assert!(
        poison_lines[0]["error"]
            .as_str()
            .expect("error first")
            .contains("poisoned")
    );
    assert_eq!(poison_lines[1]["data"], serde_json::json!({"cured": true}));
    assert_eq!(lines.len(), 202, "one line per other job");
    assert!(
        lines
            .iter()
            .filter(|(id, _)| *id != "poison")
            .all(|(_, l)| l.len() == 1)
    );

    // Discard: gone from the list; retrying it afterwards is a 404.
    let discarded = request(
        &base,
        "POST",
        "/api/dead/discard",
        &[json, with_csrf],
        Some(r#"{"id":"poison-2"}"#),
    )
    .await;
    assert_eq!(discarded.status, 200, "{}", discarded.body);
    assert_eq!(get(&base, "/api/dead").await.json(), serde_json::json!([]));
    let again = request(
        &base,
        "POST",
        "/api/dead/retry",
        &[json, with_csrf],
        Some(r#"{"id":"poison-2"}"#),
    )
    .await;
    assert_eq!(again.status, 404, "{}", again.body);
    let bad = request(
        &base,
        "POST",
        "/api/dead/retry",
        &[json, with_csrf],
        Some("not json"),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    let m = get(&base, "/metrics").await.body;
    assert_eq!(sample(&m, "queuexec_jobs_done_total"), 201.0);
    assert_eq!(sample(&m, "queuexec_dead_letters"), 0.0);
    drop(procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_request_needs_it_and_the_page_logs_in_with_a_cookie() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    append_jobs(&d.join("jobs.jsonl"), ["{\"x\":1}".to_string()]);
    let (m, base) = master(d, &["--dashboard-token", DASH_TOKEN]);
    let _procs = Procs(vec![m]);

    for path in ["/", "/api/overview", "/metrics", "/api/csrf", "/api/events"] {
        let r = get(&base, path).await;
        assert_eq!(r.status, 401, "{path} without the token: {}", r.body);
    }
    let wrong = request(
        &base,
        "GET",
        "/metrics",
        &[("authorization", "Bearer wrong-token-000000000")],
        None,
    )
    .await;
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {DASH_TOKEN}");
    eventually(
        "the job pushed, seen with the bearer token",
        Duration::from_secs(20),
        || async {
            let ok = request(
                &base,
                "GET",
                "/metrics",
                &[("authorization", bearer.as_str())],
                None,
            )
            .await;
            assert_eq!(ok.status, 200, "{}", ok.body);
            ok.body
                .contains("queuexec_jobs_pushed_total 1")
                .then_some(())
        },
    )
    .await;
    // With a token, another host name is fine (the token is what counts).
    let named = request(
        &base,
        "GET",
        "/api/overview",
        &[
            ("authorization", bearer.as_str()),
            ("host", "dashboard.example:80"),
        ],
        None,
    )
    .await;
    assert_eq!(named.status, 200, "{}", named.body);

    // The page's login: /?token= sets an HttpOnly, SameSite=Strict cookie and leaves the URL.
    let login = get(&base, &format!("/?token={DASH_TOKEN}")).await;
    assert_eq!(login.status, 303);
    assert_eq!(login.headers["location"], "/");
    let cookie = login.headers["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("pair").to_string();
    let page = request(&base, "GET", "/", &[("cookie", pair.as_str())], None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<script src=\"/app.js\""),
        "the page: {}",
        page.body
    );
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("script-src 'self'")
    );
    let bad_login = get(&base, "/?token=not-the-token-at-all").await;
    assert_eq!(bad_login.status, 401);

    // A cookie is ambient: an action with it still needs the CSRF token; the bearer header
    // alone is enough.
    let json = ("content-type", "application/json");
    let body = Some(r#"{"id":"nothing-dead"}"#);
    let by_cookie = request(
        &base,
        "POST",
        "/api/dead/discard",
        &[json, ("cookie", pair.as_str())],
        body,
    )
    .await;
    assert_eq!(by_cookie.status, 403, "{}", by_cookie.body);
    let csrf = request(
        &base,
        "GET",
        "/api/csrf",
        &[("cookie", pair.as_str())],
        None,
    )
    .await
    .json()["csrf"]
        .as_str()
        .expect("csrf")
        .to_string();
    let by_cookie = request(
        &base,
        "POST",
        "/api/dead/discard",
        &[
            json,
            ("cookie", pair.as_str()),
            ("x-queuexec-csrf", csrf.as_str()),
        ],
        body,
    )
    .await;
    assert_eq!(
        by_cookie.status, 404,
        "allowed, and nothing to discard: {}",
        by_cookie.body
    );
    let by_bearer = request(
        &base,
        "POST",
        "/api/dead/discard",
        &[json, ("authorization", bearer.as_str())],
        body,
    )
    .await;
    assert_eq!(by_bearer.status, 404, "{}", by_bearer.body);
}

#[test]
fn a_dashboard_beyond_loopback_without_a_token_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    append_jobs(&d.join("jobs.jsonl"), ["1".to_string()]);
    // Refused before anything listens: no address beyond loopback is ever bound.
    let out = queuexec_with(d, TOKEN, TRANSFER)
        .args([
            "master",
            "--jobs",
            "jobs.jsonl",
            "--results",
            "results.jsonl",
        ])
        .args(["--dashboard", "0.0.0.0:0"])
        .env_remove("QUEUEXEC_DASHBOARD_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("master")
        .wait_with_output()
        .expect("exit");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not loopback") && err.contains("token"),
        "{err}"
    );

    let out = queuexec_with(d, TOKEN, TRANSFER)
        .args([
            "master",
            "--jobs",
            "jobs.jsonl",
            "--results",
            "results.jsonl",
        ])
        .args(["--dashboard", "127.0.0.1:0", "--dashboard-token", "short"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("master");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16 characters"), "{err}");
}
