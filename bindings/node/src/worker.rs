//! The worker engine for JavaScript: `startWorker(options, assetsChanged)` gives a [`JsWorker`]
//! whose jobs JavaScript pulls in batches with `nextJobs` and answers with `finishJobs` (see
//! [`crate::delivery`]); `assetsChanged` is called when the master's assets were installed.

use std::path::PathBuf;
use std::sync::Arc;

use napi_derive::napi;
use queuexec_core::{EventStream, Executor, Worker, WorkerConfig, WorkerEvent};
use queuexec_js::{JsConfig, JsExecutor};

use crate::delivery::JobQueue;
use crate::error::{CoreResultExt, config_error, for_promise};
use crate::executor::{AssetsChangedFn, NodeExecutor};
use crate::json_out::JsBatch;

/// How to start a worker. Names follow queue-xec where it has one.
#[napi(object, js_name = "WorkerOptions")]
pub struct JsWorkerOptions {
    /// The room token.
    pub token: String,
    /// The transfer token (at least 32 characters).
    pub transfer_token: String,
    /// The name the master reports for this worker (default: `defaults().name`).
    pub name: Option<String>,
    /// The master's multiaddr; found through the room file (and mDNS when enabled) when absent.
    pub master: Option<String>,
    /// Jobs run at once, at least 1 (default: `defaults().concurrency`).
    pub concurrency: Option<u32>,
    /// Jobs held ready beyond `concurrency` (default: `defaults().prefetch`).
    pub prefetch: Option<u32>,
    /// The folder worker paths are relative to (default: the current directory).
    pub workplace: Option<String>,
    /// Directory of room files (default: `QUEUEXEC_ROOM_DIR`, else a per-user directory).
    pub room_dir: Option<String>,
    /// mDNS discovery (default: `QUEUEXEC_MDNS`, else off).
    pub mdns: Option<bool>,
    /// Relays to meet through across NATs (multiaddrs ending in `/p2p/<id>`; default:
    /// `QUEUEXEC_BOOTSTRAP`, comma separated, also from .env).
    pub bootstrap: Option<Vec<String>>,
    /// Map listening ports on the local router with UPnP (with a bootstrap; default off).
    pub upnp: Option<bool>,
    /// Wall-clock limit of a job that sets none, in milliseconds.
    pub default_timeout_ms: Option<f64>,
    /// Run task.js in the embedded, sandboxed runtime (no file system, network, environment or
    /// process access) instead of calling `runJob` / `assetsChanged` in Node.
    pub sandbox: Option<bool>,
    /// Heap limit of each sandboxed runtime in MiB (default 256).
    pub max_heap_mb: Option<u32>,
    /// How often the worker reports its counters to the master, in milliseconds (default 5000).
    pub stats_interval_ms: Option<f64>,
    /// Stop once the master has nothing queued, delayed or running (default false).
    pub exit_when_drained: Option<bool>,
}

/// Starts a worker that finds the master and works until `close()`.
#[napi(
    ts_args_type = "options: WorkerOptions, assetsChanged: (assets: AssetsInfo) => Promise<TaskOutcome>"
)]
pub async fn start_worker(
    options: JsWorkerOptions,
    assets_changed: AssetsChangedFn,
) -> napi::Result<JsWorker> {
    crate::runtime_ready().map_err(for_promise)?;
    let mut config = WorkerConfig::new(options.token, options.transfer_token);
    if let Some(name) = options.name {
        config.name = name;
    }
    config.master = options.master.filter(|m| !m.is_empty());
    if let Some(n) = options.concurrency {
        config.concurrency = queuexec_core::config::check_concurrency(n as usize).js_async()?;
    }
    if let Some(n) = options.prefetch {
        config.prefetch = n as usize;
    }
    config.workplace = match options.workplace.filter(|w| !w.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir().map_err(|e| {
            for_promise(config_error(format!(
                "the current directory is unusable: {e}"
            )))
        })?,
    };
    config.room_dir = options
        .room_dir
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    config.mdns = options.mdns;
    config.bootstrap = options.bootstrap.unwrap_or_default();
    config.upnp = options.upnp.unwrap_or(false);
    config.default_timeout = options.default_timeout_ms.and_then(crate::job::millis);
    let mut jobs = None;
    if let Some(interval) = options.stats_interval_ms.and_then(crate::job::millis) {
        config.stats_interval = interval;
    }
    config.exit_when_drained = options.exit_when_drained.unwrap_or(false);
    // A sandboxed task.js reaches the master (ctx.lookup, ...) through this worker, once started.
    let master_link = queuexec_js::MasterLink::default();
    let executor: Arc<dyn Executor> = if options.sandbox.unwrap_or(false) {
        let mut js = JsConfig {
            concurrency: config.concurrency,
            master: master_link.clone(),
            ..JsConfig::default()
        };
        if config.default_timeout.is_some() {
            js.default_timeout = config.default_timeout;
        }
        if let Some(mb) = options.max_heap_mb {
            js.heap_limit_bytes = (mb as usize).saturating_mul(1024 * 1024);
        }
        // The Node callback is not needed: dropping it releases its hold on the event loop.
        drop(assets_changed);
        Arc::new(JsExecutor::new(js).map_err(|e| {
            for_promise(config_error(format!(
                "the sandboxed JavaScript runtime could not start: {e}"
            )))
        })?)
    } else {
        let queue = Arc::new(JobQueue::default());
        jobs = Some(queue.clone());
        Arc::new(NodeExecutor::new(queue, assets_changed))
    };
    let (worker, events) = Worker::start(config, executor).await.js_async()?;
    master_link.connect(worker.clone());
    Ok(JsWorker {
        worker,
        events: Arc::new(EventStream::new(events)),
        jobs,
    })
}

