//! Pushing jobs: each push seals its payloads and waits for its commit in the caller's task,
//! so the engine never does crypto or waits on the store.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::engine::EngineCommand;
use super::{Master, PushReceipt, lock};
use crate::error::{Error, Result};
use crate::job::{JobSpec, now_ms};
use crate::protocol;
use crate::store::{StoreOp, StoredJob};

impl Master {
    /// Pushes one job. Resolves once the job is durable (committed to the store).
    pub async fn push(&self, job: JobSpec) -> Result<PushReceipt> {
        let mut receipts = self.push_many(vec![job]).await?;
        receipts.pop().ok_or(Error::Closed("the master"))
    }

    /// Pushes jobs in one group. Resolves once all of them are durable. Either all are accepted
    /// or the call fails and none is queued.
    pub async fn push_many(&self, jobs: Vec<JobSpec>) -> Result<Vec<PushReceipt>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed("the master"));
        }
        let now = now_ms();
        let mut durable_ops = Vec::new();
        let mut memory_jobs = Vec::new();
        let mut receipts = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.into_iter().enumerate() {
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&job.data) {
                return Err(Error::payload_from(
                    format!(
                        "job {} of this push: its data must be JSON text ({e}); nothing of this push was queued",
                        index + 1
                    ),
                    e,
                ));
            }
            let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let id = match job.id {
                Some(id) if id.is_empty() => {
                    return Err(Error::payload(format!(
                        "job {} of this push has an empty id; give a non-empty id or none",
                        index + 1
                    )));
                }
                Some(id) => id,
                None => format!("job-{seq}"),
            };
            let payload = self
                .inner
                .key
                .seal(&protocol::payload_context(&id), job.data.as_bytes());
            let sealed_len = protocol::job_wire_len(&id, job.task_type.as_deref(), payload.len());
            if sealed_len > protocol::FRAME_BUDGET {
                let limit = protocol::max_plain_len(
                    id.len() + job.task_type.as_deref().map_or(0, str::len),
                );
                return Err(Error::payload(format!(
                    "job {} of this push ({id}): its data is {} bytes; the limit for one job's data is {limit} bytes (a job travels in one frame, and a frame is at most {} bytes); nothing of this push was queued. Split the work into smaller jobs, or ship large inputs as asset files the task reads",
                    index + 1,
                    job.data.len(),
                    protocol::MAX_FRAME
                )));
            }
            let max_attempts = job
                .retries
                .map_or(self.inner.default_max_attempts, |r| r.saturating_add(1));
            let not_before = job.delay.map_or(0, |d| now + d.as_millis() as i64);
            let stored = crate::scheduler::new_stored_job(
                id.clone(),
                seq,
                job.task_type,
                payload,
                job.priority,
                max_attempts,
                job.timeout.map(|t| t.as_millis() as u64),
                not_before,
            );
            let in_memory = job.in_memory || self.inner.durable.is_none();
            if in_memory {
                memory_jobs.push(stored);
            } else {
                durable_ops.push(StoreOp::Insert(stored));
            }
            receipts.push(PushReceipt {
                id,
                duplicate: false,
            });
        }
        let mut duplicates = Vec::new();
        let mut accepted = Vec::with_capacity(receipts.len());
        let inserted = |ops: &[StoreOp]| -> Vec<StoredJob> {
            ops.iter()
                .filter_map(|op| match op {
                    StoreOp::Insert(job) => Some(job.clone()),
                    _ => None,
                })
                .collect()
        };
        if let (Some(durable), false) = (&self.inner.durable, durable_ops.is_empty()) {
            let jobs = inserted(&durable_ops);
            duplicates.extend(durable.apply(durable_ops).await?);
            accepted.extend(jobs.into_iter().map(|j| (j, false)));
        }
        if !memory_jobs.is_empty() {
            // Memory jobs need no store at all: only their ids are kept, to refuse duplicates.
            let mut known = lock(&self.inner.memory);
            for job in memory_jobs {
                if known.insert(job.id.clone()) {
                    accepted.push((job, true));
                } else {
                    duplicates.push(job.id);
                }
            }
        }
        if !duplicates.is_empty() {
            let dup: HashSet<&str> = duplicates.iter().map(String::as_str).collect();
            accepted.retain(|(j, _)| !dup.contains(j.id.as_str()));
            for receipt in &mut receipts {
                receipt.duplicate = dup.contains(receipt.id.as_str());
            }
        }
        if !accepted.is_empty() {
            self.inner
                .engine
                .send(EngineCommand::Enqueue(accepted))
                .map_err(|_| Error::Closed("the master"))?;
        }
        Ok(receipts)
    }
}
