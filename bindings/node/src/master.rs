//! The master engine for JavaScript: `startMaster(options)` gives a [`JsMaster`].
//!
//! Events are pulled in batches (`nextEvents`, over the core's `EventStream`) rather than pushed
//! through a callback per event:
//! one promise carries up to `max` results, which is what keeps thousands of results a second
//! cheap on the JS thread. A pending pull keeps the Node process alive, as a queue-xec master
//! does, until `close()`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use napi_derive::napi;
use queuexec_core::AssetSpec;
use queuexec_core::{EventStream, Master, MasterConfig, MasterEvent, StoreConfig, WorkerInfo};

use crate::error::{CoreResultExt, Result, config_error, for_promise};
use crate::job::{JsPushBatch, JsPushReceipts};
use crate::json_out::{self, JsBatch};

/// A file shipped to workers.
#[napi(object, js_name = "AssetSpec")]
pub struct JsAssetSpec {
    /// The name workers know it by (`task.js` is the entry point).
    pub name: String,
    /// Where the master reads it (absolute, or relative to `assetBaseDir`).
    pub master_path: String,
    /// Where workers write it, relative to their workplace.
    pub worker_path: String,
}

/// How to start a master. Names follow queue-xec where it has one.
#[napi(object, js_name = "MasterOptions")]
pub struct JsMasterOptions {
    /// The room token.
    pub token: String,
    /// The transfer token (at least 32 characters).
    pub transfer_token: String,
    /// A SQLite file to keep jobs in; in memory when absent.
    pub store_path: Option<String>,
    /// Multiaddrs to listen on (default: loopback TCP and QUIC on free ports).
    pub listen: Option<Vec<String>>,
    /// Files shipped to workers.
    pub assets: Option<Vec<JsAssetSpec>>,
    /// Directory that relative `masterPath`s are taken from (default: the current directory).
    pub asset_base_dir: Option<String>,
    /// npm packages the task needs.
    pub dependencies: Option<Vec<String>>,
    /// Retries of a job whose push does not say (default: `defaults().retries`).
    pub default_retries: Option<u32>,
    /// How long a lease lasts without a heartbeat, in milliseconds (default:
    /// `defaults().leaseTtlMs`).
    pub lease_ttl_ms: Option<f64>,
    /// First retry delay in milliseconds (default: `defaults().retryBackoffMs`; doubles per
    /// attempt).
    pub retry_backoff_ms: Option<f64>,
    /// Most worker connections at once (default: `defaults().maxWorkers`).
    pub max_workers: Option<u32>,
    /// Directory of room files for same-host discovery (default: `QUEUEXEC_ROOM_DIR`, else a
    /// per-user directory).
    pub room_dir: Option<String>,
    /// Write the room file (default true).
    pub announce: Option<bool>,
    /// mDNS on the local network (default: `QUEUEXEC_MDNS`, else off).
    pub mdns: Option<bool>,
    /// Relays to meet through across NATs (multiaddrs ending in `/p2p/<id>`; default:
    /// `QUEUEXEC_BOOTSTRAP`, comma separated, also from .env).
    pub bootstrap: Option<Vec<String>>,
    /// Map listening ports on the local router with UPnP (with a bootstrap; default off).
    pub upnp: Option<bool>,
    /// Mark results handled as soon as they are handed out (default true).
    pub auto_ack: Option<bool>,
    /// Watch the asset files and reload them when they change (default: `defaults().watchAssets`).
    pub watch_assets: Option<bool>,
    /// Treat job ids as idempotency keys: a pushed id the master already has is not queued
    /// again and its receipt says `duplicate` (default false: it is queued again as a new job,
    /// as in queue-xec, and its receipt says `repeated`).
    pub idempotent_ids: Option<bool>,
    /// How often the workers' statistics are handed out, in milliseconds (default 5000).
    pub stats_interval_ms: Option<f64>,
    /// With a store file: the most ready jobs kept in memory (default 10000); the rest wait in
    /// the store until the ones in memory run low.
    pub max_resident_jobs: Option<u32>,
    /// Serve the dashboard (web page, JSON API, /metrics) on this address: `IP:PORT` or a port
    /// (loopback). An address that is not loopback needs `dashboardToken`.
    pub dashboard: Option<String>,
    /// The token every dashboard request must carry (default: `QUEUEXEC_DASHBOARD_TOKEN`).
    pub dashboard_token: Option<String>,
}

impl TryFrom<JsMasterOptions> for MasterConfig {
    type Error = napi::Error<crate::error::ErrorCode>;

