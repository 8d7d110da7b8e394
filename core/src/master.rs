//! The master engine: accepts pushes, keeps them durable, leases them to workers, collects
//! results.
//!
//! Tasks and who owns what:
//! - the network task owns the swarm (`net`);
//! - one engine task owns the [`Scheduler`] and the sessions' credit windows; it never does
//!   crypto or I/O, it only moves jobs between states and hands messages to others;
//! - one task per worker connection reads and opens its frames (results are decrypted there) and
//!   one writes and seals them;
//! - the store writer thread groups writes (`store::StoreWriter`);
//! - a push seals the payload and waits for its commit in the caller's task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Stream};
use tokio::sync::{mpsc, oneshot};

use crate::assets::{AssetSet, AssetSpec, BundleHash, Sha256};
use crate::crypto::{RoomKey, TransferKey, random_bytes};
use crate::error::{Error, Result};
use crate::job::{JobResult, JobSpec, WorkerInfo, now_ms};
use crate::net::{self, Net, NetConfig, NetEvent};
use crate::protocol::{
    self, Challenge, Direction, FrameSealer, Hello, ToMaster, ToWorker, Verdict, WireJob,
    WireResult,
};
use crate::room::{self, RoomEntry};
use crate::scheduler::{Leased, RunOutcome, Scheduler, SchedulerConfig, SessionId, Transition};
use crate::store::{JobStore, SqliteStore, StoreOp, StoreWriter, StoredJob};

/// Where a master keeps its jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// In memory only: jobs are lost with the process (queue-xec's behaviour).
    Memory,
    /// A SQLite file: accepted jobs survive restarts of the master.
    Sqlite(PathBuf),
}

/// Everything a master needs to start.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The room token (queue-xec's `token`): workers holding it may join.
    pub token: String,
    /// The transfer token (queue-xec's `transferEncryptToken`, at least 32 characters): keys the
    /// envelope of every message.
    pub transfer_token: String,
    /// Where jobs are kept.
    pub store: StoreConfig,
    /// Multiaddrs to listen on. The default, loopback on a free TCP and QUIC port, serves workers
    /// on this host; listen on `/ip4/0.0.0.0/tcp/PORT` to serve other machines.
    pub listen: Vec<String>,
    /// Directory of room files for same-host discovery (`None`: `room::room_dir`).
    pub room_dir: Option<PathBuf>,
    /// Write the room file so that workers on this host find the master with no address.
    pub announce: bool,
    /// mDNS on the local network; `None` reads `QUEUEXEC_MDNS`. Off unless asked for.
    pub mdns: Option<bool>,
    /// Files shipped to workers (task.js and what it requires).
    pub assets: Vec<AssetSpec>,
    /// Directory that relative `master_path`s are taken from.
    pub asset_base_dir: PathBuf,
    /// npm packages the task needs.
    pub dependencies: Vec<String>,
    /// Retries of a job whose push does not say.
    pub default_retries: u32,
    /// How long a lease lasts without a heartbeat from its worker.
    pub lease_ttl: Duration,
    /// First retry delay (doubles per attempt, at most a minute).
    pub retry_backoff: Duration,
    /// Most worker connections at once.
    pub max_workers: u32,
    /// Mark results delivered as soon as they are handed out as events. When false, call
    /// [`Master::ack`] after handling each; unacknowledged results are handed out again after a
    /// restart on the same store.
    pub auto_ack: bool,
    /// Watch the asset files and reload them when they change, so workers fetch the new
    /// bundle before their next job (see [`crate::config::ASSET_WATCH_INTERVAL`]).
    pub watch_assets: bool,
}

impl MasterConfig {
    /// A configuration with these tokens and every other setting at its default.
    pub fn new(token: impl Into<String>, transfer_token: impl Into<String>) -> Self {
        MasterConfig {
            token: token.into(),
            transfer_token: transfer_token.into(),
            store: StoreConfig::Memory,
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".into(),
                "/ip4/127.0.0.1/udp/0/quic-v1".into(),
            ],
            room_dir: None,
            announce: true,
            mdns: None,
            assets: Vec::new(),
            asset_base_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            dependencies: Vec::new(),
            default_retries: crate::config::DEFAULT_RETRIES,
            lease_ttl: crate::config::DEFAULT_LEASE_TTL,
            retry_backoff: crate::config::DEFAULT_RETRY_BACKOFF,
            max_workers: crate::config::DEFAULT_MAX_WORKERS,
            auto_ack: true,
            watch_assets: crate::config::DEFAULT_WATCH_ASSETS,
        }
    }
}

/// What happened on a master.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MasterEvent {
    /// A job ended: its result, or its final error.
    Result(JobResult),
    /// A worker proved it holds the token and joined.
    WorkerJoined(WorkerInfo),
    /// A worker's connection ended.
    WorkerLeft(WorkerInfo),
    /// Nothing is queued, delayed or running any more.
    Drained,
    /// Something the user should know that did not stop the master.
    Warning(String),
}

/// The answer to one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReceipt {
    /// The job's id.
    pub id: String,
    /// True when a job with this id already existed, so nothing was queued.
    pub duplicate: bool,
}

