//! The scheduler: which job runs next, who holds it, and what happens when a run ends.
//!
//! Pure state, no I/O: the master engine feeds it events (pushes, credits, results, the clock)
//! and persists the [`Transition`]s it returns. Jobs are ordered by priority (higher first), then
//! push order.
//!
//! Leases: each lease carries a fence (the run number, sent to the worker as its `attempt`), so
//! only the session holding that very lease can finish the job. A lease ends early when its
//! session goes quiet: sessions, not leases, carry the time of their last sign of life (a
//! heartbeat or a lease handed to it), so a heartbeat costs O(1) however many leases the
//! session holds; a session is checked once per lease TTL. A lease also has a hard deadline
//! that heartbeats never move: the job's timeout plus one TTL, or the maximum lease time.
//!
//! Attempts and losses are counted apart: a run whose worker reports a failure uses an attempt
//! (retried with backoff, dead-lettered after the last); a run that is lost (its session ended,
//! went quiet or held it past its deadline) goes back to the queue at once without using one,
//! and only a job lost `max_losses` times is dead-lettered (a job that kills every worker must
//! not circulate for ever).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use bytes::Bytes;

use crate::job::WorkerInfo;
use crate::store::{JobState, StoredJob};
use crate::{FastMap, FastSet};

mod spill;

use spill::SpillSet;

/// Identifies one worker connection.
pub(crate) type SessionId = u64;

/// Timing rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SchedulerConfig {
    /// How long a lease lasts without a sign of life from its session.
    pub(crate) lease_ttl_ms: i64,
    /// First retry delay; doubles per attempt.
    pub(crate) backoff_base_ms: i64,
    /// Longest retry delay.
    pub(crate) backoff_cap_ms: i64,
    /// Longest a job without a timeout may be held, heartbeats or not.
    pub(crate) max_lease_ms: i64,
    /// Losses after which a job is dead-lettered.
    pub(crate) max_losses: u32,
    /// The most ready durable jobs kept in memory (see [`Scheduler::should_spill`]); the
    /// rest wait in the store and are paged in as the resident ones run low.
    pub(crate) resident_window: usize,
}

#[derive(Debug)]
struct Lease {
    session: SessionId,
    worker: Arc<WorkerInfo>,
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
    /// Attempts used: failed runs (losses do not count).
    attempt: u32,
    max_attempts: u32,
    /// Runs handed out since this master started (plus the attempts used before): the fence
    /// of the current lease, and the `attempt` a worker sees.
    fence: u32,
    /// Runs lost since this master started.
    losses: u32,
    timeout_ms: Option<u64>,
    not_before_ms: i64,
    in_memory: bool,
    status: Status,
}

/// The leases one session holds, and when it last showed it is alive.
#[derive(Debug)]
struct SessionLeases {
    ids: FastSet<Arc<str>>,
    alive_ms: i64,
    /// This session has an entry in `session_checks`.
    checking: bool,
}

/// A job handed out under a lease.
#[derive(Debug, Clone)]
pub(crate) struct Leased {
    pub(crate) id: Arc<str>,
    /// The lease's fence (the run number); a result must carry it.
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
        /// The run that produced it.
        attempt: u32,
        /// The session's own record of its worker (shared, not copied per result).
        worker: Arc<WorkerInfo>,
        sealed: Vec<u8>,
        json: String,
        in_memory: bool,
    },
    /// A run failed; the job waits for its next attempt.
    Retry {
        id: Arc<str>,
        /// Attempts used so far.
        attempt: u32,
        not_before_ms: i64,
        error: String,
        in_memory: bool,
    },
    /// A run was lost; the job is queued again without using an attempt. Nothing to persist:
    /// the stored attempt count is unchanged.
    Lost { id: Arc<str>, error: String },
    Dead {
        id: Arc<str>,
        /// Runs handed out.
        attempt: u32,
        error: String,
        worker: Option<Arc<WorkerInfo>>,
        in_memory: bool,
    },
}

impl Transition {
    /// The key of the job it moves.
    pub(crate) fn id(&self) -> &Arc<str> {
        match self {
            Transition::Done { id, .. }
            | Transition::Retry { id, .. }
            | Transition::Lost { id, .. }
            | Transition::Dead { id, .. } => id,
        }
    }
}

/// A job ended by [`Scheduler::cancel`].
#[derive(Debug)]
pub(crate) struct Cancelled {
    /// Its end (dead, with the cancel's error), to persist and deliver.
    pub(crate) transition: Transition,
    /// The session that held it and the lease's fence, when it was running.
    pub(crate) lease: Option<(SessionId, u32)>,
}

/// Why a result was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// No such job in flight (already finished, or never existed).
    Unknown,
    /// The job is leased to another session or under another fence.
    NotLeaseHolder,
}

/// Counts for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) ready: usize,
    pub(crate) delayed: usize,
    pub(crate) leased: usize,
}

/// Leases taken back by [`Scheduler::expire`]: the transitions, and each session that lost
/// any (once per session).
#[derive(Debug, Default)]
pub(crate) struct Expired {
    pub(crate) transitions: Vec<Transition>,
    pub(crate) sessions: Vec<SessionId>,
}

