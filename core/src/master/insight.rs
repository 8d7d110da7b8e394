//! What the master shows about itself while it runs: per-job timings, the dead letters (with
//! what it takes to run them again), per-worker counts, a per-second timeline, and Prometheus
//! metrics. Owned by the engine task, like the scheduler; the engine calls the hooks here as
//! jobs move, and answers [`InsightQuery`]s (the public methods are in `inspect.rs`).
//!
//! Memory is bounded apart from the live jobs (one small record each, sharing the payload
//! with the scheduler): the last [`FINISHED_KEPT`] finished jobs, the last [`DEAD_KEPT`] dead
//! letters and [`TIMELINE_SECONDS`] seconds of timeline are kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use libp2p::PeerId;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use super::Stats;
use super::inspect::{JobInfo, JobStatus, Overview, Second, WorkerStatus};
use crate::FastMap;
use crate::job::{KEY_SEPARATOR, WorkerInfo, label_of};
use crate::scheduler::{JobView, Scheduler, SessionId, Transition};
use crate::store::{JobState, StoredJob};

/// Finished jobs kept for lookup.
pub(super) const FINISHED_KEPT: usize = 10_000;
/// Dead letters kept (with their payload) for retry; older ones stay in the store only.
pub(super) const DEAD_KEPT: usize = 10_000;
/// Seconds of timeline kept.
pub(super) const TIMELINE_SECONDS: usize = 300;

/// A question or an action for the engine's insight.
pub(super) enum InsightQuery {
    Job(String, oneshot::Sender<Option<JobInfo>>),
    Dead(usize, oneshot::Sender<Vec<JobInfo>>),
    Workers(oneshot::Sender<Vec<WorkerStatus>>),
    Overview(u32, oneshot::Sender<Overview>),
    Metrics(oneshot::Sender<String>),
    RetryDead(String, oneshot::Sender<Option<String>>),
    DiscardDead(String, oneshot::Sender<Option<String>>),
}

/// What the engine does for an answered query.
pub(super) enum Action {
    /// Queue this former dead letter again (`true`: in memory only).
    Requeue(StoredJob, bool),
    /// Remove this dead letter from the store (`true`: in memory only, nothing to remove).
    Discard(String, bool),
}

/// A job that is not finished: when it was pushed, when it last became ready, its run.
struct Live {
    pushed_ms: i64,
    /// Since when it waits for a worker (push, retry time, or loss).
    waiting_since_ms: i64,
    started_ms: Option<i64>,
    queue_wait_ms: Option<u64>,
    last_error: Option<String>,
    /// Shared with the scheduler (set at the first lease): what a retry of a dead letter needs.
    payload: Option<Bytes>,
    task_type: Option<String>,
    timeout_ms: Option<u64>,
    priority: i32,
    max_attempts: u32,
    seq: i64,
}

/// A dead letter, with what it takes to queue it again.
struct DeadLetter {
    info: JobInfo,
    payload: Option<Bytes>,
    task_type: Option<String>,
    timeout_ms: Option<u64>,
    priority: i32,
    max_attempts: u32,
    seq: i64,
    in_memory: bool,
}

struct WorkerRow {
    info: Arc<WorkerInfo>,
    peer: PeerId,
    path: crate::net::Path,
    joined_ms: i64,
    last_heartbeat_ms: Option<i64>,
    done: u64,
    failed: u64,
}

#[derive(Default, Clone, Copy)]
struct Bucket {
    second: i64,
    done: u64,
    failed: u64,
    run_ms_sum: u64,
    runs: u64,
}