    fn try_from(o: JsMasterOptions) -> Result<MasterConfig> {
        let mut config = MasterConfig::new(o.token, o.transfer_token);
        if let Some(path) = o.store_path.filter(|p| !p.is_empty() && p != ":memory:") {
            config.store = StoreConfig::Sqlite(PathBuf::from(path));
        }
        if let Some(listen) = o.listen {
            config.listen = listen;
        }
        if let Some(assets) = o.assets {
            config.assets = assets
                .into_iter()
                .map(|a| AssetSpec {
                    name: a.name,
                    master_path: a.master_path.into(),
                    worker_path: a.worker_path,
                })
                .collect();
        }
        if let Some(dir) = o.asset_base_dir {
            config.asset_base_dir = PathBuf::from(dir);
        }
        if let Some(deps) = o.dependencies {
            config.dependencies = deps;
        }
        if let Some(retries) = o.default_retries {
            config.default_retries = retries;
        }
        if let Some(ms) = o.lease_ttl_ms {
            config.lease_ttl = crate::job::millis(ms).ok_or_else(|| {
                config_error("leaseTtlMs must be a positive number of milliseconds")
            })?;
        }
        if let Some(ms) = o.retry_backoff_ms {
            config.retry_backoff = crate::job::millis(ms).unwrap_or(Duration::ZERO);
        }
        if let Some(n) = o.max_workers {
            config.max_workers = n;
        }
        config.room_dir = o.room_dir.filter(|d| !d.is_empty()).map(PathBuf::from);
        if let Some(announce) = o.announce {
            config.announce = announce;
        }
        config.mdns = o.mdns;
        config.bootstrap = o.bootstrap.unwrap_or_default();
        config.upnp = o.upnp.unwrap_or(false);
        if let Some(auto_ack) = o.auto_ack {
            config.auto_ack = auto_ack;
        }
        if let Some(watch) = o.watch_assets {
            config.watch_assets = watch;
        }
        if let Some(idempotent) = o.idempotent_ids {
            config.idempotent_ids = idempotent;
        }
        if let Some(n) = o.max_resident_jobs {
            if n == 0 {
                return Err(config_error(
                    "maxResidentJobs must be at least 1 (the most ready jobs kept in memory)",
                ));
            }
            config.max_resident_jobs = n as usize;
        }
        if let Some(ms) = o.stats_interval_ms {
            config.stats_interval = crate::job::millis(ms).ok_or_else(|| {
                config_error("statsInterval must be a positive number of milliseconds")
            })?;
        }
        Ok(config)
    }
}

/// Starts a master: opens the store (resuming its unfinished jobs), listens, and announces the
/// room. Rejects with the core's error (`ERR_QUEUEXEC_TOKEN`, `ERR_QUEUEXEC_STORE`, ...).
#[napi]
pub async fn start_master(mut options: JsMasterOptions) -> napi::Result<JsMaster> {
    crate::runtime_ready().map_err(for_promise)?;
    let dashboard = options
        .dashboard
        .take()
        .filter(|a| !a.is_empty())
        .map(|addr| queuexec_dashboard::DashboardConfig {
            addr,
            token: options.dashboard_token.take(),
        });
    if let Some(dashboard) = &dashboard {
        dashboard.validate().js_async()?;
    }
    let config = MasterConfig::try_from(options).map_err(for_promise)?;
    let (master, events) = Master::start(config).await.js_async()?;
    let dashboard = match dashboard {
        Some(config) => match queuexec_dashboard::Dashboard::start(master.clone(), config).await {
            Ok(d) => Some(d),
            Err(e) => {
                let _ = master.close().await;
                return Err(e).js_async();
            }
        },
        None => None,
    };
    Ok(JsMaster {
        master,
        events: Arc::new(EventStream::new(events)),
        dashboard_url: dashboard.as_ref().map(|d| d.url()),
        dashboard: std::sync::Mutex::new(dashboard),
    })
}

/// A running master.
#[napi(js_name = "NativeMaster")]
pub struct JsMaster {
    master: Master,
    events: Arc<EventStream<MasterEvent>>,
    dashboard: std::sync::Mutex<Option<queuexec_dashboard::Dashboard>>,
    dashboard_url: Option<String>,
}

