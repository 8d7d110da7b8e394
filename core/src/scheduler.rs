//! The scheduler: which job runs next, who holds it, and what happens when a run ends.
//!
//! Pure state, no I/O: the master engine feeds it events (pushes, credits, results, the clock)
//! and persists the [`Transition`]s it returns. Jobs are ordered by priority (higher first), then
//! push order. A lease carries the attempt number, which fences results: only the session that
//! holds the lease for that attempt can finish the job.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::job::WorkerInfo;
use crate::store::{JobState, StoredJob};

/// Identifies one worker connection.
pub(crate) type SessionId = u64;

/// Timing rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SchedulerConfig {
    /// How long a lease lasts without a heartbeat.
    pub(crate) lease_ttl_ms: i64,
    /// First retry delay; doubles per attempt.
    pub(crate) backoff_base_ms: i64,
    /// Longest retry delay.
    pub(crate) backoff_cap_ms: i64,
}

#[derive(Debug)]
struct Lease {
    session: SessionId,
    worker: Arc<WorkerInfo>,
    expires_ms: i64,
    /// A job with a timeout cannot be renewed past this.
    deadline_ms: Option<i64>,
}

#[derive(Debug)]
enum Status {
    Ready,
    Delayed,
    Leased(Lease),
    /// Between states while a transition is decided; counted nowhere.
    Detached,
}

#[derive(Debug)]
struct Entry {
    seq: i64,
    task_type: Option<String>,
    payload: Bytes,
    priority: i32,
    attempt: u32,
    max_attempts: u32,
    timeout_ms: Option<u64>,
    not_before_ms: i64,
    in_memory: bool,
    status: Status,
}

/// A job handed out under a lease.
#[derive(Debug, Clone)]
pub(crate) struct Leased {
    pub(crate) id: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) task_type: Option<String>,
    pub(crate) payload: Bytes,
    pub(crate) timeout_ms: Option<u64>,
}

/// How a run ended, as the worker reported it.
#[derive(Debug)]
pub(crate) enum RunOutcome {
    /// Finished: the sealed result (to store) and its JSON (to deliver).
    Ok { sealed: Vec<u8>, json: String },
    /// Failed with this message.
    Err(String),
}

/// A change the engine must persist (and, for terminal ones, deliver).
#[derive(Debug)]
pub(crate) enum Transition {
    Done {
        id: Arc<str>,
        attempt: u32,
        worker: WorkerInfo,
        sealed: Vec<u8>,
        json: String,
        in_memory: bool,
    },
    Retry {
        id: Arc<str>,
        attempt: u32,
        not_before_ms: i64,
        error: String,
        in_memory: bool,
    },
    Dead {
        id: Arc<str>,
        attempt: u32,
        error: String,
        worker: Option<WorkerInfo>,
        in_memory: bool,
    },
}

/// Why a result was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// No such job in flight (already finished, or never existed).
    Unknown,
    /// The job is leased to another session or for another attempt.
    NotLeaseHolder,
}

/// Counts for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) ready: usize,
    pub(crate) delayed: usize,
    pub(crate) leased: usize,
}

/// The scheduler's state.
#[derive(Debug)]
pub(crate) struct Scheduler {
    config: SchedulerConfig,
    jobs: HashMap<Arc<str>, Entry>,
    ready: BinaryHeap<(i32, Reverse<i64>, Arc<str>)>,
    delayed: BinaryHeap<Reverse<(i64, i64, Arc<str>)>>,
    expiries: BinaryHeap<Reverse<(i64, Arc<str>, u32)>>,
    by_session: HashMap<SessionId, HashSet<Arc<str>>>,
    counts: Counts,
}

