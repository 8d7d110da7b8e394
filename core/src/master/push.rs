//! Pushing jobs: each push seals its payloads and waits for its commit in the caller's task,
//! so the engine never does crypto or waits on the store.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::engine::EngineCommand;
use super::{Master, PushReceipt, lock};
use crate::error::{Error, Result};
use crate::job::{JobSpec, automatic_key, now_ms, repeated_key};
use crate::protocol;
use crate::store::{StoreOp, StoredJob};

/// The most durable jobs of one push that may reach the engine before their commit: a bigger
/// push gains little from it and would keep that many jobs resident past the spill window.
const UNCOMMITTED_OPS_CAP: usize = 64;

/// A push with at least this many bytes of data is checked and sealed on a blocking thread
/// (about half a millisecond of AES and HMAC), not on the runtime's.
const OFFLOAD_BYTES: usize = 256 * 1024;

/// A push with at least this many bytes of data is sealed on several threads…
const PARALLEL_SEAL_BYTES: usize = 2 * 1024 * 1024;
/// …at most this many.
const MAX_SEAL_THREADS: usize = 4;

impl Master {
    /// Pushes one job. Resolves once the job is durable (committed to the store).
    pub async fn push(&self, job: JobSpec) -> Result<PushReceipt> {
        let mut receipts = self.push_many(vec![job]).await?;
        receipts.pop().ok_or(Error::Closed("the master"))
    }