/// Writes one core event into a batch for JavaScript (a JSON array, see `json_out`); returns
/// false, writing nothing, for a kind this addon does not know yet (the core's event enum is
/// non-exhaustive), which is logged and skipped rather than sent shapeless.
///
/// The shapes (`lib/native.d.ts`, `MasterEvent`): `{kind: 'result', result: {jobId, workerId,
/// workerName, attempts, automatic, data | dataText | error}}`, `{kind: 'workerJoined' |
/// 'workerLeft', workerId, workerName}`, `{kind: 'drained'}`, `{kind: 'warning', message}`,
/// `{kind: 'call', callId, workerId, workerName, op, name?, key?, value?, cmd?, data?}`,
/// `{kind: 'stats', report}`, `{kind: 'taskLoadFailed', workerId, workerName, reason}`.
/// A result's `data` is the parsed value when it is short (the core re-serialised it, so it is
/// JSON); a long one crosses as its own string (`dataText: i`, the batch's `texts[i]`), parsed
/// on its own.
fn write_event(out: &mut String, texts: &mut Vec<String>, event: MasterEvent) -> bool {
    let mut o = json_out::Object::begin(out);
    match event {
        MasterEvent::Result(result) => {
            o.str("kind", "result");
            let mut r = o.nested("result");
            r.str("jobId", &result.job_id)
                .str("workerId", &result.worker.id)
                .str("workerName", &result.worker.name)
                .num("attempts", result.attempts)
                .bool("automatic", result.automatic());
            match result.outcome {
                Ok(data) => r.json_or_text("data", "dataText", data, texts),
                Err(error) => r.str("error", &error),
            };
            r.end();
        }
        MasterEvent::WorkerJoined(WorkerInfo { id, name }) => {
            o.str("kind", "workerJoined")
                .str("workerId", &id)
                .str("workerName", &name);
        }
        MasterEvent::WorkerLeft(WorkerInfo { id, name }) => {
            o.str("kind", "workerLeft")
                .str("workerId", &id)
                .str("workerName", &name);
        }
        MasterEvent::Drained => {
            o.str("kind", "drained");
        }
        MasterEvent::Warning(message) => {
            o.str("kind", "warning").str("message", &message);
        }
        MasterEvent::Call(call) => {
            let parts = call.request.parts();
            // A worker's value and data stay text: the JS side parses them, refusing what is
            // not JSON with an answer to that worker.
            o.str("kind", "call")
                .num("callId", call.id)
                .str("workerId", &call.worker.id)
                .str("workerName", &call.worker.name)
                .str("op", parts.op)
                .opt_str("name", parts.name)
                .opt_str("key", parts.key)
                .opt_str("value", parts.value)
                .opt_str("cmd", parts.cmd)
                .opt_str("data", parts.data);
        }
        MasterEvent::Stats(report) => {
            o.str("kind", "stats").str("report", &report.to_json());
        }
        MasterEvent::TaskLoadFailed {
            worker: WorkerInfo { id, name },
            reason,
        } => {
            o.str("kind", "taskLoadFailed")
                .str("workerId", &id)
                .str("workerName", &name)
                .str("reason", &reason);
        }
        other => {
            tracing::debug!(?other, "a master event this addon does not know");
            o.abandon();
            return false;
        }
    }
    o.end();
    true
}

/// Counts of a master's jobs and workers.
#[napi(object, js_name = "MasterStats")]
pub struct JsMasterStats {
    /// Ready to run.
    pub queued: f64,
    /// Waiting for their delay or retry backoff.
    pub delayed: f64,
    /// Leased to a worker.
    pub running: f64,
    /// Finished with a result since the master started.
    pub done: f64,
    /// Failed for good (dead-lettered) since the master started (the core's `dead`).
    pub dead: f64,
    /// Failed attempts that were retried, since the master started.
    pub retried: f64,
    /// Workers connected now.
    pub workers: f64,
    /// Worker connections that run through a relay now.
    pub relayed_workers: f64,
    /// Bytes of job traffic that went through relays since the start.
    pub relayed_bytes: f64,
}

#[napi]
impl JsMaster {
    /// Pushes jobs in one group; resolves once all are durable. All are accepted, or none.
    #[napi]
    pub async fn push(&self, batch: JsPushBatch) -> napi::Result<JsPushReceipts> {
        let specs = batch
            .into_specs()
            .map_err(|e| napi::Error::new(napi::Status::InvalidArg, e))?;
        let receipts = self.master.push_many(specs).await.js_async()?;
        let mut out = JsPushReceipts {
            ids: Vec::with_capacity(receipts.len()),
            duplicate: Vec::new(),
            repeated: Vec::new(),
        };
        for (i, r) in receipts.into_iter().enumerate() {
            if r.duplicate {
                out.duplicate.push(i as u32);
            }
            if r.repeated {
                out.repeated.push(i as u32);
            }
            out.ids.push(r.id);
        }
        Ok(out)
    }

