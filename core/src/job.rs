//! Jobs as users push them and as results come back.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// A job to push on a master.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    /// The job's id. When `None` the master assigns one. Pushing an id the master already has
    /// (queued, running or finished) does not queue it again.
    pub id: Option<String>,
    /// The job's data as JSON text.
    pub data: String,
    /// Task type, for workers that map types to functions.
    pub task_type: Option<String>,
    /// Higher runs first; equal priorities run in push order.
    pub priority: i32,
    /// How many times a failed or lost run is retried; `None` takes the master's default.
    pub retries: Option<u32>,
    /// Wall-clock limit for one run; `None` takes the worker's default.
    pub timeout: Option<Duration>,
    /// Not before this long after the push.
    pub delay: Option<Duration>,
    /// Keep this job in memory only, even when the master has a durable store.
    pub in_memory: bool,
}

impl JobSpec {
    /// A job with this JSON data and every option at its default.
    pub fn new(data: impl Into<String>) -> Self {
        JobSpec {
            data: data.into(),
            ..JobSpec::default()
        }
    }
}

/// The worker that produced a result, in the shape queue-xec users know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's peer id.
    pub id: String,
    /// The name the worker's owner gave it.
    pub name: String,
}

/// The end of one job: `{jobID, worker: {id, name}, data}` or `{jobID, worker, error}`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    /// The job's id.
    pub job_id: String,
    /// Who ran the final attempt (empty id and name when no worker ran it).
    pub worker: WorkerInfo,
    /// The result as JSON text, or the error message of the final attempt.
    pub outcome: Result<String, String>,
    /// How many attempts it took.
    pub attempts: u32,
}

impl JobResult {
    /// The result as one JSON line in queue-xec's shape: `{"jobID", "worker", "data"|"error"}`.
    pub fn to_json_line(&self) -> String {
        let data_or_error = match &self.outcome {
            Ok(data) => format!(
                "\"data\":{}",
                if serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok() {
                    data.clone()
                } else {
                    serde_json::Value::String(data.clone()).to_string()
                }
            ),
            Err(error) => format!("\"error\":{}", serde_json::Value::String(error.clone())),
        };
        format!(
            "{{\"jobID\":{},\"worker\":{{\"id\":{},\"name\":{}}},{}}}",
            serde_json::Value::String(self.job_id.clone()),
            serde_json::Value::String(self.worker.id.clone()),
            serde_json::Value::String(self.worker.name.clone()),
            data_or_error
        )
    }
}

/// Milliseconds since the Unix epoch, the store's clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
