//! `queuexec worker`: runs the master's jobs through a shell command or a built-in executor.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use futures::future::BoxFuture;
use queuexec_core::config as core_config;
use queuexec_core::{Executor, JobInput, TaskFailure, Worker, WorkerConfig, WorkerEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TokenArgs;
use crate::terminal::escape_control;

#[derive(Args, Debug, Clone)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) tokens: TokenArgs,
    /// The master's multiaddr. Without it the worker finds a master of its room on this host
    /// (and on the LAN with --mdns).
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) master: Option<String>,
    /// The name the master reports for this worker.
    #[arg(long, default_value = core_config::DEFAULT_WORKER_NAME)]
    pub(crate) name: String,
    /// Jobs run at once (at least 1).
    #[arg(long, default_value_t = core_config::DEFAULT_WORKER_CONCURRENCY)]
    pub(crate) concurrency: usize,
    /// Jobs held ready beyond --concurrency.
    #[arg(long, default_value_t = core_config::DEFAULT_WORKER_PREFETCH)]
    pub(crate) prefetch: usize,
    /// Run each job with this shell command instead of the master's task.js: the job's data is
    /// its stdin (JSON), its stdout the result (JSON, or else a string); a non-zero exit fails
    /// the job with its stderr.
    #[arg(long, value_name = "COMMAND", conflicts_with = "builtin")]
    pub(crate) exec: Option<String>,
    /// A built-in executor instead of a command: `echo` returns each job's data unchanged
    /// (for measuring the transport).
    #[arg(long, value_enum)]
    pub(crate) builtin: Option<Builtin>,
    /// Folder the master's files are installed in.
    #[arg(long, value_name = "DIR", default_value = core_config::DEFAULT_WORKPLACE)]
    pub(crate) workplace: PathBuf,
    /// Seconds a job may run when it sets no timeout of its own.
    #[arg(long)]
    pub(crate) timeout: Option<f64>,
    /// Let task.js read this environment variable through process.env (repeatable). task.js
    /// gets no file system, network, environment or processes otherwise.
    #[arg(long = "allow-env", value_name = "NAME")]
    pub(crate) allow_env: Vec<String>,
    /// JavaScript heap limit of each runtime, in MiB.
    #[arg(long, default_value_t = 256)]
    pub(crate) max_heap_mb: usize,
    /// Look for the master with mDNS on the local network (also QUEUEXEC_MDNS=1).
    #[arg(long)]
    pub(crate) mdns: bool,
    /// Directory of same-host room files (also QUEUEXEC_ROOM_DIR).
    #[arg(long, value_name = "DIR")]
    pub(crate) room_dir: Option<PathBuf>,
    /// Run a pool of this many worker processes (0: one per core), named NAME-1, NAME-2, ...:
    /// a crashed one is started again, the pool ends when every one has ended.
    #[arg(long, value_name = "N")]
    pub(crate) processes: Option<usize>,
    /// Stop once the master has nothing queued, delayed or running.
    #[arg(long)]
    pub(crate) exit_when_drained: bool,
    /// Seconds between reports of this worker's counters to the master (its stats).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) stats_interval: Option<f64>,
    /// A relay to meet through across NATs (repeatable): a multiaddr ending in /p2p/<id>, as
    /// `queuexec relay` prints it. Else QUEUEXEC_BOOTSTRAP (comma separated, also from .env).
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Map the listening ports on the local router with UPnP (with a bootstrap).
    #[arg(long)]
    pub(crate) upnp: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Builtin {
    /// Return the job's data as its result.
    Echo,
}

/// The most a command may write to stdout: a result beyond it could not reach the master in
/// one frame anyway (the transport's frame cap is 8 MiB).
pub(crate) const MAX_STDOUT_BYTES: usize = 8 << 20;

/// How much of the end of a command's stderr is kept while it runs.
const STDERR_KEPT_BYTES: usize = 64 << 10;

/// How much of the end of a command's stderr a failure message quotes.
const STDERR_QUOTED_BYTES: usize = 4096;

/// Runs each job as a shell command, in a process group of its own: the group is killed when
/// the job ends, times out or is dropped, so nothing the command started outlives its job.
pub(crate) struct CommandExecutor {
    command: String,
    workplace: PathBuf,
}

