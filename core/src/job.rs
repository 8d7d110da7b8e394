//! Jobs as users push them and as results come back.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// A job to push on a master.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    /// The job's id (a label: it may repeat, and holds no control character). When `None` the
    /// master assigns `job-N`, which never collides with an explicit id. Pushing an id the
    /// master already has queues it again as a new job (the receipt says `repeated`), unless
    /// the master has [`idempotent_ids`](crate::MasterConfig::idempotent_ids) on: then it is
    /// not queued again (the receipt says `duplicate`).
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
    /// How the task receives it (queue-xec's contract: the payload as pushed); travels sealed
    /// with the data.
    pub shape: crate::PayloadShape,
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
    /// The job's id, as pushed (or `job-N` when the master assigned it).
    pub job_id: String,
    /// The master's own key for this job: unique even when an id was pushed more than once.
    /// [`Master::ack`](crate::Master::ack) takes it (or the job id, for an id pushed once).
    pub key: String,
    /// Who ran the final attempt (empty id and name when no worker ran it).
    pub worker: WorkerInfo,
    /// The result as JSON text, or the error message of the final attempt.
    pub outcome: Result<String, String>,
    /// How many attempts it took.
    pub attempts: u32,
}

impl JobResult {
    /// Whether the job was pushed without an id (`job_id` is the master's `job-N`).
    pub fn automatic(&self) -> bool {
        self.key.starts_with(KEY_SEPARATOR)
    }

    /// The result as one JSON line in queue-xec's shape: `{"jobID", "worker", "data"|"error"}`.
    ///
    /// Built from parsed values, never from the worker's text: the data is parsed and written
    /// again by this serialiser (text that is not JSON becomes a JSON string), so nothing a
    /// worker returns can add a line or a key.
    pub fn to_json_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            #[serde(rename = "jobID")]
            job_id: &'a str,
            worker: &'a WorkerInfo,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<serde_json::Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
        }
        let (data, error) = match &self.outcome {
            Ok(text) => (
                Some(
                    serde_json::from_str::<serde_json::Value>(text)
                        .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
                ),
                None,
            ),
            Err(error) => (None, Some(error.as_str())),
        };
        let line = Line {
            job_id: &self.job_id,
            worker: &self.worker,
            data,
            error,
        };
        // Serialising strings and parsed values cannot fail; the fallback keeps the line valid.
        serde_json::to_string(&line).unwrap_or_else(|e| {
            serde_json::json!({ "jobID": self.job_id, "error": format!("the result could not be written: {e}") })
                .to_string()
        })
    }
}

/// Parses a worker's result text and writes it again in this process's own compact form, so
/// what the master stores and hands out is never the worker's text. `Err` says why it is not
/// JSON.
pub(crate) fn canonical_json(text: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_string(&value).map_err(|e| e.to_string())
}

/// `s` as JSON text, a JSON string: what `JSON.stringify(s)` and `serde_json::to_string(s)`
/// make of it (`"`, `\\` and control characters escaped, `\u00xx` in lowercase hex).
///
/// Written in runs between the bytes that need escaping, which a big string rarely has: the
/// text is checked 32 bytes at a time (a check the compiler turns into vector compares), where
/// serde_json looks at each byte, which took as long as sealing a megabyte.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    json_string_into(&mut out, s);
    out
}

/// [`json_string`], appended to `out` (for callers that write a whole JSON document).
pub fn json_string_into(out: &mut String, s: &str) {
    const CHUNK: usize = 32;
    let needs_escape = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push('"');
    // `run..i` is what is not written yet; both always sit at ASCII bytes or the ends, so they
    // are character boundaries.
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + CHUNK)
            && !chunk.iter().fold(false, |any, &b| any | needs_escape(b))
        {
            i += CHUNK;
            continue;
        }
        let b = bytes[i];
        if needs_escape(b) {
            out.push_str(&s[run..i]);
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                0x08 => out.push_str("\\b"),
                0x0c => out.push_str("\\f"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.push_str("\\u00");
                    out.push(char::from(HEX[usize::from(b >> 4)]));
                    out.push(char::from(HEX[usize::from(b & 0xf)]));
                }
            }
            run = i + 1;
        }
        i += 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Separates a job id from what makes its store key unique. Refused in pushed ids (they may
/// hold no control character), so a key the master makes never equals a pushed id.
pub(crate) const KEY_SEPARATOR: char = '\u{1f}';

/// The store key of the automatic id `job-<seq>`: in its own namespace, so an automatic id
/// never collides with an explicit one such as "job-2".
pub(crate) fn automatic_key(seq: i64) -> String {
    format!("{KEY_SEPARATOR}job-{seq}")
}

/// The store key of a pushed id that the master already has (repeated ids are queued again).
pub(crate) fn repeated_key(id: &str, seq: i64) -> String {
    format!("{id}{KEY_SEPARATOR}{seq}")
}

/// The job id a user sees for a store key: the pushed id, or `job-<seq>` for an automatic one.
pub(crate) fn label_of(key: &str) -> &str {
    let key = key.strip_prefix(KEY_SEPARATOR).unwrap_or(key);
    key.split(KEY_SEPARATOR).next().unwrap_or(key)
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
    use proptest::prelude::*;

    /// Characters that need escaping, and multi-byte ones next to them, more often than chance.
    fn text() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            4 => any::<char>(),
            2 => proptest::char::range('\0', '\u{7f}'),
            1 => Just('"'),
            1 => Just('\\'),
            1 => Just('\u{2028}'),
            1 => Just('😀'),
        ];
        proptest::collection::vec(c, 0..200).prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        #[test]
        fn json_string_writes_what_serde_json_writes(s in text()) {
            prop_assert_eq!(json_string(&s), serde_json::to_string(&s).expect("a string"));
        }
    }

    #[test]
    fn json_string_escapes_at_every_place_in_a_long_string() {
        // Each escaped byte at each offset around the 32-byte chunks, in long ASCII and
        // multi-byte text.
        for filler in ["x", "é", "中"] {
            for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', '\u{8}'] {
                for at in [0, 1, 31, 32, 33, 63, 64, 95] {
                    let mut s: String = filler.repeat(100);
                    let at = s.char_indices().nth(at).map_or(s.len(), |(i, _)| i);
                    s.insert(at, special);
                    assert_eq!(
                        json_string(&s),
                        serde_json::to_string(&s).expect("a string")
                    );
                }
            }
        }
        assert_eq!(json_string(""), "\"\"");
        assert_eq!(
            json_string("a\u{7f}b"),
            "\"a\u{7f}b\"",
            "DEL is not escaped, as in JSON.stringify"
        );
    }

    fn result(outcome: Result<String, String>) -> JobResult {
        JobResult {
            job_id: "a".into(),
            key: "a".into(),
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
        let forged =
            "{\"x\":\n{\"jobID\":\"b\",\"worker\":{\"id\":\"p\",\"name\":\"w\"},\"data\":1}\n}";
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