/// Counts of a master's jobs and workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Ready to run.
    pub queued: u64,
    /// Waiting for their delay or retry backoff.
    pub delayed: u64,
    /// Leased to a worker.
    pub running: u64,
    /// Finished with a result since the master started.
    pub done: u64,
    /// Dead-lettered since the master started.
    pub dead: u64,
    /// Failed attempts that will be retried, since the master started.
    pub retried: u64,
    /// Workers connected now.
    pub workers: u64,
}

/// A master. Cheap to clone; every clone drives the same engine.
#[derive(Clone)]
pub struct Master {
    inner: Arc<Inner>,
}

struct Inner {
    engine: mpsc::UnboundedSender<EngineCommand>,
    durable: Option<StoreWriter>,
    memory: MemoryIds,
    key: TransferKey,
    room_id: String,
    room_dir: Option<PathBuf>,
    peer_id: PeerId,
    seq: AtomicI64,
    default_max_attempts: u32,
    addrs: Arc<Mutex<Vec<Multiaddr>>>,
    assets: Arc<RwLock<AssetSet>>,
    closed: AtomicBool,
    net: Net,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    deliver_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Held while the master lives: one master per store file.
    store_lock: Mutex<Option<std::fs::File>>,
}

impl Master {
    /// Opens the store, resumes its unfinished jobs, starts listening and announces the room.
    /// Returns the master and the stream of its events (results among them).
    pub async fn start(
        config: MasterConfig,
    ) -> Result<(Master, mpsc::UnboundedReceiver<MasterEvent>)> {
        let room = RoomKey::from_token(&config.token)?;
        let key = TransferKey::from_token(&config.transfer_token)?;
        if config.lease_ttl < crate::config::MIN_LEASE_TTL {
            return Err(Error::Config(format!(
                "lease_ttl must be at least {} ms, got {} ms",
                crate::config::MIN_LEASE_TTL.as_millis(),
                config.lease_ttl.as_millis()
            )));
        }
        let listen = config
            .listen
            .iter()
            .map(|a| net::parse_addr(a, "listen address"))
            .collect::<Result<Vec<_>>>()?;

        let mut assets = AssetSet::load(
            &config.assets,
            &config.asset_base_dir,
            config.dependencies.clone(),
        )?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        if !config.dependencies.is_empty() {
            let deps = config.dependencies.clone();
            match tokio::task::spawn_blocking(move || crate::deps::build_bundle(&deps)).await {
                Ok(Ok(bundle)) => assets.set_dependency_bundle(bundle),
                Ok(Err(e)) => {
                    let warning = format!(
                        "{e}; workers that are not Node cannot run tasks that require these dependencies"
                    );
                    tracing::warn!("{warning}");
                    let _ = events_tx.send(MasterEvent::Warning(warning));
                }
                Err(e) => {
                    return Err(Error::Dependencies(format!(
                        "the bundle builder stopped: {e}"
                    )));
                }
            }
        }

        let mut store_lock = None;
        let durable = match &config.store {
            StoreConfig::Memory => None,
            StoreConfig::Sqlite(path) => {
                store_lock = Some(lock_store(path)?);
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                    .await
                    .map_err(|e| Error::Store {
                        location: "sqlite".into(),
                        message: format!("opening stopped: {e}"),
                        source: None,
                    })??;
                Some(StoreWriter::spawn(Box::new(store) as Box<dyn JobStore>))
            }
        };
        let memory: MemoryIds = Arc::new(Mutex::new(HashSet::new()));

        let mut scheduler = Scheduler::new(SchedulerConfig {
            lease_ttl_ms: config.lease_ttl.as_millis() as i64,
            backoff_base_ms: config.retry_backoff.as_millis() as i64,
            backoff_cap_ms: 60_000,
        });
        let mut max_seq = 0;
        if let Some(durable) = &durable {
            max_seq = durable.max_seq().await?;
            let now = now_ms();
            let mut resumed = 0usize;
            for job in durable.load().await? {
                if job.state.is_terminal() {
                    if let Some(result) = stored_result(&key, &job) {
                        let _ = events_tx.send(MasterEvent::Result(result));
                    }
                } else {
                    resumed += 1;
                    scheduler.enqueue(job, false, now);
                }
            }
            if resumed > 0 {
                tracing::info!(resumed, "resumed unfinished jobs from the store");
            }
        }

        let (net, net_events) = net::spawn(NetConfig {
            listen,
            mdns: net::mdns_wanted(config.mdns),
            max_connections: config.max_workers.saturating_add(8),
        })?;
        let peer_id = net.peer_id();
        let addrs = Arc::new(Mutex::new(Vec::new()));
        let assets = Arc::new(RwLock::new(assets));
        let bundle = read_lock(&assets).bundle_hash();
        let room_dir = config
            .announce
            .then(|| room::room_dir(config.room_dir.as_deref()));

        let (engine_tx, engine_rx) = mpsc::unbounded_channel();
        let (delivery_tx, delivery_rx) = mpsc::unbounded_channel();
        let deliver_task = tokio::spawn(deliver(
            delivery_rx,
            durable.clone(),
            events_tx.clone(),
            config.auto_ack,
        ));
        let ever_had_jobs = !scheduler.is_idle();
        let engine = Engine {
            scheduler,
            sessions: HashMap::new(),
            order: VecDeque::new(),
            durable: durable.clone(),
            events: events_tx.clone(),
            delivery: delivery_tx,
            bundle,
            drained_sent: false,
            ever_had_jobs,
            stats: Stats::default(),
        };
        tokio::spawn(engine.run(engine_rx));

        // Wait for the listeners to report their addresses, so the room file and the addresses
        // we return are complete.
        let mut net_events = net_events;
        let wanted = config.listen.len().max(1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while lock(&addrs).len() < wanted {
            match tokio::time::timeout_at(deadline, net_events.recv()).await {
                Ok(Some(NetEvent::ListenAddr(a))) => lock(&addrs).push(a),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if lock(&addrs).is_empty() {
            return Err(Error::Network(format!(
                "the master reported no listening address within 5 s (asked for {:?})",
                config.listen
            )));
        }
        let inner = Arc::new(Inner {
            engine: engine_tx.clone(),
            durable,
            memory,
            key: key.clone(),
            room_id: room.room_id().to_string(),
            room_dir: room_dir.clone(),
            peer_id,
            seq: AtomicI64::new(max_seq),
            default_max_attempts: config.default_retries.saturating_add(1),
            addrs: addrs.clone(),
            assets: assets.clone(),
            closed: AtomicBool::new(false),
            net: net.clone(),
            tasks: Mutex::new(Vec::new()),
            deliver_task: Mutex::new(Some(deliver_task)),
            store_lock: Mutex::new(store_lock),
        });
        let master = Master { inner };
        master.announce();

        // Later listen addresses (interfaces coming up) keep the room file current.
        // (A weak handle: this task must not keep the master alive.)
        let weak = Arc::downgrade(&master.inner);
        let addr_task = tokio::spawn(async move {
            while let Some(event) = net_events.recv().await {
                if let (NetEvent::ListenAddr(a), Some(inner)) = (event, weak.upgrade()) {
                    lock(&inner.addrs).push(a);
                    Master { inner }.announce();
                }
            }
        });

        let mut incoming = net
            .control()
            .accept(protocol::JOB_PROTOCOL)
            .map_err(|e| Error::Network(format!("cannot accept job streams: {e}")))?;
        let shared = Arc::new(SessionShared {
            room,
            key,
            engine: engine_tx,
            assets,
            net,
            next_session: AtomicI64::new(1),
            lease_ttl_ms: config.lease_ttl.as_millis() as u64,
        });
        let accept_task = tokio::spawn(async move {
            while let Some((peer, stream)) = incoming.next().await {
                tokio::spawn(serve_session(shared.clone(), peer, stream));
            }
        });
        lock(&master.inner.tasks).extend([addr_task, accept_task]);
        if config.watch_assets && !config.assets.is_empty() {
            let paths = config
                .assets
                .iter()
                .map(|spec| config.asset_base_dir.join(&spec.master_path))
                .collect();
            let weak = Arc::downgrade(&master.inner);
            let watch = crate::config::watch::spawn(
                paths,
                crate::config::ASSET_WATCH_INTERVAL,
                move || {
                    let master = weak.upgrade().map(|inner| Master { inner });
                    async move {
                        match master {
                            Some(master) => Some(master.reload_assets().await),
                            None => None,
                        }
                    }
                },
            );
            lock(&master.inner.tasks).push(watch);
        }
        Ok((master, events_rx))
    }

    /// The master's peer id.
    pub fn peer_id(&self) -> String {
        self.inner.peer_id.to_string()
    }

    /// The room id (SHA-256 of the token, hex).
    pub fn room_id(&self) -> &str {
        &self.inner.room_id
    }

    /// Addresses workers can dial, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> Vec<String> {
        lock(&self.inner.addrs)
            .iter()
            .map(|a| self.with_peer(a).to_string())
            .collect()
    }

    fn with_peer(&self, addr: &Multiaddr) -> Multiaddr {
        addr.clone().with(Protocol::P2p(self.inner.peer_id))
    }

    fn announce(&self) {
        let Some(dir) = &self.inner.room_dir else {
            return;
        };
        let addrs: Vec<String> = {
            let all = lock(&self.inner.addrs);
            all.iter()
                .filter(|a| net::is_loopback(a))
                .map(|a| self.with_peer(a).to_string())
                .collect()
        };
        if addrs.is_empty() {
            return;
        }
        let entry = RoomEntry {
            peer_id: self.peer_id(),
            addrs,
            pid: std::process::id(),
        };
        if let Err(e) = room::announce(dir, &self.inner.room_id, &entry) {
            tracing::warn!(
                "could not write the room file, so workers on this host need --master: {e}"
            );
        }
    }

    /// Pushes one job. Resolves once the job is durable (committed to the store).
    pub async fn push(&self, job: JobSpec) -> Result<PushReceipt> {
        let mut receipts = self.push_many(vec![job]).await?;
        receipts.pop().ok_or(Error::Closed("the master"))
    }

    /// Pushes jobs in one group. Resolves once all of them are durable. Either all are accepted
    /// or the call fails and none is queued.
    pub async fn push_many(&self, jobs: Vec<JobSpec>) -> Result<Vec<PushReceipt>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed("the master"));
        }
        let now = now_ms();
        let mut durable_ops = Vec::new();
        let mut memory_jobs = Vec::new();
        let mut receipts = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.into_iter().enumerate() {
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&job.data) {
                return Err(Error::Payload(format!(
                    "job {} of this push: its data must be JSON text ({e}); nothing of this push was queued",
                    index + 1
                )));
            }
            let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let id = match job.id {
                Some(id) if id.is_empty() => {
                    return Err(Error::Payload(format!(
                        "job {} of this push has an empty id; give a non-empty id or none",
                        index + 1
                    )));
                }
                Some(id) => id,
                None => format!("job-{seq}"),
            };
            let payload = self
                .inner
                .key
                .seal(&protocol::payload_context(&id), job.data.as_bytes());
            let max_attempts = job
                .retries
                .map_or(self.inner.default_max_attempts, |r| r.saturating_add(1));
            let not_before = job.delay.map_or(0, |d| now + d.as_millis() as i64);
            let stored = crate::scheduler::new_stored_job(
                id.clone(),
                seq,
                job.task_type,
                payload,
                job.priority,
                max_attempts,
                job.timeout.map(|t| t.as_millis() as u64),
                not_before,
            );
            let in_memory = job.in_memory || self.inner.durable.is_none();
            if in_memory {
                memory_jobs.push(stored);
            } else {
                durable_ops.push(StoreOp::Insert(stored));
            }
            receipts.push(PushReceipt {
                id,
                duplicate: false,
            });
        }
        let mut duplicates = Vec::new();
        let mut accepted = Vec::with_capacity(receipts.len());
        let inserted = |ops: &[StoreOp]| -> Vec<StoredJob> {
            ops.iter()
                .filter_map(|op| match op {
                    StoreOp::Insert(job) => Some(job.clone()),
                    _ => None,
                })
                .collect()
        };
        if let (Some(durable), false) = (&self.inner.durable, durable_ops.is_empty()) {
            let jobs = inserted(&durable_ops);
            duplicates.extend(durable.apply(durable_ops).await?);
            accepted.extend(jobs.into_iter().map(|j| (j, false)));
        }
        if !memory_jobs.is_empty() {
            // Memory jobs need no store at all: only their ids are kept, to refuse duplicates.
            let mut known = lock(&self.inner.memory);
            for job in memory_jobs {
                if known.insert(job.id.clone()) {
                    accepted.push((job, true));
                } else {
                    duplicates.push(job.id);
                }
            }
        }
        if !duplicates.is_empty() {
            let dup: std::collections::HashSet<&str> =
                duplicates.iter().map(String::as_str).collect();
            accepted.retain(|(j, _)| !dup.contains(j.id.as_str()));
            for receipt in &mut receipts {
                receipt.duplicate = dup.contains(receipt.id.as_str());
            }
        }
        if !accepted.is_empty() {
            self.inner
                .engine
                .send(EngineCommand::Enqueue(accepted))
                .map_err(|_| Error::Closed("the master"))?;
        }
        Ok(receipts)
    }

    /// Marks results as handled, so a restart on the same store does not hand them out again.
    /// Needed only with `auto_ack: false`.
    pub fn ack(&self, job_ids: Vec<String>) {
        let _ = self.inner.engine.send(EngineCommand::Ack(job_ids));
    }

    /// Whether no job is waiting or running. When it answers true, every result so far has
    /// already been handed to the event stream.
    pub async fn idle(&self) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .engine
            .send(EngineCommand::Idle(reply))
            .map_err(|_| Error::Closed("the master"))?;
        rx.await.map_err(|_| Error::Closed("the master"))
    }

    /// Counts of jobs and workers.
    pub async fn stats(&self) -> Result<Stats> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .engine
            .send(EngineCommand::Stats(reply))
            .map_err(|_| Error::Closed("the master"))?;
        rx.await.map_err(|_| Error::Closed("the master"))
    }

    /// Reads the asset files again; when their content changed, workers fetch the new bundle
    /// before their next job. Returns whether it changed.
    pub async fn reload_assets(&self) -> Result<bool> {
        let assets = self.inner.assets.clone();
        let changed = tokio::task::spawn_blocking(move || {
            let mut set = write_lock(&assets);
            set.reload().map(|changed| (changed, set.bundle_hash()))
        })
        .await
        .map_err(|e| Error::Config(format!("reloading assets stopped: {e}")))??;
        if changed.0 {
            tracing::info!(bundle = %changed.1, "assets changed");
            let _ = self
                .inner
                .engine
                .send(EngineCommand::AssetsChanged(changed.1));
        }
        Ok(changed.0)
    }

    /// The current asset bundle hash.
    pub fn bundle_hash(&self) -> String {
        read_lock(&self.inner.assets).bundle_hash().to_string()
    }

    /// Stops serving: workers are disconnected, the store is flushed and closed, the room file
    /// withdrawn. Jobs that were running are queued again on the next start (durable store).
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
        self.inner.net.shutdown().await;
        let (reply, rx) = oneshot::channel();
        if self
            .inner
            .engine
            .send(EngineCommand::Shutdown(reply))
            .is_ok()
        {
            let _ = rx.await;
        }
        // The engine is gone, so the delivery queue ends once it has written what it holds.
        let deliver_task = lock(&self.inner.deliver_task).take();
        if let Some(task) = deliver_task {
            let _ = task.await;
        }
        if let Some(durable) = &self.inner.durable {
            durable.close().await;
        }
        if let Some(dir) = &self.inner.room_dir {
            room::withdraw(dir, &self.inner.room_id, &self.peer_id());
        }
        // Closing the file releases the lock: another master may take the store now.
        lock(&self.inner.store_lock).take();
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(dir) = &self.room_dir {
            room::withdraw(dir, &self.room_id, &self.peer_id.to_string());
        }
    }
}