    /// Waits for the next events and returns up to `max` of them as a batch: `json` is the JSON
    /// text of the events (see `write_event`), `texts` the long results they refer to. One
    /// promise and one `JSON.parse` per batch, not per event; an empty array once the master is
    /// closed and every event was handed out.
    #[napi]
    pub async fn next_events(&self, max: u32) -> napi::Result<JsBatch> {
        // An empty array means the end, so a batch of only unknown kinds is not handed out.
        loop {
            let Some(batch) = self.events.next_batch(max as usize).await else {
                return Ok(JsBatch::empty());
            };
            let mut json = String::with_capacity(64 + batch.len() * 160);
            let mut texts = Vec::new();
            json.push('[');
            for event in batch {
                let mark = (json.len(), texts.len());
                if json.len() > 1 {
                    json.push(',');
                }
                if !write_event(&mut json, &mut texts, event) {
                    json.truncate(mark.0);
                    texts.truncate(mark.1);
                }
            }
            if json.len() > 1 {
                json.push(']');
                return Ok(JsBatch { json, texts });
            }
        }
    }

    /// Counts of jobs and workers.
    #[napi]
    pub async fn stats(&self) -> napi::Result<JsMasterStats> {
        let s = self.master.stats().await.js_async()?;
        Ok(JsMasterStats {
            queued: s.queued as f64,
            delayed: s.delayed as f64,
            running: s.running as f64,
            done: s.done as f64,
            dead: s.dead as f64,
            retried: s.retried as f64,
            workers: s.workers as f64,
            relayed_workers: s.relayed_workers as f64,
            relayed_bytes: s.relayed_bytes as f64,
        })
    }

    /// Answers a worker's call: `ok` with JSON text, else an error text. False when the call is
    /// unknown (answered already, or its worker left).
    #[napi]
    pub fn answer(&self, call_id: f64, ok: bool, value: String) -> bool {
        let outcome = if ok { Ok(value) } else { Err(value) };
        self.master.answer(call_id as u64, outcome)
    }

    /// Sends a message to the worker with this peer id (or to every worker when `null`);
    /// resolves with how many workers got it.
    #[napi]
    pub async fn send_message(
        &self,
        worker_id: Option<String>,
        cmd: String,
        data: String,
    ) -> napi::Result<u32> {
        let n = self
            .master
            .send_message(worker_id.as_deref(), &cmd, &data)
            .await
            .js_async()?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The workers' aggregated statistics now (JSON), or null when none reported since the last.
    #[napi]
    pub fn stats_report(&self) -> Option<String> {
        self.master.stats_report().map(|r| r.to_json())
    }

    /// Tells every worker to stop and hands out no more jobs; resolves with how many were told.
    #[napi]
    pub async fn abort(&self) -> napi::Result<u32> {
        let n = self.master.abort().await.js_async()?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Cancels the jobs with this id (queued, delayed or running); resolves with how many.
    #[napi]
    pub async fn cancel(&self, job_id: String) -> napi::Result<u32> {
        let n = self.master.cancel(&job_id).await.js_async()?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Reads the asset files again; resolves whether they changed (workers then fetch them).
    #[napi]
    pub async fn reload_assets(&self) -> napi::Result<bool> {
        self.master.reload_assets().await.js_async()
    }

    /// Marks results handled (only needed with `autoAck: false`).
    #[napi]
    pub fn ack(&self, job_ids: Vec<String>) {
        self.master.ack(job_ids);
    }

    /// Addresses workers on other machines can dial, each ending in `/p2p/<peer id>`.
    #[napi]
    pub fn listen_addrs(&self) -> Vec<String> {
        self.master.listen_addrs()
    }

    /// The master's peer id.
    #[napi(getter)]
    pub fn peer_id(&self) -> String {
        self.master.peer_id()
    }

    /// The current asset bundle hash.
    #[napi]
    pub fn bundle_hash(&self) -> String {
        self.master.bundle_hash()
    }

    /// The dashboard's URL (`http://IP:PORT/`), when the master serves one.
    #[napi(getter)]
    pub fn dashboard_url(&self) -> Option<String> {
        self.dashboard_url.clone()
    }

    /// Stops serving: workers are disconnected, the store flushed and closed, the room file
    /// withdrawn, and pending `nextEvents` calls resolve empty.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        let dashboard = self
            .dashboard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(dashboard) = dashboard {
            dashboard.stop().await;
        }
        let result = self.master.close().await.js_async();
        self.events.close();
        result
    }
}
