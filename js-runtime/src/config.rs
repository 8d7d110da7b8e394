//! How a worker's owner configures the JavaScript runtime.

use std::sync::{Arc, OnceLock};
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
    /// The worker whose master tasks ask through their context (`ctx.lookup`,
    /// `ctx.setLookup`, `ctx.request`, `ctx.metric`); connect it once the worker has started.
    pub master: MasterLink,
}

/// The worker a runtime's tasks reach their master through: the lookups and messages of
/// okanjo-conductor, over the worker's encrypted session. Empty until
/// [`connect`](MasterLink::connect)ed; then every runtime made from the same [`JsConfig`]
/// (clones share it) uses that worker.
#[derive(Clone, Default)]
pub struct MasterLink(Arc<OnceLock<queuexec_core::Worker>>);

impl MasterLink {
    /// Tasks call the master through `worker` from now on (the first call wins).
    pub fn connect(&self, worker: queuexec_core::Worker) {
        let _ = self.0.set(worker);
    }

    pub(crate) fn worker(&self) -> Option<queuexec_core::Worker> {
        self.0.get().cloned()
    }
}

impl std::fmt::Debug for MasterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterLink")
            .field("connected", &self.0.get().is_some())
            .finish()
    }
}

impl Default for JsConfig {
    fn default() -> Self {
        JsConfig {
            concurrency: 1,
            heap_limit_bytes: 256 * 1024 * 1024,
            default_timeout: Some(Duration::from_secs(300)),
            load_timeout: Duration::from_secs(60),
            grants: Grants::none(),
            master: MasterLink::default(),
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