/// Takes the store's lock file (`<store>.lock`), so two masters never share one store: each
/// would hand out the other's jobs.
fn lock_store(path: &std::path::Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Store {
            location: path.display().to_string(),
            message: format!(
                "cannot create the store's lock file {} ({e}); check that its folder exists and is writable",
                lock_path.display()
            ),
            source: Some(Box::new(e)),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Store {
            location: path.display().to_string(),
            message: "another master is using this store; stop it first, or give this master its own --store file"
                .into(),
            source: None,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("locking the store", &lock_path, e)),
    }
}

/// The result of a terminal stored job, for redelivery after a restart.
fn stored_result(key: &TransferKey, job: &StoredJob) -> Option<JobResult> {
    let worker = job.worker.clone().unwrap_or(WorkerInfo {
        id: String::new(),
        name: String::new(),
    });
    let outcome = match (&job.result, &job.last_error) {
        (Some(sealed), _) if job.state == crate::store::JobState::Done => {
            match key.open(&protocol::result_context(&job.id, true), sealed) {
                Ok(plain) => Ok(String::from_utf8_lossy(&plain).into_owned()),
                Err(_) => Err(
                    "the stored result could not be opened with this transferEncryptToken"
                        .to_string(),
                ),
            }
        }
        (_, Some(error)) => Err(error.clone()),
        _ => Err("the job ended without a result".to_string()),
    };
    Some(JobResult {
        job_id: job.id.clone(),
        worker,
        outcome,
        attempts: job.attempt,
    })
}

