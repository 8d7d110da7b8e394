//! The process-wide tokio runtime and the ways Python threads wait on it.
//!
//! Every master and worker of the process runs on one runtime (`QUEUEXEC_THREADS` worker
//! threads, one by default). A Python thread that waits for the runtime releases the GIL
//! ([`Python::detach`]) and wakes every [`SIGNAL_POLL`] to let Python run its signal handlers,
//! so Ctrl-C stops a blocking call promptly (`KeyboardInterrupt`).

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::error::runtime_error;

/// How often a waiting Python thread checks for signals.
pub(crate) const SIGNAL_POLL: Duration = Duration::from_millis(100);

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The shared runtime, started on first use.
pub(crate) fn runtime() -> PyResult<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            init_logging();
            // `QUEUEXEC_THREADS` worker threads, one by default (see
            // `queuexec_core::config::runtime_threads`): a job's path then wakes no thread but
            // the Python thread's and the socket's.
            let threads = queuexec_core::config::runtime_threads().map_err(|e| e.to_string())?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .thread_name("queuexec")
                .build()
                .map_err(|e| format!("queuexec could not start its async runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| runtime_error(e.clone()))
}

/// Core logs go to stderr only when asked for (`QUEUEXEC_LOG=info`, or `LOG_LEVEL` as the CLI
/// reads it): a library must not print on its own.
fn init_logging() {
    let directive = std::env::var("QUEUEXEC_LOG").or_else(|_| std::env::var("LOG_LEVEL"));
    let Ok(directive) = directive else { return };
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_new(directive) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    }
}

/// Runs `fut` to completion on the calling thread (inside the runtime's context) with the GIL
/// released. Ctrl-C (any signal whose handler raises) drops the future and raises in the caller.
pub(crate) fn block_on<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = T> + Send,
    T: Send,
{
    let runtime = runtime()?;
    // Polled here rather than spawned: one thread hand-off less per call (push() is called in
    // tight loops). Slices of SIGNAL_POLL let Python run its signal handlers in between.
    let mut fut = std::pin::pin!(fut);
    loop {
        // The timer is made inside the future: only there is the runtime's context entered.
        let slice = py.detach(|| {
            run_here(runtime, async {
                tokio::time::timeout(SIGNAL_POLL, fut.as_mut()).await
            })
        });
        match slice {
            Ok(value) => return Ok(value),
            Err(_elapsed) => py.check_signals()?,
        }
    }
}

/// Drives `fut` on this thread. Python code runs on ordinary threads, or on the runtime's
/// blocking threads (a worker's plain tasks, which may push to a master of the same process):
/// those are inside the runtime's context, may block, but may not start the runtime again, so
/// there the future is polled by a plain executor (tokio's timers and channels still work).
fn run_here<F: Future>(runtime: &Runtime, fut: F) -> F::Output {
    if tokio::runtime::Handle::try_current().is_ok() {
        futures::executor::block_on(fut)
    } else {
        runtime.block_on(fut)
    }
}

/// Runs a cancel-safe future on the runtime for at most `timeout` (forever when `None`), checking
/// for signals in between. `make` is called for each slice of waiting, so dropping a slice's
/// future on its deadline must lose nothing (tokio's `recv` is cancel-safe). `Ok(None)` means the
/// time ran out.
pub(crate) fn wait_for<M, F, T>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut make: M,
) -> PyResult<Option<T>>
where
    M: FnMut() -> F,
    F: Future<Output = T> + Send,
    T: Send,
{
    let runtime = runtime()?;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(SIGNAL_POLL),
            None => SIGNAL_POLL,
        };
        let fut = make();
        let got = py.detach(|| {
            run_here(runtime, async {
                tokio::time::timeout(slice, fut).await.ok()
            })
        });
        if let Some(value) = got {
            return Ok(Some(value));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// Converts seconds from Python into a duration, refusing what cannot be one.
pub(crate) fn seconds(what: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(crate::error::config_error(format!(
            "{what} must be a number of seconds, 0 or more, not {s}"
        ))),
    }
}
