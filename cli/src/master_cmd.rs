//! `queuexec master`: jobs in as JSON lines, results out as JSON lines.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use queuexec_core::config::{self as defaults, asset_specs};
use queuexec_core::{
    JobResult, JobSpec, Master, MasterConfig, MasterEvent, StoreConfig, WorkerInfo,
};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::TokenArgs;
use crate::terminal::escape_control;

#[derive(Args, Debug)]
pub(crate) struct MasterArgs {
    #[command(flatten)]
    tokens: TokenArgs,
    /// Jobs as JSON lines, or - for standard input. Each line is a job's data; an object with a
    /// `data` key may also carry `id`, `type`, `priority`, `retries`, `timeout` and `delay`
    /// (milliseconds).
    #[arg(long, value_name = "FILE|-")]
    jobs: String,
    /// Where to write one result JSON line per job, or - for standard output.
    #[arg(long, value_name = "FILE|-")]
    results: String,
    /// Lookups workers' tasks read and write (ctx.lookup / ctx.setLookup): a JSON file of
    /// `{"<name>": {"<key>": value, ...}, ...}`, held in memory (changes are not written back).
    #[arg(long, value_name = "FILE")]
    lookups: Option<std::path::PathBuf>,
    /// Append the workers' aggregated statistics (okanjo-conductor's shape) to this file, one
    /// JSON line per report.
    #[arg(long, value_name = "FILE")]
    stats_file: Option<std::path::PathBuf>,
    /// Seconds between statistics reports (--stats-file).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    stats_interval: f64,
    /// Keep jobs in this SQLite file: a master restarted on it carries on where it stopped.
    #[arg(long, value_name = "PATH", conflicts_with = "in_memory")]
    store: Option<PathBuf>,
    /// Keep jobs in memory only (the default when --store is not given).
    #[arg(long)]
    in_memory: bool,
    /// Multiaddr to listen on (repeatable). Default: loopback TCP and QUIC on free ports; use
    /// /ip4/0.0.0.0/tcp/PORT to serve workers on other machines.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Write the master's dialable multiaddr (with /p2p/<peer id>) to this file.
    #[arg(long, value_name = "PATH")]
    addr_file: Option<PathBuf>,
    /// Exit once the jobs input has ended and every job has a result.
    #[arg(long)]
    exit_when_done: bool,
    /// The task.js workers run (shipped to them as task.js).
    #[arg(long, value_name = "FILE")]
    task: Option<PathBuf>,
    /// An extra file shipped to workers, at the same relative path (repeatable).
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// An npm package the task requires (repeatable); bundled for workers without Node.
    #[arg(long = "dep", value_name = "NAME")]
    deps: Vec<String>,
    /// Retries of a failed or lost job, unless its line says otherwise.
    #[arg(long, default_value_t = defaults::DEFAULT_RETRIES)]
    retries: u32,
    /// Seconds a worker's lease lasts without a heartbeat.
    #[arg(long, default_value_t = defaults::DEFAULT_LEASE_TTL.as_secs_f64())]
    lease_ttl: f64,
    /// Most worker connections at once.
    #[arg(long, default_value_t = defaults::DEFAULT_MAX_WORKERS)]
    max_workers: u32,
    /// With --store: the most ready jobs kept in memory; the rest wait in the store file and
    /// are read back (highest priority, then push order) as the ones in memory run low.
    #[arg(long, value_name = "N", default_value_t = defaults::DEFAULT_MAX_RESIDENT_JOBS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_resident_jobs: u64,
    /// Do not watch the task and files for changes (by default an edited file is reloaded and
    /// workers fetch it before their next job).
    #[arg(long)]
    no_watch: bool,
    /// Announce the master with mDNS on the local network (also QUEUEXEC_MDNS=1).
    #[arg(long)]
    mdns: bool,
    /// Directory of same-host room files (also QUEUEXEC_ROOM_DIR).
    #[arg(long, value_name = "DIR")]
    room_dir: Option<PathBuf>,
    /// Serve the dashboard (web page, JSON API, /metrics) on this address: IP:PORT or PORT
    /// (loopback). An address that is not loopback needs --dashboard-token.
    #[arg(long, value_name = "ADDR")]
    dashboard: Option<String>,
    /// The token every dashboard request must carry (at least 16 characters; also
    /// QUEUEXEC_DASHBOARD_TOKEN). Open the page as /?token=TOKEN.
    #[arg(long, value_name = "TOKEN", requires = "dashboard")]
    dashboard_token: Option<String>,
    /// Write the dashboard's URL to this file once it listens.
    #[arg(long, value_name = "PATH", requires = "dashboard")]
    dashboard_url_file: Option<PathBuf>,
    /// A relay to meet through across NATs (repeatable): a multiaddr ending in /p2p/<id>, as
    /// `queuexec relay` prints it. Else QUEUEXEC_BOOTSTRAP (comma separated, also from .env).
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Map the listening ports on the local router with UPnP (with a bootstrap).
    #[arg(long)]
    pub(crate) upnp: bool,
}

