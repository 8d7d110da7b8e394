//! `queuexec._native.Worker`: the core [`Worker`] running jobs through Python callables.
//!
//! The executor ([`PyExecutor`]) hands each job to one Python function, the dispatcher that the
//! Python class `queuexec.Worker` builds from its `tasks` mapping. The dispatcher is called on
//! threads of the worker's own ([`crate::batch`]), never on a runtime worker thread, so waiting
//! for the GIL never stalls the network; they run the jobs queued meanwhile under one GIL
//! acquisition. It runs a plain callable right there and reports through `done`
//! before returning; it schedules an `async def` one on an asyncio loop and returns a function
//! that cancels it, which is called if the job's future is dropped (timeout, worker closed).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use queuexec_core::{
    EventStream, Executor, JobInput, TaskFailure, Worker, WorkerConfig, WorkerEvent,
};
use queuexec_js::{JsConfig, JsExecutor};
use tokio::sync::oneshot;

use crate::batch::{PyJobQueue, Queued};
use crate::error::{CoreResultExt, config_error};
use crate::events::{pull, worker_events};
use crate::runtime::{block_on, runtime, seconds, wait_for};

/// Runs jobs through the Python dispatcher, or through `fallback` (task.js) when no Python task
/// handles the job's type.
struct PyExecutor {
    jobs: Arc<PyJobQueue>,
    python_types: HashSet<String>,
    catch_all: bool,
    fallback: Option<Arc<dyn Executor>>,
}

impl PyExecutor {
    fn handles(&self, task_type: Option<&str>) -> bool {
        self.catch_all || task_type.is_some_and(|t| self.python_types.contains(t))
    }

    fn no_task(&self, task_type: Option<&str>) -> TaskFailure {
        TaskFailure::new(format!(
            "{} and no task.js runtime (run_task_js=False)",
            no_python_task(&self.python_types, task_type)
        ))
    }
}

/// What a job without a Python task lacks, naming the tasks the worker has.
fn no_python_task(python_types: &HashSet<String>, task_type: Option<&str>) -> String {
    let mut known: Vec<&str> = python_types.iter().map(String::as_str).collect();
    known.sort_unstable();
    match task_type {
        Some(t) => format!("this Python worker has no task for type {t:?} (it has {known:?})"),
        None => format!(
            "the job names no task type and this Python worker has no default task (its types: {known:?})"
        ),
    }
}

impl Executor for PyExecutor {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        if !self.handles(job.task_type.as_deref()) {
            return match &self.fallback {
                Some(fallback) => fallback.run(job),
                None => Box::pin(futures::future::ready(Err(
                    self.no_task(job.task_type.as_deref())
                ))),
            };
        }
        let (started_tx, started_rx) = oneshot::channel();
        let (tx, rx) = oneshot::channel::<(bool, String)>();
        self.jobs.push(Queued {
            job,
            started: started_tx,
            done: tx,
        });
        Box::pin(async move {
            let cancel = match started_rx.await {
                Ok(Ok(cancel)) => CancelOnDrop(cancel),
                Ok(Err(e)) => {
                    return Err(TaskFailure::new(format!(
                        "the Python task could not be started: {e}"
                    )));
                }
                Err(_) => {
                    return Err(TaskFailure::new("the Python interpreter is shutting down"));
                }
            };
            let outcome = rx.await;
            cancel.disarm();
            match outcome {
                Ok((true, json)) => Ok(json),
                Ok((false, error)) => Err(TaskFailure::new(error)),
                Err(_) => Err(TaskFailure::new(
                    "the Python task ended without reporting a result",
                )),
            }
        })
    }

    fn assets_changed(
        &self,
        workplace: &std::path::Path,
        manifest: &queuexec_core::Manifest,
    ) -> BoxFuture<'static, Result<(), TaskFailure>> {
        match &self.fallback {
            Some(fallback) => fallback.assets_changed(workplace, manifest),
            None => Box::pin(futures::future::ready(Ok(()))),
        }
    }
    /// Only the master's task.js (the fallback, in the embedded runtime) needs the bundle.
    fn wants_dependency_bundle(&self) -> bool {
        self.fallback
            .as_ref()
            .is_some_and(|fallback| fallback.wants_dependency_bundle())
    }
}

