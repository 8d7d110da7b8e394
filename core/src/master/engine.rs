//! The master's engine task: it alone owns the [`Scheduler`] and the sessions' credit windows.
//! It never does crypto or I/O; it moves jobs between states and hands messages on: jobs to the
//! sessions' writers, transitions to the delivery task (`delivery.rs`), which makes them durable
//! before anyone sees a result.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::delivery::{Batch, Delivery};
use super::insight::{Action, Insight, InsightQuery};
use super::{MasterEvent, Stats};
use crate::FastMap;
use crate::assets::BundleHash;
use crate::job::{JobResult, KEY_SEPARATOR, WorkerInfo, label_of, now_ms};
use crate::protocol::{ToWorker, WireJob};
use crate::scheduler::{Leased, RunOutcome, Scheduler, SessionId, Transition};
use crate::store::{JobStore, SqliteStore, StoreOp, StoreWriter, StoredJob};

/// The error of a cancelled job's result.
pub(crate) const CANCELLED: &str = "the job was cancelled (cancel() on the master)";

/// What the engine is asked to do, by the master's handle and by the sessions.
pub(super) enum EngineCommand {
    /// Pushed jobs, each with whether it is kept in memory only; the durable ones are committed.
    Enqueue(Vec<(StoredJob, bool)>),
    /// Pushed durable jobs whose insert is being committed meanwhile (see
    /// [`Engine::takes_uncommitted`]): they run at once but are never spilled, since the store
    /// could not give them back yet.
    EnqueueUncommitted(Vec<(StoredJob, bool)>),
    /// The insert of jobs sent with `EnqueueUncommitted` is committed: what they did meanwhile
    /// (held back, see [`Engine::uncommitted`]) goes on to the store and the user.
    Committed(Vec<Arc<str>>),
    /// The commit of jobs sent with `EnqueueUncommitted` failed: they end without a result or a
    /// store write (the push that made them failed), and a worker running one is told to stop.
    Withdraw(Vec<Arc<str>>),
    SessionOpened {
        id: SessionId,
        peer: PeerId,
        worker: WorkerInfo,
        outbound: mpsc::UnboundedSender<ToWorker>,
        /// Direct or through a relay, as the connection was when the session opened.
        path: crate::net::Path,
    },
    SessionClosed {
        id: SessionId,
    },
    Credits {
        id: SessionId,
        n: u32,
    },
    Results {
        id: SessionId,
        results: Vec<(String, u32, RunOutcome)>,
    },
    Heartbeat {
        id: SessionId,
    },
    /// The worker could not install or load the task of `bundle`; it gives back `jobs` unrun.
    TaskLoadFailed {
        id: SessionId,
        bundle: BundleHash,
        reason: String,
        jobs: Vec<(String, u32)>,
    },
    Ack(Vec<String>),
    /// Something the user should know (sent on as [`MasterEvent::Warning`]).
    Warning(String),
    AssetsChanged(BundleHash),
    Stats(oneshot::Sender<Stats>),
    Idle(oneshot::Sender<bool>),
    Shutdown(oneshot::Sender<()>),
    /// Cancel the jobs with this id (`Master::cancel`); answers how many were cancelled.
    Cancel {
        id: String,
        reply: oneshot::Sender<usize>,
    },
    /// A message to one worker (by peer id) or all; answers how many got it.
    Message {
        worker: Option<String>,
        cmd: String,
        data: String,
        reply: oneshot::Sender<usize>,
    },
    /// Tell every worker to leave and hand out no more jobs; answers how many were told.
    Abort(oneshot::Sender<usize>),
    /// A question or action of the inspection API (`inspect.rs`).
    Insight(InsightQuery),
}