    /// Pushes jobs in one group. Resolves once all of them are durable. Either all are accepted
    /// or the call fails and none is queued.
    ///
    /// An id the master already has (queued, running or finished, in this push or before) is
    /// queued again as a new job under its own internal key, and its receipt says `repeated`;
    /// with [`idempotent_ids`](super::MasterConfig::idempotent_ids) it is not queued again and
    /// its receipt says `duplicate`. Either way a warning is logged and sent as an event.
    pub async fn push_many(&self, jobs: Vec<JobSpec>) -> Result<Vec<PushReceipt>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed("the master"));
        }
        let idempotent = self.inner.idempotent_ids;
        let (mut pending, mut receipts) =
            if jobs.iter().map(|j| j.data.len()).sum::<usize>() >= OFFLOAD_BYTES {
                // Checking and sealing megabytes would hold up the runtime thread, and with it
                // every connection's traffic: a blocking thread does it meanwhile.
                let master = self.clone();
                match tokio::task::spawn_blocking(move || master.prepare(jobs)).await {
                    Ok(prepared) => prepared?,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => return Err(Error::Closed("the master")),
                }
            } else {
                self.prepare(jobs)?
            };

        // Ids kept in memory: the set of known ids says whether each was pushed before.
        {
            let mut known = lock(&self.inner.memory);
            for p in pending.iter_mut().filter(|p| p.explicit) {
                let fresh = if p.in_memory {
                    known.insert(p.stored.id.clone())
                } else {
                    !known.contains(&p.stored.id)
                };
                if !fresh {
                    self.mark_known(p, &mut receipts, idempotent);
                }
            }
        }
        pending.retain(|p| !receipts[p.receipt].duplicate);

        // Durable ids: the store refuses a key it has; such a job was pushed before.
        let mut committing = None;
        if let Some(durable) = &self.inner.durable {
            let ops: Vec<StoreOp> = pending
                .iter()
                .filter(|p| !p.in_memory)
                .map(|p| StoreOp::Insert(p.stored.clone()))
                .collect();
            // A small insert that finds the store idle commits here and now, before the jobs
            // go out: on a machine whose idle cores sleep, waking the store thread and being
            // woken by it cost more than the commit (`queuexec bench`: p50 390 µs against 419
            // when the job ran during the commit, p99 681 against 907).
            let known = if ops.is_empty() {
                None
            } else {
                match durable.apply_inline(ops) {
                    Ok(committed) => Some(committed?),
                    Err(ops) if self.may_enqueue_before_commit(&pending, ops.len()) => {
                        // Keys the master made cannot clash with stored ones: the store refuses
                        // none of them, so the engine may have the jobs while their insert
                        // commits on the store thread, behind what is queued there (the insert
                        // is queued first: a result's write comes after it).
                        committing = Some(durable.apply_queued(ops));
                        None
                    }
                    // Too big, or the store is busy: the store thread commits it.
                    Err(ops) => Some(durable.apply_queued(ops).await?),
                }
            };
            if let Some(known) = known {
                let known: HashSet<String> = known.into_iter().collect();
                let mut again = Vec::new();
                for p in pending.iter_mut() {
                    if !p.in_memory && known.contains(&p.stored.id) {
                        self.mark_known(p, &mut receipts, idempotent);
                        if !idempotent {
                            again.push(StoreOp::Insert(p.stored.clone()));
                        }
                    }
                }
                if !again.is_empty() {
                    let keys: HashSet<String> = again
                        .iter()
                        .filter_map(|op| match op {
                            StoreOp::Insert(job) => Some(job.id.clone()),
                            _ => None,
                        })
                        .collect();
                    let refused = match durable.apply(again).await {
                        Ok(refused) => refused,
                        Err(e) => {
                            // The first transaction is committed: its jobs must run anyway.
                            let committed: Vec<_> = pending
                                .iter()
                                .filter(|p| !keys.contains(&p.stored.id))
                                .filter(|p| !receipts[p.receipt].duplicate)
                                .map(|p| (p.stored.clone(), p.in_memory))
                                .collect();
                            let _ = self.inner.engine.send(EngineCommand::Enqueue(committed));
                            return Err(e);
                        }
                    };
                    for p in pending.iter() {
                        if refused.contains(&p.stored.id) {
                            receipts[p.receipt].duplicate = true;
                        }
                    }
                }
            }
        }
        pending.retain(|p| !receipts[p.receipt].duplicate);

        let repeated: Vec<&str> = receipts
            .iter()
            .filter(|r| r.repeated || r.duplicate)
            .map(|r| r.id.as_str())
            .collect();
        if !repeated.is_empty() {
            let shown: Vec<&str> = repeated.iter().take(5).copied().collect();
            let more = repeated.len().saturating_sub(shown.len());
            let warning = if idempotent {
                format!(
                    "{} pushed job(s) had an id the master already has and were not queued again \
                     (idempotent ids): {shown:?}{}",
                    repeated.len(),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )
            } else {
                format!(
                    "{} pushed job(s) repeat an id the master already has and were queued again as \
                     new jobs: {shown:?}{}; their results carry the same jobID",
                    repeated.len(),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )
            };
            tracing::warn!("{warning}");
            let _ = self.inner.engine.send(EngineCommand::Warning(warning));
        }
        let accepted: Vec<_> = pending
            .into_iter()
            .map(|p| (p.stored, p.in_memory))
            .collect();
        if let Some(commit) = committing {
            let keys: Vec<std::sync::Arc<str>> = accepted
                .iter()
                .map(|(job, _)| job.id.as_str().into())
                .collect();
            self.inner
                .engine
                .send(EngineCommand::EnqueueUncommitted(accepted))
                .map_err(|_| Error::Closed("the master"))?;
            return match commit.await {
                Ok(_) => {
                    let _ = self.inner.engine.send(EngineCommand::Committed(keys));
                    Ok(receipts)
                }
                Err(e) => {
                    // Not accepted after all: none of this push may run or give a result.
                    let _ = self.inner.engine.send(EngineCommand::Withdraw(keys));
                    Err(e)
                }
            };
        }
        if !accepted.is_empty() {
            self.inner
                .engine
                .send(EngineCommand::Enqueue(accepted))
                .map_err(|_| Error::Closed("the master"))?;
        }
        Ok(receipts)
    }

    /// Checks a push's jobs, gives each its key and seals its payload: the receipts, and the
    /// jobs still to store and queue.
    fn prepare(&self, jobs: Vec<JobSpec>) -> Result<(Vec<Pending>, Vec<PushReceipt>)> {
        let now = now_ms();
        let idempotent = self.inner.idempotent_ids;
        let mut pending = Vec::with_capacity(jobs.len());
        let mut receipts = Vec::with_capacity(jobs.len());
        let mut in_this_push: HashSet<String> = HashSet::new();
        // Automatic ids skip the labels of explicit ids of this push and of the ids kept in
        // memory, so an automatic `job-N` does not even look like one of them.
        let explicit_here: HashSet<String> = jobs.iter().filter_map(|j| j.id.clone()).collect();
        for (index, job) in jobs.into_iter().enumerate() {
            if let Some(id) = &job.id {
                if id.is_empty() {
                    return Err(Error::payload(format!(
                        "job {} of this push has an empty id; give a non-empty id or none",
                        index + 1
                    )));
                }
                if id.chars().any(char::is_control) {
                    return Err(Error::payload(format!(
                        "job {} of this push has an id with a control character ({id:?}); ids \
                         are labels shown in logs and files: use printable text; nothing of this \
                         push was queued",
                        index + 1
                    )));
                }
            }
            let mut seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
            if job.id.is_none() {
                let known = lock(&self.inner.memory);
                while explicit_here.contains(&format!("job-{seq}"))
                    || known.contains(&format!("job-{seq}"))
                {
                    seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
                }
            }
            let (label, key, repeated) = match job.id.clone() {
                None => (format!("job-{seq}"), automatic_key(seq), false),
                Some(id) if in_this_push.contains(&id) => {
                    let key = repeated_key(&id, seq);
                    (id, key, true)
                }
                Some(id) => {
                    in_this_push.insert(id.clone());
                    (id.clone(), id, false)
                }
            };
            receipts.push(PushReceipt {
                id: label,
                duplicate: repeated && idempotent,
                // Only a job queued again is `repeated`; with idempotent ids it is `duplicate`.
                repeated: repeated && !idempotent,
            });
            if repeated && idempotent {
                continue;
            }
            let in_memory = job.in_memory || self.inner.durable.is_none();
            // Sealed below, all at once.
            let stored = self.unsealed_job(key, seq, &job, now);
            pending.push(Pending {
                receipt: index,
                explicit: job.id.is_some() && !repeated,
                in_memory,
                stored,
                job,
            });
        }
        if let Some((index, e)) = self.seal_all(&mut pending) {
            return Err(Error::payload_from(
                format!(
                    "job {} of this push: its data must be JSON text ({e}); nothing of this push was queued",
                    index + 1
                ),
                e,
            ));
        }
        for p in &pending {
            let (stored, job) = (&p.stored, &p.job);
            // A repeated id may get a longer key later (`mark_known`): leave room for it.
            let key_room = stored.id.len() + 24;
            if protocol::job_wire_len(&stored.id, job.task_type.as_deref(), stored.payload.len())
                + 24
                > protocol::FRAME_BUDGET
            {
                let limit = protocol::max_plain_len(
                    key_room + job.task_type.as_deref().map_or(0, str::len),
                );
                return Err(Error::payload(format!(
                    "job {} of this push ({}): its data is {} bytes; the limit for one job's data is {limit} bytes (a job travels in one frame, and a frame is at most {} bytes); nothing of this push was queued. Split the work into smaller jobs, or ship large inputs as asset files the task reads",
                    p.receipt + 1,
                    receipts[p.receipt].id,
                    job.data.len(),
                    protocol::MAX_FRAME
                )));
            }
        }

        Ok((pending, receipts))
    }

    /// Whether a push's jobs may go to the engine while their insert waits its turn on the busy
    /// store thread and commits (their round trip then overlaps the wait): a small push whose
    /// durable jobs all have keys the master made (no id given, or a repeated id's own key),
    /// while the engine says it can keep them resident (nothing spilled, the window less than
    /// half full).
    fn may_enqueue_before_commit(&self, pending: &[Pending], durable_ops: usize) -> bool {
        durable_ops <= UNCOMMITTED_OPS_CAP
            && pending.iter().all(|p| p.in_memory || !p.explicit)
            && self.inner.takes_uncommitted.load(Ordering::Relaxed)
    }

    /// The stored form of a pushed job under `key` (its payload sealed to that key).
    fn stored_job(&self, key: String, seq: i64, job: &JobSpec, now: i64) -> StoredJob {
        let mut stored = self.unsealed_job(key, seq, job, now);
        stored.payload = self.seal(&stored.id, job).into();
        stored
    }

    /// `job`'s payload sealed to `key`.
    fn seal(&self, key: &str, job: &JobSpec) -> Vec<u8> {
        self.inner.key.seal_parts(
            &protocol::payload_context(key),
            &[crate::shape::body_prefix(job.shape), job.data.as_bytes()],
        )
    }

    /// Checks that each pending job's data is JSON text and seals it: on several threads when
    /// there are megabytes (AES-CBC encrypts one block after another, so one payload is one
    /// thread's work). Returns the first job, in push order, whose data is not JSON (its
    /// receipt index and why), if any: the push is then refused, and what is sealed no matter.
    fn seal_all(&self, pending: &mut [Pending]) -> Option<(usize, serde_json::Error)> {
        let bytes: usize = pending.iter().map(|p| p.job.data.len()).sum();
        let threads = if bytes >= PARALLEL_SEAL_BYTES {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(MAX_SEAL_THREADS)
                .min(pending.len())
        } else {
            1
        };
        // Each part stops at its own first malformed job; parts are in push order.
        let seal_part = |part: &mut [Pending]| {
            for p in part {
                if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&p.job.data) {
                    return Some((p.receipt, e));
                }
                p.stored.payload = self.seal(&p.stored.id, &p.job).into();
            }
            None
        };
        if threads <= 1 {
            return seal_part(pending);
        }
        let size = pending.len().div_ceil(threads);
        let (mut malformed, all_started) = std::thread::scope(|scope| {
            let mut parts = pending.chunks_mut(size);
            // This thread seals the first part itself.
            let first = parts.next();
            let mut handles = Vec::with_capacity(threads);
            let mut all_started = true;
            for part in parts {
                let spawned = std::thread::Builder::new()
                    .name("queuexec-seal".into())
                    .spawn_scoped(scope, || seal_part(part));
                match spawned {
                    Ok(handle) => handles.push(handle),
                    Err(e) => {
                        all_started = false;
                        tracing::debug!(error = %e, "sealing on this thread: could not start another");
                    }
                }
            }
            let mut malformed: Vec<_> = first.and_then(seal_part).into_iter().collect();
            for handle in handles {
                match handle.join() {
                    Ok(found) => malformed.extend(found),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            (malformed, all_started)
        });
        if !all_started {
            // A part whose thread could not start went with its closure, unchecked and unsealed
            // (a sealed payload is never empty; jobs a part left after its malformed one, and
            // that one, are checked again, harmlessly).
            for p in pending.iter_mut().filter(|p| p.stored.payload.is_empty()) {
                malformed.extend(seal_part(std::slice::from_mut(p)));
            }
        }
        malformed.into_iter().min_by_key(|(index, _)| *index)
    }

    /// The stored form of a pushed job under `key`, its payload still empty.
    fn unsealed_job(&self, key: String, seq: i64, job: &JobSpec, now: i64) -> StoredJob {
        let max_attempts = job
            .retries
            .map_or(self.inner.default_max_attempts, |r| r.saturating_add(1));
        let not_before = job.delay.map_or(0, |d| now + d.as_millis() as i64);
        crate::scheduler::new_stored_job(
            key,
            seq,
            job.task_type.clone(),
            bytes::Bytes::new(),
            job.priority,
            max_attempts,
            job.timeout.map(|t| t.as_millis() as u64),
            not_before,
        )
    }

    /// `p`'s id was pushed before: refuse it (idempotent ids) or give it a key of its own.
    fn mark_known(&self, p: &mut Pending, receipts: &mut [PushReceipt], idempotent: bool) {
        let receipt = &mut receipts[p.receipt];
        if idempotent {
            receipt.duplicate = true;
            return;
        }
        receipt.repeated = true;
        let seq = p.stored.seq;
        let key = repeated_key(&p.stored.id, seq);
        p.stored = self.stored_job(key, seq, &p.job, now_ms());
        p.explicit = false;
    }
}

/// One job of a push on its way to the store and the engine.
struct Pending {
    /// Its receipt's index.
    receipt: usize,
    /// Stored under the id the user gave (so it may clash with an earlier job).
    explicit: bool,
    in_memory: bool,
    stored: StoredJob,
    job: JobSpec,
}
