//! Looking inside a running master: a job by id, the dead letters (and running them again or
//! discarding them), the workers, a timeline with an ETA, and Prometheus metrics. The
//! dashboard (`queuexec-dashboard`) serves these over HTTP; API users may call them directly.
//!
//! The engine answers from its own records (`insight.rs`): jobs that are queued, delayed or
//! running, and the last 10,000 finished and 10,000 dead-lettered since the master started.

use serde::Serialize;
use tokio::sync::oneshot;

use super::insight::InsightQuery;
use super::{Master, Stats};
use crate::error::{Error, Result};
use crate::job::WorkerInfo;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Ready to run.
    Queued,
    /// Waiting for its delay or retry backoff.
    Delayed,
    /// Leased to a worker.
    Running,
    /// Finished with a result.
    Done,
    /// Dead-lettered with its last error.
    Dead,
}

/// One job as the master knows it. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobInfo {
    /// The job id as pushed (or `job-N`).
    pub id: String,
    /// The master's key for it (differs from `id` for automatic and repeated ids).
    pub key: String,
    /// Where it is.
    pub status: JobStatus,
    /// Attempts used: failed runs (finished jobs: runs handed out).
    pub attempts: u32,
    /// Attempts allowed (retries + 1); 0 when not known.
    pub max_attempts: u32,
    /// Runs handed out.
    pub runs: u32,
    /// Runs lost with their worker (live jobs only).
    pub losses: u32,
    /// Who runs it now, or ran its final attempt.
    pub worker: Option<WorkerInfo>,
    /// The error of its last failed or lost run.
    pub last_error: Option<String>,
    /// Its task type.
    pub task_type: Option<String>,
    /// Its priority.
    pub priority: i32,
    /// When this master queued it.
    pub pushed_ms: Option<i64>,
    /// Not before this time (delayed jobs).
    pub not_before_ms: Option<i64>,
    /// When its current (or last) run started.
    pub started_ms: Option<i64>,
    /// When it finished.
    pub finished_ms: Option<i64>,
    /// How long it waited ready before its current (or last) run.
    pub queue_wait_ms: Option<u64>,
    /// How long its last run took (finished jobs).
    pub run_ms: Option<u64>,
}

/// One connected worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerStatus {
    /// The name its owner gave it.
    pub name: String,
    /// Its peer id.
    pub peer_id: String,
    /// How it is connected: `direct` (relayed connections do not exist yet).
    pub path: String,
    /// Jobs it finished with a result on this connection.
    pub done: u64,
    /// Runs it reported failed on this connection.
    pub failed: u64,
    /// Jobs it holds now.
    pub held: u64,
    /// When it joined.
    pub joined_ms: i64,
    /// Its last heartbeat (none yet: `None`).
    pub last_heartbeat_ms: Option<i64>,
}

/// Jobs answered in one second.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Second {
    /// The second (Unix time).
    pub t: i64,
    /// Runs that ended with a result.
    pub done: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Their mean run time in milliseconds.
    pub run_ms_avg: Option<f64>,
}

/// Counts, rate, ETA and the recent timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    /// The counts of [`Master::stats`].
    pub stats: Stats,
    /// Dead letters waiting for retry or discard.
    pub dead_letters: u64,
    /// Jobs answered per second over the last 10 seconds.
    pub rate: f64,
    /// Time until queued, delayed and running jobs are done at that rate (`None`: no rate yet).
    pub eta_ms: Option<u64>,
    /// One entry per second with answers, oldest first.
    pub timeline: Vec<Second>,
}

impl Master {
    async fn insight<T>(
        &self,
        query: impl FnOnce(oneshot::Sender<T>) -> InsightQuery,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .engine
            .send(super::engine::EngineCommand::Insight(query(reply)))
            .map_err(|_| Error::Closed("the master"))?;
        rx.await.map_err(|_| Error::Closed("the master"))
    }

    /// One job by its id (as pushed, `job-N`, or its key): live jobs, and the last 10,000
    /// finished since the master started. `None` when the master does not know it (any more).
    pub async fn job(&self, id: &str) -> Result<Option<JobInfo>> {
        let id = id.to_string();
        self.insight(|reply| InsightQuery::Job(id, reply)).await
    }

    /// The dead letters, newest first, at most `limit` (the last 10,000 since the master
    /// started are kept).
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<JobInfo>> {
        self.insight(|reply| InsightQuery::Dead(limit, reply)).await
    }

    /// The connected workers, oldest connection first.
    pub async fn workers(&self) -> Result<Vec<WorkerStatus>> {
        self.insight(InsightQuery::Workers).await
    }

    /// Counts, rate, ETA and the timeline of the last `seconds` seconds (at most 300).
    pub async fn overview(&self, seconds: u32) -> Result<Overview> {
        self.insight(|reply| InsightQuery::Overview(seconds, reply))
            .await
    }

    /// Queues a dead letter again, with its attempts back to 0. Its new result arrives like any
    /// other (a second result for the same job id). Returns the job's key, or `None` when there
    /// is no such dead letter.
    pub async fn retry_dead(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_string();
        self.insight(|reply| InsightQuery::RetryDead(id, reply))
            .await
    }

    /// Removes a dead letter (from the list, and from the store). Returns the job's key, or
    /// `None` when there is no such dead letter.
    pub async fn discard_dead(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_string();
        self.insight(|reply| InsightQuery::DiscardDead(id, reply))
            .await
    }

    /// The master's metrics in the Prometheus text format (`queuexec_*`).
    pub async fn metrics_text(&self) -> Result<String> {
        self.insight(InsightQuery::Metrics).await
    }
}