/// The engine's view of one worker connection.
pub(super) struct SessionState {
    worker: Arc<WorkerInfo>,
    peer: PeerId,
    /// The most jobs it may hold: the window it announced in its first credit message, capped
    /// by the master. `None` until it announced one. Results give no credit back: a session may
    /// hold `window` leases, whatever it sends.
    window: Option<u32>,
    outbound: mpsc::UnboundedSender<ToWorker>,
    /// Its task could not load: no jobs while the bundle is this one, until the time given
    /// (then it may try again), and how many times in a row that happened.
    paused: Option<(BundleHash, i64)>,
    load_failures: u32,
}

/// After a worker's task could not load, the first pause before it gets jobs of the same bundle
/// again, doubling per failure in a row up to [`LOAD_RETRY_MAX_MS`]. A changed bundle ends the
/// pause at once.
const LOAD_RETRY_FIRST_MS: i64 = 30_000;
const LOAD_RETRY_MAX_MS: i64 = 300_000;

impl SessionState {
    fn is_paused(&self, bundle: BundleHash, now: i64) -> bool {
        self.paused
            .is_some_and(|(paused, until)| paused == bundle && until > now)
    }
}

/// How the master bounds what one worker may take.
pub(super) struct Fairness {
    /// The most jobs one session may hold, whatever it announced.
    pub(super) max_credits: u32,
    /// Losses within `quarantine_for_ms` that quarantine a peer.
    pub(super) quarantine_after: u32,
    pub(super) quarantine_for_ms: i64,
    /// Per peer: when it lost leases, within the last `quarantine_for_ms`.
    pub(super) drops: HashMap<PeerId, VecDeque<i64>>,
    /// Peers that get no jobs until the time given.
    pub(super) quarantined: HashMap<PeerId, i64>,
}

impl Fairness {
    pub(super) fn new(max_credits: u32, quarantine_after: u32, quarantine_for: Duration) -> Self {
        Fairness {
            max_credits: max_credits.max(1),
            quarantine_after: quarantine_after.max(1),
            quarantine_for_ms: quarantine_for.as_millis().min(i64::MAX as u128) as i64,
            drops: HashMap::new(),
            quarantined: HashMap::new(),
        }
    }

    fn is_quarantined(&self, peer: &PeerId, now: i64) -> bool {
        self.quarantined.get(peer).is_some_and(|until| *until > now)
    }

