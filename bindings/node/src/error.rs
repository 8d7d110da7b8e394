//! Core errors as JavaScript errors.
//!
//! Every [`queuexec_core::Error`] variant gets a stable `code` (what JS code switches on), its
//! message unchanged (it already says what happened and what to do), and its `#[source]` chain
//! as `error.cause`. The JS layer (`lib/errors.js`) turns the code into an error class.
//!
//! Synchronous functions throw errors whose `code` is the [`ErrorCode`]. napi-rs rejects the
//! promises of `async fn`s only with `napi::Error<Status>`, so there the code travels as a
//! prefix of the message (`"ERR_QUEUEXEC_STORE: ..."`), which `lib/errors.js` moves back into
//! `code`; the cause chain is kept either way.

use std::error::Error as _;

use napi::{Error, Status};
use queuexec_core::Error as CoreError;

/// The `code` of every error the addon throws or rejects with: the core's
/// [`CoreError::code`] (`ERR_QUEUEXEC_…`), so Node and Python agree on every code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(&'static str);

impl ErrorCode {
    /// `ERR_QUEUEXEC_CONFIG`: an option the binding itself refused.
    pub const CONFIG: ErrorCode = ErrorCode("ERR_QUEUEXEC_CONFIG");
}

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// What the addon's synchronous functions return.
pub type Result<T, S = ErrorCode> = napi::Result<T, S>;

/// Maps core errors to JS errors, keeping the cause chain.
pub(crate) trait IntoJsError {
    /// The JS error for this core error.
    fn into_js(self) -> Error<ErrorCode>;
}

impl IntoJsError for CoreError {
    fn into_js(self) -> Error<ErrorCode> {
        let code = ErrorCode(self.code());
        let mut error = Error::new(code, self.to_string());
        if let Some(source) = self.source() {
            error.cause = Some(Box::new(cause_chain(source)));
        }
        error
    }
}

/// `source` and its own sources as nested JS errors (`error.cause.cause...`).
fn cause_chain(source: &(dyn std::error::Error + 'static)) -> Error {
    let mut error = Error::new(Status::GenericFailure, source.to_string());
    if let Some(next) = source.source() {
        error.cause = Some(Box::new(cause_chain(next)));
    }
    error
}

/// Shorthand for `map_err(IntoJsError::into_js)`.
pub(crate) trait CoreResultExt<T> {
    /// The result with its error mapped to a JS error.
    fn js(self) -> Result<T>;

    /// The same, for the rejection of an `async fn`'s promise.
    fn js_async(self) -> napi::Result<T>;
}

impl<T> CoreResultExt<T> for std::result::Result<T, CoreError> {
    fn js(self) -> Result<T> {
        self.map_err(IntoJsError::into_js)
    }

    fn js_async(self) -> napi::Result<T> {
        self.map_err(|e| for_promise(e.into_js()))
    }
}

/// A coded error as an `async fn` can reject with it: the code leads the message.
pub(crate) fn for_promise(error: Error<ErrorCode>) -> Error {
    let mut out = Error::new(
        Status::GenericFailure,
        format!("{}: {}", error.status.as_ref(), error.reason),
    );
    out.cause = error.cause;
    out
}

/// A configuration error raised by the binding itself.
pub(crate) fn config_error(message: impl Into<String>) -> Error<ErrorCode> {
    Error::new(ErrorCode::CONFIG, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_and_envelope_errors_keep_their_own_codes() {
        assert_eq!(
            CoreError::Envelope.into_js().status.as_ref(),
            "ERR_QUEUEXEC_ENVELOPE"
        );
        let protocol = CoreError::Protocol("a 9 MB frame".into(), None).into_js();
        assert_eq!(protocol.status.as_ref(), "ERR_QUEUEXEC_PROTOCOL");
        let mismatch = CoreError::TokenMismatch("other transfer token".into()).into_js();
        assert_eq!(mismatch.status.as_ref(), "ERR_QUEUEXEC_TOKEN_MISMATCH");
    }

    #[test]
    fn network_errors_keep_their_cause() {
        let core = CoreError::Network(
            "reading from a peer".into(),
            Some(Box::new(std::io::Error::other("reset by peer"))),
        );
        let js = core.into_js();
        assert_eq!(js.status.as_ref(), "ERR_QUEUEXEC_NETWORK");
        assert_eq!(
            js.cause.as_ref().map(|c| c.reason.as_str()),
            Some("reset by peer")
        );
    }

    #[test]
    fn io_errors_keep_their_cause() {
        let core = CoreError::Io {
            action: "reading",
            path: "/nowhere/task.js".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        let js = core.into_js();
        assert_eq!(js.status.as_ref(), "ERR_QUEUEXEC_IO");
        assert!(js.reason.contains("/nowhere/task.js"), "{}", js.reason);
        let cause = js.cause.as_ref().map(|c| c.reason.clone());
        assert_eq!(cause.as_deref(), Some("no such file"));
    }

    #[test]
    fn token_errors_have_their_own_code() {
        let js = CoreError::Token("transferEncryptToken is too short".into()).into_js();
        assert_eq!(js.status.as_ref(), "ERR_QUEUEXEC_TOKEN");
        assert_eq!(js.reason, "transferEncryptToken is too short");
        assert!(js.cause.is_none());
    }

    #[test]
    fn promise_errors_carry_the_code_in_front_and_keep_the_cause() {
        let core = CoreError::Store {
            location: "/x/jobs.sqlite".into(),
            message: "cannot open".into(),
            source: Some(Box::new(std::io::Error::other("disk on fire"))),
        };
        let js = for_promise(core.into_js());
        assert!(
            js.reason
                .starts_with("ERR_QUEUEXEC_STORE: job store /x/jobs.sqlite"),
            "{}",
            js.reason
        );
        assert_eq!(
            js.cause.as_ref().map(|c| c.reason.as_str()),
            Some("disk on fire")
        );
    }
}