impl Executor for CommandExecutor {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        let command = self.command.clone();
        let workplace = self.workplace.clone();
        Box::pin(async move {
            let timeout = job.timeout;
            let run = run_command(&command, &workplace, job);
            match timeout {
                None => run.await,
                // Dropping `run` kills the command's process group.
                Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                    Err(TaskFailure::new(format!(
                        "`{command}` ran longer than the job's timeout of {} ms and was stopped \
                         with every process it started; raise the job's `timeout` (or the \
                         worker's --timeout) if it needs longer",
                        limit.as_millis()
                    )))
                }),
            }
        })
    }
}

/// One run of `command`: stdin is written while stdout and stderr are read (a command that
/// answers as it reads would otherwise deadlock once a pipe fills), stdout is capped at
/// [`MAX_STDOUT_BYTES`], and the end of stderr is kept for the failure message.
async fn run_command(
    command: &str,
    workplace: &std::path::Path,
    job: JobInput,
) -> Result<String, TaskFailure> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(workplace)
        .env("QUEUEXEC_JOB_ID", &job.id)
        .env("QUEUEXEC_ATTEMPT", job.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| TaskFailure::new(format!("could not start `{command}`: {e}")))?;
    // Declared after `child`, so dropped before it: the whole group dies, then the shell.
    let group = ProcessGroup::of(&child);
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let data = job.data.into_bytes();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its input is fine. Dropping stdin closes it.
            let _ = stdin.write_all(&data).await;
        }
    };
    let collect_stdout = async {
        let Some(stdout) = stdout else {
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        // An I/O error ends the output; the exit status tells what happened.
        let _ = stdout
            .take(MAX_STDOUT_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .await;
        if out.len() > MAX_STDOUT_BYTES {
            // Stop it now rather than at its timeout.
            group.kill();
            return None;
        }
        Some(out)
    };
    let collect_stderr = async {
        match stderr {
            Some(stderr) => read_tail(stderr, STDERR_KEPT_BYTES).await,
            None => Vec::new(),
        }
    };
    let wait = async {
        let status = child.wait().await;
        // Processes the command left behind would hold its pipes open: they end with the job.
        group.kill();
        status
    };
    let ((), stdout, stderr, status) = tokio::join!(feed, collect_stdout, collect_stderr, wait);
    let status = status.map_err(|e| TaskFailure::new(format!("`{command}` failed to run: {e}")))?;
    let Some(stdout) = stdout else {
        return Err(TaskFailure::new(format!(
            "`{command}` wrote more than {} MiB to stdout and was stopped: a result must be \
             smaller (write large output to a file and return its path)",
            MAX_STDOUT_BYTES >> 20
        )));
    };
    if !status.success() {
        let tail = stderr_tail(&stderr, STDERR_QUOTED_BYTES);
        return Err(TaskFailure::new(format!(
            "`{command}` exited with {status}{}{tail}",
            if tail.is_empty() { "" } else { ": " },
        )));
    }
    Ok(stdout_to_json(&stdout))
}

/// Reads `input` to its end, keeping only its last `keep` bytes (or a little more).
async fn read_tail(mut input: impl tokio::io::AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        match input.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > 2 * keep {
                    kept.drain(..kept.len() - keep);
                }
            }
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
    }
    kept
}

