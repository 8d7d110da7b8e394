//! Jobs as they cross between JavaScript and the core.
//!
//! Job data and results cross as JSON text: the JS layer does `JSON.stringify` / `JSON.parse`
//! on its own thread (the only place JS values can be made), and the core never looks inside.

use std::time::Duration;

use napi_derive::napi;
use queuexec_core::{JobSpec, PayloadShape, TaskFailure};

/// One push in columns, built by `lib/master.js` (`pushColumns`) from its jobs: a few arrays
/// cross the addon instead of an object per job, each of whose properties napi would look up
/// by name. Every array has one entry per job, in push order.
#[napi(object, js_name = "PushBatch")]
pub struct JsPushBatch {
    /// Each job's id, or null for one the master assigns. An id the master already has is
    /// queued again as a new job (or, with `idempotentIds`, not queued).
    pub ids: Vec<Option<String>>,
    /// Each job's data as JSON text; a plain string (a long one, which the core quotes and
    /// escapes into JSON text off the JS thread) when its kind has [`KIND_STRING_DATA`].
    pub data: Vec<String>,
    /// Each job's shape (0 `job`, 1 `numericId`, 2 `whole`: how the task receives it), plus
    /// [`KIND_STRING_DATA`] when its data is a plain string.
    pub kinds: Vec<u32>,
    /// The jobs with options, as JSON text: `[[index, {priority?, retries?, timeoutMs?,
    /// delayMs?, taskType?, inMemory?}], …]`; absent when no job has any.
    pub options: Option<String>,
}

/// The kind bit of a job whose data is a plain string, not JSON text.
const KIND_STRING_DATA: u32 = 4;

/// One job's options in [`JsPushBatch::options`].
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JobOptions {
    priority: Option<i32>,
    retries: Option<u32>,
    timeout_ms: Option<f64>,
    delay_ms: Option<f64>,
    task_type: Option<String>,
    in_memory: Option<bool>,
}

impl JsPushBatch {
    /// The jobs of this push, or what is wrong with the batch (a bug in the JS layer, not in
    /// the user's jobs: their data is checked by the core).
    pub(crate) fn into_specs(self) -> Result<Vec<JobSpec>, String> {
        let n = self.ids.len();
        if self.data.len() != n || self.kinds.len() != n {
            return Err(format!(
                "a push batch has {n} ids, {} data and {} kinds; each needs one per job",
                self.data.len(),
                self.kinds.len()
            ));
        }
        let mut options: Vec<Option<JobOptions>> = Vec::new();
        if let Some(text) = self.options {
            let listed: Vec<(usize, JobOptions)> = serde_json::from_str(&text)
                .map_err(|e| format!("a push batch's options are not what the addon reads: {e}"))?;
            options.resize_with(n, || None);
            for (index, o) in listed {
                let slot = options
                    .get_mut(index)
                    .ok_or_else(|| format!("a push batch names options for job {index} of {n}"))?;
                *slot = Some(o);
            }
        }
        let mut options = options.into_iter();
        self.ids
            .into_iter()
            .zip(self.data)
            .zip(self.kinds)
            .map(|((id, data), kind)| {
                let shape = match kind & !KIND_STRING_DATA {
                    0 => PayloadShape::Job,
                    1 => PayloadShape::NumericId,
                    2 => PayloadShape::Whole,
                    other => return Err(format!("a push batch has an unknown job shape {other}")),
                };
                let data = if kind & KIND_STRING_DATA != 0 {
                    queuexec_core::json_string(&data)
                } else {
                    data
                };
                let o = options.next().flatten().unwrap_or_default();
                Ok(JobSpec {
                    id,
                    data,
                    task_type: o.task_type,
                    priority: o.priority.unwrap_or(0),
                    retries: o.retries,
                    timeout: o.timeout_ms.and_then(millis),
                    delay: o.delay_ms.and_then(millis),
                    in_memory: o.in_memory.unwrap_or(false),
                    shape,
                })
            })
            .collect()
    }
}

/// Milliseconds from JS (a double) as a duration; nothing for negative, NaN or zero.
pub(crate) fn millis(ms: f64) -> Option<Duration> {
    (ms.is_finite() && ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}

/// The answer to one push, in columns: each job's id (in push order), and which of them were
/// pushed before: `duplicate` (with the master's `idempotentIds` nothing was queued) or
/// `repeated` (queued again as a new job, the default, as in queue-xec), as indexes.
#[napi(object, js_name = "PushReceipts")]
pub struct JsPushReceipts {
    /// Each job's id: as pushed, or the one the master assigned (`job-N`).
    pub ids: Vec<String>,
    /// The jobs not queued because their id was pushed before (`idempotentIds`).
    pub duplicate: Vec<u32>,
    /// The jobs queued again as new jobs under an id pushed before.
    pub repeated: Vec<u32>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: Vec<Option<&str>>, kinds: Vec<u32>, options: Option<&str>) -> JsPushBatch {
        JsPushBatch {
            data: ids.iter().map(|_| "{}".to_string()).collect(),
            ids: ids.into_iter().map(|id| id.map(str::to_string)).collect(),
            kinds,
            options: options.map(str::to_string),
        }
    }

    #[test]
    fn columns_become_jobs_with_their_shapes_and_options() {
        let mut b = batch(
            vec![Some("a"), None, Some("7")],
            vec![0, 2 | KIND_STRING_DATA, 1],
            Some(
                r#"[[1,{"priority":5,"retries":2,"timeoutMs":1500,"delayMs":0,"taskType":"t","inMemory":true}]]"#,
            ),
        );
        b.data[1] = "line\n\"quoted\"".to_string();
        let specs = b.into_specs().expect("a good batch");
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].id.as_deref(), Some("a"));
        assert_eq!(specs[0].shape, PayloadShape::Job);
        assert_eq!(specs[0].priority, 0);
        assert!(specs[0].task_type.is_none() && !specs[0].in_memory);
        assert_eq!(specs[1].id, None);
        assert_eq!(specs[1].shape, PayloadShape::Whole);
        assert_eq!(specs[1].data, r#""line\n\"quoted\"""#);
        assert_eq!(specs[1].priority, 5);
        assert_eq!(specs[1].retries, Some(2));
        assert_eq!(specs[1].timeout, Some(Duration::from_millis(1500)));
        assert_eq!(specs[1].delay, None, "0 ms is no delay");
        assert_eq!(specs[1].task_type.as_deref(), Some("t"));
        assert!(specs[1].in_memory);
        assert_eq!(specs[2].shape, PayloadShape::NumericId);
        assert_eq!(specs[2].data, "{}");
    }

    #[test]
    fn a_malformed_batch_is_refused_with_what_is_wrong() {
        let short = JsPushBatch {
            ids: vec![None, None],
            data: vec!["{}".into()],
            kinds: vec![0, 0],
            options: None,
        };
        assert!(
            short
                .into_specs()
                .expect_err("short")
                .contains("2 ids, 1 data")
        );
        let refused = [
            (batch(vec![None], vec![3], None), "unknown job shape 3"),
            (
                batch(vec![None], vec![0], Some(r#"[[4,{"priority":1}]]"#)),
                "job 4 of 1",
            ),
            (
                batch(vec![None], vec![0], Some(r#"[[0,{"prio":1}]]"#)),
                "options",
            ),
        ];
        for (b, why) in refused {
            let error = b.into_specs().expect_err(why);
            assert!(error.contains(why), "{error:?} should say {why:?}");
        }
    }
}
