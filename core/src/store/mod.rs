//! Durable and in-memory job storage.
//!
//! The scheduler keeps its working state in memory and writes every change that must survive a
//! restart through a [`StoreWriter`], which groups the writes of many callers into one
//! transaction (group commit) so throughput does not hinge on one commit per job.

// The in-memory store is the reference the conformance suite checks SQLite against; the master
// keeps memory-only jobs in its scheduler and needs no store for them.
#[cfg(test)]
mod memory;
mod sqlite;
mod writer;

#[cfg(test)]
pub(crate) use memory::MemoryStore;
pub(crate) use sqlite::SqliteStore;
pub(crate) use writer::StoreWriter;

use bytes::Bytes;

use crate::error::Result;
use crate::job::WorkerInfo;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum JobState {
    /// Waiting for a worker (possibly not before `not_before_ms`).
    Queued,
    /// Handed to a worker under a lease.
    Leased,
    /// Finished with a result.
    Done,
    /// Failed and waiting for its retry (`not_before_ms`).
    Failed,
    /// Failed its last attempt (dead letter), with its last error.
    Dead,
}

impl JobState {
    /// The state as stored (a small integer, stable across versions).
    pub(crate) fn code(self) -> i64 {
        match self {
            JobState::Queued => 0,
            JobState::Leased => 1,
            JobState::Done => 2,
            JobState::Failed => 3,
            JobState::Dead => 4,
        }
    }

    /// The state for a stored code.
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => JobState::Queued,
            1 => JobState::Leased,
            2 => JobState::Done,
            3 => JobState::Failed,
            4 => JobState::Dead,
            _ => return None,
        })
    }

    /// Done or dead.
    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, JobState::Done | JobState::Dead)
    }
}

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredJob {
    /// The job's id (unique in the store).
    pub(crate) id: String,
    /// Push order, for FIFO within a priority.
    pub(crate) seq: i64,
    /// Task type, if the job names one.
    pub(crate) task_type: Option<String>,
    /// The job's data, sealed with the transfer key (the store never holds it in clear).
    /// Shared, not copied: the scheduler and the wire hold the same bytes.
    pub(crate) payload: Bytes,
    /// Higher runs first.
    pub(crate) priority: i32,
    /// Current state.
    pub(crate) state: JobState,
    /// Attempts started so far.
    pub(crate) attempt: u32,
    /// Attempts allowed in all (retries + 1).
    pub(crate) max_attempts: u32,
    /// Per-run wall-clock limit in milliseconds.
    pub(crate) timeout_ms: Option<u64>,
    /// Not before this time (ms since the Unix epoch).
    pub(crate) not_before_ms: i64,
    /// The error of the last failed attempt.
    pub(crate) last_error: Option<String>,
    /// The sealed result of a done job.
    pub(crate) result: Option<Vec<u8>>,
    /// Who ran the final attempt.
    pub(crate) worker: Option<WorkerInfo>,
    /// Whether the final result was handed to the user and acknowledged.
    pub(crate) delivered: bool,
}

/// One change to persist.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StoreOp {
    /// A new job. Ignored (and reported as a duplicate) when the id already exists.
    Insert(StoredJob),
    /// An attempt failed and the job waits for another, not before `not_before_ms`.
    Retry {
        /// Job id.
        id: String,
        /// The attempt that failed.
        attempt: u32,
        /// When the next attempt may start.
        not_before_ms: i64,
        /// Why the attempt failed.
        error: String,
    },
    /// The job finished with a (sealed) result.
    Done {
        /// Job id.
        id: String,
        /// The attempt that produced it.
        attempt: u32,
        /// Sealed result JSON.
        result: Vec<u8>,
        /// Who ran it.
        worker: WorkerInfo,
    },
    /// The job failed its last attempt.
    Dead {
        /// Job id.
        id: String,
        /// The last attempt.
        attempt: u32,
        /// The last error.
        error: String,
        /// Who ran the last attempt, if a worker did.
        worker: Option<WorkerInfo>,
    },
    /// The terminal result was handed to the user.
    Delivered {
        /// Job id.
        id: String,
    },
    /// A dead-lettered job is queued again from scratch (attempts back to 0), not before
    /// `not_before_ms`. Ignored unless the job is dead.
    Requeue {
        /// Job id.
        id: String,
        /// When it may run.
        not_before_ms: i64,
    },
    /// A dead-lettered job is removed from the store. Ignored unless the job is dead.
    Discard {
        /// Job id.
        id: String,
    },
}

