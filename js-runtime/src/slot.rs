//! Concurrency slots: each slot is one thread owning one [`TaskRuntime`], fed through a channel.
//!
//! A job that must stop — its timeout passed, or the future awaiting it was dropped — is stopped
//! through the isolate's thread-safe handle (`terminate_execution`) and by waking the slot's
//! event loop; the slot then rebuilds its runtime, so the next job starts clean. The watchdog
//! thread enforces deadlines even while a script spins in a loop and its slot thread cannot.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use deno_core::v8;
use queuexec_core::TaskFailure;
use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};

use crate::config::JsConfig;
use crate::error::JsError;
use crate::runtime::TaskRuntime;
use crate::task::TaskSource;

/// Why a running job (or load) was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Its wall-clock limit passed.
    Timeout(Duration),
    /// Nobody waits for its result any more.
    Abandoned,
}

/// What a slot thread is asked to do.
pub(crate) enum SlotMessage {
    /// Run one job.
    Job(JobRequest),
    /// Load this task (replacing any other) and say how it went.
    Load(Arc<TaskSource>, oneshot::Sender<Result<(), String>>),
}

/// One job for a slot.
pub(crate) struct JobRequest {
    pub(crate) id: String,
    pub(crate) data: String,
    pub(crate) shape: queuexec_core::PayloadShape,
    pub(crate) seq: u64,
    pub(crate) timeout: Option<Duration>,
    pub(crate) reply: oneshot::Sender<Result<String, TaskFailure>>,
    /// Returns the slot to the free pool when the slot is done with this job.
    pub(crate) lease: SlotLease,
}

/// Free slots: a LIFO list (the most recently used runtime is the warmest) and a semaphore
/// counting them.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) free: Mutex<Vec<usize>>,
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
}

/// A slot taken from the pool; dropping it gives the slot back.
pub(crate) struct SlotLease {
    pub(crate) index: usize,
    pub(crate) pool: Arc<Pool>,
    pub(crate) _permit: OwnedSemaphorePermit,
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        // Back on the list before the permit (a field) is released.
        lock(&self.pool.free).push(self.index);
    }
}

#[derive(Default)]
struct ControlState {
    current: Option<u64>,
    deadline: Option<(Instant, Duration)>,
    stop: Option<StopReason>,
    isolate: Option<v8::IsolateHandle>,
}

/// What other threads know of one slot: the job it runs and how to stop it.
#[derive(Default)]
pub(crate) struct SlotControl {
    state: Mutex<ControlState>,
    stopped: Notify,
}

impl SlotControl {
    /// Stops job `seq` if it is the one running: terminates its script and wakes its loop.
    pub(crate) fn stop(&self, seq: u64, reason: StopReason) {
        let mut state = lock(&self.state);
        if state.current == Some(seq) && state.stop.is_none() {
            Self::stop_locked(&mut state, reason);
            drop(state);
            self.stopped.notify_one();
        }
    }

    /// Stops whatever job or load is running, if any.
    pub(crate) fn stop_any(&self, reason: StopReason) {
        let current = lock(&self.state).current;
        if let Some(seq) = current {
            self.stop(seq, reason);
        }
    }

    fn stop_locked(state: &mut ControlState, reason: StopReason) {
        state.stop = Some(reason);
        state.deadline = None;
        if let Some(isolate) = &state.isolate {
            isolate.terminate_execution();
        }
    }

    /// Resolves when job `seq` has been stopped.
    async fn stopped(&self, seq: u64) -> StopReason {
        loop {
            let notified = self.stopped.notified();
            {
                let state = lock(&self.state);
                if state.current == Some(seq)
                    && let Some(reason) = state.stop
                {
                    return reason;
                }
            }
            notified.await;
        }
    }
}

/// The controls of every slot, the job counter, and the watchdog's wake-up plan.
pub(crate) struct Controls {
    pub(crate) slots: Vec<SlotControl>,
    next_seq: AtomicU64,
    watch: Mutex<WatchState>,
    watch_wake: Condvar,
}

#[derive(Default)]
struct WatchState {
    shutdown: bool,
    /// When the watchdog will next look; `None` while it sleeps until woken.
    wake_at: Option<Instant>,
}

impl Controls {
    pub(crate) fn new(slots: usize) -> Self {
        Controls {
            slots: (0..slots).map(|_| SlotControl::default()).collect(),
            next_seq: AtomicU64::new(1),
            watch: Mutex::new(WatchState::default()),
            watch_wake: Condvar::new(),
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks `seq` as running on `slot`, with a deadline when `timeout` is set.
    fn begin(&self, slot: usize, seq: u64, timeout: Option<Duration>) {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t).map(|at| (at, t)));
        {
            let mut state = lock(&self.slots[slot].state);
            state.current = Some(seq);
            state.deadline = deadline;
            state.stop = None;
        }
        if let Some((at, _)) = deadline {
            let watch = lock(&self.watch);
            if watch.wake_at.is_none_or(|planned| at < planned) {
                drop(watch);
                self.watch_wake.notify_one();
            }
        }
    }

