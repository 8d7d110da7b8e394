//! How a worker's owner configures the JavaScript runtime.

use std::time::Duration;

/// Settings of a [`crate::JsExecutor`] (and of each [`crate::TaskRuntime`]).
#[derive(Debug, Clone)]
pub struct JsConfig {
    /// How many jobs run at once; each runs in its own runtime on its own thread.
    pub concurrency: usize,
    /// The JavaScript heap limit of each runtime, in bytes. A job that needs more fails with
    /// an out-of-memory error and its runtime is rebuilt.
    pub heap_limit_bytes: usize,
    /// The wall-clock limit of a job that has no timeout of its own; `None` means no limit.
    pub default_timeout: Option<Duration>,
    /// The wall-clock limit for loading task.js (its top-level code and constructor).
    pub load_timeout: Duration,
    /// What task code may reach beyond the sandbox. Nothing by default.
    pub grants: Grants,
}

impl Default for JsConfig {
    fn default() -> Self {
        JsConfig {
            concurrency: 1,
            heap_limit_bytes: 256 * 1024 * 1024,
            default_timeout: Some(Duration::from_secs(300)),
            load_timeout: Duration::from_secs(60),
            grants: Grants::none(),
        }
    }
}

/// Capabilities a worker's owner grants to task code explicitly. The default grants none:
/// no file system, network, environment, child processes or code from outside the bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grants {
    /// Names of environment variables task code may read through `process.env`.
    pub env: Vec<String>,
}

impl Grants {
    /// Grants nothing (the default).
    pub fn none() -> Self {
        Grants::default()
    }

    /// Also lets task code read these environment variables (`--allow-env=NAME,...`).
    pub fn with_env<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.env.extend(names.into_iter().map(Into::into));
        self
    }
}