/// Parses one jobs line; the error says what is wrong with it.
pub(crate) fn parse_job(line: &str) -> Result<JobSpec, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(map) = &value else {
        return Ok(JobSpec::new(line.trim()));
    };
    let Some(data) = map.get("data") else {
        return Ok(JobSpec::new(line.trim()));
    };
    let mut job = JobSpec::new(data.to_string());
    for (key, v) in map {
        let bad = |what: &str| format!("`{key}` must be {what}, not {v}");
        match key.as_str() {
            "data" => {}
            "id" => {
                job.id = Some(match v {
                    Value::String(s) if !s.is_empty() => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad("a non-empty string or a number")),
                })
            }
            "type" => job.task_type = Some(v.as_str().ok_or_else(|| bad("a string"))?.to_string()),
            "priority" => {
                job.priority = v
                    .as_i64()
                    .and_then(|p| i32::try_from(p).ok())
                    .ok_or_else(|| bad("an integer"))?
            }
            "retries" => {
                job.retries = Some(
                    v.as_u64()
                        .and_then(|r| u32::try_from(r).ok())
                        .ok_or_else(|| bad("a whole number"))?,
                )
            }
            "timeout" => {
                job.timeout = Some(Duration::from_millis(
                    v.as_u64().ok_or_else(|| bad("milliseconds"))?,
                ))
            }
            "delay" => {
                job.delay = Some(Duration::from_millis(
                    v.as_u64().ok_or_else(|| bad("milliseconds"))?,
                ))
            }
            other => {
                return Err(format!(
                    "unknown field `{other}`: a job object with `data` may carry id, type, priority, retries, timeout and delay; put anything else inside `data`"
                ));
            }
        }
    }
    Ok(job)
}

/// Ids for jobs lines without an `id`, the same on every read of the same input, so a master
/// restarted on its store does not queue them again: the first 16 hex digits of the SHA-256 of
/// the line (without surrounding whitespace), then `-N` for its N-th occurrence in the input.
#[derive(Default)]
struct LineIds {
    seen: HashMap<[u8; 8], u64>,
}

impl LineIds {
    fn next(&mut self, line: &str) -> String {
        let digest = Sha256::digest(line.trim().as_bytes());
        let mut key = [0u8; 8];
        key.copy_from_slice(&digest[..8]);
        let n = self.seen.entry(key).or_insert(0);
        *n += 1;
        format!("{}-{n}", hex::encode(key))
    }
}

/// The results output: appends lines, never the same job twice (also across restarts).
struct ResultsSink {
    out: Box<dyn Write + Send>,
    written: HashSet<String>,
}

