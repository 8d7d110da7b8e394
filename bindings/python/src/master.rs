//! `queuexec._native.Master`: the core [`Master`] for Python.
//!
//! The Python class `queuexec.Master` (python/queuexec/master.py) wraps this one: it resolves
//! tokens, turns data into JSON and back, and offers the iterators and the callback. Everything
//! here takes plain values so that the wrapper stays the only place that knows Python's
//! conventions.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use queuexec_core::AssetSpec;
use queuexec_core::{EventStream, JobSpec, Master, MasterConfig, MasterEvent, StoreConfig};

use crate::error::{CoreResultExt, config_error};
use crate::events::{master_events, pull};
use crate::runtime::{block_on, runtime, seconds};

/// One job as the Python wrapper hands it over: a `queuexec.job.EncodedJob`, the named tuple
/// `(id, data_json, type, priority, retries, timeout, delay, in_memory)` (seconds), read here as
/// the tuple it is (no attribute lookups per job).
type JobTuple = (
    Option<String>,
    String,
    Option<String>,
    i32,
    Option<u32>,
    Option<f64>,
    Option<f64>,
    bool,
);

/// One push receipt for Python: `(id, duplicate, repeated)` (the core's `PushReceipt`), which
/// the wrapper turns into a `queuexec.PushReceipt`.
type Receipt = (String, bool, bool);

/// A running master (the native half of `queuexec.Master`).
#[pyclass(name = "Master", module = "queuexec._native", frozen)]
pub(crate) struct PyMaster {
    master: Master,
    events: Arc<EventStream<MasterEvent>>,
    closed: AtomicBool,
    dashboard: std::sync::Mutex<Option<queuexec_dashboard::Dashboard>>,
    dashboard_url: Option<String>,
}

