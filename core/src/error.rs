//! The one error type of `queuexec-core`.
//!
//! Every variant says what happened and, where a user can act, what to do; keeps the error that
//! caused it as its `source` (so a binding can show the chain); and has a stable code
//! ([`Error::code`]), which the bindings map to a class of the same name in each language (see
//! `bindings/*/src/error.rs`). Codes never change meaning; a new kind of failure gets a new
//! variant and a new code.

use std::path::PathBuf;

/// The underlying error a variant keeps as its source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A room token or transfer token is missing or unusable.
    #[error("{0}")]
    Token(String),

    /// The two sides of a handshake hold different transfer tokens (`transferEncryptToken`),
    /// though the same room token.
    #[error("{0}")]
    TokenMismatch(String),

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
        source: Option<BoxError>,
    },

    /// A job's data or a result is not what it must be. The second field is the underlying error, when there is one.
    #[error("{0}")]
    Payload(String, #[source] Option<BoxError>),

    /// A configuration value is invalid. The second field is the underlying error, when there is one.
    #[error("{0}")]
    Config(String, #[source] Option<BoxError>),

    /// The network layer failed (listen, dial, transport). The second field is the underlying error, when there is one.
    #[error("network: {0}")]
    Network(String, #[source] Option<BoxError>),

    /// A peer sent something outside the protocol, or an oversized frame. The second field is the underlying error, when there is one.
    #[error("protocol: {0}")]
    Protocol(String, #[source] Option<BoxError>),

    /// The peer could not prove it holds the room token, or is in another room.
    #[error("{0}")]
    Unauthorized(String),

    /// The dependency bundle could not be built or installed. The second field is the underlying error, when there is one.
    #[error("dependencies: {0}")]
    Dependencies(String, #[source] Option<BoxError>),

    /// The engine was closed; the call cannot be served.
    #[error("{0} is closed")]
    Closed(&'static str),
}

impl Error {
    /// The stable code of this kind of error (`ERR_QUEUEXEC_…`): what programs switch on, and
    /// the name of the matching error class in Node and Python.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Token(_) => "ERR_QUEUEXEC_TOKEN",
            Error::TokenMismatch(_) => "ERR_QUEUEXEC_TOKEN_MISMATCH",
            Error::Envelope => "ERR_QUEUEXEC_ENVELOPE",
            Error::AssetPath { .. } => "ERR_QUEUEXEC_ASSET_PATH",
            Error::AssetHash { .. } => "ERR_QUEUEXEC_ASSET_HASH",
            Error::Io { .. } => "ERR_QUEUEXEC_IO",
            Error::Store { .. } => "ERR_QUEUEXEC_STORE",
            Error::Payload(..) => "ERR_QUEUEXEC_PAYLOAD",
            Error::Config(..) => "ERR_QUEUEXEC_CONFIG",
            Error::Network(..) => "ERR_QUEUEXEC_NETWORK",
            Error::Protocol(..) => "ERR_QUEUEXEC_PROTOCOL",
            Error::Unauthorized(_) => "ERR_QUEUEXEC_UNAUTHORIZED",
            Error::Dependencies(..) => "ERR_QUEUEXEC_DEPENDENCIES",
            Error::Closed(_) => "ERR_QUEUEXEC_CLOSED",
        }
    }

    /// Every code [`code`](Self::code) can return, for bindings that build a class per code.
    pub const CODES: &'static [&'static str] = &[
        "ERR_QUEUEXEC_TOKEN",
        "ERR_QUEUEXEC_TOKEN_MISMATCH",
        "ERR_QUEUEXEC_ENVELOPE",
        "ERR_QUEUEXEC_ASSET_PATH",
        "ERR_QUEUEXEC_ASSET_HASH",
        "ERR_QUEUEXEC_IO",
        "ERR_QUEUEXEC_STORE",
        "ERR_QUEUEXEC_PAYLOAD",
        "ERR_QUEUEXEC_CONFIG",
        "ERR_QUEUEXEC_NETWORK",
        "ERR_QUEUEXEC_PROTOCOL",
        "ERR_QUEUEXEC_UNAUTHORIZED",
        "ERR_QUEUEXEC_DEPENDENCIES",
        "ERR_QUEUEXEC_CLOSED",
    ];

    pub(crate) fn network(message: impl Into<String>) -> Self {
        Error::Network(message.into(), None)
    }

    pub(crate) fn network_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Network(message.into(), Some(source.into()))
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Error::Protocol(message.into(), None)
    }

    pub(crate) fn protocol_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Protocol(message.into(), Some(source.into()))
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into(), None)
    }

    pub(crate) fn config_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Config(message.into(), Some(source.into()))
    }

    pub(crate) fn payload(message: impl Into<String>) -> Self {
        Error::Payload(message.into(), None)
    }

    pub(crate) fn payload_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Payload(message.into(), Some(source.into()))
    }

    pub(crate) fn dependencies(message: impl Into<String>) -> Self {
        Error::Dependencies(message.into(), None)
    }

    pub(crate) fn dependencies_from(
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Dependencies(message.into(), Some(source.into()))
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn one_of_each() -> Vec<Error> {
        vec![
            Error::Token("t".into()),
            Error::TokenMismatch("m".into()),
            Error::Envelope,
            Error::AssetPath {
                path: "p".into(),
                reason: "r".into(),
            },
            Error::AssetHash {
                name: "n".into(),
                expected: "e".into(),
                actual: "a".into(),
            },
            Error::io("reading", "/x", std::io::Error::other("gone")),
            Error::Store {
                location: "memory".into(),
                message: "m".into(),
                source: None,
            },
            Error::payload("p"),
            Error::config("c"),
            Error::network("n"),
            Error::protocol("p"),
            Error::Unauthorized("u".into()),
            Error::dependencies("d"),
            Error::Closed("the master"),
        ]
    }

    #[test]
    fn every_variant_has_its_own_code_and_codes_lists_them_all() {
        let codes: Vec<&str> = one_of_each().iter().map(Error::code).collect();
        assert_eq!(codes, Error::CODES);
        let unique: std::collections::HashSet<&str> = codes.iter().copied().collect();
        assert_eq!(unique.len(), codes.len(), "codes are distinct: {codes:?}");
        assert!(codes.iter().all(|c| c.starts_with("ERR_QUEUEXEC_")));
    }

    #[test]
    fn errors_built_from_a_cause_keep_it_as_their_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let error = Error::network_from("reading from a peer", io);
        assert_eq!(error.to_string(), "network: reading from a peer");
        let source = error.source().expect("the cause is kept");
        assert_eq!(source.to_string(), "reset by peer");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }
}