/// The Prometheus metrics of one master.
struct Metrics {
    registry: Registry,
    pushed: Counter,
    done: Counter,
    failed: Counter,
    retried: Counter,
    dead: Counter,
    lost: Counter,
    run_seconds: Histogram,
    wait_seconds: Histogram,
    queued: Gauge,
    delayed: Gauge,
    running: Gauge,
    dead_letters: Gauge,
    workers: Gauge,
    connections: Family<Vec<(String, String)>, Gauge>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("queuexec");
        let m = Metrics {
            pushed: Counter::default(),
            done: Counter::default(),
            failed: Counter::default(),
            retried: Counter::default(),
            dead: Counter::default(),
            lost: Counter::default(),
            // 1 ms to about 9 hours, doubling.
            run_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 25)),
            wait_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 25)),
            queued: Gauge::default(),
            delayed: Gauge::default(),
            running: Gauge::default(),
            dead_letters: Gauge::default(),
            workers: Gauge::default(),
            connections: Family::default(),
            registry: Registry::default(),
        };
        registry.register("jobs_pushed", "Jobs pushed (queued)", m.pushed.clone());
        registry.register("jobs_done", "Jobs finished with a result", m.done.clone());
        registry.register(
            "jobs_failed",
            "Runs that failed (the worker reported an error)",
            m.failed.clone(),
        );
        registry.register(
            "jobs_retried",
            "Failed runs that will be retried",
            m.retried.clone(),
        );
        registry.register("jobs_dead", "Jobs dead-lettered", m.dead.clone());
        registry.register(
            "jobs_lost",
            "Runs lost with their worker (disconnected, silent, or past the lease)",
            m.lost.clone(),
        );
        registry.register(
            "job_run_seconds",
            "Time from a job's lease to its worker's answer",
            m.run_seconds.clone(),
        );
        registry.register(
            "job_queue_wait_seconds",
            "Time a job waited ready before a worker took it",
            m.wait_seconds.clone(),
        );
        registry.register("jobs_queued", "Jobs ready to run", m.queued.clone());
        registry.register(
            "jobs_delayed",
            "Jobs waiting for their delay or retry backoff",
            m.delayed.clone(),
        );
        registry.register("jobs_running", "Jobs leased to workers", m.running.clone());
        registry.register(
            "dead_letters",
            "Dead letters waiting for retry or discard (kept in memory)",
            m.dead_letters.clone(),
        );
        registry.register(
            "workers_connected",
            "Workers connected now",
            m.workers.clone(),
        );
        registry.register(
            "connections",
            "Worker connections by path (direct, relayed)",
            m.connections.clone(),
        );
        Metrics { registry, ..m }
    }
}

/// The engine's record of what happened, for the dashboard and for API users.
pub(super) struct Insight {
    live: FastMap<Arc<str>, Live>,
    /// The last [`FINISHED_KEPT`] finished jobs, oldest first. A lookup scans it from the
    /// newest (a dashboard query), so finishing a job costs no map insert and no removal, and
    /// its record shares the key and the worker with the scheduler instead of copying them.
    finished: VecDeque<Finished>,
    dead: FastMap<Arc<str>, DeadLetter>,
    dead_order: VecDeque<Arc<str>>,
    workers: HashMap<SessionId, WorkerRow>,
    timeline: VecDeque<Bucket>,
    metrics: Metrics,
}

impl Insight {
    pub(super) fn new() -> Insight {
        Insight {
            live: FastMap::default(),
            finished: VecDeque::new(),
            dead: FastMap::default(),
            dead_order: VecDeque::new(),
            workers: HashMap::new(),
            timeline: VecDeque::new(),
            metrics: Metrics::new(),
        }
    }

    /// A job entered the scheduler (pushed, resumed after a restart, or a retried dead letter).
    pub(super) fn enqueued(&mut self, job: &StoredJob, now: i64) {
        if job.state.is_terminal() {
            return;
        }
        if self.live.contains_key(job.id.as_str()) {
            // The scheduler ignores a key it already holds.
            return;
        }
        self.metrics.pushed.inc();
        self.track(job, now);
    }

    /// A job entered the scheduler but stays in the store (spilled): counted, not tracked
    /// until it is paged in.
    pub(super) fn spilled(&mut self) {
        self.metrics.pushed.inc();
    }

    /// A spilled job was read back from the store, where it was stored at `stored_ms`.
    pub(super) fn paged_in(&mut self, job: &StoredJob, stored_ms: i64, now: i64) {
        if !job.state.is_terminal() && !self.live.contains_key(job.id.as_str()) {
            self.track(job, stored_ms.min(now));
        }
    }