impl ResultsSink {
    fn open(target: &str) -> Result<ResultsSink> {
        if target == "-" {
            return Ok(ResultsSink {
                out: Box::new(std::io::stdout()),
                written: HashSet::new(),
            });
        }
        let path = Path::new(target);
        let written = recover_results(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the results file {}", path.display()))?;
        Ok(ResultsSink {
            out: Box::new(std::io::BufWriter::new(file)),
            written,
        })
    }

    /// Writes the result unless its job already has a line. Returns whether it wrote.
    fn write(&mut self, result: &JobResult) -> Result<bool> {
        if !self.written.insert(result.job_id.clone()) {
            return Ok(false);
        }
        let mut line = result_line(&result.job_id, &result.worker, &result.outcome)?;
        line.push('\n');
        self.out
            .write_all(line.as_bytes())
            .context("writing a result")?;
        Ok(true)
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().context("writing results")
    }
}

/// One line of results.jsonl, in queue-xec's shape.
#[derive(Serialize)]
struct ResultLine<'a> {
    #[serde(rename = "jobID")]
    job_id: &'a str,
    worker: &'a WorkerInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// A result as one JSON line, built from parsed values: nothing a worker sends is copied
/// verbatim, so no whitespace or text in it can end the line and start another job's.
/// Data that is not JSON becomes a JSON string. (Numbers pass through serde_json's `Value`:
/// integers beyond 64 bits come out as the nearest float.)
fn result_line(
    job_id: &str,
    worker: &WorkerInfo,
    outcome: &std::result::Result<String, String>,
) -> Result<String> {
    let line = match outcome {
        Ok(data) => ResultLine {
            job_id,
            worker,
            data: Some(serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.clone()))),
            error: None,
        },
        Err(error) => ResultLine {
            job_id,
            worker,
            data: None,
            error: Some(error),
        },
    };
    serde_json::to_string(&line).with_context(|| format!("encoding the result of job {job_id}"))
}

/// Job ids already in a results file. A torn last line (a crash mid-write) is cut off.
fn recover_results(path: &Path) -> Result<HashSet<String>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("reading the results file {}", path.display()));
        }
    };
    let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(complete as u64)
            .with_context(|| format!("cutting a torn last line off {}", path.display()))?;
    }
    let mut ids = HashSet::new();
    for line in text[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(line)
            && let Some(Value::String(id)) = map.get("jobID")
        {
            ids.insert(id.clone());
        }
    }
    Ok(ids)
}

/// Replaces `path` with `text` through a fresh temporary file in the same directory (created
/// exclusively under a random name, so a link planted there is never followed) and a rename.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".queuexec-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The address a worker should dial: loopback TCP first.
pub(crate) fn best_addr(addrs: &[String]) -> Option<String> {
    addrs
        .iter()
        .find(|a| a.contains("/127.0.0.1/tcp/"))
        .or_else(|| addrs.iter().find(|a| a.contains("/tcp/")))
        .or_else(|| addrs.first())
        .cloned()
}

enum Input {
    Pushed { accepted: u64, duplicates: u64 },
    Rejected { line: u64, reason: String },
    Done,
    Failed(anyhow::Error),
}

