//! Durable and in-memory job storage.
//!
//! The scheduler keeps its working state in memory and writes every change that must survive a
//! restart through a [`StoreWriter`], which groups the writes of many callers into one
//! transaction (group commit) so throughput does not hinge on one commit per job.

mod memory;
mod sqlite;
mod writer;

// pub use memory::MemoryStore;
// pub use sqlite::SqliteStore;
// pub use writer::StoreWriter;

use crate::error::Result;
use crate::job::WorkerInfo;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
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
    pub fn code(self) -> i64 {
        match self {
            JobState::Queued => 0,
            JobState::Leased => 1,
            JobState::Done => 2,
            JobState::Failed => 3,
            JobState::Dead => 4,
        }
    }

    /// The state for a stored code.
    pub fn from_code(code: i64) -> Option<Self> {
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
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Done | JobState::Dead)
    }
}

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    /// The job's id (unique in the store).
    pub id: String,
    /// Push order, for FIFO within a priority.
    pub seq: i64,
    /// Task type, if the job names one.
    pub task_type: Option<String>,
    /// The job's data, sealed with the transfer key (the store never holds it in clear).
    pub payload: Vec<u8>,
    /// Higher runs first.
    pub priority: i32,
    /// Current state.
    pub state: JobState,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts allowed in all (retries + 1).
    pub max_attempts: u32,
    /// Per-run wall-clock limit in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Not before this time (ms since the Unix epoch).
    pub not_before_ms: i64,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// The sealed result of a done job.
    pub result: Option<Vec<u8>>,
    /// Who ran the final attempt.
    pub worker: Option<WorkerInfo>,
    /// Whether the final result was handed to the user and acknowledged.
    pub delivered: bool,
}

/// One change to persist.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
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
}

/// Counts of jobs per state, for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Queued (including delayed).
    pub queued: u64,
    /// Leased.
    pub leased: u64,
    /// Done.
    pub done: u64,
    /// Failed, waiting for a retry.
    pub failed: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// Where jobs are kept.
pub trait JobStore: Send + 'static {
    /// Names the store in errors and logs (its file, or "memory").
    fn location(&self) -> String;

    /// Every job a restarted master must know about: all jobs that are not terminal, and terminal
    /// jobs whose result was not yet delivered. Leased jobs come back as they were stored; the
    /// scheduler requeues them.
    fn load(&mut self) -> Result<Vec<StoredJob>>;

    /// Applies `ops` in order, atomically (one transaction). Returns the ids of `Insert`s that
    /// were ignored because a job with that id already existed.
    fn apply(&mut self, ops: &[StoreOp]) -> Result<Vec<String>>;

    /// Jobs per state.
    fn counts(&mut self) -> Result<StateCounts>;

    /// One job by id.
    fn get(&mut self, id: &str) -> Result<Option<StoredJob>>;
}
