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
use queuexec_core::{JobInput, TaskFailure};
use tokio::sync::{Notify, oneshot};

use crate::json_out::{self, JsBatch};

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

    /// Waits for jobs and takes up to `max` of them, as a batch of `{seq, id, attempt, shape,
    /// taskType?, timeoutMs?, data | dataText}` (see [`write_job`]); `None` once closed.
    pub(crate) async fn next(&self, max: usize) -> Option<JsBatch> {
        loop {
            {
                let mut state = self.lock();
                if !state.waiting.is_empty() {
                    let n = state.waiting.len().min(max.max(1));
                    let jobs: Vec<(u32, JobInput)> = state.waiting.drain(..n).collect();
                    drop(state);
                    let mut json = String::with_capacity(2 + jobs.len() * 128);
                    let mut texts = Vec::new();
                    json.push('[');
                    for (i, (seq, job)) in jobs.into_iter().enumerate() {
                        if i > 0 {
                            json.push(',');
                        }
                        write_job(&mut json, &mut texts, seq, job);
                    }
                    json.push(']');
                    return Some(JsBatch { json, texts });
                }
                if state.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Outcomes from JavaScript: the job numbered `seqs[i]` returned the JSON text `texts[i]`,
    /// or failed with the error `texts[i]` when `failed[i]`. Unknown sequence numbers (jobs
    /// dropped meanwhile) are skipped.
    pub(crate) fn finish(&self, seqs: Vec<u32>, failed: Vec<bool>, texts: Vec<String>) {
        let replies: Vec<(Reply, Result<String, TaskFailure>)> = {
            let mut state = self.lock();
            seqs.into_iter()
                .zip(failed)
                .zip(texts)
                .filter_map(|((seq, failed), text)| {
                    let outcome = if failed {
                        Err(TaskFailure::new(text))
                    } else {
                        Ok(text)
                    };
                    state.replies.remove(&seq).map(|tx| (tx, outcome))
                })
                .collect()
        };
        for (tx, outcome) in replies {
            let _ = tx.send(outcome);
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

/// One job for JavaScript, as the task host reads it (`lib/task-host.js`). Its data is the
/// parsed value when it is short JSON (the master checked it at push); anything else crosses as
/// its own string (`dataText`: its index in the batch's texts), which the JS side parses on its
/// own, falling back to the text.
fn write_job(out: &mut String, texts: &mut Vec<String>, seq: u32, job: JobInput) {
    let mut o = json_out::Object::begin(out);
    o.num("seq", seq)
        .str("id", &job.id)
        .num("attempt", job.attempt)
        .str("shape", job.shape.as_str())
        .opt_str("taskType", job.task_type.as_deref());
    if let Some(timeout) = job.timeout {
        o.num("timeoutMs", timeout.as_secs_f64() * 1000.0);
    }
    o.json_or_text("data", "dataText", job.data, texts);
    o.end();
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