/// The scheduler's state.
#[derive(Debug)]
pub(crate) struct Scheduler {
    config: SchedulerConfig,
    jobs: FastMap<Arc<str>, Entry>,
    /// In-memory jobs first (meteor-cluster serves its in-memory queue before the persistent
    /// one), then higher priority, then push order.
    ready: BinaryHeap<(bool, i32, Reverse<i64>, Arc<str>)>,
    delayed: BinaryHeap<Reverse<(i64, i64, Arc<str>)>>,
    /// Hard deadlines of leases, by fence. Entries of finished leases are dropped lazily and
    /// compacted when they outnumber the live leases.
    deadlines: BinaryHeap<Reverse<(i64, Arc<str>, u32)>>,
    /// When to look at a session's sign of life next: one entry per session holding leases.
    session_checks: BinaryHeap<Reverse<(i64, SessionId)>>,
    by_session: FastMap<SessionId, SessionLeases>,
    /// `ready` counts these too.
    counts: Counts,
    /// Ready durable jobs kept only in the store (their priority and push number).
    spilled: SpillSet,
    /// Ready durable jobs in `jobs` (what `resident_window` bounds).
    resident_durable_ready: usize,
}

/// Spilled jobs to read from the store and hand to [`Scheduler::paged_in`]: their priority
/// and the ranges of their push numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) priority: i32,
    pub(crate) ranges: Vec<(i64, i64)>,
}