/// Calls the dispatcher with the job and a `done(ok, text)` callback; returns its cancel
/// function (`None` when the job already finished).
pub(crate) fn start_job(
    py: Python<'_>,
    dispatch: &Py<PyAny>,
    job: JobInput,
    tx: oneshot::Sender<(bool, String)>,
) -> PyResult<Option<Py<PyAny>>> {
    let done = Bound::new(
        py,
        Done {
            tx: Mutex::new(Some(tx)),
        },
    )?;
    let timeout = job.timeout.map(|t| t.as_secs_f64());
    let cancel = dispatch.call1(
        py,
        (job.id, job.data, job.task_type, job.attempt, timeout, done),
    )?;
    Ok(if cancel.is_none(py) {
        None
    } else {
        Some(cancel)
    })
}

/// `done(ok, text)`: a job's outcome, reported once (later calls are ignored).
#[pyclass(module = "queuexec._native", frozen)]
struct Done {
    tx: Mutex<Option<oneshot::Sender<(bool, String)>>>,
}

#[pymethods]
impl Done {
    fn __call__(&self, ok: bool, text: String) {
        if let Some(tx) = lock(&self.tx).take() {
            let _ = tx.send((ok, text));
        }
    }
}

/// Cancels an `async def` task whose job future was dropped before it finished.
struct CancelOnDrop(Option<Py<PyAny>>);

impl CancelOnDrop {
    /// The job finished: nothing to cancel. (Dropping the reference off the GIL is fine: pyo3
    /// defers the decref.)
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(cancel) = self.0.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::spawn_blocking(move || {
                Python::try_attach(|py| {
                    if let Err(e) = cancel.call0(py) {
                        e.write_unraisable(py, None);
                    }
                })
            });
        }
    }
}

/// A running worker (the native half of `queuexec.Worker`).
#[pyclass(name = "Worker", module = "queuexec._native", frozen)]
pub(crate) struct PyWorker {
    worker: Worker,
    /// The worker's events, when `keep_events` asked for them.
    events: Option<Arc<EventStream<WorkerEvent>>>,
    /// The jobs for Python tasks and their threads.
    jobs: Arc<PyJobQueue>,
    closed: AtomicBool,
}