/// A running worker.
#[napi(js_name = "NativeWorker")]
pub struct JsWorker {
    worker: Worker,
    events: Arc<EventStream<WorkerEvent>>,
    /// Jobs for JavaScript to run (`None` in a sandboxed worker, whose jobs run in the core).
    jobs: Option<Arc<JobQueue>>,
}

/// Something that happened on a worker, as a discriminated union on `kind`:
/// `{kind: 'connected', master}`, `{kind: 'disconnected', reason}`,
/// `{kind: 'assetsInstalled', bundle, fetched}`, `{kind: 'jobFinished', jobId, error?}`,
/// `{kind: 'refused', reason}`, `{kind: 'jobCancelled', jobId}`.
#[napi(
    discriminant = "kind",
    discriminant_case = "camelCase",
    object_from_js = false
)]
pub enum JsWorkerEvent {
    /// Joined a master.
    Connected {
        /// The master's peer id.
        master: String,
        /// `'direct'` (also through hole-punched NATs) or `'relayed'` (through a relay).
        path: String,
    },
    /// Lost the master; the worker looks for it again.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The master's asset bundle was installed.
    AssetsInstalled {
        /// Its bundle hash.
        bundle: String,
        /// Files that had to be fetched.
        fetched: u32,
    },
    /// A job ended on this worker.
    JobFinished {
        /// The job id.
        job_id: String,
        /// Its error, when it failed (absent when it succeeded).
        error: Option<String>,
    },
    /// The master refused this worker (wrong token); the worker has stopped.
    Refused {
        /// The master's reason.
        reason: String,
    },
    /// The master cancelled a running job: its task's abort signal fires.
    JobCancelled {
        /// The job id.
        job_id: String,
    },
    /// A message from the master.
    Message {
        /// The command name.
        cmd: String,
        /// The data, as JSON.
        data: String,
    },
    /// The master aborted: this worker stopped.
    Aborted,
    /// The master ran dry and the worker has `exitWhenDrained`: it stopped.
    Drained,
}

impl JsWorkerEvent {
    /// The event for JavaScript; `None` for a kind this addon does not know yet (the core's
    /// event enum is non-exhaustive), which is logged and skipped rather than sent shapeless.
    fn from_core(event: WorkerEvent) -> Option<JsWorkerEvent> {
        Some(match event {
            WorkerEvent::Connected { master, path } => JsWorkerEvent::Connected {
                master,
                path: path.as_str().to_owned(),
            },
            WorkerEvent::Disconnected { reason } => JsWorkerEvent::Disconnected { reason },
            WorkerEvent::AssetsInstalled { bundle, fetched } => JsWorkerEvent::AssetsInstalled {
                bundle,
                fetched: u32::try_from(fetched).unwrap_or(u32::MAX),
            },
            WorkerEvent::JobFinished { id, error } => {
                JsWorkerEvent::JobFinished { job_id: id, error }
            }
            WorkerEvent::Refused { reason, .. } => JsWorkerEvent::Refused { reason },
            WorkerEvent::JobCancelled { id } => JsWorkerEvent::JobCancelled { job_id: id },
            WorkerEvent::Message { cmd, data } => JsWorkerEvent::Message { cmd, data },
            WorkerEvent::Aborted => JsWorkerEvent::Aborted,
            WorkerEvent::Drained => JsWorkerEvent::Drained,
            other => {
                tracing::debug!(?other, "a worker event this addon does not know");
                return None;
            }
        })
    }
}

/// The master's answer to a call.
#[napi(object, js_name = "CallAnswer")]
pub struct JsCallAnswer {
    /// Whether the master's handler succeeded.
    pub ok: bool,
    /// Its JSON answer, or its error text.
    pub value: String,
}

