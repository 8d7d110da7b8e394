//! Core errors as Python exceptions.
//!
//! The exception classes are defined in Python (`queuexec/exceptions.py`, so users can read,
//! subclass and document them); this module maps each [`queuexec_core::Error`] code
//! ([`Error::code`], `ERR_QUEUEXEC_…`) to the class of the same name as in Node, copies the
//! variant's fields onto the exception as attributes, and keeps the chain of underlying errors
//! as `__cause__`. Every class carries its `code`.

use std::error::Error as _;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use queuexec_core::Error;

#[allow(unreachable_pub, missing_docs)]
mod classes {
    pyo3::import_exception!(queuexec.exceptions, QueuexecError);
    pyo3::import_exception!(queuexec.exceptions, TokenError);
    pyo3::import_exception!(queuexec.exceptions, TokenMismatchError);
    pyo3::import_exception!(queuexec.exceptions, EnvelopeError);
    pyo3::import_exception!(queuexec.exceptions, AssetPathError);
    pyo3::import_exception!(queuexec.exceptions, AssetHashError);
    pyo3::import_exception!(queuexec.exceptions, IoError);
    pyo3::import_exception!(queuexec.exceptions, StoreError);
    pyo3::import_exception!(queuexec.exceptions, PayloadError);
    pyo3::import_exception!(queuexec.exceptions, ConfigError);
    pyo3::import_exception!(queuexec.exceptions, NetworkError);
    pyo3::import_exception!(queuexec.exceptions, ProtocolError);
    pyo3::import_exception!(queuexec.exceptions, UnauthorizedError);
    pyo3::import_exception!(queuexec.exceptions, DependencyError);
    pyo3::import_exception!(queuexec.exceptions, ClosedError);
}

use classes::*;

/// Turns core results into Python results.
pub(crate) trait CoreResultExt<T> {
    /// The value, or the core error as its Python exception.
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> CoreResultExt<T> for Result<T, Error> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py_err(py, &e))
    }
}

/// The Python exception for a core error, with its fields as attributes and its sources as
/// `__cause__`.
pub(crate) fn to_py_err(py: Python<'_>, error: &Error) -> PyErr {
    let message = error.to_string();
    let class = class_of(py, error.code());
    let attrs: Vec<(&str, Py<PyAny>)> = match error {
        Error::AssetPath { path, reason } => {
            vec![("path", str_obj(py, path)), ("reason", str_obj(py, reason))]
        }
        Error::AssetHash {
            name,
            expected,
            actual,
        } => vec![
            ("name", str_obj(py, name)),
            ("expected", str_obj(py, expected)),
            ("actual", str_obj(py, actual)),
        ],
        Error::Io { action, path, .. } => vec![
            ("action", str_obj(py, action)),
            ("path", str_obj(py, &path.to_string_lossy())),
        ],
        Error::Store { location, .. } => vec![("location", str_obj(py, location))],
        _ => vec![],
    };
    let err = new_err(&class, message);
    // The instance carries the core's code itself, so `exc.code` is the core's stable code even
    // where the class is the base class (a code this binding does not know yet).
    let _ = err.value(py).setattr("code", error.code());
    for (name, value) in attrs {
        let _ = err.value(py).setattr(name, value);
    }
    // The chain of sources, outermost first, becomes __cause__ links.
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push(match cause.downcast_ref::<std::io::Error>() {
            // An OSError subclass with its errno (FileNotFoundError, PermissionError, ...).
            Some(io) => PyErr::from(std::io::Error::new(io.kind(), io.to_string())),
            None => PyRuntimeError::new_err(cause.to_string()),
        });
        source = cause.source();
    }
    let mut outer = err.clone_ref(py);
    for cause in causes {
        outer.set_cause(py, Some(cause.clone_ref(py)));
        outer = cause;
    }
    err
}

/// The class for a core error code: the same name as Node's class for it.
fn class_of<'py>(py: Python<'py>, code: &str) -> Bound<'py, PyType> {
    match code {
        "ERR_QUEUEXEC_TOKEN" => py.get_type::<TokenError>(),
        "ERR_QUEUEXEC_TOKEN_MISMATCH" => py.get_type::<TokenMismatchError>(),
        "ERR_QUEUEXEC_ENVELOPE" => py.get_type::<EnvelopeError>(),
        "ERR_QUEUEXEC_ASSET_PATH" => py.get_type::<AssetPathError>(),
        "ERR_QUEUEXEC_ASSET_HASH" => py.get_type::<AssetHashError>(),
        "ERR_QUEUEXEC_IO" => py.get_type::<IoError>(),
        "ERR_QUEUEXEC_STORE" => py.get_type::<StoreError>(),
        "ERR_QUEUEXEC_PAYLOAD" => py.get_type::<PayloadError>(),
        "ERR_QUEUEXEC_CONFIG" => py.get_type::<ConfigError>(),
        "ERR_QUEUEXEC_NETWORK" => py.get_type::<NetworkError>(),
        "ERR_QUEUEXEC_PROTOCOL" => py.get_type::<ProtocolError>(),
        "ERR_QUEUEXEC_UNAUTHORIZED" => py.get_type::<UnauthorizedError>(),
        "ERR_QUEUEXEC_DEPENDENCIES" => py.get_type::<DependencyError>(),
        "ERR_QUEUEXEC_CLOSED" => py.get_type::<ClosedError>(),
        _ => py.get_type::<QueuexecError>(),
    }
}

fn str_obj(py: Python<'_>, s: &str) -> Py<PyAny> {
    pyo3::types::PyString::new(py, s).into_any().unbind()
}

fn new_err(class: &Bound<'_, PyType>, message: String) -> PyErr {
    match class.call1((message.clone(),)) {
        Ok(value) => PyErr::from_value(value),
        // The exceptions module failed to import: still say what happened.
        Err(_) => PyRuntimeError::new_err(message),
    }
}

fn attached_err<T: pyo3::PyTypeInfo>(message: String) -> PyErr {
    Python::attach(|py| new_err(&py.get_type::<T>(), message))
}

/// `queuexec.ConfigError`.
pub(crate) fn config_error(message: impl Into<String>) -> PyErr {
    attached_err::<ConfigError>(message.into())
}

/// `queuexec.QueuexecError` for failures of the binding's own machinery.
pub(crate) fn runtime_error(message: impl Into<String>) -> PyErr {
    attached_err::<QueuexecError>(message.into())
}