    fn track(&mut self, job: &StoredJob, pushed_ms: i64) {
        let id: Arc<str> = Arc::from(job.id.as_str());
        self.live.insert(
            id,
            Live {
                pushed_ms,
                waiting_since_ms: job.not_before_ms.max(pushed_ms),
                started_ms: None,
                queue_wait_ms: None,
                last_error: job.last_error.clone(),
                payload: None,
                task_type: job.task_type.clone(),
                timeout_ms: job.timeout_ms,
                priority: job.priority,
                max_attempts: job.max_attempts,
                seq: job.seq,
            },
        );
    }

    /// A job was leased: its queue wait ends, its run starts.
    pub(super) fn leased(&mut self, id: &str, payload: &Bytes, now: i64) {
        if let Some(live) = self.live.get_mut(id) {
            let wait = (now - live.waiting_since_ms).max(0) as u64;
            live.queue_wait_ms = Some(wait);
            live.started_ms = Some(now);
            if live.payload.is_none() {
                live.payload = Some(payload.clone());
            }
            self.metrics.wait_seconds.observe(wait as f64 / 1000.0);
        }
    }

    pub(super) fn worker_joined(
        &mut self,
        session: SessionId,
        peer: PeerId,
        worker: &WorkerInfo,
        path: crate::net::Path,
    ) {
        self.workers.insert(
            session,
            WorkerRow {
                info: Arc::new(worker.clone()),
                peer,
                path,
                joined_ms: crate::job::now_ms(),
                last_heartbeat_ms: None,
                done: 0,
                failed: 0,
            },
        );
    }

    pub(super) fn worker_left(&mut self, session: SessionId) {
        self.workers.remove(&session);
    }

    pub(super) fn heartbeat(&mut self, session: SessionId, now: i64) {
        if let Some(row) = self.workers.get_mut(&session) {
            row.last_heartbeat_ms = Some(now);
        }
    }

    /// A worker's answer was accepted: counts for the worker, the run time.
    pub(super) fn answered(&mut self, session: SessionId, t: &Transition, now: i64) {
        let (id, ok) = match t {
            Transition::Done { id, .. } => (id, true),
            Transition::Retry { id, .. } | Transition::Dead { id, .. } => (id, false),
            Transition::Lost { .. } => return,
        };
        if let Some(row) = self.workers.get_mut(&session) {
            if ok {
                row.done += 1;
            } else {
                row.failed += 1;
            }
        }
        if !ok {
            self.metrics.failed.inc();
        }
        let run_ms = self
            .live
            .get(id)
            .and_then(|l| l.started_ms)
            .map(|s| (now - s).max(0) as u64);
        if let Some(run_ms) = run_ms {
            self.metrics.run_seconds.observe(run_ms as f64 / 1000.0);
        }
        let bucket = self.bucket(now);
        if ok {
            bucket.done += 1;
        } else {
            bucket.failed += 1;
        }
        if let Some(run_ms) = run_ms {
            bucket.run_ms_sum += run_ms;
            bucket.runs += 1;
        }
    }

    fn bucket(&mut self, now: i64) -> &mut Bucket {
        let second = now.div_euclid(1000);
        if self.timeline.back().is_none_or(|b| b.second < second) {
            self.timeline.push_back(Bucket {
                second,
                ..Bucket::default()
            });
            while self.timeline.len() > TIMELINE_SECONDS {
                self.timeline.pop_front();
            }
        }
        // A clock that stepped back lands in the newest bucket.
        let last = self.timeline.len() - 1;
        &mut self.timeline[last]
    }

    /// A job taken back before it was ever accepted (its push failed): no longer tracked (the
    /// push counter, which counts attempts to push too, keeps it).
    pub(super) fn withdrawn(&mut self, id: &str) {
        self.live.remove(id);
    }

