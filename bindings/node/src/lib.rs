//! Node.js addon over `queuexec-core`: the native half of the npm packages `queue-xec-master`
//! and `queue-xec-worker`.
//!
//! The files mirror the core's modules: [`master`], [`worker`], [`executor`] (the core
//! `Executor` that runs jobs in JavaScript), [`job`], [`config`] (tokens, `.env`, defaults) and
//! [`error`]. All engine work runs on the
//! one tokio runtime napi keeps per process; the JS thread only converts values. The JS layer
//! in `lib/` (options, dotenv, EventEmitter) is what users see.

mod config;
mod delivery;
mod error;
mod executor;
mod job;
mod json_out;
mod log;
mod master;
mod worker;

use std::sync::OnceLock;

use napi_derive::napi;
use tracing_subscriber::{
    EnvFilter, Registry, layer::SubscriberExt, reload, util::SubscriberInitExt,
};

pub use config::{
    JsDefaults, JsEnvEntry, JsTokens, check_concurrency, check_room_token, check_tokens,
    check_transfer_token, defaults, env_file_has_tokens, generate_token, read_dotenv,
    resolve_tokens, write_env_tokens,
};
pub use error::{ErrorCode, Result};
pub use executor::{JsAssetFile, JsAssetsInfo};
pub use job::{JsPushBatch, JsPushReceipts, JsTaskOutcome};
pub use master::{JsAssetSpec, JsMaster, JsMasterOptions, JsMasterStats, start_master};
pub use worker::{JsWorker, JsWorkerEvent, JsWorkerOptions, JsWorkerStats, start_worker};

// The addon's own allocations use mimalloc (Node's and V8's stay with theirs): jobs are many
// small allocations, and glibc's malloc/free took about 30 % of the master's runtime thread.
// Nothing allocated here is freed by Node, or the other way round: napi copies across.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Why the runtime of `QUEUEXEC_THREADS` could not be made, if it could not: starting a master or
/// a worker rejects with it.
static RUNTIME_ERROR: OnceLock<String> = OnceLock::new();

/// Every master and worker of the process runs on one tokio runtime with `QUEUEXEC_THREADS`
/// worker threads, one by default (see `queuexec_core::config::runtime_threads`): a job's
/// path then wakes no thread but the JavaScript thread and the socket's.
#[napi_derive::module_init]
fn init_runtime() {
    let built = queuexec_core::config::runtime_threads()
        .map_err(|e| e.to_string())
        .and_then(|threads| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("queuexec")
                .enable_all()
                .build()
                .map_err(|e| format!("queuexec could not start its async runtime: {e}"))
        });
    match built {
        Ok(runtime) => napi::bindgen_prelude::create_custom_tokio_runtime(runtime),
        Err(message) => {
            let _ = RUNTIME_ERROR.set(message);
        }
    }
}

/// Fails with the runtime's configuration error, if there was one.
pub(crate) fn runtime_ready() -> std::result::Result<(), napi::Error<ErrorCode>> {
    match RUNTIME_ERROR.get() {
        Some(message) => Err(error::config_error(message.clone())),
        None => Ok(()),
    }
}

/// The version of queuexec this addon was built from.
#[napi]
pub fn version() -> String {
    queuexec_core::VERSION.to_string()
}

static LOG_FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
static LOG_RANK: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets how much the core logs to stdout (`off`, `error`, `warn`, `info`, `debug`, `trace`; the JS
/// layer maps queue-xec's LOG_LEVEL onto these), in queue-xec's line format with local time
/// `utcOffsetMinutes` east of UTC (default 0, fixed by the first call). Logging is per process,
/// so the most verbose level asked for wins.
#[napi]
pub fn set_log_level(level: String, utc_offset_minutes: Option<i32>) -> Result<()> {
    let (rank, directive) = match level.to_ascii_lowercase().as_str() {
        "" | "off" => (0, "off"),
        "fatal" | "error" => (1, "error"),
        "warn" | "warning" => (2, "warn"),
        "info" => (3, "info"),
        "debug" => (4, "debug"),
        "trace" => (5, "trace"),
        other => {
            return Err(error::config_error(format!(
                "unknown loglevel {other:?}: use off, error, warn, info or debug"
            )));
        }
    };
    if rank <= LOG_RANK.fetch_max(rank, std::sync::atomic::Ordering::AcqRel) {
        return Ok(());
    }
    let filter = || {
        EnvFilter::new(format!(
            "queuexec_core={directive},queuexec_node={directive}"
        ))
    };
    if let Some(handle) = LOG_FILTER.get() {
        let _ = handle.reload(filter());
        return Ok(());
    }
    let (layer, handle) = reload::Layer::new(filter());
    // On stdout, as queue-xec logged; colour only on a terminal and never with NO_COLOR set.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let subscriber = tracing_subscriber::registry().with(layer).with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .with_ansi(colour)
            .event_format(log::QueueXecFormat {
                utc_offset_secs: i64::from(utc_offset_minutes.unwrap_or(0)) * 60,
            }),
    );
    // Another library in the process may own the global subscriber; then its settings rule.
    if subscriber.try_init().is_ok() {
        let _ = LOG_FILTER.set(handle);
    }
    Ok(())
}