/// The ids of every job kept in memory only (a master without a durable store, or `in_memory`
/// jobs), so a pushed id that is already known is not queued again. The scheduler holds the jobs
/// themselves; nothing else about them needs keeping.
type MemoryIds = Arc<Mutex<HashSet<String>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_lock<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_lock<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The engine task

enum EngineCommand {
    Enqueue(Vec<(StoredJob, bool)>),
    SessionOpened {
        id: SessionId,
        peer: PeerId,
        worker: WorkerInfo,
        outbound: mpsc::UnboundedSender<ToWorker>,
    },
    SessionClosed {
        id: SessionId,
    },
    Credits {
        id: SessionId,
        n: u32,
    },
    Results {
        id: SessionId,
        results: Vec<(String, u32, RunOutcome)>,
    },
    Heartbeat {
        id: SessionId,
    },
    Ack(Vec<String>),
    AssetsChanged(BundleHash),
    Stats(oneshot::Sender<Stats>),
    Idle(oneshot::Sender<bool>),
    Shutdown(oneshot::Sender<()>),
}

/// Store writes and the events they allow, in engine order.
#[derive(Default)]
struct Batch {
    durable_ops: Vec<StoreOp>,
    results: Vec<(JobResult, bool)>,
}

enum Delivery {
    Batch(Batch),
    Idle {
        reply: oneshot::Sender<bool>,
        idle: bool,
    },
    Drained,
}

