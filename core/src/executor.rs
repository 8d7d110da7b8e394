//! How a worker runs a job: the [`Executor`] trait.
//!
//! Implementations live outside the core: a shell-command executor in the CLI, the deno_core
//! executor in `queuexec-js`, a JavaScript callback in the Node binding, Python callables in the
//! Python binding.

use std::path::Path;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::assets::Manifest;

/// One job as a worker's executor sees it.
#[derive(Debug, Clone)]
pub struct JobInput {
    /// The job's id, as the master assigned or the user gave it.
    pub id: String,
    /// The job's data as JSON text.
    pub data: String,
    /// The task type the job names, if any (for executors that map types to functions).
    pub task_type: Option<String>,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The wall-clock limit for this run. The worker also enforces it by dropping the future,
    /// so an executor must stop its work when the future is dropped.
    pub timeout: Option<Duration>,
    /// How the task receives the job: `{id, data}`, with a numeric id, or the data as the whole
    /// payload (queue-xec's contract: the payload as pushed).
    pub shape: crate::PayloadShape,
}

/// Why a job failed; its message is what the master's user receives as the job's `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// Human-readable reason.
    pub message: String,
}

impl TaskFailure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        TaskFailure {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskFailure {}

/// What a worker runs jobs with.
///
/// `run` is called up to the worker's `concurrency` times at once. The returned future must be
/// `'static`: clone what it needs out of `self`.
pub trait Executor: Send + Sync + 'static {
    /// Runs one job and returns its result as JSON text, or why it failed.
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>>;

    /// Called after the worker installed a new asset bundle in `workplace` and before any job
    /// of that bundle runs, so an executor can (re)load task code. The default does nothing.
    fn assets_changed(
        &self,
        workplace: &Path,
        manifest: &Manifest,
    ) -> BoxFuture<'static, Result<(), TaskFailure>> {
        let _ = (workplace, manifest);
        Box::pin(futures::future::ready(Ok(())))
    }

    /// Whether this executor needs the master's dependency bundle (npm dependencies packed by
    /// the master) because it cannot install them itself, as the embedded JavaScript runtime
    /// cannot. When true and the master lists dependencies, the worker asks for the bundle and
    /// hands [`assets_changed`](Self::assets_changed) a manifest that names it; otherwise it is
    /// never fetched. The default is false (a Node worker installs with npm or yarn itself).
    fn wants_dependency_bundle(&self) -> bool {
        false
    }
}