/// Counts of jobs per state (tests check stores with them; the master counts in its scheduler).
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StateCounts {
    /// Queued (including delayed).
    pub(crate) queued: u64,
    /// Leased.
    pub(crate) leased: u64,
    /// Done.
    pub(crate) done: u64,
    /// Failed, waiting for a retry.
    pub(crate) failed: u64,
    /// Dead-lettered.
    pub(crate) dead: u64,
}

/// Where jobs are kept.
pub(crate) trait JobStore: Send + 'static {
    /// Names the store in errors and logs (its file, or "memory").
    fn location(&self) -> String;

    /// Every job a restarted master must know about: all jobs that are not terminal, and terminal
    /// jobs whose result was not yet delivered. Leased jobs come back as they were stored; the
    /// scheduler requeues them. (The conformance suite's reference: a master reads its open jobs
    /// with `SqliteStore::recover`, ready ones only by priority and push number.)
    #[cfg(test)]
    fn load(&mut self) -> Result<Vec<StoredJob>>;

    /// Applies `ops` in order, atomically (one transaction). Returns the ids of `Insert`s that
    /// were ignored because a job with that id already existed.
    fn apply(&mut self, ops: &[StoreOp]) -> Result<Vec<String>>;

    /// Jobs per state.
    #[cfg(test)]
    fn counts(&mut self) -> Result<StateCounts>;

    /// One job by id.
    #[cfg(test)]
    fn get(&mut self, id: &str) -> Result<Option<StoredJob>>;

    /// The highest `seq` ever stored, 0 when the store is empty. A restarted scheduler numbers
    /// new jobs after it, even when every stored job was delivered and [`load`](Self::load)
    /// returns nothing.
    fn max_seq(&mut self) -> Result<i64>;

    /// Like [`apply`](Self::apply), but takes the ops by value, so a store may keep payloads
    /// without copying them, and reports each ignored `Insert` as its index in `ops` with its id
    /// (the [`StoreWriter`] uses the index to tell each caller only about its own duplicates,
    /// even when two callers insert the same id in one transaction).
    ///
    /// The default calls [`apply`](Self::apply) and matches the ids it returns back to the ops.
    fn apply_owned(&mut self, ops: Vec<StoreOp>) -> Result<Vec<(usize, String)>> {
        let ignored = self.apply(&ops)?;
        Ok(match_ignored_inserts(&ops, ignored))
    }
}