/// Applies the engine's batches in order (merging what queued up into one transaction), then
/// hands out their results: a result reaches the user only once it is durable.
async fn deliver(
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    durable: Option<StoreWriter>,
    events: mpsc::UnboundedSender<MasterEvent>,
    auto_ack: bool,
) {
    let mut held: Option<Delivery> = None;
    loop {
        let first = match held.take() {
            Some(d) => d,
            None => match rx.recv().await {
                Some(d) => d,
                None => break,
            },
        };
        let mut batch = match first {
            Delivery::Batch(batch) => batch,
            Delivery::Idle { reply, idle } => {
                let _ = reply.send(idle);
                continue;
            }
            Delivery::Drained => {
                let _ = events.send(MasterEvent::Drained);
                continue;
            }
        };
        while batch.results.len() < 65_536 {
            match rx.try_recv() {
                Ok(Delivery::Batch(more)) => {
                    batch.durable_ops.extend(more.durable_ops);
                    batch.results.extend(more.results);
                }
                Ok(other) => {
                    held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        if let (Some(durable), false) = (&durable, batch.durable_ops.is_empty())
            && let Err(e) = durable.apply(batch.durable_ops).await
        {
            let _ = events.send(MasterEvent::Warning(format!(
                "results could not be written to the store and will be redone after a restart: {e}"
            )));
            continue;
        }
        let mut acks_durable = Vec::new();
        for (result, in_memory) in batch.results {
            if auto_ack && !in_memory {
                acks_durable.push(StoreOp::Delivered {
                    id: result.job_id.clone(),
                });
            }
            let _ = events.send(MasterEvent::Result(result));
        }
        if let (Some(durable), false) = (&durable, acks_durable.is_empty()) {
            durable.apply_detached(acks_durable);
        }
    }
}

struct SessionState {
    worker: Arc<WorkerInfo>,
    credits: u32,
    outbound: mpsc::UnboundedSender<ToWorker>,
}

struct Engine {
    scheduler: Scheduler,
    sessions: HashMap<SessionId, SessionState>,
    order: VecDeque<SessionId>,
    durable: Option<StoreWriter>,
    events: mpsc::UnboundedSender<MasterEvent>,
    delivery: mpsc::UnboundedSender<Delivery>,
    bundle: BundleHash,
    drained_sent: bool,
    ever_had_jobs: bool,
    stats: Stats,
}

impl Engine {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<EngineCommand>) {
        let mut transitions = Vec::new();
        loop {
            let deadline = self.scheduler.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => {
                        let wait = (at - now_ms()).max(0) as u64;
                        tokio::time::sleep(Duration::from_millis(wait)).await
                    }
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if self.handle(command, &mut transitions) {
                        break;
                    }
                    // Take everything else already queued before dispatching: this is what
                    // batches leases and store writes under load.
                    let mut stop = false;
                    for _ in 0..4096 {
                        match commands.try_recv() {
                            Ok(command) => if self.handle(command, &mut transitions) { stop = true; break; },
                            Err(_) => break,
                        }
                    }
                    if stop { break; }
                }
                () = sleep => {}
            }
            let now = now_ms();
            self.scheduler.promote_delayed(now);
            transitions.extend(self.scheduler.expire(now));
            self.dispatch(now);
            if !transitions.is_empty() {
                self.persist(std::mem::take(&mut transitions));
            }
            self.check_drained();
        }
    }

    /// Returns true when the engine must stop.
    fn handle(&mut self, command: EngineCommand, transitions: &mut Vec<Transition>) -> bool {
        let now = now_ms();
        match command {
            EngineCommand::Enqueue(jobs) => {
                for (job, in_memory) in jobs {
                    self.scheduler.enqueue(job, in_memory, now);
                }
                self.drained_sent = false;
                self.ever_had_jobs = true;
            }
            EngineCommand::SessionOpened {
                id,
                peer,
                worker,
                outbound,
            } => {
                tracing::info!(worker = %worker.name, %peer, "worker joined");
                let _ = self.events.send(MasterEvent::WorkerJoined(worker.clone()));
                self.sessions.insert(
                    id,
                    SessionState {
                        worker: Arc::new(worker),
                        credits: 0,
                        outbound,
                    },
                );
                self.order.push_back(id);
            }
            EngineCommand::SessionClosed { id } => {
                if let Some(session) = self.sessions.remove(&id) {
                    self.order.retain(|s| *s != id);
                    tracing::info!(worker = %session.worker.name, "worker left");
                    let _ = self
                        .events
                        .send(MasterEvent::WorkerLeft((*session.worker).clone()));
                }
                transitions.extend(self.scheduler.release_session(id, now));
            }
            EngineCommand::Credits { id, n } => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.credits = session.credits.saturating_add(n).min(1 << 20);
                }
            }
            EngineCommand::Results { id, results } => {
                let returned = results.len() as u32;
                for (job_id, attempt, outcome) in results {
                    match self.scheduler.complete(id, &job_id, attempt, outcome, now) {
                        Ok(t) => transitions.push(t),
                        Err(why) => {
                            tracing::debug!(job = %job_id, attempt, ?why, "result not accepted")
                        }
                    }
                }
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.credits = session.credits.saturating_add(returned).min(1 << 20);
                }
            }
            EngineCommand::Heartbeat { id } => self.scheduler.renew(id, now),
            EngineCommand::Ack(ids) => {
                self.ack(ids);
            }
            EngineCommand::AssetsChanged(bundle) => self.bundle = bundle,
            EngineCommand::Idle(reply) => {
                let idle = self.scheduler.is_idle();
                let _ = self.delivery.send(Delivery::Idle { reply, idle });
            }
            EngineCommand::Stats(reply) => {
                let counts = self.scheduler.counts();
                let _ = reply.send(Stats {
                    queued: counts.ready as u64,
                    delayed: counts.delayed as u64,
                    running: counts.leased as u64,
                    workers: self.sessions.len() as u64,
                    ..self.stats
                });
            }
            EngineCommand::Shutdown(reply) => {
                self.sessions.clear();
                let _ = reply.send(());
                return true;
            }
        }
        false
    }

    /// Hands ready jobs to sessions with credits, round robin, one batch per session.
    fn dispatch(&mut self, now: i64) {
        if self.sessions.is_empty() {
            return;
        }
        let rounds = self.order.len();
        for _ in 0..rounds {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            self.order.push_back(id);
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            if session.credits == 0 {
                continue;
            }
            let mut jobs = Vec::new();
            while session.credits > 0 {
                let Some(Leased {
                    id: job_id,
                    attempt,
                    task_type,
                    payload,
                    timeout_ms,
                }) = self.scheduler.lease(id, &session.worker, now)
                else {
                    break;
                };
                session.credits -= 1;
                jobs.push(WireJob {
                    id: job_id.to_string(),
                    attempt,
                    task_type,
                    payload: payload.to_vec(),
                    timeout_ms,
                });
            }
            if jobs.is_empty() {
                // Nothing ready: no other session will find anything either.
                break;
            }
            // If the session is gone, its leases come back when SessionClosed arrives.
            let _ = session.outbound.send(ToWorker::Jobs {
                bundle: self.bundle,
                jobs,
            });
        }
    }

    /// Writes transitions to the durable store (memory jobs need no write); terminal ones are
    /// delivered once committed.
    fn persist(&mut self, transitions: Vec<Transition>) {
        let mut batch = Batch::default();
        let durable = self.durable.is_some();
        for t in transitions {
            match t {
                Transition::Done {
                    id,
                    attempt,
                    worker,
                    sealed,
                    json,
                    in_memory,
                } => {
                    self.stats.done += 1;
                    let in_memory = in_memory || !durable;
                    if !in_memory {
                        batch.durable_ops.push(StoreOp::Done {
                            id: id.to_string(),
                            attempt,
                            result: sealed,
                            worker: worker.clone(),
                        });
                    }
                    let result = JobResult {
                        job_id: id.to_string(),
                        worker,
                        outcome: Ok(json),
                        attempts: attempt,
                    };
                    batch.results.push((result, in_memory));
                }
                Transition::Retry {
                    id,
                    attempt,
                    not_before_ms,
                    error,
                    in_memory,
                } => {
                    self.stats.retried += 1;
                    tracing::debug!(job = %id, attempt, %error, "attempt failed; will retry");
                    if !in_memory && durable {
                        batch.durable_ops.push(StoreOp::Retry {
                            id: id.to_string(),
                            attempt,
                            not_before_ms,
                            error,
                        });
                    }
                }
                Transition::Dead {
                    id,
                    attempt,
                    error,
                    worker,
                    in_memory,
                } => {
                    self.stats.dead += 1;
                    let in_memory = in_memory || !durable;
                    if !in_memory {
                        batch.durable_ops.push(StoreOp::Dead {
                            id: id.to_string(),
                            attempt,
                            error: error.clone(),
                            worker: worker.clone(),
                        });
                    }
                    let result = JobResult {
                        job_id: id.to_string(),
                        worker: worker.unwrap_or(WorkerInfo {
                            id: String::new(),
                            name: String::new(),
                        }),
                        outcome: Err(error),
                        attempts: attempt,
                    };
                    batch.results.push((result, in_memory));
                }
            }
        }
        let _ = self.delivery.send(Delivery::Batch(batch));
    }

    fn ack(&mut self, ids: Vec<String>) {
        let ops: Vec<StoreOp> = ids
            .into_iter()
            .map(|id| StoreOp::Delivered { id })
            .collect();
        // Memory jobs have nothing to mark; the durable store ignores ids it does not hold.
        if let Some(durable) = &self.durable {
            durable.apply_detached(ops);
        }
    }

    fn check_drained(&mut self) {
        if self.ever_had_jobs && !self.drained_sent && self.scheduler.is_idle() {
            self.drained_sent = true;
            let _ = self.delivery.send(Delivery::Drained);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One worker connection

struct SessionShared {
    room: RoomKey,
    key: TransferKey,
    engine: mpsc::UnboundedSender<EngineCommand>,
    assets: Arc<RwLock<AssetSet>>,
    net: Net,
    next_session: AtomicI64,
    lease_ttl_ms: u64,
}

async fn serve_session(shared: Arc<SessionShared>, peer: PeerId, mut stream: Stream) {
    let handshake = tokio::time::timeout(
        Duration::from_secs(10),
        handshake(&shared, peer, &mut stream),
    )
    .await;
    let name = match handshake {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::warn!(%peer, "refused a peer: {e}");
            let _ = stream.close().await;
            // Give the refusal time to reach the peer before the connection goes: closing it at
            // once can drop the frame that says why.
            tokio::time::sleep(Duration::from_millis(500)).await;
            shared.net.disconnect(peer).await;
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "refused a peer: no handshake within 10 s");
            shared.net.disconnect(peer).await;
            return;
        }
    };
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed) as SessionId;
    let worker = WorkerInfo {
        id: peer.to_string(),
        name,
    };
    let (outbound, mut outbound_rx) = mpsc::unbounded_channel::<ToWorker>();
    if shared
        .engine
        .send(EngineCommand::SessionOpened {
            id,
            peer,
            worker,
            outbound: outbound.clone(),
        })
        .is_err()
    {
        return;
    }
    let (mut reader, writer) = stream.split();

    // Writer: seal and send, batching whatever is queued into one flush.
    let key = shared.key.clone();
    let write_task = tokio::spawn(async move {
        let mut sealer = FrameSealer::new(key, Direction::ToWorker);
        let mut writer = futures::io::BufWriter::with_capacity(64 * 1024, writer);
        while let Some(message) = outbound_rx.recv().await {
            let mut next = Some(message);
            while let Some(message) = next {
                let frame = sealer.seal(&message)?;
                protocol::write_frame(&mut writer, &frame).await?;
                next = outbound_rx.try_recv().ok();
            }
            writer
                .flush()
                .await
                .map_err(|e| Error::Network(format!("writing to a worker: {e}")))?;
        }
        let _ = writer.close().await;
        Ok::<(), Error>(())
    });

    let result = read_session(&shared, id, &mut reader, &outbound).await;
    if let Err(e) = &result {
        tracing::info!(%peer, "worker session ended: {e}");
    }
    let _ = shared.engine.send(EngineCommand::SessionClosed { id });
    drop(outbound);
    write_task.abort();
    if matches!(result, Err(Error::Envelope | Error::Protocol(_))) {
        // A peer that sends bad frames is cut off; the queue is unharmed.
        shared.net.disconnect(peer).await;
    }
}

