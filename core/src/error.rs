//! The one error type of `queuexec-core`.
//!
//! Every variant says what happened and, where a user can act, what to do. Bindings map the
//! variants to their own exception classes (see `bindings/*/src/error.rs`), so keep variants
//! meaningful rather than stringly.

use std::path::PathBuf;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A room token or transfer token is missing or unusable.
    #[error("{0}")]
    Token(String),

    /// A sealed message failed its integrity check. Deliberately one error for every kind of
    /// tampering, truncation and wrong key, so that nothing leaks about which one it was.
    #[error(
        "a message could not be opened: it was altered, truncated, or sealed with another transferEncryptToken"
    )]
    Envelope,

    /// A worker path from a manifest was refused; nothing was written.
    #[error("refused asset path {path:?}: {reason}")]
    AssetPath {
        /// The path exactly as the master sent it.
        path: String,
        /// Why it was refused.
        reason: String,
    },

    /// A file's content does not match the SHA-256 the manifest announced.
    #[error(
        "asset {name:?} failed its SHA-256 check (expected {expected}, got {actual}); the file was not installed"
    )]
    AssetHash {
        /// The asset's name.
        name: String,
        /// Hex SHA-256 from the manifest.
        expected: String,
        /// Hex SHA-256 of what arrived.
        actual: String,
    },

    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The job store failed.
    #[error("job store {location}: {message}")]
    Store {
        /// The store file, or "memory".
        location: String,
        /// What failed and what to do.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A job's data or a result is not what it must be.
    #[error("{0}")]
    Payload(String),

    /// A configuration value is invalid.
    #[error("{0}")]
    Config(String),

    /// The network layer failed (listen, dial, transport).
    #[error("network: {0}")]
    Network(String),

    /// A peer sent something outside the protocol, or an oversized frame.
    #[error("protocol: {0}")]
    Protocol(String),

    /// The peer could not prove it holds the room token, or is in another room.
    #[error("{0}")]
    Unauthorized(String),

    /// The dependency bundle could not be built or installed.
    #[error("dependencies: {0}")]
    Dependencies(String),

    /// The engine was closed; the call cannot be served.
    #[error("{0} is closed")]
    Closed(&'static str),
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
