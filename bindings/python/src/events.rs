//! Master and worker events for Python: a batch pulled from the core's [`EventStream`] with the
//! GIL released, then turned into the typed classes of `queuexec.events` (python/queuexec/
//! events.py) with the GIL taken once for the whole batch.
//!
//! The classes live in Python so users can read, match and document them; this file only builds
//! them, from the core's event enums.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyType};
use queuexec_core::{Error, EventStream, JobResult, MasterEvent, WorkerEvent, WorkerInfo};

use crate::error::to_py_err;
use crate::runtime::{seconds, wait_for};

/// Waits up to `timeout` seconds (forever when `None`) for up to `max` events; `Some([])` when
/// the time ran out, `None` once the stream ended (closed, or the engine gone) and every event was
/// read. `closed` is the handle's flag: once set, only what is buffered is handed out.
pub(crate) fn pull<T: Send + 'static>(
    py: Python<'_>,
    events: &Arc<EventStream<T>>,
    closed: &AtomicBool,
    timeout: Option<f64>,
    max: usize,
) -> PyResult<Option<Vec<T>>> {
    let max = max.max(1);
    if closed.load(Ordering::Acquire) {
        return Ok(events.try_batch(max));
    }
    let timeout = seconds("timeout", timeout)?;
    let got = wait_for(py, timeout, || {
        let events = events.clone();
        async move { events.next_batch(max).await }
    })?;
    Ok(match got {
        Some(batch) => batch,
        None => Some(Vec::new()),
    })
}

macro_rules! event_class {
    ($fn:ident, $name:literal) => {
        fn $fn(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
            static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
            CLASS.import(py, "queuexec.events", $name)
        }
    };
}

event_class!(result_event, "ResultEvent");
event_class!(worker_joined, "WorkerJoined");
event_class!(worker_left, "WorkerLeft");
event_class!(drained, "Drained");
event_class!(warning_event, "WarningEvent");
event_class!(task_load_failed, "TaskLoadFailed");
event_class!(connected, "Connected");
event_class!(disconnected, "Disconnected");
event_class!(assets_installed, "AssetsInstalled");
event_class!(job_finished, "JobFinished");
event_class!(error_event, "ErrorEvent");
event_class!(worker_call, "WorkerCall");
event_class!(master_message, "MasterMessage");
event_class!(aborted, "Aborted");
event_class!(job_cancelled, "JobCancelled");
event_class!(stats_event, "StatsEvent");

/// A worker's call as a `WorkerCall`.
fn call_event<'py>(
    py: Python<'py>,
    call: queuexec_core::WorkerCall,
) -> PyResult<Bound<'py, PyAny>> {
    let p = call.request.parts();
    let worker = worker_info(py, call.worker)?;
    worker_call(py)?.call1((call.id, worker, p.op, p.name, p.key, p.value, p.cmd, p.data))
}

fn job_result_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CLASS.import(py, "queuexec.job", "JobResult")
}

fn worker_info_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CLASS.import(py, "queuexec.job", "WorkerInfo")
}

fn worker_info<'py>(py: Python<'py>, worker: WorkerInfo) -> PyResult<Bound<'py, PyAny>> {
    worker_info_class(py)?.call1((worker.id, worker.name))
}

/// `json.loads`, looked up once.
fn json_loads(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOADS
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("json")?.getattr("loads")?.unbind())
        })
        .map(|f| f.bind(py))
}

/// An instance of the frozen dataclass `class` with `fields` (its fields, all of them, by
/// name) set directly in its `__dict__`: what its generated `__init__` does, one
/// `object.__setattr__` call per field, at a fraction of the cost. Only for the classes of
/// `queuexec.job` and `queuexec.events` built here, which define no `__post_init__`.
fn frozen<'py>(
    class: &Bound<'py, PyType>,
    fields: &[(&Bound<'py, PyString>, Bound<'py, PyAny>)],
) -> PyResult<Bound<'py, PyAny>> {
    let py = class.py();
    let object = class.call_method1(intern!(py, "__new__"), (class,))?;
    let dict = object.getattr(intern!(py, "__dict__"))?;
    let dict = dict.cast::<PyDict>()?;
    for (name, value) in fields {
        dict.set_item(name, value)?;
    }
    Ok(object)
}

/// The `WorkerInfo`s of one batch of events: most of a batch's results come from a few
/// workers, so each is built once.
#[derive(Default)]
struct Workers<'py> {
    seen: Vec<(WorkerInfo, Bound<'py, PyAny>)>,
}