async fn handshake(shared: &SessionShared, peer: PeerId, stream: &mut Stream) -> Result<String> {
    let nonce: [u8; 32] = random_bytes();
    let master = shared.net.peer_id().to_string();
    let challenge = Challenge {
        version: protocol::WIRE_VERSION,
        room_id: shared.room.room_id().to_string(),
        nonce,
    };
    protocol::write_frame(stream, &protocol::encode_plain(&challenge)?).await?;
    stream
        .flush()
        .await
        .map_err(|e| Error::Network(e.to_string()))?;
    let frame = protocol::read_frame(stream, protocol::MAX_HANDSHAKE_FRAME)
        .await?
        .ok_or_else(|| Error::Protocol("the peer closed the stream during the handshake".into()))?;
    let hello: Hello = protocol::decode_plain(&frame)?;
    if hello.version != protocol::WIRE_VERSION {
        return refuse(stream, format!(
            "wire version {} is not supported by this master (it speaks {}); use the same queuexec version",
            hello.version,
            protocol::WIRE_VERSION
        ))
        .await;
    }
    let transcript =
        protocol::transcript("hello", &nonce, &hello.nonce, &master, &peer.to_string());
    if hello.room_id != shared.room.room_id() || !shared.room.verify(&transcript, &hello.proof) {
        return refuse(
            stream,
            "the worker could not prove it holds this room's token".to_string(),
        )
        .await;
    }
    if !protocol::verify_key_check(&shared.key, &transcript, &hello.key_check) {
        let reason = "the worker's transferEncryptToken differs from the master's; \
                      copy the master's .env to the worker";
        return refuse(stream, reason.to_string()).await;
    }
    let welcome = protocol::transcript("welcome", &nonce, &hello.nonce, &master, &peer.to_string());
    let verdict = Verdict::Welcome {
        proof: shared.room.prove(&welcome),
        key_check: protocol::key_check(&shared.key, &welcome),
        lease_ttl_ms: shared.lease_ttl_ms,
    };
    protocol::write_frame(stream, &protocol::encode_plain(&verdict)?).await?;
    stream
        .flush()
        .await
        .map_err(|e| Error::Network(e.to_string()))?;
    Ok(hello.name.chars().take(128).collect())
}

