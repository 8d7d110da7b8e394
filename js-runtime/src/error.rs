//! The one error type of `queuexec-js`.

use std::path::PathBuf;

/// Everything that can go wrong setting up or loading the JavaScript runtime.
///
/// A failing *job* is not a `JsError`: it is the job's [`queuexec_core::TaskFailure`], whose
/// message the master receives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsError {
    /// A [`crate::JsConfig`] value is unusable.
    #[error("invalid JavaScript runtime configuration: {0}")]
    Config(String),

    /// The files the master shipped contain no task.js.
    #[error("{0}")]
    TaskNotFound(String),

    /// task.js (or a module it requires) failed while loading, or does not export a task.
    #[error("task.js failed to load: {0}")]
    Load(String),

    /// The dependency bundle could not be unpacked.
    #[error(transparent)]
    Dependencies(#[from] queuexec_core::Error),

    /// A file or directory could not be read.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The JavaScript engine could not be started.
    #[error("the JavaScript engine could not start: {0}")]
    Engine(String),

    /// The executor was shut down, or a runtime thread ended unexpectedly.
    #[error("the JavaScript runtime is closed")]
    Closed,
}
