//! Every default a front end may show or fall back to, in one place. The CLI, the npm packages
//! and the Python package leave a setting unset to get these (Node reads them with
//! `defaults()`, Python with `queuexec.defaults()`); none of them restates a number.
//!
//! A worker's defaults are queue-xec's (one job at a time, the name `no_name`, one job held
//! ready): the npm packages are drop-in replacements for queue-xec's, whose users' tasks may
//! assume one job at a time, and a worker is already told apart by its peer id in every result.

use std::time::Duration;

use crate::error::{Error, Result};

/// Retries of a job whose push does not say (so at most 4 attempts).
pub const DEFAULT_RETRIES: u32 = 3;
/// How long a lease lasts without a heartbeat from its worker.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// The shortest lease a master accepts.
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(100);
/// The first retry delay (doubling per attempt, at most a minute).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Most worker connections a master accepts at once.
pub const DEFAULT_MAX_WORKERS: u32 = 1024;
/// Whether a master watches its asset files and reloads them when they change.
pub const DEFAULT_WATCH_ASSETS: bool = true;
/// How often a watching master looks at its asset files' size and modification time.
pub const ASSET_WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// With the SQLite store, the most ready durable jobs a master keeps in memory; the rest wait
/// only in the store until the ones in memory run low.
pub const DEFAULT_MAX_RESIDENT_JOBS: usize = 10_000;

/// Jobs a worker runs at once.
pub const DEFAULT_WORKER_CONCURRENCY: usize = 1;
/// The name a master reports for a worker that gives none.
pub const DEFAULT_WORKER_NAME: &str = "no_name";
/// Jobs a worker holds ready beyond those running.
pub const DEFAULT_WORKER_PREFETCH: usize = 1;
/// The folder a worker installs its master's assets in, relative to the current directory.
pub const DEFAULT_WORKPLACE: &str = "workplace";

/// Checks a worker's concurrency: at least 1.
///
/// # Errors
/// [`Error::Config`] naming the value given.
pub fn check_concurrency(concurrency: usize) -> Result<usize> {
    if concurrency == 0 {
        return Err(Error::config(
            "concurrency must be at least 1 (jobs run at once), got 0".to_owned(),
        ));
    }
    Ok(concurrency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MasterConfig, WorkerConfig};

    #[test]
    fn a_new_master_config_takes_every_default_from_here() {
        let config = MasterConfig::new("room", "t");
        assert_eq!(config.default_retries, DEFAULT_RETRIES);
        assert_eq!(config.lease_ttl, DEFAULT_LEASE_TTL);
        assert_eq!(config.retry_backoff, DEFAULT_RETRY_BACKOFF);
        assert_eq!(config.max_workers, DEFAULT_MAX_WORKERS);
        assert_eq!(config.watch_assets, DEFAULT_WATCH_ASSETS);
    }

    #[test]
    fn a_new_worker_config_takes_every_default_from_here() {
        let config = WorkerConfig::new("room", "t");
        assert_eq!(config.concurrency, DEFAULT_WORKER_CONCURRENCY);
        assert_eq!(config.name, DEFAULT_WORKER_NAME);
        assert_eq!(config.prefetch, DEFAULT_WORKER_PREFETCH);
        assert_eq!(
            config.workplace,
            std::path::PathBuf::from(DEFAULT_WORKPLACE)
        );
    }

    #[test]
    fn the_worker_defaults_are_queue_xecs() {
        assert_eq!(
            (
                DEFAULT_WORKER_CONCURRENCY,
                DEFAULT_WORKER_NAME,
                DEFAULT_WORKER_PREFETCH
            ),
            (1, "no_name", 1)
        );
    }

    #[test]
    fn concurrency_must_be_at_least_one() {
        assert_eq!(check_concurrency(1).expect("1"), 1);
        assert_eq!(check_concurrency(8).expect("8"), 8);
        let message = check_concurrency(0).expect_err("0").to_string();
        assert!(message.contains("at least 1"), "{message}");
    }
}