    /// Records that `peer` lost leases now; returns true when this quarantines it.
    fn record_drop(&mut self, peer: PeerId, now: i64) -> bool {
        let since = now.saturating_sub(self.quarantine_for_ms);
        if self.drops.len() > 4096 {
            self.drops
                .retain(|_, times| times.back().is_some_and(|t| *t > since));
            self.quarantined.retain(|_, until| *until > now);
        }
        let times = self.drops.entry(peer).or_default();
        while times.front().is_some_and(|t| *t <= since) {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() >= self.quarantine_after as usize {
            times.clear();
            self.quarantined
                .insert(peer, now.saturating_add(self.quarantine_for_ms));
            return true;
        }
        false
    }

    /// When the next quarantine ends (the engine wakes then to hand that peer jobs again).
    fn next_release(&self, now: i64) -> Option<i64> {
        self.quarantined
            .values()
            .copied()
            .filter(|t| *t > now)
            .min()
    }
}

/// The engine task's state.
pub(super) struct Engine {
    pub(super) scheduler: Scheduler,
    pub(super) sessions: FastMap<SessionId, SessionState>,
    pub(super) order: VecDeque<SessionId>,
    pub(super) durable: Option<StoreWriter>,
    /// A read connection to the durable store, for ready jobs beyond the scheduler's resident
    /// window (spilled: kept only in the store until paged in).
    pub(super) pager: Option<SqliteStore>,
    pub(super) events: mpsc::UnboundedSender<MasterEvent>,
    pub(super) delivery: mpsc::UnboundedSender<Delivery>,
    pub(super) bundle: BundleHash,
    pub(super) drained_sent: bool,
    pub(super) ever_had_jobs: bool,
    pub(super) stats: Stats,
    /// `idle` questions of this iteration: answered after its transitions are handed to the
    /// delivery task, so the answer travels behind the results it speaks for.
    pub(super) idle_asked: Vec<oneshot::Sender<bool>>,
    pub(super) fairness: Fairness,
    /// After `abort`: no more jobs are handed out.
    pub(super) paused: bool,
    /// Workers' calls waiting for an answer (a session's are dropped when it closes).
    pub(super) calls: Arc<crate::calls::PendingCalls>,
    /// Timings, dead letters, per-worker counts and metrics (`insight.rs`).
    pub(super) insight: Insight,
    /// Whether a push may send its durable jobs before their commit (`EnqueueUncommitted`):
    /// published after every turn for the master's handle to read.
    pub(super) takes_uncommitted: Arc<AtomicBool>,
    /// Jobs taken before their insert committed, with the transitions they made meanwhile:
    /// held until `Committed` (so no result goes out for a push that may still fail), dropped
    /// on `Withdraw`.
    pub(super) uncommitted: FastMap<Arc<str>, Vec<Transition>>,
}

impl Engine {
    /// Runs until shut down or until every command sender is gone.
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<EngineCommand>) {
        let mut transitions = Vec::new();
        loop {
            let deadline = [
                self.scheduler.next_deadline(),
                self.fairness.next_release(now_ms()),
                self.next_unpause(now_ms()),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match deadline {
                    Some(at) => {
                        let wait = (at - now_ms()).max(0) as u64;
                        tokio::time::sleep(Duration::from_millis(wait)).await
                    }
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if self.handle(command, &mut transitions) {
                        break;
                    }
                    // Take everything else already queued before dispatching: this is what
                    // batches leases and store writes under load.
                    let mut stop = false;
                    for _ in 0..4096 {
                        match commands.try_recv() {
                            Ok(command) => if self.handle(command, &mut transitions) { stop = true; break; },
                            Err(_) => break,
                        }
                    }
                    if stop { break; }
                }
                () = sleep => {}
            }
            let now = now_ms();
            self.scheduler.promote_delayed(now);
            let expired = self.scheduler.expire(now);
            transitions.extend(expired.transitions);
            for session in expired.sessions {
                if let Some(peer) = self.sessions.get(&session).map(|s| s.peer) {
                    self.lost_leases(peer, now);
                }
            }
            self.dispatch(now);
            if !transitions.is_empty() {
                self.persist(std::mem::take(&mut transitions));
            }
            self.answer_idle();
            self.check_drained();
            self.takes_uncommitted.store(
                self.pager.is_none() || self.scheduler.takes_uncommitted(),
                Ordering::Relaxed,
            );
        }
    }

