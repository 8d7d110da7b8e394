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
use tokio::io::AsyncWriteExt;

use crate::TokenArgs;

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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Builtin {
    /// Return the job's data as its result.
    Echo,
}

/// Runs each job as a shell command.
pub(crate) struct CommandExecutor {
    command: String,
    workplace: PathBuf,
}

impl Executor for CommandExecutor {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        let command = self.command.clone();
        let workplace = self.workplace.clone();
        Box::pin(async move {
            let mut child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .current_dir(&workplace)
                .env("QUEUEXEC_JOB_ID", &job.id)
                .env("QUEUEXEC_ATTEMPT", job.attempt.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // A job that times out is dropped: its process goes with it.
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| TaskFailure::new(format!("could not start `{command}`: {e}")))?;
            if let Some(mut stdin) = child.stdin.take() {
                // A command that does not read its input is fine.
                let _ = stdin.write_all(job.data.as_bytes()).await;
            }
            let output = child
                .wait_with_output()
                .await
                .map_err(|e| TaskFailure::new(format!("`{command}` failed to run: {e}")))?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let stderr = stderr.trim();
                let tail = &stderr[stderr.len().saturating_sub(4096)..];
                return Err(TaskFailure::new(format!(
                    "`{command}` exited with {}{}{}",
                    output.status,
                    if tail.is_empty() { "" } else { ": " },
                    tail
                )));
            }
            Ok(stdout_to_json(&output.stdout))
        })
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
    let tokens = args.tokens.resolve()?;
    let concurrency = core_config::check_concurrency(args.concurrency)?;
    std::fs::create_dir_all(&args.workplace)
        .with_context(|| format!("creating the workplace {}", args.workplace.display()))?;
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
                ..queuexec_js::JsConfig::default()
            })
            .context("starting the JavaScript runtime")?,
        ),
    };
    let mut config = WorkerConfig::new(tokens.token, tokens.transfer_token);
    config.master = args.master.clone();
    config.name = args.name.clone();
    config.concurrency = concurrency;
    config.prefetch = args.prefetch;
    config.workplace = args.workplace.clone();
    config.room_dir = args.room_dir.clone();
    config.mdns = args.mdns.then_some(true);
    config.default_timeout = args.timeout.map(Duration::from_secs_f64);
    let (worker, mut events) = Worker::start(config, executor).await?;
    tracing::info!(peer = %worker.peer_id(), name = worker.name(), "worker started");
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let WorkerEvent::JobFinished {
                id,
                error: Some(error),
            } = event
            {
                tracing::warn!(job = %id, "job failed: {error}");
            }
        }
    });
    tokio::select! {
        outcome = worker.wait() => outcome.map_err(anyhow::Error::new),
        _ = tokio::signal::ctrl_c() => {
            worker.close().await;
            Ok(())
        }
    }
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
}