/// Counts of a worker's jobs.
#[napi(object, js_name = "WorkerStats")]
pub struct JsWorkerStats {
    /// Jobs that finished with a result.
    pub done: f64,
    /// Jobs that failed.
    pub failed: f64,
    /// Jobs running now.
    pub running: f64,
    /// Whether the worker is connected to a master.
    pub connected: bool,
    /// `'direct'` or `'relayed'` while connected.
    pub path: Option<String>,
    /// Bytes of job traffic that went through relays.
    pub relayed_bytes: f64,
}

#[napi]
impl JsWorker {
    /// Waits for the next events and returns up to `max` of them (one promise per batch); an
    /// empty array once the worker has stopped and every event was handed out.
    #[napi]
    pub async fn next_events(&self, max: u32) -> napi::Result<Vec<JsWorkerEvent>> {
        // An empty array means the end, so a batch of only unknown kinds is not handed out.
        loop {
            let Some(batch) = self.events.next_batch(max as usize).await else {
                return Ok(Vec::new());
            };
            let batch: Vec<JsWorkerEvent> = batch
                .into_iter()
                .filter_map(JsWorkerEvent::from_core)
                .collect();
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
    }

    /// Waits for jobs to run and returns up to `max` of them (one promise per batch): `json` is
    /// the JSON text of an array of `{seq, id, attempt, shape, taskType?, timeoutMs?, data |
    /// dataText}` (`dataText: i` is the text `texts[i]`); an empty array once the worker has
    /// stopped (and always in a sandboxed worker).
    #[napi]
    pub async fn next_jobs(&self, max: u32) -> napi::Result<JsBatch> {
        Ok(match &self.jobs {
            Some(jobs) => jobs.next(max as usize).await,
            None => None,
        }
        .unwrap_or_else(JsBatch::empty))
    }

    /// The outcomes of jobs from `nextJobs`: the job numbered `seqs[i]` returned the JSON text
    /// `texts[i]`, or failed with the error `texts[i]` when `failed[i]` (three arrays rather
    /// than an object per job: napi reads each property of an object by name). Outcomes of jobs
    /// the worker dropped meanwhile (timed out, closed) are ignored.
    #[napi]
    pub fn finish_jobs(
        &self,
        seqs: Vec<u32>,
        failed: Vec<bool>,
        texts: Vec<String>,
    ) -> napi::Result<()> {
        if seqs.len() != failed.len() || seqs.len() != texts.len() {
            return Err(napi::Error::from_reason(format!(
                "finishJobs takes three arrays of one length (seqs, failed, texts); got {}, {} and {}",
                seqs.len(),
                failed.len(),
                texts.len()
            )));
        }
        if let Some(jobs) = &self.jobs {
            jobs.finish(seqs, failed, texts);
        }
        Ok(())
    }

    /// Counts of jobs.
    #[napi]
    pub fn stats(&self) -> JsWorkerStats {
        let s = self.worker.stats();
        JsWorkerStats {
            done: s.done as f64,
            failed: s.failed as f64,
            running: s.running as f64,
            connected: s.connected,
            path: s.path.map(|p| p.as_str().to_owned()),
            relayed_bytes: s.relayed_bytes as f64,
        }
    }

    /// Asks the master: `op` is `lookup` (a = name, b = key), `setLookup` (a = name, b = key,
    /// c = value as JSON) or `message` (a = cmd, c = data as JSON). Resolves with the master's
    /// answer `{ok, value}` (JSON when ok, else the error text); rejects when no master is
    /// connected or the connection ends first.
    #[napi]
    pub async fn call(
        &self,
        op: String,
        a: String,
        b: Option<String>,
        c: Option<String>,
    ) -> napi::Result<JsCallAnswer> {
        let request = queuexec_core::WorkerRequest::from_op(&op, a, b, c).js_async()?;
        let answer = self.worker.call(request).await.js_async()?;
        Ok(match answer {
            Ok(value) => JsCallAnswer { ok: true, value },
            Err(value) => JsCallAnswer { ok: false, value },
        })
    }

    /// Adds `delta` to the custom metric `name`, reported to the master with the worker's
    /// counters; false when refused (empty or long name, not finite, too many names).
    #[napi]
    pub fn metric(&self, name: String, delta: f64) -> bool {
        self.worker.metric(&name, delta)
    }

    /// This worker's peer id (the `worker.id` the master reports).
    #[napi(getter)]
    pub fn peer_id(&self) -> String {
        self.worker.peer_id()
    }

    /// Resolves when the worker has stopped; rejects with `ERR_QUEUEXEC_UNAUTHORIZED` when the
    /// master refused it.
    #[napi]
    pub async fn wait(&self) -> napi::Result<()> {
        let result = self.worker.wait().await.js_async();
        self.events.close();
        self.close_jobs();
        result
    }

    /// Stops the worker. Running jobs are abandoned; the master gives them to other workers.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.worker.close().await;
        self.events.close();
        self.close_jobs();
        Ok(())
    }
}

impl JsWorker {
    fn close_jobs(&self) {
        if let Some(jobs) = &self.jobs {
            jobs.close();
        }
    }
}