    /// A transition the engine persists.
    pub(super) fn transition(&mut self, t: &Transition, now: i64) {
        match t {
            Transition::Done {
                id,
                attempt,
                worker,
                ..
            } => {
                self.metrics.done.inc();
                let live = self.live.remove(id);
                self.keep_finished(Finished::new(
                    id.clone(),
                    JobStatus::Done,
                    *attempt,
                    Some(worker.clone()),
                    None,
                    live,
                    now,
                ));
            }
            Transition::Retry {
                id,
                not_before_ms,
                error,
                ..
            } => {
                self.metrics.retried.inc();
                if let Some(live) = self.live.get_mut(id) {
                    live.last_error = Some(error.clone());
                    live.waiting_since_ms = *not_before_ms;
                    live.started_ms = None;
                }
            }
            Transition::Lost { id, error } => {
                self.metrics.lost.inc();
                if let Some(live) = self.live.get_mut(id) {
                    live.last_error = Some(error.clone());
                    live.waiting_since_ms = now;
                    live.started_ms = None;
                }
            }
            Transition::Dead {
                id,
                attempt,
                error,
                worker,
                in_memory,
            } => {
                self.metrics.dead.inc();
                let mut live = self.live.remove(id);
                // What a retry of the dead letter needs, taken before the record keeps the rest.
                let (payload, task_type, timeout_ms, priority, max_attempts, seq) =
                    live.as_mut().map_or((None, None, None, 0, 1, 0), |l| {
                        (
                            l.payload.take(),
                            l.task_type.clone(),
                            l.timeout_ms,
                            l.priority,
                            l.max_attempts,
                            l.seq,
                        )
                    });
                let finished = Finished::new(
                    id.clone(),
                    JobStatus::Dead,
                    *attempt,
                    worker.clone(),
                    Some(error.clone()),
                    live,
                    now,
                );
                let letter = DeadLetter {
                    info: finished.info(),
                    payload,
                    task_type,
                    timeout_ms,
                    priority,
                    max_attempts,
                    seq,
                    in_memory: *in_memory,
                };
                self.keep_finished(finished);
                if self.dead.insert(id.clone(), letter).is_none() {
                    self.dead_order.push_back(id.clone());
                }
                while self.dead.len() > DEAD_KEPT {
                    match self.dead_order.pop_front() {
                        Some(old) => {
                            self.dead.remove(&old);
                        }
                        None => break,
                    }
                }
            }
        }
    }

    fn keep_finished(&mut self, finished: Finished) {
        if self.finished.len() >= FINISHED_KEPT {
            self.finished.pop_front();
        }
        self.finished.push_back(finished);
    }

    /// The newest record of a finished job stored under `key`.
    fn finished(&self, key: &str) -> Option<&Finished> {
        self.finished.iter().rev().find(|f| &*f.key == key)
    }

    /// The store key a user's id stands for: the key itself, an automatic id, or a repeated id
    /// among the finished jobs.
    fn resolve(&self, scheduler: &Scheduler, id: &str) -> Option<Arc<str>> {
        let automatic = format!("{KEY_SEPARATOR}{id}");
        for key in [id, automatic.as_str()] {
            if let Some((k, _)) = self.live.get_key_value(key) {
                return Some(k.clone());
            }
            if let Some((k, _)) = self.dead.get_key_value(key) {
                return Some(k.clone());
            }
            if let Some(f) = self.finished(key) {
                return Some(f.key.clone());
            }
            if scheduler.inspect(key).is_some() {
                return Some(Arc::from(key));
            }
        }
        self.finished
            .iter()
            .rev()
            .find(|f| label_of(&f.key) == id)
            .map(|f| f.key.clone())
    }