/// Finds which `Insert`s of `ops` the ids in `ignored` stand for (one id per ignored insert).
///
/// An id inserted k times in one transaction is ignored at least k-1 times (every insert after
/// the first); the first insert was ignored too exactly when the id appears k times.
fn match_ignored_inserts(ops: &[StoreOp], ignored: Vec<String>) -> Vec<(usize, String)> {
    use std::collections::HashMap;

    if ignored.is_empty() {
        return Vec::new();
    }
    let mut times_ignored: HashMap<String, usize> = HashMap::new();
    for id in ignored {
        *times_ignored.entry(id).or_default() += 1;
    }
    let mut times_inserted: HashMap<&str, usize> = HashMap::new();
    for op in ops {
        if let StoreOp::Insert(job) = op
            && times_ignored.contains_key(&job.id)
        {
            *times_inserted.entry(job.id.as_str()).or_default() += 1;
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let StoreOp::Insert(job) = op else { continue };
        let Some(&ignored_count) = times_ignored.get(&job.id) else {
            continue;
        };
        let seen_before = seen.entry(job.id.as_str()).or_default();
        let inserted = times_inserted.get(job.id.as_str()).copied().unwrap_or(0);
        if *seen_before > 0 || ignored_count >= inserted {
            out.push((index, job.id.clone()));
        }
        *seen_before += 1;
    }
    out
}

/// Test bodies every [`JobStore`] must pass; each implementation's tests run them.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    /// A queued job with distinct values in every field.
    pub(crate) fn job(id: &str, seq: i64) -> StoredJob {
        StoredJob {
            id: id.to_string(),
            seq,
            task_type: Some(format!("type-{seq}")),
            payload: Bytes::from(format!("sealed payload of {id}").into_bytes()),
            priority: (seq % 7) as i32 - 3,
            state: JobState::Queued,
            attempt: 0,
            max_attempts: 3,
            timeout_ms: Some(1_000 + seq as u64),
            not_before_ms: 1_700_000_000_000 + seq,
            last_error: None,
            result: None,
            worker: None,
            delivered: false,
        }
    }

    pub(crate) fn worker(n: u32) -> WorkerInfo {
        WorkerInfo {
            id: format!("12D3KooWorker{n}"),
            name: format!("worker {n}"),
        }
    }

    fn get(store: &mut dyn JobStore, id: &str) -> StoredJob {
        match store.get(id) {
            Ok(Some(job)) => job,
            other => panic!("job {id} should be stored, got {other:?}"),
        }
    }

    /// Every op changes exactly the fields it names, and `get`, `load`, `counts` agree.
    pub(crate) fn every_op_round_trips(store: &mut dyn JobStore) {
        let mut bare = job("bare", 6);
        bare.task_type = None;
        bare.timeout_ms = None;
        let ignored = store
            .apply(&[
                StoreOp::Insert(job("a", 1)),
                StoreOp::Insert(job("b", 2)),
                StoreOp::Insert(job("c", 3)),
                StoreOp::Insert(job("d", 4)),
                StoreOp::Insert(job("e", 5)),
                StoreOp::Insert(bare.clone()),
            ])
            .expect("insert");
        assert!(
            ignored.is_empty(),
            "fresh ids are not duplicates: {ignored:?}"
        );
        assert_eq!(get(store, "a"), job("a", 1));
        assert_eq!(get(store, "bare"), bare);

        store
            .apply(&[
                StoreOp::Retry {
                    id: "b".into(),
                    attempt: 1,
                    not_before_ms: 42,
                    error: "boom".into(),
                },
                StoreOp::Done {
                    id: "c".into(),
                    attempt: 2,
                    result: b"sealed result".to_vec(),
                    worker: worker(1),
                },
                StoreOp::Dead {
                    id: "d".into(),
                    attempt: 3,
                    error: "last words".into(),
                    worker: Some(worker(2)),
                },
                StoreOp::Dead {
                    id: "e".into(),
                    attempt: 1,
                    error: "expired".into(),
                    worker: None,
                },
            ])
            .expect("transitions");

        let b = get(store, "b");
        assert_eq!(
            b,
            StoredJob {
                state: JobState::Failed,
                attempt: 1,
                not_before_ms: 42,
                last_error: Some("boom".into()),
                ..job("b", 2)
            }
        );
        let c = get(store, "c");
        assert_eq!(
            c,
            StoredJob {
                state: JobState::Done,
                attempt: 2,
                result: Some(b"sealed result".to_vec()),
                worker: Some(worker(1)),
                ..job("c", 3)
            }
        );
        let d = get(store, "d");
        assert_eq!(
            d,
            StoredJob {
                state: JobState::Dead,
                attempt: 3,
                last_error: Some("last words".into()),
                worker: Some(worker(2)),
                ..job("d", 4)
            }
        );
        assert_eq!(get(store, "e").worker, None);
        assert_eq!(
            store.counts().expect("counts"),
            StateCounts {
                queued: 2,
                leased: 0,
                done: 1,
                failed: 1,
                dead: 2
            }
        );

        // Terminal but undelivered jobs still load; delivered ones do not.
        let ids = |jobs: Vec<StoredJob>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.load().expect("load")),
            ["a", "b", "c", "d", "e", "bare"]
        );
        store
            .apply(&[
                StoreOp::Delivered { id: "c".into() },
                StoreOp::Delivered { id: "d".into() },
            ])
            .expect("delivered");
        assert!(get(store, "c").delivered);
        let loaded = store.load().expect("load");
        assert_eq!(ids(loaded.clone()), ["a", "b", "e", "bare"]);
        assert_eq!(loaded[1], b, "load returns the same fields as get");
        assert_eq!(store.max_seq().expect("max_seq"), 6);
        assert_eq!(store.get("nope").expect("get"), None);
    }

    /// Inserting an existing id is reported and changes nothing, also within one call.
    pub(crate) fn duplicates_are_reported(store: &mut dyn JobStore) {
        assert!(
            store
                .apply(&[StoreOp::Insert(job("x", 1))])
                .expect("insert")
                .is_empty()
        );
        let mut other = job("x", 9);
        other.payload = Bytes::from_static(b"another payload");
        let ignored = store
            .apply(&[
                StoreOp::Insert(other.clone()),
                StoreOp::Insert(job("y", 2)),
                StoreOp::Insert(job("y", 3)),
            ])
            .expect("insert");
        assert_eq!(ignored, ["x", "y"]);
        assert_eq!(
            get(store, "x"),
            job("x", 1),
            "a duplicate does not overwrite"
        );
        assert_eq!(
            get(store, "y"),
            job("y", 2),
            "the first insert of an id wins"
        );

        // The same through apply_owned, which also says which op was ignored.
        let ignored = store
            .apply_owned(vec![
                StoreOp::Insert(job("z", 4)),
                StoreOp::Insert(job("x", 5)),
                StoreOp::Delivered { id: "x".into() },
                StoreOp::Insert(job("z", 6)),
            ])
            .expect("insert");
        assert_eq!(ignored, [(1, "x".to_string()), (3, "z".to_string())]);
        assert_eq!(
            store.max_seq().expect("max_seq"),
            4,
            "ignored inserts store no seq"
        );
    }

    /// Updates of ids the store does not hold are ignored, without error.
    pub(crate) fn unknown_ids_are_ignored(store: &mut dyn JobStore) {
        store
            .apply(&[
                StoreOp::Retry {
                    id: "ghost".into(),
                    attempt: 1,
                    not_before_ms: 0,
                    error: "e".into(),
                },
                StoreOp::Done {
                    id: "ghost".into(),
                    attempt: 1,
                    result: vec![1],
                    worker: worker(1),
                },
                StoreOp::Dead {
                    id: "ghost".into(),
                    attempt: 1,
                    error: "e".into(),
                    worker: None,
                },
                StoreOp::Delivered { id: "ghost".into() },
            ])
            .expect("ops on unknown ids");
        assert_eq!(store.get("ghost").expect("get"), None);
        assert_eq!(store.counts().expect("counts"), StateCounts::default());
        assert!(store.load().expect("load").is_empty());
        assert_eq!(store.max_seq().expect("max_seq"), 0);
    }

    /// `load` orders by seq, not by insertion; `max_seq` outlives delivery.
    pub(crate) fn load_orders_by_seq_and_max_seq_outlives_delivery(store: &mut dyn JobStore) {
        let ops: Vec<StoreOp> = [5, 3, 9, 1]
            .iter()
            .map(|&seq| StoreOp::Insert(job(&format!("j{seq}"), seq)))
            .collect();
        store.apply(&ops).expect("insert");
        let seqs: Vec<i64> = store.load().expect("load").iter().map(|j| j.seq).collect();
        assert_eq!(seqs, [1, 3, 5, 9]);

        let mut ops = Vec::new();
        for seq in [5, 3, 9, 1] {
            let id = format!("j{seq}");
            ops.push(StoreOp::Done {
                id: id.clone(),
                attempt: 1,
                result: vec![],
                worker: worker(1),
            });
            ops.push(StoreOp::Delivered { id });
        }
        store.apply(&ops).expect("finish");
        assert!(store.load().expect("load").is_empty());
        assert_eq!(store.max_seq().expect("max_seq"), 9);
        assert_eq!(store.counts().expect("counts").done, 4);
    }

    /// A new terminal result is undelivered again, even after an earlier delivery.
    pub(crate) fn a_new_result_is_undelivered(store: &mut dyn JobStore) {
        store
            .apply(&[StoreOp::Insert(job("r", 1))])
            .expect("insert");
        store
            .apply(&[StoreOp::Delivered { id: "r".into() }])
            .expect("delivered");
        assert_eq!(
            store.load().expect("load").len(),
            1,
            "a queued job loads whatever delivered says"
        );
        store
            .apply(&[StoreOp::Dead {
                id: "r".into(),
                attempt: 3,
                error: "gone".into(),
                worker: None,
            }])
            .expect("dead");
        assert!(!get(store, "r").delivered);
        assert_eq!(store.load().expect("load").len(), 1);
    }

    /// A dead job can be queued again from scratch or removed; other jobs ignore both.
    pub(crate) fn dead_jobs_requeue_and_discard(store: &mut dyn JobStore) {
        store
            .apply(&[
                StoreOp::Insert(job("d1", 1)),
                StoreOp::Insert(job("d2", 2)),
                StoreOp::Insert(job("q", 3)),
                StoreOp::Dead {
                    id: "d1".into(),
                    attempt: 3,
                    error: "boom".into(),
                    worker: Some(worker(1)),
                },
                StoreOp::Dead {
                    id: "d2".into(),
                    attempt: 3,
                    error: "boom".into(),
                    worker: None,
                },
                StoreOp::Delivered { id: "d1".into() },
            ])
            .expect("setup");
        store
            .apply(&[
                StoreOp::Requeue {
                    id: "d1".into(),
                    not_before_ms: 77,
                },
                StoreOp::Discard { id: "d2".into() },
                // Not dead: both are ignored.
                StoreOp::Requeue {
                    id: "q".into(),
                    not_before_ms: 99,
                },
                StoreOp::Discard { id: "q".into() },
            ])
            .expect("requeue and discard");
        let d1 = get(store, "d1");
        assert_eq!(d1.state, JobState::Queued);
        assert_eq!(d1.attempt, 0);
        assert_eq!(d1.not_before_ms, 77);
        assert!(!d1.delivered);
        assert_eq!(store.get("d2").expect("get"), None, "discarded");
        assert_eq!(get(store, "q"), job("q", 3), "a queued job is untouched");
        let ids: Vec<String> = store
            .load()
            .expect("load")
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(
            ids,
            ["d1", "q"],
            "the requeued job loads again after a restart"
        );
        assert_eq!(store.counts().expect("counts").dead, 0);
        assert_eq!(store.max_seq().expect("max_seq"), 3);
    }

    /// Discarding the job with the highest seq does not lower `max_seq`: a seq is never reused.
    pub(crate) fn discarding_the_last_job_keeps_max_seq(store: &mut dyn JobStore) {
        store
            .apply(&[
                StoreOp::Insert(job("a", 4)),
                StoreOp::Insert(job("b", 7)),
                StoreOp::Dead {
                    id: "b".into(),
                    attempt: 1,
                    error: "boom".into(),
                    worker: None,
                },
            ])
            .expect("setup");
        store
            .apply(&[StoreOp::Discard { id: "b".into() }])
            .expect("discard");
        assert_eq!(store.get("b").expect("get"), None, "discarded");
        assert_eq!(store.max_seq().expect("max_seq"), 7);
        // A discard of an unknown or live id leaves it alone.
        store
            .apply(&[
                StoreOp::Discard { id: "a".into() },
                StoreOp::Discard { id: "ghost".into() },
            ])
            .expect("discards that do nothing");
        assert_eq!(store.max_seq().expect("max_seq"), 7);
        store
            .apply(&[StoreOp::Insert(job("c", 9))])
            .expect("insert");
        assert_eq!(store.max_seq().expect("max_seq"), 9);
    }

    /// Runs every body above, each on a fresh store.
    pub(crate) fn run_all(mut fresh: impl FnMut() -> Box<dyn JobStore>) {
        dead_jobs_requeue_and_discard(fresh().as_mut());
        every_op_round_trips(fresh().as_mut());
        duplicates_are_reported(fresh().as_mut());
        unknown_ids_are_ignored(fresh().as_mut());
        load_orders_by_seq_and_max_seq_outlives_delivery(fresh().as_mut());
        discarding_the_last_job_keeps_max_seq(fresh().as_mut());
        a_new_result_is_undelivered(fresh().as_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::job;
    use super::*;

    fn insert(id: &str) -> StoreOp {
        StoreOp::Insert(job(id, 1))
    }

    #[test]
    fn default_apply_owned_matches_ignored_ids_to_ops() {
        let ops = [
            insert("a"),
            insert("b"),
            insert("a"),
            StoreOp::Delivered { id: "a".into() },
        ];
        // "a" already existed: both of its inserts were ignored.
        assert_eq!(
            match_ignored_inserts(&ops, vec!["a".into(), "a".into()]),
            [(0, "a".to_string()), (2, "a".to_string())]
        );
        // "a" was new: only its second insert was ignored.
        assert_eq!(
            match_ignored_inserts(&ops, vec!["a".into()]),
            [(2, "a".to_string())]
        );
        assert_eq!(match_ignored_inserts(&ops, vec![]), []);
        assert_eq!(
            match_ignored_inserts(&ops, vec!["b".into()]),
            [(1, "b".to_string())]
        );
    }

    #[test]
    fn state_codes_round_trip() {
        for state in [
            JobState::Queued,
            JobState::Leased,
            JobState::Done,
            JobState::Failed,
            JobState::Dead,
        ] {
            assert_eq!(JobState::from_code(state.code()), Some(state));
        }
        assert_eq!(JobState::from_code(5), None);
    }
}