pub(crate) async fn run(args: MasterArgs) -> Result<()> {
    let tokens = args.tokens.resolve()?;
    let mut config = MasterConfig::new(tokens.token, tokens.transfer_token);
    // A job whose id is already in the store is not queued again (restarts on a jobs file).
    config.idempotent_ids = true;
    config.store = match &args.store {
        Some(path) => StoreConfig::Sqlite(path.clone()),
        None => StoreConfig::Memory,
    };
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    config.room_dir = args.room_dir.clone();
    config.mdns = args.mdns.then_some(true);
    config.bootstrap =
        defaults::resolve_bootstrap(&args.bootstrap, args.tokens.env_file.as_deref())?;
    config.upnp = args.upnp;
    let reaching = !config.bootstrap.is_empty();
    config.assets = asset_specs(args.task.as_deref(), &args.files)?;
    config.dependencies = args.deps.clone();
    config.default_retries = args.retries;
    config.lease_ttl = Duration::try_from_secs_f64(args.lease_ttl)
        .with_context(|| format!("--lease-ttl {}: give a number of seconds", args.lease_ttl))?;
    config.max_workers = args.max_workers;
    config.max_resident_jobs = usize::try_from(args.max_resident_jobs).unwrap_or(usize::MAX);
    config.watch_assets = !args.no_watch;
    config.auto_ack = false;

    let dashboard_config =
        args.dashboard
            .as_ref()
            .map(|addr| queuexec_dashboard::DashboardConfig {
                addr: addr.clone(),
                token: args.dashboard_token.clone(),
            });
    if let Some(config) = &dashboard_config {
        config.validate().context("--dashboard")?;
    }
    let mut sink = ResultsSink::open(&args.results)?;
    if !(args.stats_interval.is_finite() && args.stats_interval > 0.0) {
        anyhow::bail!(
            "--stats-interval must be a positive number of seconds, got {}",
            args.stats_interval
        );
    }
    config.stats_interval = Duration::from_secs_f64(args.stats_interval.max(0.05));
    let mut lookups = crate::seeds::Lookups::load(args.lookups.as_deref())?;
    let mut stats_file = crate::seeds::StatsFile::open(args.stats_file.as_deref())?;
    let (master, mut events) = Master::start(config).await?;
    let addrs = master.listen_addrs();
    if let Some(path) = &args.addr_file {
        let addr = best_addr(&addrs).context("the master has no address to write")?;
        write_atomic(path, &format!("{addr}\n"))?;
    }
    tracing::info!(peer = %master.peer_id(), room = &master.room_id()[..12], "master listening on {}", addrs.join(" "));
    let dashboard = match dashboard_config {
        Some(config) => {
            let dashboard = match queuexec_dashboard::Dashboard::start(master.clone(), config).await
            {
                Ok(d) => d,
                Err(e) => {
                    master.close().await?;
                    return Err(e).context("--dashboard");
                }
            };
            if let Some(path) = &args.dashboard_url_file {
                write_atomic(path, &format!("{}\n", dashboard.url()))?;
            }
            eprintln!("dashboard: {}", dashboard.url());
            Some(dashboard)
        }
        None => None,
    };
    if args.store.is_none() {
        tracing::info!("jobs are kept in memory; pass --store FILE to survive restarts");
    }

    let (input_tx, mut input_rx) = mpsc::unbounded_channel();
    tokio::spawn(read_jobs(master.clone(), args.jobs.clone(), input_tx));

    let progress = Progress::new();
    let (mut pushed, mut written, mut rejected) = (0u64, 0u64, 0u64);
    let mut input_done = false;
    let mut acks = Vec::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let outcome: Result<()> = loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break Ok(()) };
                let mut next = Some(event);
                // Handle everything queued, then flush once.
                while let Some(event) = next {
                    match event {
                        MasterEvent::Result(result) => {
                            if sink.write(&result)? {
                                written += 1;
                            }
                            acks.push(result.job_id);
                        }
                        MasterEvent::WorkerJoined(w) => progress.log(&format!(
                            "worker {} ({}) joined",
                            escape_control(&w.name),
                            escape_control(&w.id)
                        )),
                        MasterEvent::WorkerLeft(w) => progress.log(&format!(
                            "worker {} ({}) left",
                            escape_control(&w.name),
                            escape_control(&w.id)
                        )),
                        MasterEvent::Warning(w) => {
                            progress.log(&format!("warning: {}", escape_control(&w)))
                        }
                        MasterEvent::Call(call) => {
                            let (id, answer) = lookups.answer(call);
                            master.answer(id, answer);
                        }
                        MasterEvent::Stats(report) => stats_file.write(&report)?,
                        MasterEvent::TaskLoadFailed { worker, reason } => progress.log(&format!(
                            "warning: worker {} ({}) cannot load the task: {}; it takes no jobs until the assets change",
                            escape_control(&worker.name),
                            escape_control(&worker.id),
                            escape_control(&reason)
                        )),
                        MasterEvent::DeadRetried(job_id) => {
                            // Its new result gets a line of its own, after the error's.
                            sink.written.remove(&job_id);
                            progress.log(&format!(
                                "dead job {} queued again from the dashboard",
                                escape_control(&job_id)
                            ));
                        }
                        _ => {}
                    }
                    next = events.try_recv().ok();
                }
                sink.flush()?;
                master.ack(std::mem::take(&mut acks));
                progress.update(pushed, written);
            }
            input = input_rx.recv(), if !input_done => match input {
                Some(Input::Pushed { accepted, duplicates }) => {
                    pushed += accepted;
                    if duplicates > 0 {
                        progress.log(&format!("{duplicates} job(s) already in the store were not queued again"));
                    }
                    progress.update(pushed, written);
                }
                Some(Input::Rejected { line, reason }) => {
                    rejected += 1;
                    progress.log(&format!("jobs line {line} skipped: {reason}"));
                }
                Some(Input::Failed(e)) => break Err(e),
                Some(Input::Done) | None => input_done = true,
            },
            _ = &mut ctrl_c => {
                progress.log("interrupted: closing the master");
                break Ok(());
            }
        }
        if args.exit_when_done && input_done && master.idle().await? {
            // Every result up to now is in the event channel.
            while let Ok(event) = events.try_recv() {
                if let MasterEvent::Result(result) = event {
                    if sink.write(&result)? {
                        written += 1;
                    }
                    acks.push(result.job_id);
                }
            }
            sink.flush()?;
            master.ack(std::mem::take(&mut acks));
            break Ok(());
        }
    };
    progress.finish(pushed, written);
    if let Some(dashboard) = dashboard {
        dashboard.stop().await;
    }
    if reaching && let Ok(stats) = master.stats().await {
        progress.log(&format!(
            "network: {} bytes of job traffic went through relays; {} worker connection(s) relayed now",
            stats.relayed_bytes, stats.relayed_workers
        ));
    }
    master.close().await?;
    outcome?;
    if rejected > 0 {
        bail!("{rejected} jobs line(s) were skipped (see above); fix them and push them again");
    }
    Ok(())
}

