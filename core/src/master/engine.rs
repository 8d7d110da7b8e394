//! The master's engine task: it alone owns the [`Scheduler`] and the sessions' credit windows.
//! It never does crypto or I/O; it moves jobs between states and hands messages on: jobs to the
//! sessions' writers, transitions to the delivery task (`delivery.rs`), which makes them durable
//! before anyone sees a result.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::delivery::{Batch, Delivery};
use super::{MasterEvent, Stats};
use crate::assets::BundleHash;
use crate::job::{JobResult, WorkerInfo, now_ms};
use crate::protocol::{ToWorker, WireJob};
use crate::scheduler::{Leased, RunOutcome, Scheduler, SessionId, Transition};
use crate::store::{StoreOp, StoreWriter, StoredJob};

/// What the engine is asked to do, by the master's handle and by the sessions.
pub(super) enum EngineCommand {
    Enqueue(Vec<(StoredJob, bool)>),
    SessionOpened {
        id: SessionId,
        peer: PeerId,
        worker: WorkerInfo,
        outbound: mpsc::UnboundedSender<ToWorker>,
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
    Ack(Vec<String>),
    AssetsChanged(BundleHash),
    Stats(oneshot::Sender<Stats>),
    Idle(oneshot::Sender<bool>),
    Shutdown(oneshot::Sender<()>),
}

/// The engine's view of one worker connection.
pub(super) struct SessionState {
    worker: Arc<WorkerInfo>,
    credits: u32,
    outbound: mpsc::UnboundedSender<ToWorker>,
}

/// The engine task's state.
pub(super) struct Engine {
    pub(super) scheduler: Scheduler,
    pub(super) sessions: HashMap<SessionId, SessionState>,
    pub(super) order: VecDeque<SessionId>,
    pub(super) durable: Option<StoreWriter>,
    pub(super) events: mpsc::UnboundedSender<MasterEvent>,
    pub(super) delivery: mpsc::UnboundedSender<Delivery>,
    pub(super) bundle: BundleHash,
    pub(super) drained_sent: bool,
    pub(super) ever_had_jobs: bool,
    pub(super) stats: Stats,
}

impl Engine {
    /// Runs until shut down or until every command sender is gone.
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<EngineCommand>) {
        let mut transitions = Vec::new();
        loop {
            let deadline = self.scheduler.next_deadline();
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
            transitions.extend(self.scheduler.expire(now));
            self.dispatch(now);
            if !transitions.is_empty() {
                self.persist(std::mem::take(&mut transitions));
            }
            self.check_drained();
        }
    }

    /// Returns true when the engine must stop.
    fn handle(&mut self, command: EngineCommand, transitions: &mut Vec<Transition>) -> bool {
        let now = now_ms();
        match command {
            EngineCommand::Enqueue(jobs) => {
                for (job, in_memory) in jobs {
                    self.scheduler.enqueue(job, in_memory, now);
                }
                self.drained_sent = false;
                self.ever_had_jobs = true;
            }
            EngineCommand::SessionOpened {
                id,
                peer,
                worker,
                outbound,
            } => {
                tracing::info!(worker = %worker.name, %peer, "worker joined");
                let _ = self.events.send(MasterEvent::WorkerJoined(worker.clone()));
                self.sessions.insert(
                    id,
                    SessionState {
                        worker: Arc::new(worker),
                        credits: 0,
                        outbound,
                    },
                );
                self.order.push_back(id);
            }
            EngineCommand::SessionClosed { id } => {
                if let Some(session) = self.sessions.remove(&id) {
                    self.order.retain(|s| *s != id);
                    tracing::info!(worker = %session.worker.name, "worker left");
                    let _ = self
                        .events
                        .send(MasterEvent::WorkerLeft((*session.worker).clone()));
                }
                transitions.extend(self.scheduler.release_session(id, now));
            }
            EngineCommand::Credits { id, n } => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.credits = session.credits.saturating_add(n).min(1 << 20);
                }
            }
            EngineCommand::Results { id, results } => {
                let returned = results.len() as u32;
                for (job_id, attempt, outcome) in results {
                    match self.scheduler.complete(id, &job_id, attempt, outcome, now) {
                        Ok(t) => transitions.push(t),
                        Err(why) => {
                            tracing::debug!(job = %job_id, attempt, ?why, "result not accepted")
                        }
                    }
                }
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.credits = session.credits.saturating_add(returned).min(1 << 20);
                }
            }
            EngineCommand::Heartbeat { id } => self.scheduler.renew(id, now),
            EngineCommand::Ack(ids) => {
                self.ack(ids);
            }
            EngineCommand::AssetsChanged(bundle) => self.bundle = bundle,
            EngineCommand::Idle(reply) => {
                let idle = self.scheduler.is_idle();
                let _ = self.delivery.send(Delivery::Idle { reply, idle });
            }
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
            EngineCommand::Shutdown(reply) => {
                self.sessions.clear();
                let _ = reply.send(());
                return true;
            }
        }
        false
    }

    /// Hands ready jobs to sessions with credits, round robin, one batch per session.
    fn dispatch(&mut self, now: i64) {
        if self.sessions.is_empty() {
            return;
        }
        let rounds = self.order.len();
        for _ in 0..rounds {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            self.order.push_back(id);
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            if session.credits == 0 {
                continue;
            }
            let mut jobs = Vec::new();
            while session.credits > 0 {
                let Some(Leased {
                    id: job_id,
                    attempt,
                    task_type,
                    payload,
                    timeout_ms,
                }) = self.scheduler.lease(id, &session.worker, now)
                else {
                    break;
                };
                session.credits -= 1;
                jobs.push(WireJob {
                    id: job_id.to_string(),
                    attempt,
                    task_type,
                    payload: payload.to_vec(),
                    timeout_ms,
                });
            }
            if jobs.is_empty() {
                // Nothing ready: no other session will find anything either.
                break;
            }
            // If the session is gone, its leases come back when SessionClosed arrives.
            let _ = session.outbound.send(ToWorker::Jobs {
                bundle: self.bundle,
                jobs,
            });
        }
    }

    /// Writes transitions to the durable store (memory jobs need no write); terminal ones are
    /// delivered once committed.
    fn persist(&mut self, transitions: Vec<Transition>) {
        let mut batch = Batch::default();
        let durable = self.durable.is_some();
        for t in transitions {
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
                            worker: worker.clone(),
                        });
                    }
                    let result = JobResult {
                        job_id: id.to_string(),
                        worker,
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
                            worker: worker.clone(),
                        });
                    }
                    let result = JobResult {
                        job_id: id.to_string(),
                        worker: worker.unwrap_or(WorkerInfo {
                            id: String::new(),
                            name: String::new(),
                        }),
                        outcome: Err(error),
                        attempts: attempt,
                    };
                    batch.results.push((result, in_memory));
                }
            }
        }
        let _ = self.delivery.send(Delivery::Batch(batch));
    }

    fn ack(&mut self, ids: Vec<String>) {
        let ops: Vec<StoreOp> = ids
            .into_iter()
            .map(|id| StoreOp::Delivered { id })
            .collect();
        // Memory jobs have nothing to mark; the durable store ignores ids it does not hold.
        if let Some(durable) = &self.durable {
            durable.apply_detached(ops);
        }
    }

    fn check_drained(&mut self) {
        if self.ever_had_jobs && !self.drained_sent && self.scheduler.is_idle() {
            self.drained_sent = true;
            let _ = self.delivery.send(Delivery::Drained);
        }
    }
}