    /// The answer to one query, and what the engine must do for it.
    pub(super) fn answer(
        &mut self,
        query: InsightQuery,
        scheduler: &Scheduler,
        stats: Stats,
    ) -> Option<Action> {
        match query {
            InsightQuery::Job(id, reply) => {
                let _ = reply.send(self.job(scheduler, &id));
                None
            }
            InsightQuery::Dead(limit, reply) => {
                let list = self
                    .dead_order
                    .iter()
                    .rev()
                    .filter_map(|k| self.dead.get(k))
                    .take(limit)
                    .map(|d| d.info.clone())
                    .collect();
                let _ = reply.send(list);
                None
            }
            InsightQuery::Workers(reply) => {
                let mut rows: Vec<WorkerStatus> = self
                    .workers
                    .iter()
                    .map(|(session, row)| WorkerStatus {
                        name: row.info.name.clone(),
                        peer_id: row.peer.to_string(),
                        path: row.path.as_str().into(),
                        done: row.done,
                        failed: row.failed,
                        held: scheduler.held(*session) as u64,
                        joined_ms: row.joined_ms,
                        last_heartbeat_ms: row.last_heartbeat_ms,
                    })
                    .collect();
                rows.sort_by(|a, b| a.joined_ms.cmp(&b.joined_ms).then(a.name.cmp(&b.name)));
                let _ = reply.send(rows);
                None
            }
            InsightQuery::Overview(seconds, reply) => {
                let _ = reply.send(self.overview(stats, seconds));
                None
            }
            InsightQuery::Metrics(reply) => {
                let m = &self.metrics;
                m.queued.set(stats.queued as i64);
                m.delayed.set(stats.delayed as i64);
                m.running.set(stats.running as i64);
                m.dead_letters.set(self.dead.len() as i64);
                m.workers.set(stats.workers as i64);
                let relayed = self
                    .workers
                    .values()
                    .filter(|row| row.path == crate::net::Path::Relayed)
                    .count() as i64;
                m.connections
                    .get_or_create(&vec![("path".into(), "direct".into())])
                    .set(self.workers.len() as i64 - relayed);
                m.connections
                    .get_or_create(&vec![("path".into(), "relayed".into())])
                    .set(relayed);
                let mut text = String::new();
                let _ = encode(&mut text, &m.registry);
                let _ = reply.send(text);
                None
            }
            InsightQuery::RetryDead(id, reply) => {
                let key = self
                    .resolve(scheduler, &id)
                    .filter(|k| self.dead.contains_key(k));
                let Some(key) = key else {
                    let _ = reply.send(None);
                    return None;
                };
                let Some(letter) = self.dead.get(&key) else {
                    let _ = reply.send(None);
                    return None;
                };
                let Some(payload) = letter.payload.clone() else {
                    let _ = reply.send(None);
                    return None;
                };
                let job = StoredJob {
                    id: key.to_string(),
                    seq: letter.seq,
                    task_type: letter.task_type.clone(),
                    payload,
                    priority: letter.priority,
                    state: JobState::Queued,
                    attempt: 0,
                    max_attempts: letter.max_attempts,
                    timeout_ms: letter.timeout_ms,
                    not_before_ms: 0,
                    last_error: letter.info.last_error.clone(),
                    result: None,
                    worker: None,
                    delivered: false,
                };
                let in_memory = letter.in_memory;
                self.dead.remove(&key);
                self.dead_order.retain(|k| *k != key);
                self.finished.retain(|f| f.key != key);
                let _ = reply.send(Some(key.to_string()));
                Some(Action::Requeue(job, in_memory))
            }
            InsightQuery::DiscardDead(id, reply) => {
                let key = self
                    .resolve(scheduler, &id)
                    .filter(|k| self.dead.contains_key(k));
                let letter = key.as_ref().and_then(|key| {
                    self.dead_order.retain(|k| k != key);
                    self.dead.remove(key)
                });
                let _ = reply.send(key.as_ref().map(|k| k.to_string()));
                Some(Action::Discard(key?.to_string(), letter?.in_memory))
            }
        }
    }

    /// The job `id` stands for, among the jobs in memory and those recently finished.
    pub(super) fn job(&self, scheduler: &Scheduler, id: &str) -> Option<JobInfo> {
        self.resolve(scheduler, id)
            .and_then(|key| self.job_info(scheduler, &key))
    }

    /// A queued job that is kept only in the store (spilled), stored at `stored_ms`.
    pub(super) fn stored_info(job: &StoredJob, stored_ms: i64) -> JobInfo {
        JobInfo {
            id: label_of(&job.id).to_string(),
            key: job.id.clone(),
            status: JobStatus::Queued,
            attempts: job.attempt,
            max_attempts: job.max_attempts,
            runs: job.attempt,
            losses: 0,
            worker: None,
            last_error: job.last_error.clone(),
            task_type: job.task_type.clone(),
            priority: job.priority,
            pushed_ms: Some(stored_ms),
            not_before_ms: Some(job.not_before_ms).filter(|t| *t > 0),
            started_ms: None,
            finished_ms: None,
            queue_wait_ms: None,
            run_ms: None,
        }
    }

