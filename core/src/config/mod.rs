//! Settings every front end shares, so the CLI, the npm packages and the Python package apply
//! one rule each: the tokens (where they come from, what makes them valid, how `setup` makes
//! and stores them), the `.env` parser, the defaults, which file is task.js and the asset list
//! built from a task and its files. The master's asset watch (`MasterConfig::watch_assets`)
//! lives here too, so every front end reloads changed assets the same way.

mod bootstrap;
mod defaults;
mod dotenv;
mod runtime;
mod task;
mod tokens;
pub(crate) mod watch;

pub use bootstrap::{BOOTSTRAP_VAR, resolve_bootstrap, split_bootstrap};
pub use defaults::{
    ASSET_WATCH_INTERVAL, DEFAULT_LEASE_TTL, DEFAULT_MAX_RESIDENT_JOBS, DEFAULT_MAX_WORKERS,
    DEFAULT_RETRIES, DEFAULT_RETRY_BACKOFF, DEFAULT_WATCH_ASSETS, DEFAULT_WORKER_CONCURRENCY,
    DEFAULT_WORKER_NAME, DEFAULT_WORKER_PREFETCH, DEFAULT_WORKPLACE, MIN_LEASE_TTL,
    check_concurrency,
};
pub use dotenv::{parse_dotenv, read_dotenv};
pub use runtime::{MAX_THREADS, THREADS_VAR, runtime_threads};
pub use task::{TASK_ENTRY, asset_specs, task_entry};
pub use tokens::{
    DEFAULT_ENV_FILE, GENERATED_TOKEN_CHARS, MIN_TRANSFER_TOKEN_CHARS, TOKEN_VAR,
    TRANSFER_TOKEN_VAR, Tokens, check_room_token, check_tokens, check_transfer_token,
    env_file_has_tokens, generate_token, generate_tokens, resolve_tokens, write_tokens_to_env_file,
};
