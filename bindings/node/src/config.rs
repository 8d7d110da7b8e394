//! The core's shared settings for JavaScript (mirrors `queuexec_core::config`): token
//! resolution, the token rule, token generation, the `.env` parser and the `setup` writer, and
//! the defaults. `lib/env.js` and `lib/setup.js` call these instead of keeping their own copies,
//! so a Node master, a Python worker and the CLI read the same `.env` the same way.

use std::path::{Path, PathBuf};

use napi_derive::napi;
use queuexec_core::config;

use crate::error::{CoreResultExt, Result};

/// Two tokens, with queue-xec's names.
#[napi(object, js_name = "Tokens")]
pub struct JsTokens {
    /// The room token.
    pub token: String,
    /// The transfer token.
    pub transfer_encrypt_token: String,
}

/// One `KEY=value` of a `.env` file.
#[napi(object, js_name = "EnvEntry")]
pub struct JsEnvEntry {
    /// The variable's name.
    pub key: String,
    /// Its value (quotes removed, escapes applied, no `$VAR` expansion).
    pub value: String,
}

/// The core's defaults, which every front end uses when an option is not given.
#[napi(object, js_name = "Defaults")]
pub struct JsDefaults {
    /// Retries of a job whose push does not say.
    pub retries: u32,
    /// How long a lease lasts without a heartbeat, in milliseconds.
    pub lease_ttl_ms: f64,
    /// The first retry delay, in milliseconds (doubling per attempt).
    pub retry_backoff_ms: f64,
    /// Most worker connections a master accepts at once.
    pub max_workers: u32,
    /// Whether a master watches its asset files and reloads them when they change.
    pub watch_assets: bool,
    /// How often a watching master looks at its asset files, in milliseconds.
    pub asset_watch_interval_ms: f64,
    /// Jobs a worker runs at once.
    pub concurrency: u32,
    /// The name a master reports for a worker that gives none.
    pub name: String,
    /// Jobs a worker holds ready beyond those running.
    pub prefetch: u32,
    /// The fewest characters a transfer token may have.
    pub min_transfer_token_chars: u32,
    /// How many characters a generated token has.
    pub generated_token_chars: u32,
    /// The name of the file that is a task's entry point.
    pub task_entry: String,
}

/// The core's defaults (retries, lease, max workers, a worker's concurrency, name, prefetch,
/// and the token lengths).
#[napi]
pub fn defaults() -> JsDefaults {
    JsDefaults {
        retries: config::DEFAULT_RETRIES,
        lease_ttl_ms: config::DEFAULT_LEASE_TTL.as_secs_f64() * 1000.0,
        retry_backoff_ms: config::DEFAULT_RETRY_BACKOFF.as_secs_f64() * 1000.0,
        max_workers: config::DEFAULT_MAX_WORKERS,
        watch_assets: config::DEFAULT_WATCH_ASSETS,
        asset_watch_interval_ms: config::ASSET_WATCH_INTERVAL.as_secs_f64() * 1000.0,
        concurrency: small(config::DEFAULT_WORKER_CONCURRENCY),
        name: config::DEFAULT_WORKER_NAME.to_owned(),
        prefetch: small(config::DEFAULT_WORKER_PREFETCH),
        min_transfer_token_chars: small(config::MIN_TRANSFER_TOKEN_CHARS),
        generated_token_chars: small(config::GENERATED_TOKEN_CHARS),
        task_entry: config::TASK_ENTRY.to_owned(),
    }
}

fn small(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Resolves both tokens as every front end does: each from its argument, else the environment
/// variable (`token`, `transferEncryptToken`), else the `.env` file (`envFile`, default
/// `./.env`). Throws `ERR_QUEUEXEC_TOKEN` when one is missing or invalid (the message names
/// where it may come from), `ERR_QUEUEXEC_CONFIG` when the `.env` file is not valid.
#[napi]
pub fn resolve_tokens(
    token: Option<String>,
    transfer_encrypt_token: Option<String>,
    env_file: Option<String>,
) -> Result<JsTokens> {
    let env_file = env_file.filter(|p| !p.is_empty()).map(PathBuf::from);
    let tokens = config::resolve_tokens(
        token.as_deref(),
        transfer_encrypt_token.as_deref(),
        env_file.as_deref(),
    )
    .js()?;
    Ok(JsTokens {
        token: tokens.token,
        transfer_encrypt_token: tokens.transfer_token,
    })
}

/// Checks a room token and a transfer token the way the core will, so that a constructor can
/// throw at once instead of failing later. Throws `ERR_QUEUEXEC_TOKEN` with the core's message.
#[napi]
pub fn check_tokens(token: String, transfer_token: String) -> Result<()> {
    config::check_tokens(&token, &transfer_token).js()
}

/// Checks a room token alone (not empty or only blanks); throws `ERR_QUEUEXEC_TOKEN`.
#[napi]
pub fn check_room_token(token: String) -> Result<()> {
    config::check_room_token(&token).js()
}

/// Checks a transfer token alone (at least 32 characters); throws `ERR_QUEUEXEC_TOKEN`.
#[napi]
pub fn check_transfer_token(token: String) -> Result<()> {
    config::check_transfer_token(&token).js()
}

/// Checks a worker's concurrency (at least 1) as the core does; throws `ERR_QUEUEXEC_CONFIG`.
#[napi]
pub fn check_concurrency(concurrency: u32) -> Result<u32> {
    config::check_concurrency(concurrency as usize).js()?;
    Ok(concurrency)
}

/// A fresh token: 32 letters and digits from the operating system's random number generator.
#[napi]
pub fn generate_token() -> String {
    config::generate_token()
}

/// The `KEY=value` pairs of the `.env` file at `path` (default `./.env`), in file order; an
/// empty list when the file does not exist. Throws `ERR_QUEUEXEC_CONFIG` naming the line of an
/// invalid file.
#[napi]
pub fn read_dotenv(path: Option<String>) -> Result<Vec<JsEnvEntry>> {
    let path = path
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| config::DEFAULT_ENV_FILE.to_owned());
    let pairs = config::read_dotenv(Path::new(&path))
        .js()?
        .unwrap_or_default();
    Ok(pairs
        .into_iter()
        .map(|(key, value)| JsEnvEntry { key, value })
        .collect())
}

/// Whether the `.env` file at `path` already assigns `token` or `transferEncryptToken`.
#[napi]
pub fn env_file_has_tokens(path: String) -> Result<bool> {
    config::env_file_has_tokens(Path::new(&path)).js()
}

/// Writes both tokens to the `.env` file at `path` (what `--setup` does): checked first,
/// replaced in place or appended, other lines kept, the file replaced whole (owner-only) and a
/// symbolic link refused.
#[napi]
pub fn write_env_tokens(path: String, token: String, transfer_encrypt_token: String) -> Result<()> {
    let tokens = config::Tokens {
        token,
        transfer_token: transfer_encrypt_token,
    };
    config::write_tokens_to_env_file(Path::new(&path), &tokens).js()
}
