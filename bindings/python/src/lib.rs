//! `queuexec._native`: the Rust half of the `queuexec` Python package.
//!
//! Binding files mirror the core's modules: [`master`] wraps `queuexec_core::Master`,
//! [`worker`] wraps `queuexec_core::Worker` with an executor that calls Python, [`events`] turns the core's
//! batched event stream into `queuexec.events` objects, [`error`] maps
//! core errors to the exception classes of `queuexec.exceptions`, and [`runtime`] holds the
//! process's tokio runtime and the GIL-free waits on it, and [`config`] exposes the core's
//! shared rules (tokens, `.env`, defaults, asset specs). The public Python API is the package
//! in `python/queuexec`, which wraps these classes.

use pyo3::prelude::*;

mod batch;
mod config;
mod error;
mod events;
mod master;
mod runtime;
mod worker;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", queuexec_core::VERSION)?;
    // Every code a core error can carry (`exc.code`), for the test that each has its class.
    m.add("ERROR_CODES", queuexec_core::Error::CODES.to_vec())?;
    // Benchmarks say which build they measured.
    m.add(
        "__build_profile__",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )?;
    m.add_class::<master::PyMaster>()?;
    m.add_class::<worker::PyWorker>()?;
    config::register(m)?;
    Ok(())
}