#[pymethods]
impl PyMaster {
    /// Starts a master; see `queuexec.Master` for the meaning of each argument.
    #[staticmethod]
    #[pyo3(signature = (
        *, token, transfer_token, store=None, listen=None, room_dir=None, announce=true,
        assets=Vec::new(), asset_base_dir=None, dependencies=Vec::new(), retries=None,
        lease_ttl=None, retry_backoff=None, max_workers=None, auto_ack=true, watch_assets=None,
        idempotent_ids=false, stats_interval=None, dashboard=None, dashboard_token=None,
        bootstrap=Vec::new(), max_resident_jobs=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        py: Python<'_>,
        token: String,
        transfer_token: String,
        store: Option<PathBuf>,
        listen: Option<Vec<String>>,
        room_dir: Option<PathBuf>,
        announce: bool,
        assets: Vec<(String, PathBuf, String)>,
        asset_base_dir: Option<PathBuf>,
        dependencies: Vec<String>,
        retries: Option<u32>,
        lease_ttl: Option<f64>,
        retry_backoff: Option<f64>,
        max_workers: Option<u32>,
        auto_ack: bool,
        watch_assets: Option<bool>,
        idempotent_ids: bool,
        stats_interval: Option<f64>,
        dashboard: Option<String>,
        dashboard_token: Option<String>,
        bootstrap: Vec<String>,
        max_resident_jobs: Option<usize>,
    ) -> PyResult<PyMaster> {
        let mut config = MasterConfig::new(token, transfer_token);
        if let Some(n) = max_resident_jobs {
            if n == 0 {
                return Err(crate::error::config_error(
                    "max_resident_jobs must be at least 1 (the most ready jobs kept in memory)",
                ));
            }
            config.max_resident_jobs = n;
        }
        config.bootstrap = bootstrap;
        config.store = match store {
            Some(path) => StoreConfig::Sqlite(path),
            None => StoreConfig::Memory,
        };
        if let Some(listen) = listen {
            config.listen = listen;
        }
        config.room_dir = room_dir;
        config.announce = announce;
        config.assets = assets
            .into_iter()
            .map(|(name, master_path, worker_path)| AssetSpec {
                name,
                master_path,
                worker_path,
            })
            .collect();
        if let Some(dir) = asset_base_dir {
            config.asset_base_dir = dir;
        }
        config.dependencies = dependencies;
        // None: the core's default, already in `config`.
        if let Some(retries) = retries {
            config.default_retries = retries;
        }
        if let Some(ttl) = seconds("lease_ttl", lease_ttl)? {
            config.lease_ttl = ttl;
        }
        if let Some(backoff) = seconds("retry_backoff", retry_backoff)? {
            config.retry_backoff = backoff;
        }
        if let Some(max) = max_workers {
            config.max_workers = max;
        }
        if let Some(watch) = watch_assets {
            config.watch_assets = watch;
        }
        config.auto_ack = auto_ack;
        config.idempotent_ids = idempotent_ids;
        if let Some(interval) = seconds("stats_interval", stats_interval)? {
            config.stats_interval = interval;
        }
        let dashboard =
            dashboard
                .filter(|a| !a.is_empty())
                .map(|addr| queuexec_dashboard::DashboardConfig {
                    addr,
                    token: dashboard_token,
                });
        if let Some(dashboard) = &dashboard {
            dashboard.validate().or_raise(py)?;
        }
        let (master, rx) = block_on(py, Master::start(config))?.or_raise(py)?;
        let dashboard = match dashboard {
            Some(config) => {
                let started = {
                    let master = master.clone();
                    block_on(py, async move {
                        match queuexec_dashboard::Dashboard::start(master.clone(), config).await {
                            Ok(d) => Ok(d),
                            Err(e) => {
                                let _ = master.close().await;
                                Err(e)
                            }
                        }
                    })?
                };
                Some(started.or_raise(py)?)
            }
            None => None,
        };
        Ok(PyMaster {
            master,
            events: Arc::new(EventStream::new(rx)),
            closed: AtomicBool::new(false),
            dashboard_url: dashboard.as_ref().map(|d| d.url()),
            dashboard: std::sync::Mutex::new(dashboard),
        })
    }

    /// The master's libp2p peer id.
    #[getter]
    fn peer_id(&self) -> String {
        self.master.peer_id()
    }

    /// The room id: SHA-256 of the token, hex.
    #[getter]
    fn room_id(&self) -> String {
        self.master.room_id().to_string()
    }

    /// Addresses workers can dial, each ending in `/p2p/<peer id>`.
    #[getter]
    fn listen_addrs(&self) -> Vec<String> {
        self.master.listen_addrs()
    }

    /// The hash of the asset bundle workers install.
    #[getter]
    fn bundle_hash(&self) -> String {
        self.master.bundle_hash()
    }

    /// The dashboard's URL (`http://IP:PORT/`), when the master serves one.
    #[getter]
    fn dashboard_url(&self) -> Option<String> {
        self.dashboard_url.clone()
    }

    /// Pushes jobs in one group; returns `(id, duplicate, repeated)` per job once all are
    /// durable.
    fn push_many(&self, py: Python<'_>, jobs: Vec<JobTuple>) -> PyResult<Vec<Receipt>> {
        let specs = jobs
            .into_iter()
            .map(job_spec)
            .collect::<PyResult<Vec<_>>>()?;
        let master = self.master.clone();
        let receipts = block_on(py, async move { master.push_many(specs).await })?.or_raise(py)?;
        Ok(receipts
            .into_iter()
            .map(|r| (r.id, r.duplicate, r.repeated))
            .collect())
    }

    /// Pushes one job; returns `(id, duplicate, repeated)` once it is durable.
    fn push(&self, py: Python<'_>, job: JobTuple) -> PyResult<Receipt> {
        let spec = job_spec(job)?;
        let master = self.master.clone();
        let receipt = block_on(py, async move { master.push(spec).await })?.or_raise(py)?;
        Ok((receipt.id, receipt.duplicate, receipt.repeated))
    }

    /// Waits up to `timeout` seconds (forever when `None`) for events and returns up to `max`
    /// of them as `queuexec.events` objects (one GIL acquisition per batch); `[]` when the time
    /// ran out, `None` once the master is closed and every event was read.
    #[pyo3(signature = (timeout=None, max=1024))]
    fn next_events<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        max: usize,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        match pull(py, &self.events, &self.closed, timeout, max)? {
            Some(batch) => master_events(py, batch).map(Some),
            None => Ok(None),
        }
    }

    /// Whether no job is queued, delayed or running; when true, every result so far is already
    /// in the event stream.
    fn idle(&self, py: Python<'_>) -> PyResult<bool> {
        let master = self.master.clone();
        block_on(py, async move { master.idle().await })?.or_raise(py)
    }

    /// Counts of jobs and workers, as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let master = self.master.clone();
        let stats = block_on(py, async move { master.stats().await })?.or_raise(py)?;
        let dict = PyDict::new(py);
        dict.set_item("queued", stats.queued)?;
        dict.set_item("delayed", stats.delayed)?;
        dict.set_item("running", stats.running)?;
        dict.set_item("done", stats.done)?;
        dict.set_item("dead", stats.dead)?;
        dict.set_item("retried", stats.retried)?;
        dict.set_item("workers", stats.workers)?;
        dict.set_item("relayed_workers", stats.relayed_workers)?;
        dict.set_item("relayed_bytes", stats.relayed_bytes)?;
        Ok(dict)
    }

    /// Answers a worker's call: `ok` with JSON text, else an error text. False when the call
    /// is unknown (answered already, or its worker left).
    fn answer(&self, call_id: u64, ok: bool, value: String) -> bool {
        self.master
            .answer(call_id, if ok { Ok(value) } else { Err(value) })
    }

    /// Sends a message (JSON `data`) to the worker with this peer id, or to all with `None`;
    /// returns how many got it.
    #[pyo3(signature = (worker, cmd, data))]
    fn send_message(
        &self,
        py: Python<'_>,
        worker: Option<String>,
        cmd: String,
        data: String,
    ) -> PyResult<usize> {
        let master = self.master.clone();
        block_on(py, async move {
            master.send_message(worker.as_deref(), &cmd, &data).await
        })?
        .or_raise(py)
    }

    /// The workers' aggregated statistics now (JSON), or `None` when none reported since the
    /// last report.
    fn stats_report(&self) -> Option<String> {
        self.master.stats_report().map(|r| r.to_json())
    }

    /// Tells every worker to stop and hands out no more jobs; returns how many were told.
    fn abort(&self, py: Python<'_>) -> PyResult<usize> {
        let master = self.master.clone();
        block_on(py, async move { master.abort().await })?.or_raise(py)
    }

    /// Cancels the jobs with this id (queued, delayed or running); returns how many.
    fn cancel(&self, py: Python<'_>, job_id: String) -> PyResult<usize> {
        let master = self.master.clone();
        block_on(py, async move { master.cancel(&job_id).await })?.or_raise(py)
    }

    /// Marks results as handled (needed only with `auto_ack=False`).
    fn ack(&self, job_ids: Vec<String>) {
        self.master.ack(job_ids);
    }

    /// Reads the asset files again; returns whether the bundle changed.
    fn reload_assets(&self, py: Python<'_>) -> PyResult<bool> {
        let master = self.master.clone();
        block_on(py, async move { master.reload_assets().await })?.or_raise(py)
    }

    /// Stops serving, flushes and closes the store, withdraws the room file. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let master = self.master.clone();
        let dashboard = self
            .dashboard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let closed = block_on(py, async move {
            if let Some(dashboard) = dashboard {
                dashboard.stop().await;
            }
            master.close().await
        })?
        .or_raise(py);
        self.events.close();
        closed
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for PyMaster {
    fn drop(&mut self) {
        // A master dropped without close() still stops serving and flushes its store.
        if !self.closed.swap(true, Ordering::AcqRel)
            && let Ok(rt) = runtime()
        {
            let master = self.master.clone();
            rt.spawn(async move {
                let _ = master.close().await;
            });
        }
    }
}

fn job_spec(
    (id, data, task_type, priority, retries, timeout, delay, in_memory): JobTuple,
) -> PyResult<JobSpec> {
    if id.as_deref() == Some("") {
        return Err(config_error(
            "a job id must not be empty; give a non-empty id or none",
        ));
    }
    Ok(JobSpec {
        id,
        data,
        task_type,
        priority,
        retries,
        timeout: seconds("timeout", timeout)?,
        delay: seconds("delay", delay)?,
        in_memory,
        ..JobSpec::default()
    })
}