    fn job_info(&self, scheduler: &Scheduler, key: &Arc<str>) -> Option<JobInfo> {
        if let Some(view) = scheduler.inspect(key) {
            return Some(self.live_info(key, &view));
        }
        if let Some(d) = self.dead.get(key) {
            return Some(d.info.clone());
        }
        self.finished(key).map(Finished::info)
    }

    fn live_info(&self, key: &str, view: &JobView) -> JobInfo {
        let live = self.live.get(key);
        let status = match view.state {
            "running" => JobStatus::Running,
            "delayed" => JobStatus::Delayed,
            _ => JobStatus::Queued,
        };
        JobInfo {
            id: label_of(key).to_string(),
            key: key.to_string(),
            status,
            attempts: view.attempt,
            max_attempts: view.max_attempts,
            runs: view.runs,
            losses: view.losses,
            worker: view.worker.as_deref().cloned(),
            last_error: live.and_then(|l| l.last_error.clone()),
            task_type: view.task_type.clone(),
            priority: view.priority,
            pushed_ms: live.map(|l| l.pushed_ms),
            not_before_ms: Some(view.not_before_ms).filter(|t| *t > 0),
            started_ms: live.and_then(|l| l.started_ms),
            finished_ms: None,
            queue_wait_ms: live.and_then(|l| l.queue_wait_ms),
            run_ms: None,
        }
    }

    fn overview(&self, stats: Stats, seconds: u32) -> Overview {
        let now_s = crate::job::now_ms().div_euclid(1000);
        let from = now_s - i64::from(seconds.clamp(1, TIMELINE_SECONDS as u32));
        let timeline: Vec<Second> = self
            .timeline
            .iter()
            .filter(|b| b.second > from)
            .map(|b| Second {
                t: b.second,
                done: b.done,
                failed: b.failed,
                run_ms_avg: (b.runs > 0).then(|| b.run_ms_sum as f64 / b.runs as f64),
            })
            .collect();
        // The rate over the last 10 whole seconds (fewer when the master is younger).
        let window: Vec<&Bucket> = self
            .timeline
            .iter()
            .filter(|b| b.second >= now_s - 10 && b.second < now_s)
            .collect();
        let finished: u64 = window.iter().map(|b| b.done + b.failed).sum();
        let span = window
            .first()
            .map_or(10, |first| (now_s - first.second).clamp(1, 10));
        let rate = finished as f64 / span as f64;
        let remaining = stats.queued + stats.delayed + stats.running;
        let eta_ms = if remaining == 0 {
            Some(0)
        } else if rate > 0.0 {
            Some((remaining as f64 / rate * 1000.0) as u64)
        } else {
            None
        };
        Overview {
            stats,
            dead_letters: self.dead.len() as u64,
            rate,
            eta_ms,
            timeline,
        }
    }
}

/// A finished job as the insight keeps it; [`Finished::info`] makes the [`JobInfo`] a query
/// returns.
struct Finished {
    key: Arc<str>,
    status: JobStatus,
    runs: u32,
    max_attempts: u32,
    worker: Option<Arc<WorkerInfo>>,
    last_error: Option<String>,
    task_type: Option<String>,
    priority: i32,
    pushed_ms: Option<i64>,
    started_ms: Option<i64>,
    finished_ms: i64,
    queue_wait_ms: Option<u64>,
}

impl Finished {
    fn new(
        key: Arc<str>,
        status: JobStatus,
        runs: u32,
        worker: Option<Arc<WorkerInfo>>,
        error: Option<String>,
        live: Option<Live>,
        now: i64,
    ) -> Finished {
        let mut f = Finished {
            key,
            status,
            runs,
            max_attempts: 0,
            worker,
            last_error: error,
            task_type: None,
            priority: 0,
            pushed_ms: None,
            started_ms: None,
            finished_ms: now,
            queue_wait_ms: None,
        };
        if let Some(l) = live {
            f.max_attempts = l.max_attempts;
            f.last_error = f.last_error.or(l.last_error);
            f.task_type = l.task_type;
            f.priority = l.priority;
            f.pushed_ms = Some(l.pushed_ms);
            f.started_ms = l.started_ms;
            f.queue_wait_ms = l.queue_wait_ms;
        }
        f
    }

