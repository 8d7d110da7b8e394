//! The in-memory job store: the same semantics as the SQLite store, nothing survives the process.
//!
//! Built for tests only: it is the reference the store conformance suite holds the SQLite store
//! to. A master without a durable store keeps its jobs in the scheduler and their ids in a set.

use std::collections::HashMap;

use super::{JobState, JobStore, StateCounts, StoreOp, StoredJob};
use crate::error::Result;

/// Jobs kept in a map by id. Everything is lost when the process ends.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    jobs: HashMap<String, StoredJob>,
    counts: StateCounts,
    max_seq: i64,
}

impl MemoryStore {
    /// An empty store.
    pub(crate) fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Applies one op, taking it by value so that payloads and results move instead of being
    /// copied. Returns the op's job back when it was an ignored insert.
    fn apply_one(&mut self, op: StoreOp) -> Option<StoredJob> {
        match op {
            StoreOp::Insert(job) => {
                if self.jobs.contains_key(&job.id) {
                    return Some(job);
                }
                *count_of(&mut self.counts, job.state) += 1;
                self.max_seq = self.max_seq.max(job.seq);
                self.jobs.insert(job.id.clone(), job);
            }
            StoreOp::Retry {
                id,
                attempt,
                not_before_ms,
                error,
            } => {
                if let Some(job) = self.jobs.get_mut(&id) {
                    move_count(&mut self.counts, job, JobState::Failed);
                    job.attempt = attempt;
                    job.not_before_ms = not_before_ms;
                    job.last_error = Some(error);
                }
            }
            StoreOp::Done {
                id,
                attempt,
                result,
                worker,
            } => {
                if let Some(job) = self.jobs.get_mut(&id) {
                    move_count(&mut self.counts, job, JobState::Done);
                    job.attempt = attempt;
                    job.result = Some(result);
                    job.worker = Some(worker);
                    job.delivered = false;
                }
            }
            StoreOp::Dead {
                id,
                attempt,
                error,
                worker,
            } => {
                if let Some(job) = self.jobs.get_mut(&id) {
                    move_count(&mut self.counts, job, JobState::Dead);
                    job.attempt = attempt;
                    job.last_error = Some(error);
                    job.worker = worker;
                    job.delivered = false;
                }
            }
            StoreOp::Delivered { id } => {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.delivered = true;
                }
            }
            StoreOp::Requeue { id, not_before_ms } => {
                if let Some(job) = self.jobs.get_mut(&id)
                    && job.state == JobState::Dead
                {
                    move_count(&mut self.counts, job, JobState::Queued);
                    job.attempt = 0;
                    job.not_before_ms = not_before_ms;
                    job.delivered = false;
                }
            }
            StoreOp::Discard { id } => {
                if self
                    .jobs
                    .get(&id)
                    .is_some_and(|job| job.state == JobState::Dead)
                    && let Some(job) = self.jobs.remove(&id)
                {
                    let count = count_of(&mut self.counts, job.state);
                    *count = count.saturating_sub(1);
                }
            }
        }
        None
    }
}

fn count_of(counts: &mut StateCounts, state: JobState) -> &mut u64 {
    match state {
        JobState::Queued => &mut counts.queued,
        JobState::Leased => &mut counts.leased,
        JobState::Done => &mut counts.done,
        JobState::Failed => &mut counts.failed,
        JobState::Dead => &mut counts.dead,
    }
}

fn move_count(counts: &mut StateCounts, job: &mut StoredJob, to: JobState) {
    let from = count_of(counts, job.state);
    *from = from.saturating_sub(1);
    *count_of(counts, to) += 1;
    job.state = to;
}

impl JobStore for MemoryStore {
    fn location(&self) -> String {
        "memory".to_string()
    }

    fn load(&mut self) -> Result<Vec<StoredJob>> {
        let mut open: Vec<StoredJob> = self
            .jobs
            .values()
            .filter(|job| !job.state.is_terminal() || !job.delivered)
            .cloned()
            .collect();
        open.sort_by_key(|job| job.seq);
        Ok(open)
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<Vec<String>> {
        // Borrowed ops must be copied into the map; the StoreWriter calls `apply_owned`.
        Ok(self
            .apply_owned(ops.to_vec())?
            .into_iter()
            .map(|(_, id)| id)
            .collect())
    }

    fn apply_owned(&mut self, ops: Vec<StoreOp>) -> Result<Vec<(usize, String)>> {
        // No op can fail, so applying them one by one is as atomic as a transaction.
        let mut ignored = Vec::new();
        for (index, op) in ops.into_iter().enumerate() {
            if let Some(job) = self.apply_one(op) {
                ignored.push((index, job.id));
            }
        }
        Ok(ignored)
    }

    fn counts(&mut self) -> Result<StateCounts> {
        Ok(self.counts)
    }

    fn get(&mut self, id: &str) -> Result<Option<StoredJob>> {
        Ok(self.jobs.get(id).cloned())
    }

    fn max_seq(&mut self) -> Result<i64> {
        Ok(self.max_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, job, worker};
    use super::*;

    #[test]
    fn memory_store_passes_the_store_conformance_tests() {
        conformance::run_all(|| Box::new(MemoryStore::new()));
    }

    #[test]
    fn counts_follow_every_transition() {
        let mut store = MemoryStore::new();
        let ops: Vec<StoreOp> = (0..10)
            .map(|i| StoreOp::Insert(job(&format!("j{i}"), i)))
            .collect();
        store.apply_owned(ops).expect("insert");
        store
            .apply_owned(vec![
                StoreOp::Retry {
                    id: "j0".into(),
                    attempt: 1,
                    not_before_ms: 0,
                    error: "e".into(),
                },
                StoreOp::Done {
                    id: "j0".into(),
                    attempt: 2,
                    result: vec![],
                    worker: worker(1),
                },
                StoreOp::Retry {
                    id: "j1".into(),
                    attempt: 1,
                    not_before_ms: 0,
                    error: "e".into(),
                },
                StoreOp::Dead {
                    id: "j2".into(),
                    attempt: 1,
                    error: "e".into(),
                    worker: None,
                },
                StoreOp::Insert(job("j3", 3)),
            ])
            .expect("transitions");
        assert_eq!(
            store.counts().expect("counts"),
            StateCounts {
                queued: 7,
                leased: 0,
                done: 1,
                failed: 1,
                dead: 1
            }
        );
        let total = store
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued)
            .count();
        assert_eq!(total, 7, "the kept counts agree with the jobs");
    }
}
