//! How a Python worker's jobs reach the dispatcher: through a queue served by a few threads of
//! its own, each attached to the interpreter for its whole life (one thread state, kept), that
//! take the GIL once and run every job queued meanwhile before letting it go.
//!
//! A thread waits for jobs with the GIL released. A thread that takes a job while more are
//! queued wakes an idle one first, so a task that blocks (`time.sleep`, I/O, anything that
//! releases the GIL) does not hold up the others: up to `concurrency` threads run jobs at once,
//! as before, while jobs that finish at once run back to back under one GIL acquisition.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use pyo3::prelude::*;
use queuexec_core::JobInput;
use tokio::sync::oneshot;

/// What the dispatcher answered when a job started: its cancel function (`None` when it has
/// finished already, or is a plain function), or why it could not start.
pub(crate) type Started = Result<Option<Py<PyAny>>, String>;

/// One job waiting for a thread.
pub(crate) struct Queued {
    pub(crate) job: JobInput,
    pub(crate) started: oneshot::Sender<Started>,
    pub(crate) done: oneshot::Sender<(bool, String)>,
}

/// Jobs for Python tasks, and the threads that run them.
pub(crate) struct PyJobQueue {
    state: Mutex<State>,
    wake: Condvar,
    dispatch: Arc<Py<PyAny>>,
    /// Most threads (the worker's concurrency).
    max_threads: usize,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Queued>,
    /// Threads started, and those of them waiting for jobs.
    threads: usize,
    idle: usize,
    closed: bool,
}

impl PyJobQueue {
    pub(crate) fn new(dispatch: Arc<Py<PyAny>>, max_threads: usize) -> Arc<PyJobQueue> {
        Arc::new(PyJobQueue {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            dispatch,
            max_threads: max_threads.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a job; fails it at once (through `started`) when the queue is closed.
    pub(crate) fn push(self: &Arc<Self>, item: Queued) {
        let mut state = self.lock();
        if state.closed {
            let _ = item.started.send(Err("the worker is closing".to_string()));
            return;
        }
        state.waiting.push_back(item);
        self.wake_one(&mut state);
    }

    /// Wakes an idle thread, or starts one when none is idle and the limit allows.
    fn wake_one(self: &Arc<Self>, state: &mut State) {
        if state.idle > 0 {
            self.wake.notify_one();
        } else if state.threads < self.max_threads {
            let queue = self.clone();
            let spawned = std::thread::Builder::new()
                .name("queuexec-py-jobs".to_string())
                .spawn(move || queue.serve());
            if spawned.is_ok() {
                state.threads += 1;
            } else if state.threads == 0 {
                // No thread at all: fail what waits rather than leave it hanging.
                for item in state.waiting.drain(..) {
                    let _ = item.started.send(Err(
                        "no thread could be started for Python tasks".to_string()
                    ));
                }
            }
        }
    }

    /// The next job, waking a helper when more are queued; `None` when none is queued.
    fn take(self: &Arc<Self>) -> Option<Queued> {
        let mut state = self.lock();
        let item = state.waiting.pop_front()?;
        if !state.waiting.is_empty() {
            self.wake_one(&mut state);
        }
        Some(item)
    }

    /// Waits (GIL released by the caller) until a job is queued; false once closed and empty.
    fn wait_for_jobs(&self) -> bool {
        let mut state = self.lock();
        loop {
            if !state.waiting.is_empty() {
                return true;
            }
            if state.closed {
                return false;
            }
            state.idle += 1;
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
    }

    /// A thread's life: attached to the interpreter once, runs jobs while there are any.
    fn serve(self: Arc<Self>) {
        let attached = Python::try_attach(|py| {
            while py.detach(|| self.wait_for_jobs()) {
                while let Some(item) = self.take() {
                    if item.done.is_closed() {
                        continue; // dropped while it waited (timeout, worker closed)
                    }
                    let started = crate::worker::start_job(py, &self.dispatch, item.job, item.done)
                        .map_err(|e| e.to_string());
                    let _ = item.started.send(started);
                }
            }
        });
        let mut state = self.lock();
        state.threads -= 1;
        if attached.is_none() {
            for item in state.waiting.drain(..) {
                let _ = item
                    .started
                    .send(Err("the Python interpreter is shutting down".to_string()));
            }
        }
    }

    /// No more jobs: threads end once the queue is empty; what waits is failed.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for item in state.waiting.drain(..) {
            let _ = item.started.send(Err("the worker is closing".to_string()));
        }
        self.wake.notify_all();
    }
}