    /// Marks `slot` idle and says whether (and why) its job was stopped.
    fn end(&self, slot: usize) -> Option<StopReason> {
        let mut state = lock(&self.slots[slot].state);
        state.current = None;
        state.deadline = None;
        state.stop.take()
    }

    fn set_isolate(&self, slot: usize, isolate: Option<v8::IsolateHandle>) {
        lock(&self.slots[slot].state).isolate = isolate;
    }

    /// Asks the watchdog thread to end.
    pub(crate) fn shutdown(&self) {
        lock(&self.watch).shutdown = true;
        self.watch_wake.notify_one();
    }

    /// The watchdog: stops every job whose deadline passed, then sleeps until the next one.
    pub(crate) fn watchdog(&self) {
        let mut watch = lock(&self.watch);
        loop {
            if watch.shutdown {
                return;
            }
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for control in &self.slots {
                let mut state = lock(&control.state);
                if let Some((at, limit)) = state.deadline {
                    if at <= now {
                        SlotControl::stop_locked(&mut state, StopReason::Timeout(limit));
                        drop(state);
                        control.stopped.notify_one();
                    } else if next.is_none_or(|n| at < n) {
                        next = Some(at);
                    }
                }
            }
            watch.wake_at = next;
            watch = match next {
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    self.watch_wake
                        .wait_timeout(watch, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .watch_wake
                    .wait(watch)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

/// A slot's thread and the channel to it.
pub(crate) struct SlotThread {
    pub(crate) tx: Sender<SlotMessage>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

impl SlotThread {
    pub(crate) fn spawn(
        index: usize,
        config: JsConfig,
        controls: Arc<Controls>,
    ) -> Result<SlotThread, JsError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("queuexec-js-{index}"))
            .spawn(move || Slot::new(index, config, controls).serve(rx))
            .map_err(|e| JsError::Engine(format!("cannot start a runtime thread: {e}")))?;
        Ok(SlotThread {
            tx,
            thread: Some(thread),
        })
    }
}

/// The state a slot thread owns.
struct Slot {
    index: usize,
    config: JsConfig,
    controls: Arc<Controls>,
    tokio: Option<tokio::runtime::Runtime>,
    runtime: Option<TaskRuntime>,
    task: Option<Arc<TaskSource>>,
    /// Why there is no usable task, when there is none.
    unusable: String,
}

impl Slot {
    fn new(index: usize, config: JsConfig, controls: Arc<Controls>) -> Self {
        let mut slot = Slot {
            index,
            config,
            controls,
            tokio: None,
            runtime: None,
            task: None,
            unusable: "no task.js is loaded on this worker yet".into(),
        };
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => slot.tokio = Some(rt),
            Err(e) => slot.unusable = format!("the JavaScript runtime thread could not start: {e}"),
        }
        // Build the runtime now, so the first load pays only for the task itself.
        if let Err(e) = slot.fresh_runtime() {
            slot.unusable = e.to_string();
        }
        slot
    }

    fn serve(mut self, rx: Receiver<SlotMessage>) {
        while let Some(message) = next_message(&rx) {
            match message {
                SlotMessage::Job(job) => self.run_job(job),
                SlotMessage::Load(task, reply) => {
                    let result = self.load(task).map_err(|e| e.to_string());
                    let _ = reply.send(result);
                }
            }
        }
        self.controls.set_isolate(self.index, None);
    }

    /// Makes sure `self.runtime` is a runtime with no task loaded.
    fn fresh_runtime(&mut self) -> Result<(), JsError> {
        if self
            .runtime
            .as_mut()
            .is_some_and(|rt| !rt.is_loaded() && !rt.heap_exhausted())
        {
            return Ok(());
        }
        self.controls.set_isolate(self.index, None);
        self.runtime = None;
        let Some(tokio) = &self.tokio else {
            return Err(JsError::Engine(self.unusable.clone()));
        };
        let _entered = tokio.enter();
        let mut runtime =
            std::panic::catch_unwind(AssertUnwindSafe(|| TaskRuntime::new(&self.config)))
                .map_err(|panic| {
                    JsError::Engine(format!(
                        "the JavaScript runtime could not be created ({})",
                        panic_text(panic.as_ref())
                    ))
                })??;
        self.controls
            .set_isolate(self.index, Some(runtime.isolate_handle()));
        self.runtime = Some(runtime);
        Ok(())
    }

    fn load(&mut self, task: Arc<TaskSource>) -> Result<(), JsError> {
        self.task = Some(task);
        self.load_current()
            .inspect_err(|e| self.unusable = e.to_string())
    }

    /// Loads `self.task` into a fresh runtime, bounded by the load timeout.
    fn load_current(&mut self) -> Result<(), JsError> {
        let Some(task) = self.task.clone() else {
            return Err(JsError::Load("no task".into()));
        };
        self.fresh_runtime()?;
        let (Some(tokio), Some(runtime)) = (&self.tokio, self.runtime.as_mut()) else {
            return Err(JsError::Engine(self.unusable.clone()));
        };
        let seq = self.controls.next_seq();
        self.controls
            .begin(self.index, seq, Some(self.config.load_timeout));
        let loaded = {
            let _entered = tokio.enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| runtime.load(&task)))
        };
        let stopped = self.controls.end(self.index);
        let heap_exhausted = runtime.heap_exhausted();
        let op_panicked = runtime.op_panicked();
        let result = match (loaded, stopped) {
            (_, Some(StopReason::Timeout(limit))) => Err(JsError::Load(format!(
                "task.js did not finish loading within {} (its top-level code or constructor does not end)",
                human(limit)
            ))),
            (_, Some(StopReason::Abandoned)) => Err(JsError::Load("loading was cancelled".into())),
            _ if heap_exhausted => Err(JsError::Load(format!(
                "task.js ran out of JavaScript heap while loading (limit {})",
                mib(self.config.heap_limit_bytes)
            ))),
            _ if op_panicked => Err(JsError::Load(
                "the JavaScript runtime failed internally while loading task.js (an op panicked; see the worker's log)".into(),
            )),
            (Ok(result), None) => result,
            (Err(_), None) => Err(JsError::Load(
                "the JavaScript engine failed while loading task.js".into(),
            )),
        };
        if result.is_err() {
            // The runtime holds a half-loaded or stopped task: never reuse it.
            self.discard_runtime();
        }
        result
    }

    fn discard_runtime(&mut self) {
        self.controls.set_isolate(self.index, None);
        if let Some(runtime) = self.runtime.take() {
            let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(runtime)));
        }
    }

    fn run_job(&mut self, job: JobRequest) {
        let JobRequest {
            id,
            data,
            shape,
            seq,
            timeout,
            reply,
            lease,
        } = job;
        if reply.is_closed() {
            return; // abandoned while queued
        }
        let ready = self.runtime.as_ref().is_some_and(TaskRuntime::is_loaded);
        let (Some(tokio), Some(runtime), true) = (&self.tokio, self.runtime.as_mut(), ready) else {
            let _ = reply.send(Err(TaskFailure::new(self.unusable.clone())));
            return;
        };
        self.controls.begin(self.index, seq, timeout);
        let control = &self.controls.slots[self.index];
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            tokio.block_on(async {
                tokio::select! {
                    biased;
                    result = runtime.run_shaped(&id, &data, shape) => result,
                    reason = control.stopped(seq) => Err(TaskFailure::new(format!("{reason:?}"))),
                }
            })
        }));
        let stopped = self.controls.end(self.index);
        let heap_exhausted = runtime.heap_exhausted();
        // An op that panicked has already failed the job with its own error (see ops::guarded).
        let op_panicked = runtime.op_panicked();
        // A stop we asked for explains a termination; any other termination is the heap limit.
        let result = match (&outcome, stopped) {
            (_, Some(StopReason::Timeout(limit))) => Err(TaskFailure::new(format!(
                "the job timed out after {} and was stopped",
                human(limit)
            ))),
            (_, Some(StopReason::Abandoned)) => Err(TaskFailure::new("the job was cancelled")),
            _ if heap_exhausted => Err(TaskFailure::new(format!(
                "the job ran out of JavaScript heap (limit {} per runtime) and was stopped",
                mib(self.config.heap_limit_bytes)
            ))),
            (Ok(result), None) => result.clone(),
            (Err(panic), None) => Err(TaskFailure::new(format!(
                "the JavaScript runtime failed internally while running the job ({}); the worker rebuilt it and goes on",
                panic_text(panic.as_ref())
            ))),
        };
        let _ = reply.send(result);
        if stopped.is_some() || heap_exhausted || op_panicked || outcome.is_err() {
            self.discard_runtime();
            if let Err(e) = self.load_current() {
                self.unusable = format!("{e} (while rebuilding the runtime after a stopped job)");
                tracing::warn!(slot = self.index, "{}", self.unusable);
            }
        }
        drop(lease);
    }
}

/// How long a slot that just finished a job polls for the next before it sleeps: a worker
/// with queued jobs hands the next one over within microseconds, and catching it awake saves
/// a thread wake-up per job.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// The next message for a slot, or `None` when the executor is gone.
fn next_message(rx: &Receiver<SlotMessage>) -> Option<SlotMessage> {
    let started = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(message) => return Some(message),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) if started.elapsed() < SPIN_BEFORE_SLEEP => {
                std::hint::spin_loop();
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// The message a panic carried, for the job's error.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| format!("panic: {s}"))
        .or_else(|| {
            payload
                .downcast_ref::<String>()
                .map(|s| format!("panic: {s}"))
        })
        .unwrap_or_else(|| "a panic".to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn mib(bytes: usize) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
