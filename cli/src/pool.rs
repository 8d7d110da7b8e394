//! `queuexec worker --processes N`: a local pool of worker processes (okanjo-conductor's
//! `workerLimit`, meteor-cluster's pool sized to the cores). This process supervises N copies of
//! itself running the same `worker` command: a copy that crashes (a non-zero exit or a signal)
//! is reported as a `worker_crash` with its worker id, exit code and signal, and started again;
//! one that exits cleanly (`--exit-when-drained`: the master had no more jobs) is not. The pool
//! ends when every copy has ended, or on Ctrl-C (each copy gets SIGINT, then SIGKILL).

use std::ffi::OsString;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

/// Set in a pool's copies: their index (from 1), which names them `<name>-<index>`.
pub(crate) const POOL_INDEX_ENV: &str = "QUEUEXEC_POOL_INDEX";

const RESPAWN_FIRST: Duration = Duration::from_millis(100);
const RESPAWN_MAX: Duration = Duration::from_secs(5);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The number of processes `--processes` asks for: N, or the machine's cores for 0.
pub(crate) fn process_count(asked: usize) -> usize {
    if asked == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        asked
    }
}

/// This command line without `--processes` (so a copy runs one worker).
fn child_args() -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--processes" {
            args.next();
            continue;
        }
        if text.starts_with("--processes=") {
            continue;
        }
        out.push(arg);
    }
    out
}

fn spawn(index: usize) -> Result<Child> {
    let exe =
        std::env::current_exe().context("finding this program to start the pool's workers")?;
    Command::new(exe)
        .args(child_args())
        .env(POOL_INDEX_ENV, index.to_string())
        .kill_on_drop(true)
        .spawn()
        .context("starting a worker process of the pool")
}

/// How a copy ended, as okanjo-conductor reports it: exit code and signal name.
fn describe(status: ExitStatus) -> (Option<i32>, Option<String>) {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        let signal = status.signal().map(|s| match s {
            libc::SIGKILL => "SIGKILL".to_string(),
            libc::SIGTERM => "SIGTERM".to_string(),
            libc::SIGINT => "SIGINT".to_string(),
            libc::SIGSEGV => "SIGSEGV".to_string(),
            libc::SIGABRT => "SIGABRT".to_string(),
            other => format!("signal {other}"),
        });
        (status.code(), signal)
    }
    #[cfg(not(unix))]
    {
        (status.code(), None)
    }
}

/// Runs `count` copies of this worker command until each has ended cleanly (or Ctrl-C).
pub(crate) async fn supervise(count: usize) -> Result<()> {
    if count == 0 || count > 1024 {
        bail!("--processes must be from 1 to 1024 (0: one per core), got {count}");
    }
    tracing::info!(processes = count, "starting a pool of worker processes");
    let mut running: JoinSet<(usize, u64, u32, std::io::Result<ExitStatus>)> = JoinSet::new();
    let mut pids = std::collections::HashMap::new();
    let mut next_id: u64 = 1;
    let mut backoff = RESPAWN_FIRST;
    let mut start = |index: usize,
                     running: &mut JoinSet<_>,
                     pids: &mut std::collections::HashMap<u64, u32>|
     -> Result<()> {
        let mut child = spawn(index)?;
        let worker_id = next_id;
        next_id += 1;
        let pid = child.id().unwrap_or(0);
        pids.insert(worker_id, pid);
        running.spawn(async move { (index, worker_id, pid, child.wait().await) });
        Ok(())
    };
    for index in 1..=count {
        start(index, &mut running, &mut pids)?;
    }
    let mut crashed = 0usize;
    loop {
        tokio::select! {
            ended = running.join_next() => {
                let Some(ended) = ended else { break };
                let (index, worker_id, pid, status) = ended.context("a pool watcher stopped")?;
                pids.remove(&worker_id);
                let status = status.context("waiting for a pool worker")?;
                let (code, signal) = describe(status);
                tracing::info!(worker_id, pid, ?code, ?signal, "worker_exit");
                if status.success() {
                    continue;
                }
                crashed += 1;
                tracing::error!(
                    r#type = "worker_crash",
                    worker_id,
                    pid,
                    ?code,
                    ?signal,
                    "a pool worker crashed; starting another"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RESPAWN_MAX);
                start(index, &mut running, &mut pids)?;
            }
            _ = tokio::signal::ctrl_c() => {
                stop_all(&pids);
                let _ = tokio::time::timeout(STOP_GRACE, async {
                    while running.join_next().await.is_some() {}
                })
                .await;
                running.abort_all();
                return Ok(());
            }
        }
    }
    tracing::info!(crashed, "every pool worker has ended");
    Ok(())
}

/// Asks every copy to stop as Ctrl-C would.
fn stop_all(pids: &std::collections::HashMap<u64, u32>) {
    #[cfg(unix)]
    for pid in pids.values() {
        if let Ok(pid) = libc::pid_t::try_from(*pid)
            && pid > 0
        {
            // SAFETY: kill only sends a signal to a child this pool started.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = pids;
}