/// Tells the peer why it is refused, then fails the handshake.
async fn refuse(stream: &mut Stream, reason: String) -> Result<String> {
    let verdict = Verdict::Refused {
        reason: reason.clone(),
    };
    if let Ok(bytes) = protocol::encode_plain(&verdict) {
        let _ = protocol::write_frame(stream, &bytes).await;
        let _ = stream.flush().await;
    }
    Err(Error::Unauthorized(reason))
}

async fn read_session<R: futures::AsyncRead + Unpin>(
    shared: &SessionShared,
    id: SessionId,
    reader: &mut R,
    outbound: &mpsc::UnboundedSender<ToWorker>,
) -> Result<()> {
    let mut opener = FrameSealer::new(shared.key.clone(), Direction::ToMaster);
    let mut reader = futures::io::BufReader::with_capacity(64 * 1024, reader);
    let closed = || Error::Closed("the master");
    let mut frame = Vec::new();
    while protocol::read_frame_into(&mut reader, protocol::MAX_FRAME, &mut frame).await? {
        match opener.open::<ToMaster>(&frame)? {
            ToMaster::Credits(n) => shared
                .engine
                .send(EngineCommand::Credits { id, n })
                .map_err(|_| closed())?,
            ToMaster::Heartbeat => shared
                .engine
                .send(EngineCommand::Heartbeat { id })
                .map_err(|_| closed())?,
            ToMaster::Results(results) => {
                let results = results
                    .into_iter()
                    .map(|r| open_result(&shared.key, r))
                    .collect::<Result<Vec<_>>>()?;
                shared
                    .engine
                    .send(EngineCommand::Results { id, results })
                    .map_err(|_| closed())?;
            }
            ToMaster::GetManifest => {
                let manifest = read_lock(&shared.assets).manifest().clone();
                let _ = outbound.send(ToWorker::Manifest(manifest));
            }
            ToMaster::GetFile { sha256 } => send_file(shared, sha256, outbound),
        }
    }
    Ok(())
}

