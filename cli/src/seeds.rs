//! What `queuexec master` offers workers beyond jobs: lookups from a JSON file that tasks read
//! and write (`--lookups`, okanjo-conductor's lookups), answers to their messages (none: the
//! CLI has no handler, so a message fails with a clear error), and the workers' statistics
//! appended to a file (`--stats-file`).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use queuexec_core::{StatsReport, WorkerCall, WorkerRequest};
use serde_json::{Map, Value};

/// The lookups the master holds, by name.
pub(crate) struct Lookups(Map<String, Value>);

impl Lookups {
    /// From `--lookups FILE` (an object of objects), or empty.
    pub(crate) fn load(path: Option<&Path>) -> Result<Lookups> {
        let Some(path) = path else {
            return Ok(Lookups(Map::new()));
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the lookups file {}", path.display()))?;
        let value: Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "the lookups file {} is not JSON; it holds {{\"<name>\": {{\"<key>\": value}}}}",
                path.display()
            )
        })?;
        let Value::Object(map) = value else {
            bail!(
                "the lookups file {} must hold an object of lookups by name ({{\"<name>\": {{\"<key>\": value}}}})",
                path.display()
            );
        };
        if let Some((name, _)) = map.iter().find(|(_, v)| !v.is_object()) {
            bail!(
                "lookup {name:?} in {} is not an object of keys to values",
                path.display()
            );
        }
        Ok(Lookups(map))
    }

    /// The answer to a worker's call: a lookup's value (`null` when absent), a change of one,
    /// or an error for a message (the CLI has no handler).
    pub(crate) fn answer(
        &mut self,
        call: WorkerCall,
    ) -> (u64, std::result::Result<String, String>) {
        let answer = match call.request {
            WorkerRequest::Lookup { name, key } => Ok(self
                .0
                .get(&name)
                .and_then(|lookup| lookup.get(&key))
                .cloned()
                .unwrap_or(Value::Null)
                .to_string()),
            WorkerRequest::SetLookup { name, key, value } => {
                match serde_json::from_str::<Value>(&value) {
                    Ok(value) => {
                        if let Value::Object(lookup) = self
                            .0
                            .entry(name)
                            .or_insert_with(|| Value::Object(Map::new()))
                        {
                            lookup.insert(key, value);
                        }
                        Ok("null".to_string())
                    }
                    Err(e) => Err(format!("the value is not JSON: {e}")),
                }
            }
            WorkerRequest::Message { cmd, .. } => Err(format!(
                "the queuexec CLI master has no handler for the message {cmd:?}; answer messages from a Node or Python master (onWorkerMessage / on_worker_message)"
            )),
            other => Err(format!("this master does not know the call {other:?}")),
        };
        (call.id, answer)
    }
}

/// `--stats-file`: one JSON line per report.
pub(crate) struct StatsFile(Option<std::fs::File>);

impl StatsFile {
    pub(crate) fn open(path: Option<&Path>) -> Result<StatsFile> {
        let Some(path) = path else {
            return Ok(StatsFile(None));
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the stats file {}", path.display()))?;
        Ok(StatsFile(Some(file)))
    }

    pub(crate) fn write(&mut self, report: &StatsReport) -> Result<()> {
        if let Some(file) = &mut self.0 {
            writeln!(file, "{}", report.to_json()).context("writing the stats file")?;
        }
        Ok(())
    }
}
