//! queuexec's embedded JavaScript runtime: workers that are not Node run the master's task.js
//! here, in deno_core, sandboxed, with its npm dependencies.
//!
//! The task contract is queue-xec's: task.js is CommonJS, `module.exports = Task`; `new Task()`
//! is built once per runtime and `await task.run({id, data})` is called per job; the returned
//! (or resolved) value is the result. `require()` follows Node's rules among the files the
//! master shipped and the dependency bundle. Built-ins that reach the file system, network,
//! environment or other processes are refused unless the worker's owner grants them
//! ([`Grants`]). Each job has a wall-clock timeout and each runtime a heap limit; a job that
//! throws, hangs or exhausts memory fails alone, and the worker goes on.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use queuexec_core::{Executor, JobInput};
//! use queuexec_js::{JsConfig, JsExecutor};
//!
//! let executor = JsExecutor::new(JsConfig { concurrency: 2, ..JsConfig::default() })?;
//! executor.load_dir("./my-task", None).await?;
//! let job = JobInput { id: "1".into(), data: "\"hello\"".into(), task_type: None, attempt: 1, timeout: None, shape: Default::default() };
//! let result = executor.run(job).await?;
//! # Ok(()) }
//! ```
//!
//! The JavaScript engine is chosen by this crate's features and nowhere else: `quickjs`
//! (default, builds offline) or `v8`.

#[cfg(all(feature = "quickjs", feature = "v8"))]
compile_error!(
    "queuexec-js: choose one JavaScript engine; for V8 build with `--no-default-features --features v8`"
);

mod config;
mod error;
mod executor;
#[cfg(test)]
mod fault_tests;
mod modules;
mod ops;
mod runtime;
mod slot;
mod task;

pub use config::{Grants, JsConfig, MasterLink};
pub use error::JsError;
pub use executor::JsExecutor;
pub use runtime::TaskRuntime;
pub use task::{TASK_FILE, TaskSource};

/// Ready-made tasks, for demos and smoke tests.
pub mod demo {
    /// A queue-xec task.js estimating pi by Monte Carlo: job data `{"samples": N}` (or its JSON
    /// string); result `{samples, inside, pi}`. Write it to a folder as `task.js` and load it.
    pub const MONTE_CARLO_PI: &str = include_str!("../examples/pi/task.js");
}

/// The version reported to task code as `process.versions.queuexec`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The JavaScript engine this build runs on: `"quickjs"` or `"v8"`.
pub const ENGINE: &str = if cfg!(feature = "v8") {
    "v8"
} else {
    "quickjs"
};
