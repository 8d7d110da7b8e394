//! How a Python worker's jobs reach the dispatcher: through a queue served by a few threads of
//! its own, each attached to the interpreter for its whole life (one thread state, kept), that
//! take the GIL once and run every job queued meanwhile before letting it go.
//!
//! A thread waits for jobs with the GIL released. One thread serves the queue while its jobs
//! keep finishing: handing the GIL between threads costs two context switches, more than a
//! short job, so jobs that finish at once run back to back under one GIL acquisition. A job
//! that blocks (`time.sleep`, I/O, anything that releases the GIL) must not hold up the others,
//! so a watchdog on the worker's runtime looks again after [`STALL`]: if jobs still wait and no
//! job was taken meanwhile, it wakes another thread. Up to `concurrency` threads run jobs at
//! once, as before.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

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

/// How long queued jobs wait, while a thread is serving the queue but takes none of them,
/// before another thread is woken for them: the running job is blocked, not short.
const STALL: Duration = Duration::from_millis(1);

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
    /// Threads serving the queue (out of their wait), and whether one more was woken or started
    /// and has not yet come out of its wait.
    serving: usize,
    woken: bool,
    /// Jobs taken so far (the watchdog's measure of progress), and whether it is armed.
    taken: u64,
    watched: bool,
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
        if state.serving == 0 && !state.woken {
            self.wake_one(&mut state);
        } else if !state.watched {
            self.watch(&mut state);
        }
    }

    /// Arms the watchdog: from the worker's runtime, every [`STALL`] while jobs wait, it wakes
    /// another thread when none of them was taken since its last look. Outside a runtime (no
    /// timer to use) another thread is woken at once.
    fn watch(self: &Arc<Self>, state: &mut State) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.wake_one(state);
            return;
        };
        state.watched = true;
        let queue = self.clone();
        runtime.spawn(async move {
            let mut seen = queue.lock().taken;
            loop {
                tokio::time::sleep(STALL).await;
                let mut state = queue.lock();
                // Nothing waits, or no thread is left to wake: the next push arms it again.
                if state.waiting.is_empty() || state.closed || !queue.can_wake(&state) {
                    state.watched = false;
                    return;
                }
                if state.taken == seen && !state.woken {
                    queue.wake_one(&mut state);
                }
                seen = state.taken;
            }
        });
    }

    /// Whether a thread is idle or one more may be started.
    fn can_wake(&self, state: &State) -> bool {
        state.idle > 0 || state.threads < self.max_threads
    }

    /// Wakes an idle thread, or starts one when none is idle and the limit allows.
    fn wake_one(self: &Arc<Self>, state: &mut State) {
        if state.idle > 0 {
            state.woken = true;
            self.wake.notify_one();
        } else if state.threads < self.max_threads {
            let queue = self.clone();
            let spawned = std::thread::Builder::new()
                .name("queuexec-py-jobs".to_string())
                .spawn(move || queue.serve());
            if spawned.is_ok() {
                state.threads += 1;
                state.woken = true;
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

    /// The next job; `None` when none is queued, and then the thread no longer serves.
    fn take(&self) -> Option<Queued> {
        let mut state = self.lock();
        let Some(item) = state.waiting.pop_front() else {
            state.serving -= 1;
            return None;
        };
        state.taken += 1;
        Some(item)
    }

    /// Waits (GIL released by the caller) until a job is queued, then serves; false once closed
    /// and empty. A thread that looks at the queue answers any wake-up pending (`woken`): at
    /// worst one thread more is woken later, never none.
    fn wait_for_jobs(&self) -> bool {
        let mut state = self.lock();
        loop {
            state.woken = false;
            if !state.waiting.is_empty() {
                state.serving += 1;
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
            state.woken = false;
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