async fn read_jobs(master: Master, source: String, tx: mpsc::UnboundedSender<Input>) {
    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if source == "-" {
        Box::new(tokio::io::stdin())
    } else {
        match tokio::fs::File::open(&source).await {
            Ok(f) => Box::new(f),
            Err(e) => {
                let _ = tx.send(Input::Failed(anyhow::anyhow!(
                    "cannot open the jobs file {source}: {e}"
                )));
                return;
            }
        }
    };
    let mut lines = BufReader::new(reader).lines();
    let mut batch = Vec::new();
    let mut line_no = 0u64;
    let mut line_ids = LineIds::default();
    loop {
        // Push what we have when the input pauses, so a slow producer's jobs start at once.
        let next = if batch.is_empty() {
            lines.next_line().await
        } else {
            match tokio::time::timeout(Duration::from_millis(2), lines.next_line()).await {
                Ok(line) => line,
                Err(_) => {
                    if !push(&master, &mut batch, &tx).await {
                        return;
                    }
                    continue;
                }
            }
        };
        match next {
            Ok(Some(line)) => {
                line_no += 1;
                if line.trim().is_empty() {
                    continue;
                }
                match parse_job(&line) {
                    Ok(mut job) => {
                        if job.id.is_none() {
                            job.id = Some(line_ids.next(&line));
                        }
                        batch.push(job)
                    }
                    Err(reason) => {
                        let _ = tx.send(Input::Rejected {
                            line: line_no,
                            reason,
                        });
                    }
                }
                if batch.len() >= 2000 && !push(&master, &mut batch, &tx).await {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Input::Failed(anyhow::anyhow!("reading jobs: {e}")));
                return;
            }
        }
    }
    if push(&master, &mut batch, &tx).await {
        let _ = tx.send(Input::Done);
    }
}

async fn push(
    master: &Master,
    batch: &mut Vec<JobSpec>,
    tx: &mpsc::UnboundedSender<Input>,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    match master.push_many(std::mem::take(batch)).await {
        Ok(receipts) => {
            let duplicates = receipts.iter().filter(|r| r.duplicate).count() as u64;
            let _ = tx.send(Input::Pushed {
                accepted: receipts.len() as u64 - duplicates,
                duplicates,
            });
            true
        }
        Err(e) => {
            let _ = tx.send(Input::Failed(anyhow::Error::new(e).context("pushing jobs")));
            false
        }
    }
}