    /// Returns true when the engine must stop.
    fn handle(&mut self, command: EngineCommand, transitions: &mut Vec<Transition>) -> bool {
        let now = now_ms();
        match command {
            EngineCommand::Enqueue(jobs) => {
                for (job, in_memory) in jobs {
                    // A pushed durable job is committed before it gets here: the store can give
                    // it back when it is spilled.
                    if !in_memory && self.pager.is_some() && self.scheduler.should_spill(&job, now)
                    {
                        self.insight.spilled();
                        self.scheduler.spill(job.priority, job.seq);
                        continue;
                    }
                    self.insight.enqueued(&job, now);
                    self.scheduler.enqueue(job, in_memory, now);
                }
                self.drained_sent = false;
                self.ever_had_jobs = true;
            }
            EngineCommand::EnqueueUncommitted(jobs) => {
                for (job, in_memory) in jobs {
                    self.uncommitted.insert(job.id.as_str().into(), Vec::new());
                    self.insight.enqueued(&job, now);
                    self.scheduler.enqueue(job, in_memory, now);
                }
                self.drained_sent = false;
                self.ever_had_jobs = true;
            }
            EngineCommand::Committed(keys) => {
                for key in keys {
                    if let Some(held) = self.uncommitted.remove(&key) {
                        transitions.extend(held);
                    }
                }
            }
            EngineCommand::Withdraw(keys) => {
                for key in keys {
                    self.uncommitted.remove(&key);
                    self.insight.withdrawn(&key);
                    if let Some(withdrawn) = self.scheduler.cancel_key(&key, CANCELLED) {
                        self.stop_run(withdrawn.lease, &key);
                    }
                }
            }
            EngineCommand::SessionOpened {
                id,
                peer,
                worker,
                outbound,
                path,
            } => {
                tracing::info!(worker = %worker.name, %peer, %path, "worker joined");
                if self.fairness.is_quarantined(&peer, now) {
                    tracing::warn!(worker = %worker.name, %peer, "a quarantined worker joined; it gets no jobs until its quarantine ends");
                }
                let _ = self.events.send(MasterEvent::WorkerJoined(worker.clone()));
                self.insight.worker_joined(id, peer, &worker, path);
                self.sessions.insert(
                    id,
                    SessionState {
                        worker: Arc::new(worker),
                        peer,
                        window: None,
                        outbound,
                        paused: None,
                        load_failures: 0,
                    },
                );
                self.order.push_back(id);
                // A worker that joins a master that already ran dry hears so at once.
                if self.drained_sent
                    && let Some(session) = self.sessions.get(&id)
                {
                    let _ = session.outbound.send(ToWorker::Drained);
                }
            }
            EngineCommand::SessionClosed { id } => {
                self.insight.worker_left(id);
                let peer = self.sessions.remove(&id).map(|session| {
                    self.order.retain(|s| *s != id);
                    tracing::info!(worker = %session.worker.name, "worker left");
                    let _ = self
                        .events
                        .send(MasterEvent::WorkerLeft((*session.worker).clone()));
                    session.peer
                });
                self.calls.forget(id);
                let lost = self.scheduler.release_session(id, now);
                if let (Some(peer), false) = (peer, lost.is_empty()) {
                    self.lost_leases(peer, now);
                }
                transitions.extend(lost);
            }
            EngineCommand::Credits { id, n } => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    match session.window {
                        None => session.window = Some(n.min(self.fairness.max_credits)),
                        // The window is what the worker announced when it joined; more credit
                        // messages do not widen it.
                        Some(window) => tracing::debug!(
                            worker = %session.worker.name,
                            window,
                            asked = n,
                            "ignored credits beyond the announced window"
                        ),
                    }
                }
            }
            EngineCommand::Results { id, results } => {
                if let Some(session) = self.sessions.get_mut(&id)
                    && results.iter().any(|r| matches!(r.2, RunOutcome::Ok { .. }))
                {
                    session.load_failures = 0;
                }
                for (job_id, attempt, outcome) in results {
                    match self.scheduler.complete(id, &job_id, attempt, outcome, now) {
                        Ok(t) => {
                            self.insight.answered(id, &t, now);
                            transitions.push(t)
                        }
                        Err(why) => {
                            tracing::debug!(job = %job_id, attempt, ?why, "result not accepted")
                        }
                    }
                }
            }
            EngineCommand::Heartbeat { id } => {
                self.scheduler.renew(id, now);
                self.insight.heartbeat(id, now);
            }
            EngineCommand::TaskLoadFailed {
                id,
                bundle,
                reason,
                jobs,
            } => self.task_load_failed(id, bundle, reason, jobs, now, transitions),
            EngineCommand::Ack(ids) => {
                self.ack(ids);
            }
            EngineCommand::AssetsChanged(bundle) => self.bundle = bundle,
            EngineCommand::Warning(warning) => {
                let _ = self.events.send(MasterEvent::Warning(warning));
            }
            EngineCommand::Idle(reply) => self.idle_asked.push(reply),
            EngineCommand::Stats(reply) => {
                let counts = self.scheduler.counts();
                let _ = reply.send(Stats {
                    queued: counts.ready as u64,
                    delayed: counts.delayed as u64,
                    running: counts.leased as u64,
                    workers: self.sessions.len() as u64,
                    ..self.stats
                });
            }
            EngineCommand::Cancel { id, reply } => {
                let cancelled = self.scheduler.cancel(&id, CANCELLED);
                let spilled = self.cancel_spilled(&id);
                let _ = reply.send(cancelled.len() + spilled.len());
                transitions.extend(spilled);
                for c in cancelled {
                    self.stop_run(c.lease, c.transition.id());
                    transitions.push(c.transition);
                }
            }
            EngineCommand::Message {
                worker,
                cmd,
                data,
                reply,
            } => {
                let mut sent = 0;
                for session in self.sessions.values() {
                    if worker
                        .as_deref()
                        .is_some_and(|w| w != session.worker.id.as_str())
                    {
                        continue;
                    }
                    let message = ToWorker::Message {
                        cmd: cmd.clone(),
                        data: data.clone(),
                    };
                    if session.outbound.send(message).is_ok() {
                        sent += 1;
                    }
                }
                let _ = reply.send(sent);
            }
            EngineCommand::Abort(reply) => {
                self.paused = true;
                let told = self
                    .sessions
                    .values()
                    .filter(|s| s.outbound.send(ToWorker::Abort).is_ok())
                    .count();
                tracing::warn!(
                    workers = told,
                    "aborted: every worker was told to stop; unfinished jobs stay queued"
                );
                let _ = reply.send(told);
            }
            EngineCommand::Insight(query) => self.inspect(query, now),
            EngineCommand::Shutdown(reply) => {
                self.sessions.clear();
                let _ = reply.send(());
                return true;
            }
        }
        false
    }

    /// `peer` lost leases (disconnected, went quiet, or held jobs too long): counted, and a peer
    /// that keeps doing it is quarantined.
    fn lost_leases(&mut self, peer: PeerId, now: i64) {
        if self.fairness.record_drop(peer, now) {
            let warning = format!(
                "worker {peer} lost jobs {} times within {} s: it gets no jobs for {} s \
                 (quarantined)",
                self.fairness.quarantine_after,
                self.fairness.quarantine_for_ms / 1000,
                self.fairness.quarantine_for_ms / 1000
            );
            tracing::warn!("{warning}");
            let _ = self.events.send(MasterEvent::Warning(warning));
        }
    }

    /// A worker could not install or load the task: the jobs it gives back are queued again
    /// without using an attempt or counting as lost, and it gets no jobs of this bundle until
    /// the assets change or its pause ends. The user hears of it once per pause.
    fn task_load_failed(
        &mut self,
        id: SessionId,
        bundle: BundleHash,
        reason: String,
        jobs: Vec<(String, u32)>,
        now: i64,
        transitions: &mut Vec<Transition>,
    ) {
        for (job_id, attempt) in jobs {
            if let Some(t) = self.scheduler.give_back(id, &job_id, attempt, now) {
                transitions.push(t);
            }
        }
        let current = self.bundle;
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if bundle != current || session.is_paused(bundle, now) {
            // An older bundle's failure (the assets changed since), or a repeat of one already
            // reported: the jobs are back in the queue, nothing more to say.
            return;
        }
        session.load_failures = session.load_failures.saturating_add(1);
        let exponent = session.load_failures.saturating_sub(1).min(16);
        let pause = LOAD_RETRY_FIRST_MS
            .saturating_mul(1 << exponent)
            .min(LOAD_RETRY_MAX_MS);
        session.paused = Some((bundle, now.saturating_add(pause)));
        let worker = (*session.worker).clone();
        tracing::warn!(
            "worker {} ({}) cannot load the task: {reason}; it takes no jobs until the assets \
             change (it tries again in {} s)",
            worker.name,
            worker.id,
            pause / 1000
        );
        let _ = self
            .events
            .send(MasterEvent::TaskLoadFailed { worker, reason });
    }

    /// When the next paused session may try its task again.
    fn next_unpause(&self, now: i64) -> Option<i64> {
        self.sessions
            .values()
            .filter_map(|s| s.paused)
            .filter(|(bundle, until)| *bundle == self.bundle && *until > now)
            .map(|(_, until)| until)
            .min()
    }

    /// Hands ready jobs to the sessions with room in their window, one job per session in
    /// turn, so no session takes the queue while another waits; one message per session.
    fn dispatch(&mut self, now: i64) {
        if self.paused || self.sessions.is_empty() || !self.scheduler.has_ready() {
            return;
        }
        // Who may take jobs now, and how many each: its window less what it holds.
        let mut room: Vec<(SessionId, usize, Vec<WireJob>)> = Vec::new();
        let rounds = self.order.len();
        for _ in 0..rounds {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            self.order.push_back(id);
            let Some(session) = self.sessions.get(&id) else {
                continue;
            };
            let Some(window) = session.window else {
                continue;
            };
            if self.fairness.is_quarantined(&session.peer, now)
                || session.is_paused(self.bundle, now)
            {
                continue;
            }
            let free = (window as usize).saturating_sub(self.scheduler.held(id));
            if free > 0 {
                room.push((id, free, Vec::new()));
            }
        }
        let mut open = room.len();
        let mut page_failed = false;
        while open > 0 && self.scheduler.has_ready() {
            open = 0;
            for (id, free, jobs) in room.iter_mut() {
                if *free == 0 {
                    continue;
                }
                if !page_failed
                    && let Some(pager) = self.pager.as_mut()
                    && self.scheduler.page_due()
                {
                    page_failed = !page_in(&mut self.scheduler, &mut self.insight, pager, now);
                }
                let Some(session) = self.sessions.get(id) else {
                    *free = 0;
                    continue;
                };
                let Some(Leased {
                    id: job_id,
                    attempt,
                    task_type,
                    payload,
                    timeout_ms,
                }) = self.scheduler.lease(*id, &session.worker, now)
                else {
                    break;
                };
                self.insight.leased(&job_id, &payload, now);
                *free -= 1;
                if *free > 0 {
                    open += 1;
                }
                jobs.push(WireJob {
                    id: job_id.to_string(),
                    attempt,
                    task_type,
                    payload,
                    timeout_ms,
                });
            }
        }
        for (id, _, jobs) in room {
            if jobs.is_empty() {
                continue;
            }
            if let Some(session) = self.sessions.get(&id) {
                // If the session is gone, its leases come back when SessionClosed arrives.
                let _ = session.outbound.send(ToWorker::Jobs {
                    bundle: self.bundle,
                    jobs,
                });
            }
        }
    }

    /// Writes transitions to the durable store (memory jobs need no write); terminal ones are
    /// delivered once committed.
    fn persist(&mut self, mut transitions: Vec<Transition>) {
        if !self.uncommitted.is_empty() {
            let mut going = Vec::with_capacity(transitions.len());
            for t in transitions {
                match self.uncommitted.get_mut(t.id()) {
                    Some(held) => held.push(t),
                    None => going.push(t),
                }
            }
            if going.is_empty() {
                return;
            }
            transitions = going;
        }
        let mut batch = Batch::default();
        let durable = self.durable.is_some();
        let now = now_ms();
        for t in transitions {
            self.insight.transition(&t, now);
            match t {
                Transition::Done {
                    id,
                    attempt,
                    worker,
                    sealed,
                    json,
                    in_memory,
                } => {
                    self.stats.done += 1;
                    let in_memory = in_memory || !durable;
                    if !in_memory {
                        batch.durable_ops.push(StoreOp::Done {
                            id: id.to_string(),
                            attempt,
                            result: sealed,
                            worker: (*worker).clone(),
                        });
                    }
                    let result = JobResult {
                        job_id: label_of(&id).to_string(),
                        key: id.to_string(),
                        worker: Arc::unwrap_or_clone(worker),
                        outcome: Ok(json),
                        attempts: attempt,
                    };
                    batch.results.push((result, in_memory));
                }
                Transition::Retry {
                    id,
                    attempt,
                    not_before_ms,
                    error,
                    in_memory,
                } => {
                    self.stats.retried += 1;
                    tracing::debug!(job = %id, attempt, %error, "attempt failed; will retry");
                    if !in_memory && durable {
                        batch.durable_ops.push(StoreOp::Retry {
                            id: id.to_string(),
                            attempt,
                            not_before_ms,
                            error,
                        });
                    }
                }
                Transition::Lost { id, error } => {
                    // Queued again without using an attempt: nothing stored changes.
                    tracing::debug!(job = %id, %error, "run lost; queued again");
                }
                Transition::Dead {
                    id,
                    attempt,
                    error,
                    worker,
                    in_memory,
                } => {
                    self.stats.dead += 1;
                    let in_memory = in_memory || !durable;
                    if !in_memory {
                        batch.durable_ops.push(StoreOp::Dead {
                            id: id.to_string(),
                            attempt,
                            error: error.clone(),
                            worker: worker.as_deref().cloned(),
                        });
                    }
                    let result = JobResult {
                        job_id: label_of(&id).to_string(),
                        key: id.to_string(),
                        worker: worker.map_or_else(
                            || WorkerInfo {
                                id: String::new(),
                                name: String::new(),
                            },
                            Arc::unwrap_or_clone,
                        ),
                        outcome: Err(error),
                        attempts: attempt,
                    };
                    batch.results.push((result, in_memory));
                }
            }
        }
        let _ = self.delivery.send(Delivery::Batch(batch));
    }

    /// Cancels the spilled jobs (kept only in the store) whose key or label is `id`: each ends
    /// as dead, like a cancelled job in memory.
    fn cancel_spilled(&mut self, id: &str) -> Vec<Transition> {
        let Some(pager) = self.pager.as_mut() else {
            return Vec::new();
        };
        if self.scheduler.spilled() == 0 {
            return Vec::new();
        }
        let open = match pager.find_open(id) {
            Ok(open) => open,
            Err(e) => {
                tracing::error!(job = %id, error = %e, "could not look for the job in the store to cancel it");
                return Vec::new();
            }
        };
        open.into_iter()
            .filter(|job| self.scheduler.unspill(job.priority, job.seq))
            .map(|job| Transition::Dead {
                id: Arc::from(job.key),
                attempt: job.attempt,
                error: CANCELLED.to_string(),
                worker: None,
                in_memory: false,
            })
            .collect()
    }

    /// A spilled job (kept only in the store) that `id` stands for, as the dashboard shows it.
    fn spilled_job(&mut self, id: &str) -> Option<super::inspect::JobInfo> {
        let pager = self.pager.as_mut()?;
        if self.scheduler.spilled() == 0 {
            return None;
        }
        let open = pager
            .find_open(id)
            .map_err(
                |e| tracing::warn!(job = %id, error = %e, "could not read the job from the store"),
            )
            .ok()?;
        let key = open
            .into_iter()
            .find(|job| self.scheduler.is_spilled(job.priority, job.seq))?
            .key;
        let (job, stored_ms) = pager.find(&key).ok()??;
        Some(Insight::stored_info(&job, stored_ms))
    }

    /// Answers a question of the inspection API; queues a retried dead letter again, removes a
    /// discarded one from the store.
    fn inspect(&mut self, query: InsightQuery, now: i64) {
        let query = match query {
            InsightQuery::Job(id, reply) => {
                let info = self
                    .insight
                    .job(&self.scheduler, &id)
                    .or_else(|| self.spilled_job(&id));
                let _ = reply.send(info);
                return;
            }
            other => other,
        };
        let counts = self.scheduler.counts();
        let stats = Stats {
            queued: counts.ready as u64,
            delayed: counts.delayed as u64,
            running: counts.leased as u64,
            workers: self.sessions.len() as u64,
            ..self.stats
        };
        match self.insight.answer(query, &self.scheduler, stats) {
            Some(Action::Requeue(job, in_memory)) => {
                if let (Some(durable), false) = (&self.durable, in_memory) {
                    // Ahead of any result of the new run in the writer's queue.
                    durable.apply_detached(vec![StoreOp::Requeue {
                        id: job.id.clone(),
                        not_before_ms: now,
                    }]);
                }
                tracing::info!(job = %label_of(&job.id), "dead letter queued again");
                let _ = self.delivery.send(Delivery::Event(MasterEvent::DeadRetried(
                    label_of(&job.id).to_string(),
                )));
                self.insight.enqueued(&job, now);
                self.scheduler.enqueue(job, in_memory, now);
                self.drained_sent = false;
                self.ever_had_jobs = true;
            }
            Some(Action::Discard(id, in_memory)) => {
                if let (Some(durable), false) = (&self.durable, in_memory) {
                    durable.apply_detached(vec![StoreOp::Discard { id: id.clone() }]);
                }
                tracing::info!(job = %label_of(&id), "dead letter discarded");
            }
            None => {}
        }
    }

    fn ack(&mut self, ids: Vec<String>) {
        // A job id pushed once is its own key, and an automatic id's key is the id behind the
        // separator: mark both (the store ignores keys it does not hold).
        let ops: Vec<StoreOp> = ids
            .into_iter()
            .flat_map(|id| {
                let automatic = (!id.contains(KEY_SEPARATOR)).then(|| StoreOp::Delivered {
                    id: format!("{KEY_SEPARATOR}{id}"),
                });
                std::iter::once(StoreOp::Delivered { id }).chain(automatic)
            })
            .collect();
        // Memory jobs have nothing to mark; the durable store ignores ids it does not hold.
        if let Some(durable) = &self.durable {
            durable.apply_detached(ops);
        }
    }

    /// Answers this iteration's `idle` questions through the delivery task, behind this
    /// iteration's batch: the delivery task hands out a batch's results (after committing it)
    /// before it reads the answer, so "idle" never overtakes a result.
    fn answer_idle(&mut self) {
        if self.idle_asked.is_empty() {
            return;
        }
        let idle = self.is_idle();
        for reply in self.idle_asked.drain(..) {
            let _ = self.delivery.send(Delivery::Idle { reply, idle });
        }
    }

    /// Tells the worker holding `lease` (session, attempt), if any, to stop running job `id`.
    fn stop_run(&self, lease: Option<(SessionId, u32)>, id: &str) {
        if let Some((session, attempt)) = lease
            && let Some(state) = self.sessions.get(&session)
        {
            let _ = state.outbound.send(ToWorker::Cancel {
                id: id.to_string(),
                attempt,
            });
        }
    }

    /// Nothing queued, delayed or running, and no result held back for a commit.
    fn is_idle(&self) -> bool {
        self.scheduler.is_idle() && self.uncommitted.is_empty()
    }

    fn check_drained(&mut self) {
        if self.ever_had_jobs && !self.drained_sent && self.is_idle() {
            self.drained_sent = true;
            for session in self.sessions.values() {
                let _ = session.outbound.send(ToWorker::Drained);
            }
            let _ = self.delivery.send(Delivery::Drained);
        }
    }
}

/// Reads the spilled jobs the scheduler asks for back into memory. Returns false (after
/// logging why) when the store could not be read; the jobs stay spilled.
pub(super) fn page_in(
    scheduler: &mut Scheduler,
    insight: &mut Insight,
    pager: &mut SqliteStore,
    now: i64,
) -> bool {
    let Some(page) = scheduler.take_page() else {
        return true;
    };
    match pager.page(&page.ranges) {
        Ok(rows) => {
            let mut jobs = Vec::with_capacity(rows.len());
            for (job, stored_ms) in rows {
                insight.paged_in(&job, stored_ms, now);
                jobs.push(job);
            }
            let (_, missing) = scheduler.paged_in(&page, jobs, now);
            if missing > 0 {
                tracing::warn!(
                    missing,
                    store = %pager.location(),
                    "queued jobs were not found in the store when read back; they are dropped"
                );
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "could not read queued jobs back from the store; trying again later");
            scheduler.page_failed(page);
            false
        }
    }
}
