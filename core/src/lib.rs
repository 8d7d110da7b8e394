//! queuexec core: a master hands encrypted jobs to workers over libp2p, durably.
//!
//! The modules follow the problem's domains (see `ARCHITECTURE.md`): [`config`] (tokens,
//! `.env`, defaults and task.js: the rules every front end shares), `crypto` (keys and the
//! envelope), `assets` (manifest, bundle hash, the worker's workplace), `deps` (dependency
//! bundles), `store` (durable and in-memory job storage), `scheduler` (job states, leases,
//! retries), `protocol` (wire messages, frames, the handshake), `net` (the libp2p swarm), and
//! the two engines [`Master`] and [`Worker`], whose events the bindings read in batches
//! through [`EventStream`].
//!
//! Every module is private: what a front end (the CLI, a binding) may use is re-exported here,
//! and nothing else is API. `testing` holds the few internals this workspace's tests of other
//! crates need; it is not API.
//!
//! This crate knows nothing of napi, pyo3 or deno_core: workers run jobs through the
//! [`Executor`] trait, implemented by the CLI and the bindings.

mod assets;
mod calls;
pub mod config;
mod crypto;
mod deps;
mod error;
mod events;
mod executor;
#[cfg(test)]
mod fuzz;
mod job;
mod master;
mod net;
mod protocol;
pub mod relay;
mod room;
mod scheduler;
mod shape;
mod stats;
mod store;
mod worker;

/// The maps the engine touches for every job (scheduler, dashboard insight, sessions), keyed by
/// job ids and session numbers: foldhash (hashbrown's own default, seeded per process) instead
/// of std's SipHash, which was most of each lookup's cost on the master's runtime thread.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A set of the same kind as [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub use assets::{AssetSpec, BundleHash, Manifest, ManifestEntry, Sha256, Workplace};
pub use calls::{RequestParts, WorkerCall, WorkerRequest};
pub use deps::{DEPENDENCY_CACHE_DIR_ENV, unpack_dependency_bundle};
pub use error::{BoxError, Error, Result};
pub use events::EventStream;
pub use executor::{Executor, JobInput, TaskFailure};
pub use job::{JobResult, JobSpec, WorkerInfo, json_string, json_string_into};
pub use master::{
    JobInfo, JobStatus, Master, MasterConfig, MasterEvent, Overview, PushReceipt, Second, Stats,
    StoreConfig, WorkerStatus,
};
pub use net::Path;
pub use shape::PayloadShape;
pub use stats::{DEFAULT_STATS_INTERVAL, StatsReport, WorkerStatsLine};
pub use worker::{Worker, WorkerConfig, WorkerEvent, WorkerStats};

/// The version of this crate, which every front end reports as its own.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Internals that this workspace's tests in other crates need (js-runtime's dependency tests
/// play the master's side without a network). Not API: it may change in any release.
///
/// A module rather than a cargo feature: a feature enabled only by dev-dependencies would
/// compile this crate, and everything above it, twice in one `cargo build` + `cargo test` run.
#[doc(hidden)]
pub mod testing {
    pub use crate::assets::AssetSet;
    pub use crate::deps::{build_dependency_bundle, dependency_bundle_dir};
    pub mod evil;
}