#[pymethods]
impl PyWorker {
    /// Starts a worker; see `queuexec.Worker` for the meaning of each argument. `dispatch` is
    /// called as `dispatch(id, data_json, task_type, attempt, timeout_s, done)` for jobs whose
    /// type is in `python_types` (every job when `catch_all`).
    #[staticmethod]
    #[pyo3(signature = (
        *, token, transfer_token, dispatch, python_types, catch_all, master=None,
        name=None, concurrency=None, prefetch=None, workplace=None,
        room_dir=None, default_timeout=None, run_task_js=true, keep_events=false,
        stats_interval=None, exit_when_drained=false, bootstrap=Vec::new()
    ))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        py: Python<'_>,
        token: String,
        transfer_token: String,
        dispatch: Py<PyAny>,
        python_types: Vec<String>,
        catch_all: bool,
        master: Option<String>,
        name: Option<String>,
        concurrency: Option<usize>,
        prefetch: Option<usize>,
        workplace: Option<PathBuf>,
        room_dir: Option<PathBuf>,
        default_timeout: Option<f64>,
        run_task_js: bool,
        keep_events: bool,
        stats_interval: Option<f64>,
        exit_when_drained: bool,
        bootstrap: Vec<String>,
    ) -> PyResult<PyWorker> {
        // None: the core's default, already in `config`.
        let mut config = WorkerConfig::new(token, transfer_token);
        config.bootstrap = bootstrap;
        if let Some(concurrency) = concurrency {
            config.concurrency =
                queuexec_core::config::check_concurrency(concurrency).or_raise(py)?;
        }
        let concurrency = config.concurrency;
        config.master = master;
        if let Some(name) = name {
            config.name = name;
        }
        if let Some(prefetch) = prefetch {
            config.prefetch = prefetch;
        }
        if let Some(workplace) = workplace {
            config.workplace = workplace;
        }
        config.room_dir = room_dir;
        config.default_timeout = seconds("timeout", default_timeout)?;
        if let Some(interval) = seconds("stats_interval", stats_interval)? {
            config.stats_interval = interval;
        }
        config.exit_when_drained = exit_when_drained;
        let python_types: HashSet<String> = python_types.into_iter().collect();
        let jobs = PyJobQueue::new(Arc::new(dispatch), concurrency);
        // task.js (embedded runtime) reaches the master through this worker, once started.
        let master_link = queuexec_js::MasterLink::default();
        let executor = Arc::new(PyExecutor {
            jobs: jobs.clone(),
            fallback: task_js_executor(
                run_task_js,
                concurrency,
                config.default_timeout,
                &python_types,
                &master_link,
            ),
            python_types,
            catch_all,
        });
        let (worker, mut events) = block_on(py, Worker::start(config, executor))?.or_raise(py)?;
        master_link.connect(worker.clone());
        let events = if keep_events {
            Some(Arc::new(EventStream::new(events)))
        } else {
            // Nobody reads them (no on_event): log them, so the channel does not grow by one
            // event per job.
            runtime()?.spawn(async move {
                while let Some(event) = events.recv().await {
                    log_event(&event);
                }
            });
            None
        };
        Ok(PyWorker {
            worker,
            events,
            jobs,
            closed: AtomicBool::new(false),
        })
    }

    /// This worker's peer id.
    #[getter]
    fn peer_id(&self) -> String {
        self.worker.peer_id()
    }

    /// The name the master reports for this worker.
    #[getter]
    fn name(&self) -> String {
        self.worker.name().to_string()
    }

    /// Asks the master (the GIL is released while waiting): `op` is `lookup` (a = name,
    /// b = key), `setLookup` (a = name, b = key, c = value as JSON) or `message` (a = cmd,
    /// c = data as JSON). Returns `(ok, value)`: the master's JSON answer, or its error text.
    #[pyo3(signature = (op, a, b=None, c=None))]
    fn call(
        &self,
        py: Python<'_>,
        op: &str,
        a: String,
        b: Option<String>,
        c: Option<String>,
    ) -> PyResult<(bool, String)> {
        let request = queuexec_core::WorkerRequest::from_op(op, a, b, c).or_raise(py)?;
        let worker = self.worker.clone();
        let answer = block_on(py, async move { worker.call(request).await })?.or_raise(py)?;
        Ok(match answer {
            Ok(json) => (true, json),
            Err(error) => (false, error),
        })
    }

    /// Adds `delta` to the custom metric `name` (reported to the master with the counters);
    /// False when refused (empty or long name, not finite, too many names).
    fn metric(&self, name: &str, delta: f64) -> bool {
        self.worker.metric(name, delta)
    }

    /// Counts of jobs and whether the worker is connected, as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.worker.stats();
        let dict = PyDict::new(py);
        dict.set_item("done", stats.done)?;
        dict.set_item("failed", stats.failed)?;
        dict.set_item("running", stats.running)?;
        dict.set_item("connected", stats.connected)?;
        dict.set_item("path", stats.path.map(|p| p.as_str()))?;
        dict.set_item("relayed_bytes", stats.relayed_bytes)?;
        Ok(dict)
    }

    /// Waits up to `timeout` seconds (forever when `None`) for events and returns up to `max`
    /// of them as `queuexec.events` objects (one GIL acquisition per batch); `[]` when the time
    /// ran out, `None` once the worker has stopped and every event was read. Raises
    /// `ConfigError` unless the worker was started with `keep_events=True`.
    #[pyo3(signature = (timeout=None, max=1024))]
    fn next_events<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        max: usize,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(events) = &self.events else {
            return Err(config_error(
                "this worker was started without keep_events=True, so its events are logged, not kept",
            ));
        };
        match pull(py, events, &self.closed, timeout, max)? {
            Some(batch) => worker_events(py, batch).map(Some),
            None => Ok(None),
        }
    }

    /// Waits up to `timeout` seconds (forever when `None`) for the worker to stop. Returns
    /// whether it stopped; raises `UnauthorizedError` when the master refused it.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = seconds("timeout", timeout)?;
        let worker = self.worker.clone();
        match wait_for(py, timeout, || {
            let worker = worker.clone();
            async move { worker.wait().await }
        })? {
            Some(outcome) => outcome.or_raise(py).map(|()| true),
            None => Ok(false),
        }
    }

    /// Stops the worker; running jobs are abandoned and the master hands them to other
    /// workers. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let worker = self.worker.clone();
        let closed = block_on(py, async move { worker.close().await });
        self.jobs.close();
        if let Some(events) = &self.events {
            events.close();
        }
        closed
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for PyWorker {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::AcqRel)
            && let Ok(rt) = runtime()
        {
            let worker = self.worker.clone();
            let jobs = self.jobs.clone();
            rt.spawn(async move {
                worker.close().await;
                jobs.close();
            });
        }
    }
}