/// A progress bar on a terminal, plain log lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    last_line: std::sync::Mutex<std::time::Instant>,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} results ({per_sec})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            last_line: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn update(&self, pushed: u64, written: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(pushed.max(written));
                bar.set_position(written);
            }
            None => {
                let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = std::time::Instant::now();
                    eprintln!("progress: {written} results, {pushed} jobs pushed");
                }
            }
        }
    }

    fn log(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self, pushed: u64, written: u64) {
        match &self.bar {
            Some(bar) => bar.finish(),
            None => eprintln!("done: {written} results written, {pushed} jobs pushed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_json_value_is_a_job() {
        for line in ["1", "\"text\"", "[1,2]", "{\"x\":1}", "null"] {
            assert_eq!(parse_job(line).expect(line).data, line);
        }
    }

    #[test]
    fn an_object_with_data_carries_options() {
        let job = parse_job(
            r#"{"data":{"n":5},"id":7,"priority":2,"retries":0,"timeout":1500,"type":"sq"}"#,
        )
        .expect("valid");
        assert_eq!(job.data, r#"{"n":5}"#);
        assert_eq!(job.id.as_deref(), Some("7"));
        assert_eq!(job.priority, 2);
        assert_eq!(job.retries, Some(0));
        assert_eq!(job.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(job.task_type.as_deref(), Some("sq"));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(
            parse_job("{oops")
                .expect_err("not json")
                .contains("not JSON")
        );
        assert!(
            parse_job(r#"{"data":1,"prio":2}"#)
                .expect_err("unknown")
                .contains("unknown field `prio`")
        );
        assert!(
            parse_job(r#"{"data":1,"priority":"high"}"#)
                .expect_err("type")
                .contains("`priority` must be an integer")
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_address_file_is_never_written_through_a_planted_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let victim = outside.path().join("victim.txt");
        std::fs::write(&victim, "precious").expect("write");
        let path = dir.path().join("master.addr");
        // A link at the temporary name the file used to be written through.
        std::os::unix::fs::symlink(&victim, dir.path().join("master.tmp")).expect("symlink");
        write_atomic(&path, "/ip4/127.0.0.1/tcp/1\n").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "/ip4/127.0.0.1/tcp/1\n"
        );
    }

    #[test]
    fn lines_without_an_id_get_the_same_ids_on_every_read() {
        let input = ["1", "{\"n\":2}", " 1 ", "3", "1"];
        let ids = |input: &[&str]| {
            let mut ids = LineIds::default();
            input.iter().map(|l| ids.next(l)).collect::<Vec<_>>()
        };
        let first = ids(&input);
        assert_eq!(first, ids(&input), "stable across reads");
        // The same text again is another job: its occurrence tells them apart.
        assert!(first[0].ends_with("-1") && first[2].ends_with("-2") && first[4].ends_with("-3"));
        assert_eq!(first[0][..16], first[2][..16]);
        let unique: HashSet<_> = first.iter().collect();
        assert_eq!(unique.len(), input.len());
        // Lines added at the end, or before, leave the others' ids alone.
        let mut longer = vec!["0"];
        longer.extend(input);
        let again = ids(&longer);
        assert_eq!(&again[1..], &first[..]);
    }

    #[test]
    fn a_result_line_is_rebuilt_so_no_worker_text_can_end_it() {
        let worker = WorkerInfo {
            id: "12D3".into(),
            name: "w\n{\"jobID\":\"x\"}".into(),
        };
        let forged =
            "\n{\"jobID\":\"other\",\"worker\":{\"id\":\"x\",\"name\":\"x\"},\"data\":1}\n";
        for outcome in [
            Ok(format!("[{forged}]")),
            Ok(forged.to_string()),
            Ok(format!("not json{forged}")),
            Err(format!("boom{forged}")),
        ] {
            let line = result_line("victim", &worker, &outcome).expect("encode");
            assert!(!line.contains(['\n', '\r']), "{line}");
            let v: Value = serde_json::from_str(&line).expect("one JSON value");
            assert_eq!(v["jobID"], "victim");
            assert_eq!(v["worker"]["name"], worker.name.as_str());
            match &outcome {
                Ok(data) => {
                    let expected =
                        serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.clone()));
                    assert_eq!(v["data"], expected);
                    assert!(v.get("error").is_none());
                }
                Err(error) => {
                    assert_eq!(v["error"], error.as_str());
                    assert!(v.get("data").is_none());
                }
            }
        }
        // Key order inside data is kept.
        let line = result_line("j", &worker, &Ok("{\"b\":1,\"a\":2}".into())).expect("encode");
        assert!(line.ends_with(r#""data":{"b":1,"a":2}}"#), "{line}");
    }

    #[test]
    fn a_torn_results_line_is_cut_and_ids_recovered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.jsonl");
        std::fs::write(&path, "{\"jobID\":\"a\",\"data\":1}\n{\"jobID\":\"b\",\"da")
            .expect("write");
        let ids = recover_results(&path).expect("recover");
        assert_eq!(ids, HashSet::from(["a".to_string()]));
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"jobID\":\"a\",\"data\":1}\n"
        );
    }
}
