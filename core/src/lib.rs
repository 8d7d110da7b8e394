//! queuexec core: a master hands encrypted jobs to workers over libp2p, durably.
//!
//! The modules follow the problem's domains (see `ARCHITECTURE.md`):
//! [`config`] (tokens, `.env`, defaults and task.js: the rules every front end shares),
//! [`crypto`] (keys and the envelope), [`assets`] (manifest, bundle hash, the worker's
//! workplace), [`deps`] (dependency bundles), [`store`] (durable and in-memory job storage),
//! `scheduler` (job states, leases, retries), `protocol` (wire messages), `net` (the libp2p
//! swarm), and the two engines [`Master`] and [`Worker`].
//!
//! This crate knows nothing of napi, pyo3 or deno_core: workers run jobs through the
//! [`Executor`] trait, implemented by the CLI and the bindings.

pub mod assets;
pub mod config;
pub mod crypto;
pub mod deps;
mod error;
mod executor;
mod job;
mod master;
mod net;
mod protocol;
pub mod room;
mod scheduler;
pub mod store;
mod worker;

pub use error::{Error, Result};
pub use executor::{Executor, JobInput, TaskFailure};
pub use job::{JobResult, JobSpec, WorkerInfo};
pub use master::{Master, MasterConfig, MasterEvent, PushReceipt, Stats, StoreConfig};
pub use worker::{Worker, WorkerConfig, WorkerEvent, WorkerStats};

/// The version of this crate, which every front end reports as its own.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