fn open_result(key: &TransferKey, r: WireResult) -> Result<(String, u32, RunOutcome)> {
    let plain = key.open(&protocol::result_context(&r.id, r.ok), &r.body)?;
    let text =
        String::from_utf8(plain).map_err(|_| Error::Protocol("a result is not UTF-8".into()))?;
    let outcome = if r.ok {
        RunOutcome::Ok {
            sealed: r.body,
            json: text,
        }
    } else {
        RunOutcome::Err(text)
    };
    Ok((r.id, r.attempt, outcome))
}

fn send_file(shared: &SessionShared, sha256: Sha256, outbound: &mpsc::UnboundedSender<ToWorker>) {
    let content = read_lock(&shared.assets).content(&sha256);
    let Some(content) = content else {
        let _ = outbound.send(ToWorker::FileMissing { sha256 });
        return;
    };
    if content.is_empty() {
        let _ = outbound.send(ToWorker::FileChunk {
            sha256,
            offset: 0,
            data: Vec::new(),
            last: true,
        });
        return;
    }
    let mut offset = 0usize;
    while offset < content.len() {
        let end = (offset + protocol::FILE_CHUNK).min(content.len());
        let _ = outbound.send(ToWorker::FileChunk {
            sha256,
            offset: offset as u64,
            data: content[offset..end].to_vec(),
            last: end == content.len(),
        });
        offset = end;
    }
}