    fn info(&self) -> JobInfo {
        JobInfo {
            id: label_of(&self.key).to_string(),
            key: self.key.to_string(),
            status: self.status,
            attempts: self.runs,
            max_attempts: self.max_attempts,
            runs: self.runs,
            losses: 0,
            worker: self.worker.as_deref().cloned(),
            last_error: self.last_error.clone(),
            task_type: self.task_type.clone(),
            priority: self.priority,
            pushed_ms: self.pushed_ms,
            not_before_ms: None,
            started_ms: self.started_ms,
            finished_ms: Some(self.finished_ms),
            queue_wait_ms: self.queue_wait_ms,
            run_ms: self
                .started_ms
                .map(|s| (self.finished_ms - s).max(0) as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler() -> Scheduler {
        Scheduler::new(crate::scheduler::test_config())
    }

    fn worker(name: &str) -> Arc<WorkerInfo> {
        Arc::new(WorkerInfo {
            id: format!("peer-{name}"),
            name: name.to_string(),
        })
    }

    fn done(insight: &mut Insight, key: &str, worker: &Arc<WorkerInfo>, now: i64) {
        insight.transition(
            &Transition::Done {
                id: Arc::from(key),
                attempt: 1,
                worker: worker.clone(),
                sealed: Vec::new(),
                json: "null".into(),
                in_memory: true,
            },
            now,
        );
    }

    #[test]
    fn finished_jobs_are_found_newest_first_and_only_the_last_ones_are_kept() {
        let s = scheduler();
        let mut insight = Insight::new();
        let w = worker("w1");
        let job = crate::scheduler::new_stored_job(
            "a".into(),
            1,
            Some("t".into()),
            Bytes::new(),
            3,
            2,
            None,
            0,
        );
        insight.enqueued(&job, 1_000);
        insight.leased("a", &Bytes::new(), 1_500);
        done(&mut insight, "a", &w, 2_000);
        let info = insight.job(&s, "a").expect("a finished job is found");
        assert_eq!(info.status, JobStatus::Done);
        assert_eq!(info.worker.as_ref().map(|w| w.name.as_str()), Some("w1"));
        assert_eq!(info.task_type.as_deref(), Some("t"));
        assert_eq!((info.priority, info.max_attempts), (3, 2));
        assert_eq!(info.pushed_ms, Some(1_000));
        assert_eq!(info.queue_wait_ms, Some(500));
        assert_eq!(info.run_ms, Some(500));
        assert_eq!(info.finished_ms, Some(2_000));

        // An automatic id is found by its label; the newest record of a key wins.
        let auto = crate::job::automatic_key(7);
        done(&mut insight, &auto, &w, 2_100);
        assert_eq!(
            insight.job(&s, "job-7").map(|i| i.key),
            Some(auto.clone()),
            "an automatic id by its label"
        );
        done(&mut insight, "a", &worker("w2"), 2_200);
        let again = insight.job(&s, "a").expect("found");
        assert_eq!(again.worker.map(|w| w.name), Some("w2".into()));

        // Only the last FINISHED_KEPT stay.
        for n in 0..FINISHED_KEPT {
            done(&mut insight, &format!("k{n}"), &w, 3_000);
        }
        assert_eq!(insight.finished.len(), FINISHED_KEPT);
        assert!(insight.job(&s, "a").is_none(), "the oldest were dropped");
        assert!(insight.job(&s, "k0").is_some());
        assert!(
            insight
                .job(&s, &format!("k{}", FINISHED_KEPT - 1))
                .is_some()
        );
    }

    #[test]
    fn results_share_the_sessions_worker_record() {
        let mut insight = Insight::new();
        let w = worker("w1");
        for n in 0..3 {
            done(&mut insight, &format!("j{n}"), &w, 1_000);
        }
        assert!(
            insight
                .finished
                .iter()
                .all(|f| f.worker.as_ref().is_some_and(|x| Arc::ptr_eq(x, &w)))
        );
    }
}
