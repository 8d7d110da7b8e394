//! Jobs as they cross between JavaScript and the core.
//!
//! Job data and results cross as JSON text: the JS layer does `JSON.stringify` / `JSON.parse`
//! on its own thread (the only place JS values can be made), and the core never looks inside.

use std::time::Duration;

use napi_derive::napi;
use queuexec_core::{JobSpec, PayloadShape, TaskFailure};

/// One job to push.
#[napi(object, js_name = "Job")]
pub struct JsJob {
    /// The job's id; the master assigns one when absent. An id the master already has is not
    /// queued again.
    pub id: Option<String>,
    /// The job's data as JSON text; with `string_data`, a string to send as a JSON string.
    pub data: String,
    /// `data` is a plain string: the core quotes and escapes it into JSON text (what
    /// `JSON.stringify` would make of it), so a big string is not stringified on the JS thread.
    pub string_data: Option<bool>,
    /// Task type, for workers that map types to functions.
    pub task_type: Option<String>,
    /// Higher runs first.
    pub priority: Option<i32>,
    /// How many times a failed or lost run is retried.
    pub retries: Option<u32>,
    /// Wall-clock limit of one run, in milliseconds.
    pub timeout_ms: Option<f64>,
    /// Not before this many milliseconds after the push.
    pub delay_ms: Option<f64>,
    /// Keep this job in memory only, even when the master has a durable store.
    pub in_memory: Option<bool>,
    /// How the task receives it: `'job'` ({id, data}, the default), `'numericId'` ({id, data}
    /// with the id as a number) or `'whole'` (the data is the payload as pushed).
    pub shape: Option<String>,
}

impl From<JsJob> for JobSpec {
    fn from(job: JsJob) -> JobSpec {
        let data = if job.string_data == Some(true) {
            queuexec_core::json_string(&job.data)
        } else {
            job.data
        };
        JobSpec {
            id: job.id,
            data,
            task_type: job.task_type,
            priority: job.priority.unwrap_or(0),
            retries: job.retries,
            timeout: job.timeout_ms.and_then(millis),
            delay: job.delay_ms.and_then(millis),
            in_memory: job.in_memory.unwrap_or(false),
            // The JS layer only sends the names it has; anything else is a plain job.
            shape: job
                .shape
                .as_deref()
                .and_then(PayloadShape::from_name)
                .unwrap_or_default(),
        }
    }
}

/// Milliseconds from JS (a double) as a duration; nothing for negative, NaN or zero.
pub(crate) fn millis(ms: f64) -> Option<Duration> {
    (ms.is_finite() && ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}

/// The answer to one push.
#[napi(object, js_name = "PushReceipt")]
pub struct JsPushReceipt {
    /// The job's id.
    pub id: String,
    /// True when a job with this id already existed and the master has `idempotentIds`, so
    /// nothing was queued.
    pub duplicate: bool,
    /// True when a job with this id already existed and it was queued again as a new job (the
    /// default, as in queue-xec); its result carries the same `jobID`.
    pub repeated: bool,
}

/// What the worker's JavaScript side answers for a job (or for loading new assets): `result`
/// (JSON text) on success, `error` on failure. The JS side never throws across the boundary.
#[napi(object, js_name = "TaskOutcome")]
pub struct JsTaskOutcome {
    /// The result as JSON text.
    pub result: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl From<JsTaskOutcome> for Result<String, TaskFailure> {
    fn from(outcome: JsTaskOutcome) -> Self {
        match (outcome.error, outcome.result) {
            (Some(error), _) => Err(TaskFailure::new(error)),
            (None, Some(result)) => Ok(result),
            (None, None) => Ok("null".to_string()),
        }
    }
}