impl Scheduler {
    pub(crate) fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            jobs: FastMap::default(),
            ready: BinaryHeap::new(),
            delayed: BinaryHeap::new(),
            deadlines: BinaryHeap::new(),
            session_checks: BinaryHeap::new(),
            by_session: FastMap::default(),
            counts: Counts::default(),
            spilled: SpillSet::default(),
            resident_durable_ready: 0,
        }
    }

    /// Like [`enqueue`](Self::enqueue) for a durable job whose insert is committed (so the
    /// store can give it back): a ready job beyond the resident window is only noted (its
    /// priority and push number) and stays in the store until [`take_page`](Self::take_page)
    /// asks for it. Returns whether the job is kept in memory.
    #[cfg(test)]
    pub(crate) fn enqueue_durable(&mut self, job: StoredJob, now_ms: i64) -> bool {
        if self.should_spill(&job, now_ms) {
            self.spill(job.priority, job.seq);
            return false;
        }
        let fresh = !job.state.is_terminal() && !self.jobs.contains_key(job.id.as_str());
        self.enqueue(job, false, now_ms);
        fresh
    }

    /// Whether a durable job (its insert committed) should stay only in the store: it is ready
    /// and the resident window is full.
    pub(crate) fn should_spill(&self, job: &StoredJob, now_ms: i64) -> bool {
        !job.state.is_terminal()
            && job.not_before_ms <= now_ms
            && self.resident_durable_ready >= self.config.resident_window
            && !self.jobs.contains_key(job.id.as_str())
    }

    /// Notes a ready durable job that stays in the store (a restart notes the open jobs beyond
    /// the window this way, without reading their payloads).
    pub(crate) fn spill(&mut self, priority: i32, seq: i64) {
        if self.spilled.insert(priority, seq) {
            self.counts.ready += 1;
        }
    }

    /// Whether spilled jobs should be read back before the next lease: the resident ready
    /// durable jobs ran below half the window, or a spilled job runs before every resident one.
    pub(crate) fn page_due(&mut self) -> bool {
        let Some((priority, seq)) = self.spilled.best() else {
            return false;
        };
        if self.resident_durable_ready < self.config.resident_window.div_ceil(2) {
            return true;
        }
        // Drop heap entries of jobs that left the ready state (cancelled) to see the true best.
        while let Some((_, _, _, id)) = self.ready.peek() {
            if matches!(
                self.jobs.get(id),
                Some(Entry {
                    status: Status::Ready,
                    ..
                })
            ) {
                break;
            }
            self.ready.pop();
        }
        match self.ready.peek() {
            None => true,
            Some((in_memory, p, Reverse(s), _)) => {
                !*in_memory && (priority, Reverse(seq)) > (*p, Reverse(*s))
            }
        }
    }

    /// The next spilled jobs to read back: the best priority's first ones in push order, enough
    /// to fill the window (at least a few hundred). They count as neither ready nor spilled
    /// until [`paged_in`](Self::paged_in) (or [`page_failed`](Self::page_failed)).
    pub(crate) fn take_page(&mut self) -> Option<Page> {
        let room = self
            .config
            .resident_window
            .saturating_sub(self.resident_durable_ready)
            .max(256);
        let before = self.spilled.len();
        let (priority, ranges) = self.spilled.take_front(room)?;
        self.counts.ready -= before - self.spilled.len();
        Some(Page { priority, ranges })
    }

    /// The jobs of `page` as the store gave them back: queued in memory. Returns those kept
    /// (new to the scheduler) and how many of the page the store did not have.
    pub(crate) fn paged_in(
        &mut self,
        page: &Page,
        jobs: Vec<StoredJob>,
        now_ms: i64,
    ) -> (Vec<Arc<str>>, usize) {
        let wanted: usize = page.ranges.iter().map(|(s, e)| (e - s + 1) as usize).sum();
        let mut kept = Vec::with_capacity(jobs.len());
        let mut found = 0;
        for job in jobs {
            if job.state.is_terminal()
                || !page
                    .ranges
                    .iter()
                    .any(|(s, e)| (*s..=*e).contains(&job.seq))
            {
                continue;
            }
            found += 1;
            let id: Arc<str> = Arc::from(job.id.as_str());
            if self.jobs.contains_key(&id) {
                continue;
            }
            self.enqueue(job, false, now_ms);
            kept.push(id);
        }
        (kept, wanted.saturating_sub(found))
    }

    /// Reading `page` failed: its jobs are spilled again, to be read later.
    pub(crate) fn page_failed(&mut self, page: Page) {
        for (start, end) in page.ranges {
            for seq in start..=end {
                self.spill(page.priority, seq);
            }
        }
    }

    /// Whether `seq` under `priority` is a spilled job (one the store holds for this
    /// scheduler).
    pub(crate) fn is_spilled(&self, priority: i32, seq: i64) -> bool {
        self.spilled.contains(priority, seq)
    }

    /// Ends a spilled job (cancelled): it is no longer queued. Returns whether it was spilled.
    pub(crate) fn unspill(&mut self, priority: i32, seq: i64) -> bool {
        if self.spilled.remove(priority, seq) {
            self.counts.ready -= 1;
            true
        } else {
            false
        }
    }

    /// How many ready jobs are kept only in the store.
    pub(crate) fn spilled(&self) -> usize {
        self.spilled.len()
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
            payload: job.payload,
            priority: job.priority,
            attempt: job.attempt,
            max_attempts: job.max_attempts.max(1),
            fence: job.attempt,
            losses: 0,
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
            if !entry.in_memory {
                self.resident_durable_ready += 1;
            }
            self.ready
                .push((entry.in_memory, entry.priority, Reverse(entry.seq), id));
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
                if !entry.in_memory {
                    self.resident_durable_ready += 1;
                }
                self.ready
                    .push((entry.in_memory, entry.priority, Reverse(entry.seq), id));
            }
        }
    }

    /// Whether a job is ready to lease.
    pub(crate) fn has_ready(&self) -> bool {
        self.counts.ready > 0
    }

    /// How many leases `session` holds.
    pub(crate) fn held(&self, session: SessionId) -> usize {
        self.by_session.get(&session).map_or(0, |s| s.ids.len())
    }

    /// Leases the best ready job to `session`, if there is one.
    pub(crate) fn lease(
        &mut self,
        session: SessionId,
        worker: &Arc<WorkerInfo>,
        now_ms: i64,
    ) -> Option<Leased> {
        while let Some((_, _, _, id)) = self.ready.pop() {
            let Some(entry) = self.jobs.get_mut(&id) else {
                continue;
            };
            if !matches!(entry.status, Status::Ready) {
                continue;
            }
            self.counts.ready -= 1;
            if !entry.in_memory {
                self.resident_durable_ready -= 1;
            }
            self.counts.leased += 1;
            entry.fence = entry.fence.saturating_add(1);
            let hold_ms = entry.timeout_ms.map_or(self.config.max_lease_ms, |t| {
                (t.min(i64::MAX as u64 / 2) as i64).saturating_add(self.config.lease_ttl_ms)
            });
            self.deadlines.push(Reverse((
                now_ms.saturating_add(hold_ms),
                id.clone(),
                entry.fence,
            )));
            entry.status = Status::Leased(Lease {
                session,
                worker: worker.clone(),
            });
            let leased = Leased {
                id: id.clone(),
                attempt: entry.fence,
                task_type: entry.task_type.clone(),
                payload: entry.payload.clone(),
                timeout_ms: entry.timeout_ms,
            };
            let leases = self
                .by_session
                .entry(session)
                .or_insert_with(|| SessionLeases {
                    ids: FastSet::default(),
                    alive_ms: now_ms,
                    checking: false,
                });
            leases.ids.insert(id);
            // Being handed a lease starts its TTL: the session may have been idle (and silent)
            // for a long time before.
            leases.alive_ms = leases.alive_ms.max(now_ms);
            if !leases.checking {
                leases.checking = true;
                self.session_checks
                    .push(Reverse((now_ms + self.config.lease_ttl_ms, session)));
            }
            self.compact_deadlines();
            return Some(leased);
        }
        None
    }

    /// A heartbeat from `session`: its leases last another TTL (never past their deadlines).
    /// O(1): only the session's sign of life is recorded.
    pub(crate) fn renew(&mut self, session: SessionId, now_ms: i64) {
        if let Some(leases) = self.by_session.get_mut(&session) {
            leases.alive_ms = leases.alive_ms.max(now_ms);
        }
    }

    /// A result from `session` for `id`'s lease with fence `attempt`.
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
            Status::Leased(lease) if lease.session == session && entry.fence == attempt => {}
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
                    worker,
                    sealed,
                    json,
                    in_memory: entry.is_some_and(|e| e.in_memory),
                }
            }
            RunOutcome::Err(error) => self.fail(id, error, &worker, now_ms),
        })
    }

    /// `session` gives back `id`'s lease with fence `attempt` unrun (its task could not load):
    /// the job is queued again at once, using neither an attempt nor a loss.
    pub(crate) fn give_back(
        &mut self,
        session: SessionId,
        id: &str,
        attempt: u32,
        now_ms: i64,
    ) -> Option<Transition> {
        let (id, entry) = self.jobs.get_key_value(id).map(|(k, v)| (k.clone(), v))?;
        match &entry.status {
            Status::Leased(lease) if lease.session == session && entry.fence == attempt => {}
            _ => return None,
        }
        let worker = self.release_lease(&id)?;
        if let Some(entry) = self.jobs.get_mut(&id) {
            entry.not_before_ms = now_ms;
        }
        self.make_ready_or_delayed(id.clone(), now_ms);
        Some(Transition::Lost {
            id,
            error: format!(
                "worker {} ({}) gave the job back: its task could not load",
                worker.name, worker.id
            ),
        })
    }

    /// A session ended: the jobs it held go back to the queue at once, without using an
    /// attempt (or to the dead letters when they were lost too often).
    pub(crate) fn release_session(&mut self, session: SessionId, now_ms: i64) -> Vec<Transition> {
        let Some(leases) = self.by_session.remove(&session) else {
            return Vec::new();
        };
        let mut transitions = Vec::new();
        for id in leases.ids {
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
            transitions.push(self.lose(id, error, &worker, now_ms));
        }
        transitions
    }

    /// Leases whose time ran out: of sessions that went quiet (no heartbeat for a TTL), and
    /// those past their hard deadline. They are lost: queued again without using an attempt.
    pub(crate) fn expire(&mut self, now_ms: i64) -> Expired {
        let mut expired = Expired::default();
        while let Some(Reverse((at, _))) = self.session_checks.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((_, session))) = self.session_checks.pop() else {
                break;
            };
            let Some(leases) = self.by_session.get_mut(&session) else {
                continue;
            };
            if leases.ids.is_empty() {
                leases.checking = false;
                continue;
            }
            let due = leases.alive_ms + self.config.lease_ttl_ms;
            if due > now_ms {
                self.session_checks.push(Reverse((due, session)));
                continue;
            }
            leases.checking = false;
            let ids: Vec<Arc<str>> = leases.ids.drain().collect();
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
                    "the lease of worker {} ({}) expired: no heartbeat for {} ms",
                    worker.name, worker.id, self.config.lease_ttl_ms
                );
                expired
                    .transitions
                    .push(self.lose(id, error, &worker, now_ms));
            }
            if !expired.sessions.contains(&session) {
                expired.sessions.push(session);
            }
        }
        while let Some(Reverse((at, _, _))) = self.deadlines.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((_, id, fence))) = self.deadlines.pop() else {
                break;
            };
            let session = match self.jobs.get(&id) {
                Some(Entry {
                    status: Status::Leased(lease),
                    fence: f,
                    ..
                }) if *f == fence => lease.session,
                _ => continue,
            };
            let Some(worker) = self.release_lease(&id) else {
                continue;
            };
            let error = format!(
                "worker {} ({}) held the job past its maximum lease (its timeout plus {} ms, or \
                 {} ms without a timeout)",
                worker.name, worker.id, self.config.lease_ttl_ms, self.config.max_lease_ms
            );
            expired
                .transitions
                .push(self.lose(id, error, &worker, now_ms));
            if !expired.sessions.contains(&session) {
                expired.sessions.push(session);
            }
        }
        expired
    }

    /// The next time something is due (a delayed job, a session check or a lease deadline).
    pub(crate) fn next_deadline(&self) -> Option<i64> {
        let delayed = self.delayed.peek().map(|Reverse((at, _, _))| *at);
        let deadline = self.deadlines.peek().map(|Reverse((at, _, _))| *at);
        let check = self.session_checks.peek().map(|Reverse((at, _))| *at);
        [delayed, deadline, check].into_iter().flatten().min()
    }

    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    /// No job is waiting or running.
    pub(crate) fn is_idle(&self) -> bool {
        self.jobs.is_empty() && self.spilled.is_empty()
    }

    /// Cancels every job whose key is `id` or whose label (the id as pushed) is `id`, in any
    /// state but finished: each ends as dead with `error`. Returns each one's transition and,
    /// for a leased job, the session holding it and the lease's fence (the worker must be told).
    pub(crate) fn cancel(&mut self, id: &str, error: &str) -> Vec<Cancelled> {
        // A scan: cancels are rare, and a label may stand for several keys (a repeated id).
        let keys: Vec<Arc<str>> = self
            .jobs
            .keys()
            .filter(|key| &***key == id || crate::job::label_of(key) == id)
            .cloned()
            .collect();
        keys.iter()
            .filter_map(|key| self.cancel_key(key, error))
            .collect()
    }

    /// Ends the job under exactly `key`, queued or running, as [`cancel`](Self::cancel) does.
    pub(crate) fn cancel_key(&mut self, key: &str, error: &str) -> Option<Cancelled> {
        let (key, lease) = match self.jobs.get_key_value(key)? {
            (
                key,
                Entry {
                    status: Status::Leased(lease),
                    fence,
                    ..
                },
            ) => (key.clone(), Some((lease.session, *fence))),
            (key, _) => (key.clone(), None),
        };
        let worker = if lease.is_some() {
            self.release_lease(&key)
        } else {
            None
        };
        let entry = self.remove(&key)?;
        Some(Cancelled {
            transition: Transition::Dead {
                id: key,
                attempt: entry.fence,
                error: error.to_string(),
                worker,
                in_memory: entry.in_memory,
            },
            lease,
        })
    }

    /// Whether a job pushed now, not yet committed, may be handed to the engine before its
    /// commit: nothing is spilled (so it cannot pass an older spilled job) and the resident
    /// window is less than half full (so jobs that may not be spilled cannot swell it).
    pub(crate) fn takes_uncommitted(&self) -> bool {
        self.spilled.is_empty()
            && self.resident_durable_ready < self.config.resident_window.div_ceil(2)
    }

    /// A run failed: retry after an exponential backoff, or dead-letter after the last attempt.
    fn fail(
        &mut self,
        id: Arc<str>,
        error: String,
        worker: &Arc<WorkerInfo>,
        now_ms: i64,
    ) -> Transition {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return Transition::Lost { id, error };
        };
        entry.attempt = entry.attempt.saturating_add(1);
        let (attempt, fence, in_memory) = (entry.attempt, entry.fence, entry.in_memory);
        if attempt >= entry.max_attempts {
            self.remove(&id);
            return Transition::Dead {
                id,
                attempt: fence,
                error,
                worker: Some(worker.clone()),
                in_memory,
            };
        }
        let exponent = attempt.saturating_sub(1).min(20);
        let delay = (self.config.backoff_base_ms.saturating_mul(1 << exponent))
            .min(self.config.backoff_cap_ms);
        let not_before_ms = now_ms + delay;
        entry.not_before_ms = not_before_ms;
        self.make_ready_or_delayed(id.clone(), now_ms);
        Transition::Retry {
            id,
            attempt,
            not_before_ms,
            error,
            in_memory,
        }
    }

    /// A run was lost: queue the job again at once without using an attempt, or dead-letter it
    /// once it was lost `max_losses` times.
    fn lose(
        &mut self,
        id: Arc<str>,
        error: String,
        worker: &Arc<WorkerInfo>,
        now_ms: i64,
    ) -> Transition {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return Transition::Lost { id, error };
        };
        entry.losses = entry.losses.saturating_add(1);
        if entry.losses >= self.config.max_losses {
            let (fence, losses, in_memory) = (entry.fence, entry.losses, entry.in_memory);
            self.remove(&id);
            return Transition::Dead {
                id,
                attempt: fence,
                error: format!("the job was lost {losses} times, the most allowed; last: {error}"),
                worker: Some(worker.clone()),
                in_memory,
            };
        }
        entry.not_before_ms = now_ms;
        self.make_ready_or_delayed(id.clone(), now_ms);
        Transition::Lost { id, error }
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
        if let Some(leases) = self.by_session.get_mut(&lease.session) {
            leases.ids.remove(id);
        }
        Some(lease.worker)
    }

    /// Like `release_lease` for a lease already taken out of its session's set.
    fn clear_lease_status(&mut self, id: &Arc<str>) {
        if let Some(entry) = self.jobs.get_mut(id)
            && matches!(entry.status, Status::Leased(_))
        {
            entry.status = Status::Detached;
            self.counts.leased -= 1;
        }
    }

    /// Drops the deadlines of finished leases once they outnumber the live ones, so the heap
    /// stays proportional to the leases held (amortised O(1) per lease).
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.counts.leased + 1024 {
            return;
        }
        let jobs = &self.jobs;
        self.deadlines.retain(|Reverse((_, id, fence))| {
            matches!(jobs.get(id), Some(e) if e.fence == *fence && matches!(e.status, Status::Leased(_)))
        });
    }

    fn remove(&mut self, id: &Arc<str>) -> Option<Entry> {
        let entry = self.jobs.remove(id)?;
        match entry.status {
            Status::Ready => {
                self.counts.ready -= 1;
                if !entry.in_memory {
                    self.resident_durable_ready -= 1;
                }
            }
            Status::Delayed => self.counts.delayed -= 1,
            Status::Leased(_) => self.counts.leased -= 1,
            Status::Detached => {}
        }
        Some(entry)
    }

    /// A live job as the dashboard shows it (`None` once it finished or when unknown).
    pub(crate) fn inspect(&self, id: &str) -> Option<JobView> {
        let entry = self.jobs.get(id)?;
        let (state, worker) = match &entry.status {
            Status::Ready | Status::Detached => ("queued", None),
            Status::Delayed => ("delayed", None),
            Status::Leased(lease) => ("running", Some(lease.worker.clone())),
        };
        Some(JobView {
            state,
            attempt: entry.attempt,
            max_attempts: entry.max_attempts,
            runs: entry.fence,
            losses: entry.losses,
            worker,
            not_before_ms: entry.not_before_ms,
            task_type: entry.task_type.clone(),
            priority: entry.priority,
        })
    }
}

