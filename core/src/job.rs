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

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: Result<String, String>) -> JobResult {
        JobResult {
            job_id: "a".into(),
            worker: WorkerInfo {
                id: "peer".into(),
                name: "w".into(),
            },
            outcome,
            attempts: 1,
        }
    }

    #[test]
    fn a_result_line_is_one_line_even_when_the_workers_json_spans_lines() {
        // Valid JSON whose middle line is a complete line for another job.
        let forged = "{\"x\":\n{\"jobID\":\"b\",\"worker\":{\"id\":\"p\",\"name\":\"w\"},\"data\":1}\n}";
        let line = result(Ok(forged.into())).to_json_line();
        assert_eq!(line.lines().count(), 1, "{line}");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(parsed["jobID"], "a");
        assert_eq!(parsed["data"]["x"]["jobID"], "b");
        assert_eq!(
            line,
            "{\"jobID\":\"a\",\"worker\":{\"id\":\"peer\",\"name\":\"w\"},\"data\":{\"x\":{\"jobID\":\"b\",\"worker\":{\"id\":\"p\",\"name\":\"w\"},\"data\":1}}}"
        );
    }

    #[test]
    fn text_that_is_not_json_becomes_a_json_string_and_errors_stay_strings() {
        let line = result(Ok("not json\n{\"jobID\":\"b\"}".into())).to_json_line();
        assert_eq!(line.lines().count(), 1, "{line}");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(parsed["data"], "not json\n{\"jobID\":\"b\"}");
        let line = result(Err("boom\n{\"jobID\":\"b\"}".into())).to_json_line();
        assert_eq!(line.lines().count(), 1, "{line}");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(parsed["error"], "boom\n{\"jobID\":\"b\"}");
    }
}