/// The last `max` bytes (at most) of `stderr`, trimmed, cut on a character boundary.
fn stderr_tail(stderr: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// A command's process group, killed (SIGKILL) once: explicitly, or when dropped.
struct ProcessGroup {
    #[cfg(unix)]
    id: Option<libc::pid_t>,
    killed: std::sync::atomic::AtomicBool,
}

impl ProcessGroup {
    /// The group `child` leads (it was started with `process_group(0)`).
    fn of(child: &tokio::process::Child) -> ProcessGroup {
        ProcessGroup {
            #[cfg(unix)]
            id: child.id().and_then(|id| libc::pid_t::try_from(id).ok()),
            killed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn kill(&self) {
        if self.killed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        #[cfg(unix)]
        if let Some(id) = self.id.filter(|id| *id > 1) {
            // SAFETY: killpg only sends a signal; ESRCH (the group is gone) is fine.
            unsafe {
                libc::killpg(id, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command's stdout as a result: JSON when it is JSON, else a JSON string of the text.
pub(crate) fn stdout_to_json(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if !trimmed.is_empty() && serde_json::from_str::<serde::de::IgnoredAny>(trimmed).is_ok() {
        trimmed.to_string()
    } else {
        serde_json::Value::String(trimmed.to_string()).to_string()
    }
}

/// Returns each job's data.
pub(crate) struct EchoExecutor;

impl Executor for EchoExecutor {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        Box::pin(futures::future::ready(Ok(job.data)))
    }
}

pub(crate) async fn run(args: WorkerArgs) -> Result<()> {
    let pool_index = std::env::var(crate::pool::POOL_INDEX_ENV).ok();
    if let (Some(n), None) = (args.processes, &pool_index) {
        // Tokens are checked once here, so a bad one is reported once, not by every copy.
        args.tokens.resolve()?;
        return crate::pool::supervise(crate::pool::process_count(n)).await;
    }
    let tokens = args.tokens.resolve()?;
    let concurrency = core_config::check_concurrency(args.concurrency)?;
    std::fs::create_dir_all(&args.workplace)
        .with_context(|| format!("creating the workplace {}", args.workplace.display()))?;
    // task.js reaches the master (ctx.lookup, ctx.request, ...) through this worker, once started.
    let master_link = queuexec_js::MasterLink::default();
    let executor: Arc<dyn Executor> = match (&args.exec, args.builtin) {
        (Some(command), _) => Arc::new(CommandExecutor {
            command: command.clone(),
            workplace: args.workplace.clone(),
        }),
        (None, Some(Builtin::Echo)) => Arc::new(EchoExecutor),
        // The default: the master's task.js, sandboxed, one runtime per concurrency slot.
        (None, None) => Arc::new(
            queuexec_js::JsExecutor::new(queuexec_js::JsConfig {
                concurrency,
                heap_limit_bytes: args.max_heap_mb.max(16) * 1024 * 1024,
                default_timeout: args.timeout.map(Duration::from_secs_f64),
                grants: queuexec_js::Grants::none().with_env(args.allow_env.iter().cloned()),
                master: master_link.clone(),
                ..queuexec_js::JsConfig::default()
            })
            .context("starting the JavaScript runtime")?,
        ),
    };
    let mut config = WorkerConfig::new(tokens.token, tokens.transfer_token);
    config.master = args.master.clone();
    config.name = match &pool_index {
        Some(index) => format!("{}-{index}", args.name),
        None => args.name.clone(),
    };
    config.exit_when_drained = args.exit_when_drained;
    if let Some(seconds) = args.stats_interval {
        if !(seconds.is_finite() && seconds > 0.0) {
            anyhow::bail!("--stats-interval must be a positive number of seconds, got {seconds}");
        }
        config.stats_interval = Duration::from_secs_f64(seconds.max(0.05));
    }
    config.concurrency = concurrency;
    config.prefetch = args.prefetch;
    config.workplace = args.workplace.clone();
    config.room_dir = args.room_dir.clone();
    config.mdns = args.mdns.then_some(true);
    config.bootstrap =
        core_config::resolve_bootstrap(&args.bootstrap, args.tokens.env_file.as_deref())?;
    config.upnp = args.upnp;
    config.default_timeout = args.timeout.map(Duration::from_secs_f64);
    let (worker, mut events) = Worker::start(config, executor).await?;
    master_link.connect(worker.clone());
    tracing::info!(peer = %worker.peer_id(), name = worker.name(), "worker started");
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                WorkerEvent::JobFinished {
                    id,
                    error: Some(error),
                } => {
                    tracing::warn!(
                        job = %escape_control(&id),
                        "job failed: {}",
                        escape_control(&error)
                    );
                }
                WorkerEvent::Connected { master, path } => {
                    eprintln!("connected to master {master} ({path})");
                }
                _ => {}
            }
        }
    });
    let outcome = tokio::select! {
        outcome = worker.wait() => outcome.map_err(anyhow::Error::new),
        _ = tokio::signal::ctrl_c() => {
            let stats = worker.stats();
            worker.close().await;
            // One line a script can read: what this worker did and how it was connected.
            eprintln!(
                "worker stats: done={} failed={} path={} relayed_bytes={}",
                stats.done,
                stats.failed,
                stats.path.map_or("none", |p| p.as_str()),
                stats.relayed_bytes
            );
            Ok(())
        }
    };
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_json_when_it_is_json_else_a_string() {
        assert_eq!(stdout_to_json(b"{\"a\": 1}\n"), "{\"a\": 1}");
        assert_eq!(stdout_to_json(b"42\n"), "42");
        assert_eq!(stdout_to_json(b"hello world\n"), "\"hello world\"");
        assert_eq!(stdout_to_json(b""), "\"\"");
    }

    #[tokio::test]
    async fn a_command_gets_the_data_on_stdin_and_fails_with_its_stderr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = |data: &str| JobInput {
            id: "j1".into(),
            data: data.into(),
            task_type: None,
            attempt: 1,
            timeout: None,
            shape: Default::default(),
        };
        let ok = CommandExecutor {
            command: "cat".into(),
            workplace: dir.path().to_path_buf(),
        };
        assert_eq!(
            ok.run(job("{\"x\":2}")).await.expect("cat echoes"),
            "{\"x\":2}"
        );
        let fail = CommandExecutor {
            command: "echo nope >&2; exit 3".into(),
            workplace: dir.path().to_path_buf(),
        };
        let err = fail.run(job("1")).await.expect_err("exit 3");
        assert!(
            err.message.contains("nope") && err.message.contains('3'),
            "{err}"
        );
    }

    fn job_with(data: &str, timeout: Option<Duration>) -> JobInput {
        JobInput {
            id: "j1".into(),
            data: data.into(),
            task_type: None,
            attempt: 1,
            timeout,
            shape: Default::default(),
        }
    }

    fn executor(command: &str, dir: &std::path::Path) -> CommandExecutor {
        CommandExecutor {
            command: command.into(),
            workplace: dir.to_path_buf(),
        }
    }

    /// Whether process `pid` is gone (or a zombie nobody has reaped yet: it runs no more).
    fn process_is_gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn data_larger_than_a_pipe_buffer_goes_through_a_command_that_answers_as_it_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 4 MiB of JSON string: far beyond the ~64-128 KiB a pipe holds in each direction.
        let data = serde_json::Value::String("x".repeat(4 << 20)).to_string();
        let run = executor("cat", dir.path()).run(job_with(&data, None));
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the command must not deadlock on a full pipe")
            .expect("cat succeeds");
        assert_eq!(out.len(), data.len());
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn a_job_that_outlives_its_timeout_fails_and_its_process_group_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The shell starts a grandchild that would outlive a kill of the shell alone.
        let command = "sleep 300 & echo $! > grandchild.pid; wait";
        let run =
            executor(command, dir.path()).run(job_with("1", Some(Duration::from_millis(500))));
        let err = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("the executor stops a job at its own timeout")
            .expect_err("a timed-out job fails");
        assert!(err.message.contains("timeout"), "{err}");
        let pid: u32 = std::fs::read_to_string(dir.path().join("grandchild.pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid");
        let start = std::time::Instant::now();
        while !process_is_gone(pid) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the command's child {pid} outlived the job"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_dropped_job_takes_the_commands_children_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let command = "sleep 300 & echo $! > grandchild.pid; wait";
        // The worker enforces timeouts by dropping the future: that must end every process.
        let run = executor(command, dir.path()).run(job_with("1", None));
        let dropped = tokio::time::timeout(Duration::from_millis(500), run).await;
        assert!(dropped.is_err(), "the command runs until it is dropped");
        let pid: u32 = std::fs::read_to_string(dir.path().join("grandchild.pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid");
        let start = std::time::Instant::now();
        while !process_is_gone(pid) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the command's child {pid} outlived the dropped job"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn stdout_beyond_the_limit_fails_the_job_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let command = format!("head -c {} /dev/zero", MAX_STDOUT_BYTES + 1);
        let run = executor(&command, dir.path()).run(job_with("1", None));
        let err = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("finishes")
            .expect_err("too much output");
        assert!(
            err.message.contains("more than") && err.message.contains("stdout"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn long_multibyte_stderr_is_reported_cut_on_a_character_boundary() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 6,000 bytes of 3-byte characters: 4,096 bytes from the end falls inside one.
        std::fs::write(dir.path().join("err.txt"), "€".repeat(2000)).expect("write");
        let run = executor("cat err.txt >&2; exit 1", dir.path()).run(job_with("1", None));
        let err = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("finishes")
            .expect_err("exit 1");
        assert!(err.message.contains("exited with"), "{err}");
        assert!(err.message.ends_with("€€€"), "{err}");
        assert!(!err.message.contains('\u{fffd}'), "{err}");
    }

    #[test]
    fn the_stderr_tail_never_splits_a_character() {
        let text = "€".repeat(10);
        for max in 0..=text.len() + 1 {
            let tail = stderr_tail(text.as_bytes(), max);
            assert!(tail.len() <= max && text.ends_with(&tail), "{max}: {tail}");
        }
    }

    #[tokio::test]
    async fn read_tail_keeps_the_end_of_a_long_stream() {
        let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let kept = read_tail(&input[..], 1000).await;
        assert_eq!(kept, input[input.len() - 1000..]);
    }
}
