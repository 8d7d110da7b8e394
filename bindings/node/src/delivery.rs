//! How a Node worker's jobs cross to JavaScript: in batches, pulled by the JS side.
//!
//! The core calls [`Executor::run`] once per job, on its runtime. Calling into JavaScript once
//! per job (a thread-safe function call, a promise, a `then` back) costs a wake-up of the JS
//! thread and two crossings per job. Here `run` only queues the job; the JS side has one
//! `nextJobs(max)` promise pending, which resolves with every job queued meanwhile (one
//! wake-up per batch), runs them, and hands their outcomes back with one synchronous
//! `finishJobs(seqs, outcomes)` call per batch of finished jobs.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use futures::future::BoxFuture;
use napi_derive::napi;
use queuexec_core::{JobInput, TaskFailure};
use tokio::sync::{Notify, oneshot};

use crate::job::{JsJobInput, JsTaskOutcome};

type Reply = oneshot::Sender<Result<String, TaskFailure>>;

/// Jobs the core handed over and JavaScript has not finished yet.
#[derive(Default)]
pub(crate) struct JobQueue {
    state: Mutex<State>,
    /// Wakes the one pending `nextJobs` (a permit is kept when none waits).
    ready: Notify,
}

#[derive(Default)]
struct State {
    /// Not yet taken by JavaScript, oldest first.
    waiting: VecDeque<(u32, JobInput)>,
    /// Taken or waiting, by sequence number: where the outcome goes.
    replies: HashMap<u32, Reply>,
    next: u32,
    closed: bool,
}

/// A batch of jobs for JavaScript: `jobs[i]` has the sequence number `seqs[i]`, which
/// `finishJobs` takes back with its outcome.
#[napi(object, js_name = "JobBatch", object_from_js = false)]
pub struct JsJobBatch {
    /// One per job, to hand back to `finishJobs`.
    pub seqs: Vec<u32>,
    /// The jobs, as `runJob` would have received them one by one.
    pub jobs: Vec<JsJobInput>,
}

impl JobQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a job for JavaScript; the future ends with its outcome. Dropping the future (the
    /// job's timeout, the worker closing) takes the job back if JavaScript has not taken it.
    pub(crate) fn run(
        self: &std::sync::Arc<Self>,
        job: JobInput,
    ) -> BoxFuture<'static, Result<String, TaskFailure>> {
        let (tx, rx) = oneshot::channel();
        let seq = {
            let mut state = self.lock();
            if state.closed {
                return Box::pin(futures::future::ready(Err(TaskFailure::new(
                    "the worker is closing",
                ))));
            }
            let seq = state.next;
            state.next = state.next.wrapping_add(1);
            state.waiting.push_back((seq, job));
            state.replies.insert(seq, tx);
            seq
        };
        self.ready.notify_one();
        let guard = Forget {
            queue: self.clone(),
            seq,
        };
        Box::pin(async move {
            let outcome = rx.await;
            drop(guard);
            outcome.unwrap_or_else(|_| Err(TaskFailure::new("the worker is closing")))
        })
    }

    /// Waits for jobs and takes up to `max` of them; `None` once closed.
    pub(crate) async fn next(&self, max: usize) -> Option<JsJobBatch> {
        loop {
            {
                let mut state = self.lock();
                if !state.waiting.is_empty() {
                    let n = state.waiting.len().min(max.max(1));
                    let mut seqs = Vec::with_capacity(n);
                    let mut jobs = Vec::with_capacity(n);
                    for (seq, job) in state.waiting.drain(..n) {
                        seqs.push(seq);
                        jobs.push(JsJobInput::from(job));
                    }
                    return Some(JsJobBatch { seqs, jobs });
                }
                if state.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Outcomes from JavaScript; unknown sequence numbers (jobs dropped meanwhile) are skipped.
    pub(crate) fn finish(&self, seqs: Vec<u32>, outcomes: Vec<JsTaskOutcome>) {
        let replies: Vec<(Reply, JsTaskOutcome)> = {
            let mut state = self.lock();
            seqs.into_iter()
                .zip(outcomes)
                .filter_map(|(seq, outcome)| state.replies.remove(&seq).map(|tx| (tx, outcome)))
                .collect()
        };
        for (tx, outcome) in replies {
            let _ = tx.send(outcome.into());
        }
    }

    /// No more jobs: the pending `nextJobs` resolves empty, queued jobs fail.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut state = self.lock();
            state.closed = true;
            state.waiting.clear();
            std::mem::take(&mut state.replies)
        };
        drop(dropped);
        self.ready.notify_one();
    }
}

/// Removes a job whose future is gone from the queue and the reply table.
struct Forget {
    queue: std::sync::Arc<JobQueue>,
    seq: u32,
}

impl Drop for Forget {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        if state.replies.remove(&self.seq).is_some()
            && let Some(at) = state.waiting.iter().position(|(s, _)| *s == self.seq)
        {
            state.waiting.remove(at);
        }
    }
}