impl<'py> Workers<'py> {
    fn get(&mut self, py: Python<'py>, worker: WorkerInfo) -> PyResult<Bound<'py, PyAny>> {
        if let Some((_, object)) = self.seen.iter().find(|(w, _)| *w == worker) {
            return Ok(object.clone());
        }
        let object = frozen(
            worker_info_class(py)?,
            &[
                (
                    intern!(py, "id"),
                    worker.id.clone().into_pyobject(py)?.into_any(),
                ),
                (
                    intern!(py, "name"),
                    worker.name.clone().into_pyobject(py)?.into_any(),
                ),
            ],
        )?;
        if self.seen.len() < 16 {
            self.seen.push((worker, object.clone()));
        }
        Ok(object)
    }
}

/// A `queuexec.ResultEvent` holding a `queuexec.JobResult`: the data decoded from JSON (text
/// that is not JSON, which only a non-Python worker can send, stays text).
fn result_event_of<'py>(
    py: Python<'py>,
    result: JobResult,
    workers: &mut Workers<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let (data, error) = match result.outcome {
        Ok(json) => {
            let data = match json_loads(py)?.call1((&json,)) {
                Ok(value) => value,
                Err(e) if e.is_instance_of::<PyValueError>(py) => {
                    json.into_pyobject(py)?.into_any()
                }
                Err(e) => return Err(e),
            };
            (data, py.None().into_bound(py))
        }
        Err(error) => (
            py.None().into_bound(py),
            error.into_pyobject(py)?.into_any(),
        ),
    };
    let job = frozen(
        job_result_class(py)?,
        &[
            (
                intern!(py, "job_id"),
                result.job_id.into_pyobject(py)?.into_any(),
            ),
            (intern!(py, "worker"), workers.get(py, result.worker)?),
            (intern!(py, "data"), data),
            (intern!(py, "error"), error),
            (
                intern!(py, "attempts"),
                result.attempts.into_pyobject(py)?.into_any(),
            ),
        ],
    )?;
    frozen(result_event(py)?, &[(intern!(py, "result"), job)])
}

/// A master's events as `queuexec.events` objects (kinds the binding does not know are skipped:
/// the core's enum is non-exhaustive).
pub(crate) fn master_events(
    py: Python<'_>,
    batch: Vec<MasterEvent>,
) -> PyResult<Bound<'_, PyList>> {
    let out = PyList::empty(py);
    let mut workers = Workers::default();
    for event in batch {
        let object = match event {
            MasterEvent::Result(result) => result_event_of(py, result, &mut workers)?,
            MasterEvent::WorkerJoined(w) => worker_joined(py)?.call1((worker_info(py, w)?,))?,
            MasterEvent::WorkerLeft(w) => worker_left(py)?.call1((worker_info(py, w)?,))?,
            MasterEvent::Drained => drained(py)?.call0()?,
            MasterEvent::Warning(message) => warning_event(py)?.call1((message,))?,
            MasterEvent::Stats(report) => {
                let json = py.import("json")?;
                stats_event(py)?.call1((json.call_method1("loads", (report.to_json(),))?,))?
            }
            MasterEvent::Call(call) => call_event(py, call)?,
            MasterEvent::TaskLoadFailed { worker, reason } => {
                task_load_failed(py)?.call1((worker_info(py, worker)?, reason))?
            }
            other => {
                tracing::debug!(?other, "a master event this binding does not know");
                continue;
            }
        };
        out.append(object)?;
    }
    Ok(out)
}

/// A worker's events as `queuexec.events` objects; a refusal becomes an `ErrorEvent` carrying
/// the error `Worker.run` raises (`UnauthorizedError` or `TokenMismatchError`, by the core's code).
pub(crate) fn worker_events(
    py: Python<'_>,
    batch: Vec<WorkerEvent>,
) -> PyResult<Bound<'_, PyList>> {
    let out = PyList::empty(py);
    for event in batch {
        let object = match event {
            WorkerEvent::Connected { master, path } => {
                connected(py)?.call1((master, path.as_str()))?
            }
            WorkerEvent::Disconnected { reason } => disconnected(py)?.call1((reason,))?,
            WorkerEvent::AssetsInstalled { bundle, fetched } => {
                assets_installed(py)?.call1((bundle, fetched))?
            }
            WorkerEvent::JobFinished { id, error } => job_finished(py)?.call1((id, error))?,
            WorkerEvent::Message { cmd, data } => {
                let json = py.import("json")?;
                let value = json.call_method1("loads", (data,))?;
                master_message(py)?.call1((cmd, value))?
            }
            WorkerEvent::Aborted => aborted(py)?.call0()?,
            WorkerEvent::Drained => drained(py)?.call0()?,
            WorkerEvent::JobCancelled { id } => job_cancelled(py)?.call1((id,))?,
            WorkerEvent::Refused { reason, code } => {
                let error = if code == Error::TokenMismatch(String::new()).code() {
                    Error::TokenMismatch(reason)
                } else {
                    Error::Unauthorized(reason)
                };
                let error = to_py_err(py, &error);
                error_event(py)?.call1((error.into_value(py),))?
            }
            other => {
                tracing::debug!(?other, "a worker event this binding does not know");
                continue;
            }
        };
        out.append(object)?;
    }
    Ok(out)
}