/// The executor for jobs no Python task handles: the master's task.js in the embedded runtime.
fn task_js_executor(
    wanted: bool,
    concurrency: usize,
    default_timeout: Option<Duration>,
    python_types: &HashSet<String>,
    master: &queuexec_js::MasterLink,
) -> Option<Arc<dyn Executor>> {
    wanted.then(|| {
        Arc::new(LazyTaskJs::new(
            concurrency,
            default_timeout,
            python_types.clone(),
            master.clone(),
        )) as Arc<dyn Executor>
    })
}

/// The embedded runtime, started on first need: a worker whose jobs all have Python tasks never
/// pays for JavaScript runtimes (threads and heaps).
struct LazyTaskJs {
    config: JsConfig,
    executor: Mutex<Option<JsExecutor>>,
    /// Why the master's task.js could not be loaded, reported by the jobs that need it.
    load_error: Arc<Mutex<Option<String>>>,
    /// The Python tasks, named in errors.
    python_types: HashSet<String>,
}

impl LazyTaskJs {
    fn new(
        concurrency: usize,
        default_timeout: Option<Duration>,
        python_types: HashSet<String>,
        master: queuexec_js::MasterLink,
    ) -> Self {
        let mut config = JsConfig {
            concurrency: concurrency.max(1),
            master,
            ..JsConfig::default()
        };
        if default_timeout.is_some() {
            config.default_timeout = default_timeout;
        }
        LazyTaskJs {
            config,
            executor: Mutex::new(None),
            load_error: Arc::new(Mutex::new(None)),
            python_types,
        }
    }

    fn executor(&self) -> Result<JsExecutor, TaskFailure> {
        let mut slot = lock(&self.executor);
        if let Some(executor) = slot.as_ref() {
            return Ok(executor.clone());
        }
        let executor = JsExecutor::new(self.config.clone()).map_err(|e| {
            TaskFailure::new(format!(
                "the embedded JavaScript runtime could not start: {e}"
            ))
        })?;
        *slot = Some(executor.clone());
        Ok(executor)
    }
}

impl Executor for LazyTaskJs {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        if let Some(error) = lock(&self.load_error).clone() {
            let missing = no_python_task(&self.python_types, job.task_type.as_deref());
            return Box::pin(futures::future::ready(Err(TaskFailure::new(format!(
                "{missing}, and {error}"
            )))));
        }
        match self.executor() {
            Ok(executor) => executor.run(job),
            Err(e) => Box::pin(futures::future::ready(Err(e))),
        }
    }

    /// task.js runs in the embedded runtime, which cannot run npm.
    fn wants_dependency_bundle(&self) -> bool {
        true
    }

    /// Loads the master's task.js. Never fails the bundle: a task.js that does not load must not
    /// stop the Python tasks, so the error is kept for the jobs that needed task.js.
    fn assets_changed(
        &self,
        workplace: &std::path::Path,
        manifest: &queuexec_core::Manifest,
    ) -> BoxFuture<'static, Result<(), TaskFailure>> {
        let has_task = queuexec_core::config::task_entry(&manifest.files).is_some();
        let load_error = self.load_error.clone();
        if !has_task {
            *lock(&load_error) = Some("the master shipped no task.js to run instead".to_string());
            return Box::pin(futures::future::ready(Ok(())));
        }
        let loading = self
            .executor()
            .map(|executor| executor.assets_changed(workplace, manifest));
        Box::pin(async move {
            let outcome = match loading {
                Ok(loading) => loading.await,
                Err(e) => Err(e),
            };
            *lock(&load_error) = match outcome {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!("the master's task.js could not be loaded: {e}");
                    Some(format!(
                        "the master's task.js, which would run instead, could not be loaded: {e}"
                    ))
                }
            };
            Ok(())
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_event(event: &WorkerEvent) {
    match event {
        WorkerEvent::Connected { master, path } => {
            tracing::info!(%master, %path, "connected to the master")
        }
        WorkerEvent::Disconnected { reason } => {
            tracing::info!(%reason, "disconnected from the master")
        }
        WorkerEvent::AssetsInstalled { bundle, fetched } => {
            tracing::info!(%bundle, fetched, "assets installed")
        }
        WorkerEvent::JobFinished { id, error } => {
            tracing::debug!(job = %id, ?error, "job finished")
        }
        WorkerEvent::Refused { reason, code } => {
            tracing::warn!(%reason, code, "the master refused this worker")
        }
        _ => {}
    }
}
