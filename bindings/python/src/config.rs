//! The core's shared settings for Python (mirrors `queuexec_core::config`): token resolution,
//! the token rule, generation, the `.env` parser and the `setup` writer, the asset list built
//! from a task and its files, and the defaults. `queuexec/_tokens.py` and the `Master` and
//! `Worker` signatures call these instead of keeping their own copies.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use queuexec_core::config;

use crate::error::CoreResultExt;

/// Resolves both tokens: each from its argument, else the environment variable (`token`,
/// `transferEncryptToken`), else the `.env` file (`env_file`, default `./.env`). Returns
/// `(token, transfer_token)`; raises `TokenError` or `ConfigError`.
#[pyfunction]
#[pyo3(signature = (token=None, transfer_token=None, env_file=None))]
fn resolve_tokens(
    py: Python<'_>,
    token: Option<String>,
    transfer_token: Option<String>,
    env_file: Option<PathBuf>,
) -> PyResult<(String, String)> {
    let tokens = config::resolve_tokens(
        token.as_deref(),
        transfer_token.as_deref(),
        env_file.as_deref(),
    )
    .or_raise(py)?;
    Ok((tokens.token, tokens.transfer_token))
}

/// The bootstrap relays: `bootstrap` when it names any, else `QUEUEXEC_BOOTSTRAP`, else that key
/// in the `.env` file (`env_file`, default `./.env`). Raises `ConfigError` for a bad address.
#[pyfunction]
#[pyo3(signature = (bootstrap=Vec::new(), env_file=None))]
fn resolve_bootstrap(
    py: Python<'_>,
    bootstrap: Vec<String>,
    env_file: Option<PathBuf>,
) -> PyResult<Vec<String>> {
    config::resolve_bootstrap(&bootstrap, env_file.as_deref()).or_raise(py)
}

/// Checks both tokens as the core will; raises `TokenError` with the core's message.
#[pyfunction]
fn check_tokens(py: Python<'_>, token: &str, transfer_token: &str) -> PyResult<()> {
    config::check_tokens(token, transfer_token).or_raise(py)
}

/// A fresh token: 32 letters and digits from the operating system's random number generator.
#[pyfunction]
fn generate_token() -> String {
    config::generate_token()
}

/// The `(key, value)` pairs of the `.env` file at `path`, in file order; `None` when there is
/// no such file. Raises `ConfigError` naming the line of an invalid file.
#[pyfunction]
fn read_dotenv(py: Python<'_>, path: PathBuf) -> PyResult<Option<Vec<(String, String)>>> {
    config::read_dotenv(&path).or_raise(py)
}

/// Whether the `.env` file at `path` already assigns `token` or `transferEncryptToken`.
#[pyfunction]
fn env_file_has_tokens(py: Python<'_>, path: PathBuf) -> PyResult<bool> {
    config::env_file_has_tokens(&path).or_raise(py)
}

/// Writes both tokens to the `.env` file at `path`, as `queuexec setup` does (other lines
/// kept, the file replaced whole and owner-only, a symbolic link refused).
#[pyfunction]
fn write_env_tokens(
    py: Python<'_>,
    path: PathBuf,
    token: String,
    transfer_token: String,
) -> PyResult<()> {
    let tokens = config::Tokens {
        token,
        transfer_token,
    };
    config::write_tokens_to_env_file(&path, &tokens).or_raise(py)
}

/// The assets for a task file plus further files, as `(name, master_path, worker_path)`:
/// the task ships as task.js, each file at its own relative path. Raises `ConfigError` for an
/// absolute or climbing path.
#[pyfunction]
#[pyo3(signature = (task, files))]
fn asset_specs(
    py: Python<'_>,
    task: Option<PathBuf>,
    files: Vec<PathBuf>,
) -> PyResult<Vec<(String, PathBuf, String)>> {
    let specs = config::asset_specs(task.as_deref(), &files).or_raise(py)?;
    Ok(specs
        .into_iter()
        .map(|s| (s.name, s.master_path, s.worker_path))
        .collect())
}

/// The core's defaults: `retries`, `lease_ttl` and `retry_backoff` (seconds), `max_workers`,
/// `watch_assets`, `concurrency`, `name`, `prefetch`, `workplace`, `min_transfer_token_chars`,
/// `generated_token_chars` and `task_entry`.
#[pyfunction]
fn defaults(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("retries", config::DEFAULT_RETRIES)?;
    d.set_item("lease_ttl", config::DEFAULT_LEASE_TTL.as_secs_f64())?;
    d.set_item("retry_backoff", config::DEFAULT_RETRY_BACKOFF.as_secs_f64())?;
    d.set_item("max_workers", config::DEFAULT_MAX_WORKERS)?;
    d.set_item("watch_assets", config::DEFAULT_WATCH_ASSETS)?;
    d.set_item("concurrency", config::DEFAULT_WORKER_CONCURRENCY)?;
    d.set_item("name", config::DEFAULT_WORKER_NAME)?;
    d.set_item("prefetch", config::DEFAULT_WORKER_PREFETCH)?;
    d.set_item("workplace", config::DEFAULT_WORKPLACE)?;
    d.set_item("min_transfer_token_chars", config::MIN_TRANSFER_TOKEN_CHARS)?;
    d.set_item("generated_token_chars", config::GENERATED_TOKEN_CHARS)?;
    d.set_item("task_entry", config::TASK_ENTRY)?;
    Ok(d)
}

/// Adds these functions to the extension module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(resolve_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_bootstrap, m)?)?;
    m.add_function(wrap_pyfunction!(check_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(generate_token, m)?)?;
    m.add_function(wrap_pyfunction!(read_dotenv, m)?)?;
    m.add_function(wrap_pyfunction!(env_file_has_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(write_env_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(asset_specs, m)?)?;
    m.add_function(wrap_pyfunction!(defaults, m)?)?;
    Ok(())
}
