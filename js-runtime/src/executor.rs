//! [`JsExecutor`]: runs jobs in a pool of sandboxed JavaScript runtimes, one per slot.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use futures::future::BoxFuture;
use queuexec_core::Manifest;
use queuexec_core::{Executor, JobInput, TaskFailure};
use tokio::sync::oneshot;

use crate::config::JsConfig;
use crate::error::JsError;
use crate::slot::{Controls, JobRequest, Pool, SlotLease, SlotMessage, SlotThread, StopReason};
use crate::task::TaskSource;

/// Runs a master's task.js for a worker: `concurrency` runtimes, each on its own thread,
/// sandboxed, with per-job timeouts and a heap limit per runtime.
///
/// Cloning is cheap and shares the runtimes. Load a task with [`JsExecutor::load`] (or let the
/// worker call [`Executor::assets_changed`]), then run jobs with [`Executor::run`].
#[derive(Clone)]
pub struct JsExecutor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JsExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsExecutor")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: JsConfig,
    slots: Vec<SlotThread>,
    controls: Arc<Controls>,
    pool: Arc<Pool>,
    watchdog: Option<JoinHandle<()>>,
}

impl JsExecutor {
    /// Starts the runtimes (in the background) and the watchdog that enforces timeouts.
    pub fn new(config: JsConfig) -> Result<JsExecutor, JsError> {
        if config.concurrency == 0 {
            return Err(JsError::Config("concurrency must be at least 1".into()));
        }
        if config.heap_limit_bytes < 16 * 1024 * 1024 {
            return Err(JsError::Config(format!(
                "heap_limit_bytes is {}; give each runtime at least 16 MiB",
                config.heap_limit_bytes
            )));
        }
        let controls = Arc::new(Controls::new(config.concurrency));
        let watchdog = {
            let controls = controls.clone();
            std::thread::Builder::new()
                .name("queuexec-js-watchdog".into())
                .spawn(move || controls.watchdog())
                .map_err(|e| JsError::Engine(format!("cannot start the watchdog thread: {e}")))?
        };
        let mut inner = Inner {
            config: config.clone(),
            slots: Vec::with_capacity(config.concurrency),
            controls: controls.clone(),
            pool: Arc::new(Pool {
                free: Mutex::new((0..config.concurrency).rev().collect()),
                permits: Arc::new(tokio::sync::Semaphore::new(config.concurrency)),
            }),
            watchdog: Some(watchdog),
        };
        // On error, dropping `inner` stops what was started.
        for index in 0..config.concurrency {
            inner
                .slots
                .push(SlotThread::spawn(index, config.clone(), controls.clone())?);
        }
        Ok(JsExecutor {
            inner: Arc::new(inner),
        })
    }

    /// The configuration this executor runs with.
    pub fn config(&self) -> &JsConfig {
        &self.inner.config
    }

    /// Loads `task` into every runtime, replacing the previous task. Jobs already handed to a
    /// runtime finish with the task they started with; jobs run after this resolves use the new
    /// one. Fails with the first runtime's load error (task.js threw, a module is missing, ...).
    pub async fn load(&self, task: TaskSource) -> Result<(), JsError> {
        let task = Arc::new(task);
        let mut replies = Vec::with_capacity(self.inner.slots.len());
        for slot in &self.inner.slots {
            let (tx, rx) = oneshot::channel();
            slot.tx
                .send(SlotMessage::Load(task.clone(), tx))
                .map_err(|_| JsError::Closed)?;
            replies.push(rx);
        }
        let mut first_error = None;
        for rx in replies {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    first_error.get_or_insert(JsError::Load(message));
                }
                Err(_) => {
                    first_error.get_or_insert(JsError::Closed);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Loads `dir/task.js`, with bare requires resolved in `node_modules` when given — for
    /// tests, benchmarks and running a task from a directory without a master.
    pub async fn load_dir(
        &self,
        dir: impl AsRef<Path>,
        node_modules: Option<PathBuf>,
    ) -> Result<(), JsError> {
        self.load(TaskSource::from_dir(dir.as_ref(), node_modules)?)
            .await
    }

    async fn run_job(inner: Arc<Inner>, job: JobInput) -> Result<String, TaskFailure> {
        let closed = || TaskFailure::new("the JavaScript runtime is closed");
        let permit = inner
            .pool
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let index = inner
            .pool
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let Some(index) = index else {
            return Err(TaskFailure::new(
                "internal error: no free JavaScript runtime although one was reserved",
            ));
        };
        let lease = SlotLease {
            index,
            pool: inner.pool.clone(),
            _permit: permit,
        };
        let seq = inner.controls.next_seq();
        let (reply, result) = oneshot::channel();
        let request = JobRequest {
            id: job.id,
            data: job.data,
            shape: job.shape,
            seq,
            timeout: job.timeout.or(inner.config.default_timeout),
            reply,
            lease,
        };
        inner.slots[index]
            .tx
            .send(SlotMessage::Job(request))
            .map_err(|_| closed())?;
        // If this future is dropped before the result arrives, the job is stopped.
        let guard = StopOnDrop {
            controls: &inner.controls,
            slot: index,
            seq,
            armed: true,
        };
        let result = result.await;
        guard.disarm();
        result.unwrap_or_else(|_| {
            Err(TaskFailure::new(
                "the JavaScript runtime thread stopped unexpectedly",
            ))
        })
    }
}

struct StopOnDrop<'a> {
    controls: &'a Controls,
    slot: usize,
    seq: u64,
    armed: bool,
}

impl StopOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.controls.slots[self.slot].stop(self.seq, StopReason::Abandoned);
        }
    }
}

impl Executor for JsExecutor {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        Box::pin(JsExecutor::run_job(self.inner.clone(), job))
    }

    /// Loads the manifest's task.js from `workplace`, unpacking its dependency bundle first.
    fn assets_changed(
        &self,
        workplace: &Path,
        manifest: &Manifest,
    ) -> BoxFuture<'static, Result<(), TaskFailure>> {
        let this = self.clone();
        let workplace = workplace.to_path_buf();
        let manifest = manifest.clone();
        Box::pin(async move {
            // Unpacking reads and writes files: keep it off the caller's async threads.
            let (tx, rx) = oneshot::channel();
            std::thread::Builder::new()
                .name("queuexec-js-unpack".into())
                .spawn(move || {
                    let _ = tx.send(TaskSource::from_workplace(&workplace, &manifest));
                })
                .map_err(|e| {
                    TaskFailure::new(format!(
                        "cannot start a thread to unpack the dependency bundle: {e}"
                    ))
                })?;
            let task = rx
                .await
                .map_err(|_| {
                    TaskFailure::new("unpacking the dependency bundle failed unexpectedly")
                })?
                .map_err(|e| TaskFailure::new(e.to_string()))?;
            this.load(task)
                .await
                .map_err(|e| TaskFailure::new(e.to_string()))
        })
    }
    /// The embedded runtime cannot run npm: it needs the master's dependency bundle.
    fn wants_dependency_bundle(&self) -> bool {
        true
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.controls.shutdown();
        // Closing the channels ends the slot threads once their current job ends; stop those
        // jobs so that is soon.
        let threads: Vec<_> = self
            .slots
            .iter_mut()
            .filter_map(|s| s.thread.take())
            .collect();
        self.slots.clear();
        for control in &self.controls.slots {
            control.stop_any(StopReason::Abandoned);
        }
        for thread in threads {
            let _ = thread.join();
        }
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
    }
}