/// What [`Scheduler::inspect`] tells about a live job.
#[derive(Debug, Clone)]
pub(crate) struct JobView {
    /// `queued`, `delayed` or `running`.
    pub(crate) state: &'static str,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    /// Runs handed out (the current lease's fence).
    pub(crate) runs: u32,
    pub(crate) losses: u32,
    pub(crate) worker: Option<Arc<WorkerInfo>>,
    pub(crate) not_before_ms: i64,
    pub(crate) task_type: Option<String>,
    pub(crate) priority: i32,
}

/// Builds the stored form of a newly pushed job.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_stored_job(
    id: String,
    seq: i64,
    task_type: Option<String>,
    payload: Bytes,
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

/// The settings unit tests run a scheduler with: short leases and backoffs, no resident window.
#[cfg(test)]
pub(crate) fn test_config() -> SchedulerConfig {
    SchedulerConfig {
        lease_ttl_ms: 1_000,
        backoff_base_ms: 100,
        backoff_cap_ms: 10_000,
        max_lease_ms: 60_000,
        max_losses: 10,
        resident_window: usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn config() -> SchedulerConfig {
        test_config()
    }

    fn job(id: &str, seq: i64, priority: i32, max_attempts: u32) -> StoredJob {
        new_stored_job(
            id.to_string(),
            seq,
            None,
            Bytes::from_static(b"{}"),
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
    fn cancel_ends_queued_delayed_and_leased_jobs_and_names_the_lease_holder() {
        let mut s = Scheduler::new(config());
        s.enqueue(job("a", 1, 0, 3), false, 0);
        let mut delayed = job("b", 2, 0, 3);
        delayed.not_before_ms = 10_000;
        s.enqueue(delayed, true, 0);
        s.enqueue(job("c", 3, 0, 3), false, 0);
        let w = worker("w");
        let leased = s.lease(7, &w, 0).expect("a job");
        assert_eq!(&*leased.id, "a");
        let gone = s.cancel("a", "cancelled");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].lease, Some((7, leased.attempt)));
        assert!(
            matches!(&gone[0].transition, Transition::Dead { error, worker: Some(_), .. } if error == "cancelled")
        );
        assert_eq!(s.held(7), 0);
        let gone = s.cancel("b", "cancelled");
        assert_eq!(gone.len(), 1);
        assert!(gone[0].lease.is_none());
        assert!(matches!(
            &gone[0].transition,
            Transition::Dead {
                in_memory: true,
                ..
            }
        ));
        assert!(s.cancel("nope", "cancelled").is_empty());
        assert_eq!(
            s.counts(),
            Counts {
                ready: 1,
                delayed: 0,
                leased: 0
            }
        );
        // The late result of the cancelled lease is not accepted.
        assert_eq!(
            s.complete(7, "a", leased.attempt, ok(), 1).err(),
            Some(Rejection::Unknown)
        );
        // A label finds repeated and automatic keys too.
        s.enqueue(job("\u{1f}job-9", 4, 0, 3), false, 0);
        s.enqueue(job("c\u{1f}5", 5, 0, 3), false, 0);
        assert_eq!(s.cancel("c", "x").len(), 2);
        assert_eq!(s.cancel("job-9", "x").len(), 1);
        assert!(s.is_idle());
    }

    #[test]
    fn cancel_key_ends_exactly_that_key_and_names_its_lease() {
        let mut s = Scheduler::new(config());
        s.enqueue(job("\u{1f}job-1", 1, 0, 3), false, 0);
        s.enqueue(job("job-1", 2, 0, 3), false, 0);
        s.enqueue(job("\u{1f}job-3", 3, 0, 3), false, 0);
        let w = worker("w");
        let leased = s.lease(4, &w, 0).expect("a job");
        assert_eq!(&*leased.id, "\u{1f}job-1");
        let gone = s.cancel_key("\u{1f}job-1", "withdrawn").expect("leased");
        assert_eq!(gone.lease, Some((4, leased.attempt)));
        assert_eq!(s.held(4), 0);
        // The explicit id whose text is the automatic key's label is another job.
        assert!(s.cancel_key("\u{1f}job-1", "withdrawn").is_none());
        assert!(
            s.cancel_key("job-3", "withdrawn").is_none(),
            "a label is not a key"
        );
        let queued = s.cancel_key("\u{1f}job-3", "withdrawn").expect("queued");
        assert!(queued.lease.is_none());
        assert_eq!(s.counts().ready, 1);
        assert_eq!(
            s.complete(4, "\u{1f}job-1", leased.attempt, ok(), 1).err(),
            Some(Rejection::Unknown)
        );
        assert!(
            s.takes_uncommitted(),
            "one ready job, a window of {}",
            config().resident_window
        );
    }

    #[test]
    fn in_memory_jobs_are_served_before_persistent_ones_whatever_their_priority() {
        let mut s = Scheduler::new(config());
        s.enqueue(job("durable-high", 1, 9, 1), false, 0);
        s.enqueue(job("durable-low", 2, 0, 1), false, 0);
        s.enqueue(job("memory-low", 3, 0, 1), true, 0);
        s.enqueue(job("memory-high", 4, 5, 1), true, 0);
        let w = worker("w");
        let order: Vec<String> = std::iter::from_fn(|| s.lease(1, &w, 0))
            .map(|l| l.id.to_string())
            .collect();
        assert_eq!(
            order,
            ["memory-high", "memory-low", "durable-high", "durable-low"]
        );
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
        assert_eq!(s.expire(1_000).transitions.len(), 1);
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
        assert!(s.expire(1_000).transitions.is_empty());
        assert_eq!(s.counts().leased, 1);
        let expired = s.expire(1_900);
        assert!(
            matches!(expired.transitions.as_slice(), [Transition::Lost { .. }]),
            "a silent session loses its lease without using the job's only attempt: {expired:?}"
        );
        assert_eq!(expired.sessions, [1]);
        assert_eq!(s.lease(2, &w, 1_900).map(|l| l.attempt), Some(2));
    }

    #[test]
    fn one_heartbeat_renews_every_lease_of_its_session_and_silence_loses_them_together() {
        let mut s = Scheduler::new(config());
        for i in 0..10_000 {
            s.enqueue(job(&format!("j{i}"), i, 0, 1), false, 0);
        }
        let w = worker("a");
        while s.lease(1, &w, 0).is_some() {}
        assert_eq!(s.held(1), 10_000);
        let mut now = 0;
        for _ in 0..20 {
            now += 500;
            s.renew(1, now);
            assert!(s.expire(now).transitions.is_empty(), "expired at {now}");
        }
        assert_eq!(s.counts().leased, 10_000);
        let expired = s.expire(now + 1_000);
        assert_eq!(expired.transitions.len(), 10_000);
        assert_eq!(
            expired.sessions,
            [1],
            "one loss for the session, not one per lease"
        );
        assert_eq!(s.held(1), 0);
        assert_eq!(s.counts().ready, 10_000);
    }

    #[test]
    fn a_lease_handed_to_a_long_silent_session_gets_a_full_ttl() {
        let mut s = Scheduler::new(config());
        s.enqueue(job("first", 1, 0, 1), false, 0);
        let w = worker("a");
        let first = s.lease(1, &w, 0).expect("leased");
        assert!(matches!(
            s.complete(1, "first", first.attempt, ok(), 10),
            Ok(Transition::Done { .. })
        ));
        s.enqueue(job("later", 2, 0, 1), false, 50_000);
        s.lease(1, &w, 50_000).expect("leased");
        assert!(s.expire(50_999).transitions.is_empty());
        assert_eq!(s.expire(51_000).transitions.len(), 1);
    }

    #[test]
    fn heartbeats_never_hold_a_job_past_the_maximum_lease() {
        let mut s = Scheduler::new(SchedulerConfig {
            max_lease_ms: 5_000,
            ..config()
        });
        s.enqueue(job("hoarded", 1, 0, 1), false, 0);
        let w = worker("hoarder");
        s.lease(1, &w, 0).expect("leased");
        let mut now = 0;
        while now < 4_900 {
            now += 100;
            s.renew(1, now);
            assert!(
                s.expire(now).transitions.is_empty(),
                "taken back early at {now}"
            );
        }
        s.renew(1, 5_000);
        let expired = s.expire(5_000);
        assert!(
            matches!(expired.transitions.as_slice(), [Transition::Lost { .. }]),
            "{expired:?}"
        );
        assert_eq!(expired.sessions, [1]);
    }

    #[test]
    fn losses_do_not_use_attempts_but_a_job_lost_too_often_is_dead_lettered() {
        let mut s = Scheduler::new(SchedulerConfig {
            max_losses: 4,
            ..config()
        });
        s.enqueue(job("once", 1, 0, 1), false, 0);
        s.enqueue(job("unlucky", 2, 0, 1), false, 0);
        let w = worker("flaky");
        for round in 1..=3 {
            assert_eq!(s.lease(round, &w, 0).map(|l| l.attempt), Some(round as u32));
            assert_eq!(s.lease(round, &w, 0).map(|l| l.attempt), Some(round as u32));
            let lost = s.release_session(round, 0);
            assert_eq!(lost.len(), 2);
            assert!(lost.iter().all(|t| matches!(t, Transition::Lost { .. })));
        }
        // "once" (a single attempt) still runs after three losses.
        let l = s.lease(9, &w, 0).expect("leased");
        assert_eq!((&*l.id, l.attempt), ("once", 4));
        assert!(matches!(
            s.complete(9, "once", 4, ok(), 0),
            Ok(Transition::Done { attempt: 4, .. })
        ));
        s.lease(10, &w, 0).expect("leased");
        match s.release_session(10, 0).as_slice() {
            [
                Transition::Dead {
                    error, attempt: 4, ..
                },
            ] => {
                assert!(error.contains("lost 4 times"), "{error}")
            }
            other => panic!("expected a dead letter, got {other:?}"),
        }
        assert!(s.is_idle());
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
        assert!(t.iter().all(|t| matches!(t, Transition::Lost { .. })));
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
                assert!(s.expire(t).transitions.is_empty(), "expired early at {t}");
            }
        }
        assert_eq!(
            s.expire(1_200).transitions.len(),
            1,
            "200 ms timeout + 1000 ms ttl"
        );
    }

    fn windowed(window: usize) -> Scheduler {
        Scheduler::new(SchedulerConfig {
            resident_window: window,
            ..config()
        })
    }

    /// Plays the engine: reads each page the scheduler asks for from `store` (the jobs by seq).
    fn lease_paging(
        s: &mut Scheduler,
        store: &HashMap<i64, StoredJob>,
        w: &Arc<WorkerInfo>,
    ) -> Option<Leased> {
        if s.page_due() {
            let page = s.take_page().expect("a page");
            let jobs = page
                .ranges
                .iter()
                .flat_map(|(a, b)| *a..=*b)
                .filter_map(|seq| store.get(&seq).cloned())
                .collect();
            s.paged_in(&page, jobs, 0);
        }
        s.lease(1, w, 0)
    }

    #[test]
    fn spilled_jobs_keep_priority_then_push_order_across_the_window() {
        let mut s = windowed(4);
        let mut store = HashMap::new();
        let mut expected = Vec::new();
        for seq in 1..=40 {
            let priority = [0, 2, 1][seq as usize % 3];
            let j = job(&format!("j{seq}"), seq, priority, 1);
            store.insert(seq, j.clone());
            expected.push((priority, seq));
            s.enqueue_durable(j, 0);
        }
        assert!(s.jobs.len() <= 4, "{} jobs in memory", s.jobs.len());
        assert_eq!(s.counts().ready, 40);
        assert_eq!(s.spilled(), 36);
        // A late high-priority job is spilled too (the window is full), and still runs first.
        let urgent = job("urgent", 41, 9, 1);
        store.insert(41, urgent.clone());
        assert!(!s.enqueue_durable(urgent, 0));
        // Memory-only jobs are never spilled and run before durable ones.
        s.enqueue(job("memory", 42, 0, 1), true, 0);
        expected.sort_by_key(|(p, seq)| (Reverse(*p), *seq));
        let mut order: Vec<String> = vec!["memory".into(), "urgent".into()];
        order.extend(expected.iter().map(|(_, seq)| format!("j{seq}")));
        let w = worker("w");
        let mut leased = Vec::new();
        while let Some(l) = lease_paging(&mut s, &store, &w) {
            assert!(s.jobs.len() <= 4 + 256 + 2);
            leased.push(l.id.to_string());
        }
        assert_eq!(leased, order);
        assert_eq!(s.counts().ready, 0);
    }

    #[test]
    fn a_spilled_job_can_be_unspilled_and_delayed_jobs_stay_in_memory() {
        let mut s = windowed(1);
        s.enqueue_durable(job("a", 1, 0, 1), 0);
        assert!(!s.enqueue_durable(job("b", 2, 0, 1), 0));
        let mut later = job("later", 3, 0, 1);
        later.not_before_ms = 100;
        assert!(
            s.enqueue_durable(later, 0),
            "delayed jobs are kept in memory"
        );
        assert!(s.is_spilled(0, 2));
        assert!(s.unspill(0, 2));
        assert!(!s.unspill(0, 2));
        assert_eq!(
            s.counts(),
            Counts {
                ready: 1,
                delayed: 1,
                leased: 0
            }
        );
        assert!(!s.is_idle());
    }

    #[test]
    fn a_hundred_thousand_jobs_with_a_small_window_keep_few_in_memory_and_run_once_in_order() {
        let mut s = windowed(100);
        let mut store = HashMap::new();
        for seq in 1..=100_000 {
            let j = job(&format!("j{seq}"), seq, 0, 1);
            store.insert(seq, j.clone());
            s.enqueue_durable(j, 0);
        }
        assert_eq!(s.jobs.len(), 100);
        assert_eq!(s.counts().ready, 100_000);
        let w = worker("w");
        let mut next = 1;
        while let Some(l) = lease_paging(&mut s, &store, &w) {
            assert_eq!(&*l.id, format!("j{next}"));
            next += 1;
            assert!(s.jobs.len() <= 256 + 100);
            assert!(matches!(
                s.complete(1, &l.id, l.attempt, ok(), 0),
                Ok(Transition::Done { .. })
            ));
        }
        assert_eq!(next, 100_001);
        assert!(s.is_idle());
    }
}