impl Scheduler {
    pub(crate) fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            jobs: HashMap::new(),
            ready: BinaryHeap::new(),
            delayed: BinaryHeap::new(),
            expiries: BinaryHeap::new(),
            by_session: HashMap::new(),
            counts: Counts::default(),
        }
    }

    /// Adds a job that is not terminal: a new push, or one loaded after a restart (a job that was
    /// leased when the master stopped is queued again; its attempt count stays).
    pub(crate) fn enqueue(&mut self, job: StoredJob, in_memory: bool, now_ms: i64) {
        if job.state.is_terminal() {
            return;
        }
        let id: Arc<str> = Arc::from(job.id);
        if self.jobs.contains_key(&id) {
            return;
        }
        let entry = Entry {
            seq: job.seq,
            task_type: job.task_type,
            payload: Bytes::from(job.payload),
            priority: job.priority,
            attempt: job.attempt,
            max_attempts: job.max_attempts.max(1),
            timeout_ms: job.timeout_ms,
            not_before_ms: job.not_before_ms,
            in_memory,
            status: Status::Ready,
        };
        self.jobs.insert(id.clone(), entry);
        self.make_ready_or_delayed(id, now_ms);
    }

    fn make_ready_or_delayed(&mut self, id: Arc<str>, now_ms: i64) {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return;
        };
        if entry.not_before_ms > now_ms {
            entry.status = Status::Delayed;
            self.counts.delayed += 1;
            self.delayed
                .push(Reverse((entry.not_before_ms, entry.seq, id)));
        } else {
            entry.status = Status::Ready;
            self.counts.ready += 1;
            self.ready.push((entry.priority, Reverse(entry.seq), id));
        }
    }

    /// Moves delayed jobs whose time has come to the ready queue.
    pub(crate) fn promote_delayed(&mut self, now_ms: i64) {
        while let Some(Reverse((at, _, _))) = self.delayed.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((_, _, id))) = self.delayed.pop() else {
                break;
            };
            if let Some(entry) = self.jobs.get_mut(&id)
                && matches!(entry.status, Status::Delayed)
            {
                self.counts.delayed -= 1;
                entry.status = Status::Ready;
                self.counts.ready += 1;
                self.ready.push((entry.priority, Reverse(entry.seq), id));
            }
        }
    }

    /// Leases the best ready job to `session`, if there is one.
    pub(crate) fn lease(
        &mut self,
        session: SessionId,
        worker: &Arc<WorkerInfo>,
        now_ms: i64,
    ) -> Option<Leased> {
        while let Some((_, _, id)) = self.ready.pop() {
            let Some(entry) = self.jobs.get_mut(&id) else {
                continue;
            };
            if !matches!(entry.status, Status::Ready) {
                continue;
            }
            self.counts.ready -= 1;
            self.counts.leased += 1;
            entry.attempt += 1;
            let expires_ms = now_ms + self.config.lease_ttl_ms;
            let deadline_ms = entry
                .timeout_ms
                .map(|t| now_ms + t as i64 + self.config.lease_ttl_ms);
            let expires_ms = deadline_ms.map_or(expires_ms, |d| d.min(expires_ms));
            entry.status = Status::Leased(Lease {
                session,
                worker: worker.clone(),
                expires_ms,
                deadline_ms,
            });
            self.expiries
                .push(Reverse((expires_ms, id.clone(), entry.attempt)));
            self.by_session
                .entry(session)
                .or_default()
                .insert(id.clone());
            return Some(Leased {
                id,
                attempt: entry.attempt,
                task_type: entry.task_type.clone(),
                payload: entry.payload.clone(),
                timeout_ms: entry.timeout_ms,
            });
        }
        None
    }

    /// A heartbeat from `session`: every lease it holds lasts another TTL (never past a job's
    /// timeout).
    pub(crate) fn renew(&mut self, session: SessionId, now_ms: i64) {
        let Some(ids) = self.by_session.get(&session) else {
            return;
        };
        let expires_ms = now_ms + self.config.lease_ttl_ms;
        for id in ids {
            if let Some(Entry {
                status: Status::Leased(lease),
                ..
            }) = self.jobs.get_mut(id)
            {
                lease.expires_ms = lease.deadline_ms.map_or(expires_ms, |d| d.min(expires_ms));
            }
        }
    }

    /// A result from `session` for `id`'s attempt `attempt`.
    pub(crate) fn complete(
        &mut self,
        session: SessionId,
        id: &str,
        attempt: u32,
        outcome: RunOutcome,
        now_ms: i64,
    ) -> Result<Transition, Rejection> {
        let Some((id, entry)) = self.jobs.get_key_value(id).map(|(k, v)| (k.clone(), v)) else {
            return Err(Rejection::Unknown);
        };
        match &entry.status {
            Status::Leased(lease) if lease.session == session && entry.attempt == attempt => {}
            _ => return Err(Rejection::NotLeaseHolder),
        }
        let worker = match self.release_lease(&id) {
            Some(worker) => worker,
            None => return Err(Rejection::NotLeaseHolder),
        };
        Ok(match outcome {
            RunOutcome::Ok { sealed, json } => {
                let entry = self.remove(&id);
                Transition::Done {
                    id,
                    attempt,
                    worker: (*worker).clone(),
                    sealed,
                    json,
                    in_memory: entry.is_some_and(|e| e.in_memory),
                }
            }
            RunOutcome::Err(error) => self.fail(id, error, Some(&worker), now_ms, true),
        })
    }

    /// A session ended: the jobs it held go back to the queue at once (or to the dead letters
    /// when that was their last attempt).
    pub(crate) fn release_session(&mut self, session: SessionId, now_ms: i64) -> Vec<Transition> {
        let Some(ids) = self.by_session.remove(&session) else {
            return Vec::new();
        };
        let mut transitions = Vec::new();
        for id in ids {
            let worker = match self.jobs.get(&id) {
                Some(Entry {
                    status: Status::Leased(lease),
                    ..
                }) if lease.session == session => lease.worker.clone(),
                _ => continue,
            };
            self.clear_lease_status(&id);
            let error = format!(
                "worker {} ({}) was lost while running the job",
                worker.name, worker.id
            );
            transitions.push(self.fail(id, error, Some(&worker), now_ms, false));
        }
        transitions
    }

    /// Leases whose time ran out (worker gone quiet): requeued or dead-lettered.
    pub(crate) fn expire(&mut self, now_ms: i64) -> Vec<Transition> {
        let mut transitions = Vec::new();
        while let Some(Reverse((at, _, _))) = self.expiries.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((_, id, attempt))) = self.expiries.pop() else {
                break;
            };
            let current = match self.jobs.get(&id) {
                Some(Entry {
                    status: Status::Leased(lease),
                    attempt: a,
                    ..
                }) if *a == attempt => lease.expires_ms,
                _ => continue,
            };
            if current > now_ms {
                // Renewed since: look again at the new expiry.
                self.expiries.push(Reverse((current, id, attempt)));
                continue;
            }
            let Some(worker) = self.release_lease(&id) else {
                continue;
            };
            let error = format!(
                "the lease of worker {} ({}) expired: no heartbeat or over the job's timeout",
                worker.name, worker.id
            );
            transitions.push(self.fail(id, error, Some(&worker), now_ms, false));
        }
        transitions
    }

    /// The next time something is due (a delayed job or a lease expiry), if any.
    pub(crate) fn next_deadline(&self) -> Option<i64> {
        let delayed = self.delayed.peek().map(|Reverse((at, _, _))| *at);
        let expiry = self.expiries.peek().map(|Reverse((at, _, _))| *at);
        match (delayed, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    /// No job is waiting or running.
    pub(crate) fn is_idle(&self) -> bool {
        self.jobs.is_empty()
    }

    /// An attempt failed: retry (after an exponential backoff when the task itself failed; at
    /// once when its worker was lost), or dead-letter after the last attempt.
    fn fail(
        &mut self,
        id: Arc<str>,
        error: String,
        worker: Option<&Arc<WorkerInfo>>,
        now_ms: i64,
        backoff: bool,
    ) -> Transition {
        let (attempt, max_attempts, in_memory) = match self.jobs.get(&id) {
            Some(e) => (e.attempt, e.max_attempts, e.in_memory),
            None => (0, 0, false),
        };
        if attempt >= max_attempts {
            self.remove(&id);
            return Transition::Dead {
                id,
                attempt,
                error,
                worker: worker.map(|w| (**w).clone()),
                in_memory,
            };
        }
        let exponent = attempt.saturating_sub(1).min(20);
        let delay = if backoff {
            (self.config.backoff_base_ms.saturating_mul(1 << exponent))
                .min(self.config.backoff_cap_ms)
        } else {
            0
        };
        let not_before_ms = now_ms + delay;
        if let Some(entry) = self.jobs.get_mut(&id) {
            entry.not_before_ms = not_before_ms;
        }
        self.make_ready_or_delayed(id.clone(), now_ms);
        Transition::Retry {
            id,
            attempt,
            not_before_ms,
            error,
            in_memory,
        }
    }

    /// Ends a lease: the job is neither ready nor leased until the caller decides.
    fn release_lease(&mut self, id: &Arc<str>) -> Option<Arc<WorkerInfo>> {
        let entry = self.jobs.get_mut(id)?;
        if !matches!(entry.status, Status::Leased(_)) {
            return None;
        }
        let Status::Leased(lease) = std::mem::replace(&mut entry.status, Status::Detached) else {
            return None;
        };
        self.counts.leased -= 1;
        if let Some(ids) = self.by_session.get_mut(&lease.session) {
            ids.remove(id);
        }
        Some(lease.worker)
    }

    /// Like `release_lease` for a session already removed from `by_session`.
    fn clear_lease_status(&mut self, id: &Arc<str>) {
        if let Some(entry) = self.jobs.get_mut(id)
            && matches!(entry.status, Status::Leased(_))
        {
            entry.status = Status::Detached;
            self.counts.leased -= 1;
        }
    }

    fn remove(&mut self, id: &Arc<str>) -> Option<Entry> {
        let entry = self.jobs.remove(id)?;
        match entry.status {
            Status::Ready => self.counts.ready -= 1,
            Status::Delayed => self.counts.delayed -= 1,
            Status::Leased(_) => self.counts.leased -= 1,
            Status::Detached => {}
        }
        Some(entry)
    }
}

/// Builds the stored form of a newly pushed job.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_stored_job(
    id: String,
    seq: i64,
    task_type: Option<String>,
    payload: Vec<u8>,
    priority: i32,
    max_attempts: u32,
    timeout_ms: Option<u64>,
    not_before_ms: i64,
) -> StoredJob {
    StoredJob {
        id,
        seq,
        task_type,
        payload,
        priority,
        state: JobState::Queued,
        attempt: 0,
        max_attempts,
        timeout_ms,
        not_before_ms,
        last_error: None,
        result: None,
        worker: None,
        delivered: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SchedulerConfig {
        SchedulerConfig {
            lease_ttl_ms: 1_000,
            backoff_base_ms: 100,
            backoff_cap_ms: 10_000,
        }
    }

    fn job(id: &str, seq: i64, priority: i32, max_attempts: u32) -> StoredJob {
        new_stored_job(
            id.to_string(),
            seq,
            None,
            b"{}".to_vec(),
            priority,
            max_attempts,
            None,
            0,
        )
    }

    fn worker(name: &str) -> Arc<WorkerInfo> {
        Arc::new(WorkerInfo {
            id: format!("peer-{name}"),
            name: name.to_string(),
        })
    }

    fn ok() -> RunOutcome {
        RunOutcome::Ok {
            sealed: vec![1],
            json: "1".into(),
        }
    }

    #[test]
    fn higher_priority_first_then_push_order() {
        let mut s = Scheduler::new(config());
        s.enqueue(job("low-1", 1, 0, 1), false, 0);
        s.enqueue(job("high-1", 2, 5, 1), false, 0);
        s.enqueue(job("low-2", 3, 0, 1), false, 0);
        s.enqueue(job("high-2", 4, 5, 1), false, 0);
        let w = worker("a");
        let order: Vec<String> = std::iter::from_fn(|| s.lease(1, &w, 0))
            .map(|l| l.id.to_string())
            .collect();
        assert_eq!(order, ["high-1", "high-2", "low-1", "low-2"]);
    }

    #[test]
    fn delayed_jobs_wait_for_their_time() {
        let mut s = Scheduler::new(config());
        let mut j = job("later", 1, 0, 1);
        j.not_before_ms = 500;
        s.enqueue(j, false, 0);
        let w = worker("a");
        assert!(s.lease(1, &w, 0).is_none());
        assert_eq!(s.next_deadline(), Some(500));
        s.promote_delayed(499);
        assert!(s.lease(1, &w, 499).is_none());
        s.promote_delayed(500);
        assert_eq!(
            s.lease(1, &w, 500).map(|l| l.id.to_string()).as_deref(),
            Some("later")
        );
    }

    #[test]
    fn only_the_lease_holder_of_that_attempt_finishes_a_job() {
        let mut s = Scheduler::new(config());
        s.enqueue(job("j", 1, 0, 3), false, 0);
        let (a, b) = (worker("a"), worker("b"));
        let l = s.lease(1, &a, 0).expect("leased");
        assert_eq!(
            s.complete(2, "j", l.attempt, ok(), 0).err(),
            Some(Rejection::NotLeaseHolder)
        );
        assert_eq!(
            s.complete(1, "j", l.attempt + 1, ok(), 0).err(),
            Some(Rejection::NotLeaseHolder)
        );
        // The lease expires; worker b takes attempt 2; a late result from a is refused.
        assert_eq!(s.expire(1_000).len(), 1);
        s.promote_delayed(10_000);
        let l2 = s.lease(2, &b, 10_000).expect("leased again");
        assert_eq!(l2.attempt, 2);
        assert_eq!(
            s.complete(1, "j", 1, ok(), 10_000).err(),
            Some(Rejection::NotLeaseHolder)
        );
        assert!(matches!(
            s.complete(2, "j", 2, ok(), 10_000),
            Ok(Transition::Done { attempt: 2, .. })
        ));
        assert_eq!(
            s.complete(2, "j", 2, ok(), 10_000).err(),
            Some(Rejection::Unknown)
        );
        assert!(s.is_idle());
    }

    #[test]
    fn heartbeats_keep_a_lease_alive() {
        let mut s = Scheduler::new(config());
        s.enqueue(job("j", 1, 0, 1), false, 0);
        let w = worker("a");
        s.lease(1, &w, 0).expect("leased");
        s.renew(1, 900);
        assert!(s.expire(1_000).is_empty());
        assert_eq!(s.counts().leased, 1);
        let t = s.expire(1_900);
        assert!(
            matches!(t.as_slice(), [Transition::Dead { attempt: 1, .. }]),
            "{t:?}"
        );
    }

    #[test]
    fn failures_back_off_exponentially_then_dead_letter() {
        let mut s = Scheduler::new(config());
        s.enqueue(job("j", 1, 0, 3), false, 0);
        let w = worker("a");
        let mut now = 0;
        let mut delays = Vec::new();
        for attempt in 1..=3 {
            s.promote_delayed(now);
            let l = s.lease(1, &w, now).expect("leased");
            assert_eq!(l.attempt, attempt);
            match s.complete(
                1,
                "j",
                attempt,
                RunOutcome::Err(format!("boom {attempt}")),
                now,
            ) {
                Ok(Transition::Retry { not_before_ms, .. }) => {
                    delays.push(not_before_ms - now);
                    assert!(s.lease(1, &w, now).is_none(), "not before its backoff");
                    now = not_before_ms;
                }
                Ok(Transition::Dead {
                    error, attempt: 3, ..
                }) => assert_eq!(error, "boom 3"),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(delays, [100, 200]);
        assert!(s.is_idle());
    }

    #[test]
    fn a_lost_session_puts_its_jobs_back_at_once() {
        let mut s = Scheduler::new(config());
        for i in 0..3 {
            s.enqueue(job(&format!("j{i}"), i, 0, 2), false, 0);
        }
        let (a, b) = (worker("a"), worker("b"));
        while s.lease(1, &a, 0).is_some() {}
        assert_eq!(s.counts().leased, 3);
        let t = s.release_session(1, 5);
        assert_eq!(t.len(), 3);
        assert!(t.iter().all(|t| matches!(t, Transition::Retry { .. })));
        let ids: HashSet<String> = std::iter::from_fn(|| s.lease(2, &b, 5))
            .map(|l| l.id.to_string())
            .collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn a_job_with_a_timeout_cannot_be_renewed_past_it() {
        let mut s = Scheduler::new(config());
        let mut j = job("slow", 1, 0, 1);
        j.timeout_ms = Some(200);
        s.enqueue(j, false, 0);
        let w = worker("a");
        s.lease(1, &w, 0).expect("leased");
        for t in (100..=1_200).step_by(100) {
            s.renew(1, t);
            if t < 1_200 {
                assert!(s.expire(t).is_empty(), "expired early at {t}");
            }
        }
        assert_eq!(s.expire(1_200).len(), 1, "200 ms timeout + 1000 ms ttl");
    }
}
