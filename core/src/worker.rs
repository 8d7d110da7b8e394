//! The worker engine: finds the master, proves it holds the token, keeps the master's assets
//! installed, takes jobs through a credit window and runs them through an [`Executor`].
//!
//! No polling for work: the worker grants the master credits and the master pushes jobs as soon
//! as it has them. Heartbeats renew the leases of running jobs. When the connection drops,
//! running jobs are abandoned (the master requeues them) and the worker looks for the master
//! again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use libp2p::{Multiaddr, PeerId, Stream};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::assets::{BundleHash, Manifest, ManifestEntry, Sha256, Workplace};
use crate::crypto::{RoomKey, TransferKey, random_bytes};
use crate::error::{Error, Result};
use crate::executor::{Executor, JobInput};
use crate::net::{self, Net, NetConfig, NetEvent};
use crate::protocol::{
    self, Challenge, Direction, FrameSealer, Hello, ToMaster, ToWorker, Verdict, WireJob,
    WireResult,
};
use crate::room;

/// Everything a worker needs to start.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The room token (queue-xec's `token`).
    pub token: String,
    /// The transfer token (queue-xec's `transferEncryptToken`).
    pub transfer_token: String,
    /// The master's multiaddr. `None`: find it through the room file on this host (and mDNS when
    /// enabled).
    pub master: Option<String>,
    /// The name the master reports for this worker.
    pub name: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Jobs held ready beyond `concurrency`, so the next starts without a round trip.
    pub prefetch: usize,
    /// Folder the master's assets are installed in.
    pub workplace: PathBuf,
    /// Directory of room files (`None`: `room::room_dir`).
    pub room_dir: Option<PathBuf>,
    /// mDNS discovery; `None` reads `QUEUEXEC_MDNS`. Off unless asked for.
    pub mdns: Option<bool>,
    /// Multiaddrs to listen on (only needed for mDNS; none by default).
    pub listen: Vec<String>,
    /// Wall-clock limit of a job that does not set its own.
    pub default_timeout: Option<Duration>,
}

impl WorkerConfig {
    /// A configuration with these tokens and every other setting at its default.
    pub fn new(token: impl Into<String>, transfer_token: impl Into<String>) -> Self {
        WorkerConfig {
            token: token.into(),
            transfer_token: transfer_token.into(),
            master: None,
            name: crate::config::DEFAULT_WORKER_NAME.into(),
            concurrency: crate::config::DEFAULT_WORKER_CONCURRENCY,
            prefetch: crate::config::DEFAULT_WORKER_PREFETCH,
            workplace: PathBuf::from(crate::config::DEFAULT_WORKPLACE),
            room_dir: None,
            mdns: None,
            listen: Vec::new(),
            default_timeout: None,
        }
    }
}

/// What happened on a worker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// Joined a master.
    Connected {
        /// The master's peer id.
        master: String,
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
        fetched: usize,
    },
    /// A job ended on this worker.
    JobFinished {
        /// The job id.
        id: String,
        /// Its error, if it failed.
        error: Option<String>,
    },
    /// The master refused this worker (wrong token); the worker has stopped.
    Refused {
        /// The master's reason.
        reason: String,
    },
}

/// Counts of a worker's jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Jobs that finished with a result.
    pub done: u64,
    /// Jobs that failed.
    pub failed: u64,
    /// Jobs running now.
    pub running: u64,
    /// Whether the worker is connected to a master.
    pub connected: bool,
}

/// A worker. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<WorkerInner>,
}

struct WorkerInner {
    peer_id: PeerId,
    name: String,
    done: AtomicU64,
    failed: AtomicU64,
    running: AtomicU64,
    connected: AtomicBool,
    stop: Notify,
    stopped: AtomicBool,
    /// `Some` once the worker has stopped: `Err` carries why the master refused it.
    outcome: watch::Sender<Option<Result<(), String>>>,
}

impl Worker {
    /// Starts the worker: it finds the master and works until [`Worker::close`] or until the
    /// master refuses it.
    pub async fn start(
        config: WorkerConfig,
        executor: Arc<dyn Executor>,
    ) -> Result<(Worker, mpsc::UnboundedReceiver<WorkerEvent>)> {
        let room = RoomKey::from_token(&config.token)?;
        let key = TransferKey::from_token(&config.transfer_token)?;
        if config.concurrency == 0 {
            return Err(Error::Config("concurrency must be at least 1".into()));
        }
        let master = config
            .master
            .as_deref()
            .map(|m| net::parse_addr(m, "master address"))
            .transpose()?;
        let listen = config
            .listen
            .iter()
            .map(|a| net::parse_addr(a, "listen address"))
            .collect::<Result<Vec<_>>>()?;
        let workplace = {
            let root = config.workplace.clone();
            tokio::task::spawn_blocking(move || Workplace::open(root))
                .await
                .map_err(|e| Error::Config(format!("opening the workplace stopped: {e}")))??
        };
        let mdns = net::mdns_wanted(config.mdns);
        let (net, net_events) = net::spawn(NetConfig {
            listen,
            mdns,
            max_connections: 64,
        })?;
        let inner = Arc::new(WorkerInner {
            peer_id: net.peer_id(),
            name: config.name.clone(),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            running: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            stop: Notify::new(),
            stopped: AtomicBool::new(false),
            outcome: watch::Sender::new(None),
        });
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let runner = Runner {
            inner: inner.clone(),
            room,
            key,
            net,
            net_events,
            master,
            room_dir: room::room_dir(config.room_dir.as_deref()),
            mdns_found: VecDeque::new(),
            config,
            executor,
            workplace: Arc::new(workplace),
            installed: None,
            events: events_tx,
        };
        tokio::spawn(runner.run());
        Ok((Worker { inner }, events_rx))
    }

    /// This worker's peer id.
    pub fn peer_id(&self) -> String {
        self.inner.peer_id.to_string()
    }

    /// This worker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Counts of jobs.
    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            done: self.inner.done.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
            running: self.inner.running.load(Ordering::Relaxed),
            connected: self.inner.connected.load(Ordering::Relaxed),
        }
    }

    /// Stops the worker. Running jobs are abandoned; the master gives them to other workers.
    pub async fn close(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.stop.notify_waiters();
        self.inner.stop.notify_one();
        self.wait().await.ok();
    }

    /// Resolves when the worker has stopped: `Ok` after `close`, an error when the master
    /// refused it.
    pub async fn wait(&self) -> Result<()> {
        let mut rx = self.inner.outcome.subscribe();
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => return Err(Error::Closed("the worker")),
        };
        outcome.unwrap_or(Ok(())).map_err(Error::Unauthorized)
    }
}

struct Runner {
    inner: Arc<WorkerInner>,
    room: RoomKey,
    key: TransferKey,
    net: Net,
    net_events: mpsc::UnboundedReceiver<NetEvent>,
    master: Option<Multiaddr>,
    room_dir: PathBuf,
    mdns_found: VecDeque<Multiaddr>,
    config: WorkerConfig,
    executor: Arc<dyn Executor>,
    workplace: Arc<Workplace>,
    installed: Option<BundleHash>,
    events: mpsc::UnboundedSender<WorkerEvent>,
}

impl Runner {
    async fn run(mut self) {
        let inner = self.inner.clone();
        let outcome = tokio::select! {
            outcome = self.work() => outcome,
            () = inner.stop.notified() => Ok(()),
        };
        let outcome = match outcome {
            Err(Error::Unauthorized(reason)) => {
                tracing::error!("the master refused this worker: {reason}");
                let _ = self.events.send(WorkerEvent::Refused {
                    reason: reason.clone(),
                });
                Err(reason)
            }
            _ => Ok(()),
        };
        inner.connected.store(false, Ordering::Relaxed);
        inner.outcome.send_replace(Some(outcome));
    }

    /// Finds the master, serves it, and finds it again when the connection ends.
    async fn work(&mut self) -> Result<()> {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.inner.stopped.load(Ordering::Acquire) {
                return Ok(());
            }
            let addrs = self.discover().await;
            let mut served = false;
            for (addr, from_mdns) in addrs {
                match self.session(addr.clone()).await {
                    Ok(()) => {
                        served = true;
                        break;
                    }
                    // mDNS finds every master on the LAN, other rooms' too: skip those.
                    Err(Error::Unauthorized(reason)) if from_mdns => {
                        tracing::debug!(%addr, "not this room's master: {reason}");
                    }
                    Err(e @ Error::Unauthorized(_)) => return Err(e),
                    Err(e) => {
                        tracing::debug!(%addr, "no session with the master: {e}");
                    }
                }
            }
            if served {
                backoff = Duration::from_millis(50);
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }

    /// Addresses to try, in order: the explicit address; the room file; what mDNS found (marked
    /// true).
    async fn discover(&mut self) -> Vec<(Multiaddr, bool)> {
        if let Some(addr) = &self.master {
            return vec![(addr.clone(), false)];
        }
        let mut waited = false;
        loop {
            while let Ok(event) = self.net_events.try_recv() {
                if let NetEvent::Discovered(peer, addr) = event {
                    let addr = addr.with_p2p(peer).unwrap_or_else(|a| a);
                    if !self.mdns_found.contains(&addr) {
                        self.mdns_found.push_back(addr);
                    }
                }
            }
            let mut addrs: Vec<(Multiaddr, bool)> =
                room::lookup(&self.room_dir, self.room.room_id())
                    .map(|entry| {
                        entry
                            .addrs
                            .iter()
                            .filter_map(|a| a.parse().ok())
                            .map(|a| (a, false))
                            .collect()
                    })
                    .unwrap_or_default();
            addrs.extend(self.mdns_found.drain(..).map(|a| (a, true)));
            if !addrs.is_empty() {
                return addrs;
            }
            if !waited {
                tracing::info!(
                    room_dir = %self.room_dir.display(),
                    "waiting for a master of this room (start one on this host, pass its address, or enable mDNS)"
                );
                waited = true;
            }
            // Same-host discovery reads a file; mDNS answers arrive as events.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                Some(event) = self.net_events.recv() => {
                    if let NetEvent::Discovered(peer, addr) = event {
                        self.mdns_found.push_back(addr.with_p2p(peer).unwrap_or_else(|a| a));
                    }
                }
            }
        }
    }

    async fn session(&mut self, addr: Multiaddr) -> Result<()> {
        let peer = tokio::time::timeout(Duration::from_secs(10), self.net.dial(addr.clone()))
            .await
            .map_err(|_| Error::Network(format!("no answer from {addr} within 10 s")))??;
        let mut control = self.net.control();
        let mut stream = control
            .open_stream(peer, protocol::JOB_PROTOCOL)
            .await
            .map_err(|e| Error::Network(format!("{addr} does not serve queuexec jobs: {e}")))?;
        let lease_ttl_ms =
            tokio::time::timeout(Duration::from_secs(10), self.handshake(peer, &mut stream))
                .await
                .map_err(|_| Error::Network(format!("no handshake with {addr} within 10 s")))??;
        tracing::info!(master = %peer, "joined the master");
        self.inner.connected.store(true, Ordering::Relaxed);
        let _ = self.events.send(WorkerEvent::Connected {
            master: peer.to_string(),
        });
        let result = self.serve(stream, lease_ttl_ms).await;
        self.inner.connected.store(false, Ordering::Relaxed);
        let reason = match &result {
            Ok(()) => "the master closed the connection".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::info!(master = %peer, "left the master: {reason}");
        let _ = self.events.send(WorkerEvent::Disconnected { reason });
        match result {
            Err(e @ Error::Unauthorized(_)) => Err(e),
            _ => Ok(()),
        }
    }

    async fn handshake(&self, master: PeerId, stream: &mut Stream) -> Result<u64> {
        let frame = protocol::read_frame(stream, protocol::MAX_HANDSHAKE_FRAME)
            .await?
            .ok_or_else(|| {
                Error::Protocol("the master closed the stream during the handshake".into())
            })?;
        let challenge: Challenge = protocol::decode_plain(&frame)?;
        if challenge.version != protocol::WIRE_VERSION {
            return Err(Error::Protocol(format!(
                "the master speaks wire version {}, this worker {}; use the same queuexec version",
                challenge.version,
                protocol::WIRE_VERSION
            )));
        }
        if challenge.room_id != self.room.room_id() {
            return Err(Error::Unauthorized(format!(
                "the master {master} serves another room: this worker's token differs from the master's"
            )));
        }
        let nonce: [u8; 32] = random_bytes();
        let me = self.net.peer_id().to_string();
        let master_id = master.to_string();
        let transcript = protocol::transcript("hello", &challenge.nonce, &nonce, &master_id, &me);
        let hello = Hello {
            version: protocol::WIRE_VERSION,
            room_id: self.room.room_id().to_string(),
            nonce,
            proof: self.room.prove(&transcript),
            key_check: protocol::key_check(&self.key, &transcript),
            name: self.config.name.clone(),
            concurrency: self.config.concurrency as u32,
        };
        protocol::write_frame(stream, &protocol::encode_plain(&hello)?).await?;
        stream
            .flush()
            .await
            .map_err(|e| Error::Network(e.to_string()))?;
        let frame = protocol::read_frame(stream, protocol::MAX_HANDSHAKE_FRAME)
            .await?
            .ok_or_else(|| {
                Error::Unauthorized("the master closed the connection during the handshake".into())
            })?;
        match protocol::decode_plain::<Verdict>(&frame)? {
            Verdict::Welcome {
                proof,
                key_check,
                lease_ttl_ms,
            } => {
                let expected =
                    protocol::transcript("welcome", &challenge.nonce, &nonce, &master_id, &me);
                if !self.room.verify(&expected, &proof) {
                    return Err(Error::Unauthorized(format!(
                        "the master {master} could not prove it holds this room's token"
                    )));
                }
                if !protocol::verify_key_check(&self.key, &expected, &key_check) {
                    return Err(Error::Unauthorized(format!(
                        "the master {master} holds another transferEncryptToken; copy the master's .env to this worker"
                    )));
                }
                Ok(lease_ttl_ms.max(100))
            }
            Verdict::Refused { reason } => Err(Error::Unauthorized(reason)),
        }
    }

    /// Serves one master connection until it ends.
    async fn serve(&mut self, stream: Stream, lease_ttl_ms: u64) -> Result<()> {
        let (reader, writer) = stream.split();
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Outbound>();
        let key = self.key.clone();
        let mut tasks = JoinSet::new();
        let write_task = tokio::spawn(write_loop(key.clone(), writer, out_rx));

        let window = self.config.concurrency + self.config.prefetch;
        let _ = out_tx.send(Outbound::Message(ToMaster::Credits(window as u32)));
        let slots = Arc::new(Semaphore::new(self.config.concurrency));

        // Heartbeats renew leases while jobs are held.
        let heartbeat = {
            let out_tx = out_tx.clone();
            let inner = self.inner.clone();
            let period = Duration::from_millis((lease_ttl_ms / 3).max(30));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if inner.running.load(Ordering::Relaxed) > 0
                        && out_tx.send(Outbound::Message(ToMaster::Heartbeat)).is_err()
                    {
                        break;
                    }
                }
            })
        };

        let mut reader = futures::io::BufReader::with_capacity(64 * 1024, reader);
        let mut opener = FrameSealer::new(key.clone(), Direction::ToWorker);
        let mut sync = Sync::default();
        let result: Result<()> = async {
            let mut frame = Vec::new();
            while protocol::read_frame_into(&mut reader, protocol::MAX_FRAME, &mut frame).await? {
                match opener.open::<ToWorker>(&frame)? {
                    ToWorker::Jobs { bundle, jobs } => {
                        if !sync.active && self.installed == Some(bundle) {
                            self.start_jobs(jobs, &slots, &out_tx, &mut tasks, None);
                        } else {
                            sync.pending.push_back(jobs);
                            if !sync.active {
                                sync.active = true;
                                let _ = out_tx.send(Outbound::Message(ToMaster::GetManifest));
                            }
                        }
                    }
                    ToWorker::Manifest(manifest) => {
                        if !sync.active {
                            continue;
                        }
                        let needed = {
                            let workplace = self.workplace.clone();
                            let m = manifest.clone();
                            tokio::task::spawn_blocking(move || workplace.needed(&m))
                                .await
                                .map_err(|e| {
                                    Error::Config(format!("checking assets stopped: {e}"))
                                })?
                        };
                        match needed {
                            Ok(needed) => {
                                sync.fetched = needed.len();
                                sync.needed = needed.into();
                                sync.manifest = Some(manifest);
                                self.request_next_file(&mut sync, &out_tx);
                            }
                            Err(e) => {
                                self.finish_sync(
                                    &mut sync,
                                    manifest,
                                    Some(e.to_string()),
                                    &slots,
                                    &out_tx,
                                    &mut tasks,
                                )
                                .await
                            }
                        }
                        if sync.active
                            && sync.needed.is_empty()
                            && sync.current.is_none()
                            && let Some(manifest) = sync.manifest.take()
                        {
                            self.finish_sync(
                                &mut sync, manifest, None, &slots, &out_tx, &mut tasks,
                            )
                            .await;
                        }
                    }
                    ToWorker::FileChunk {
                        sha256,
                        offset,
                        data,
                        last,
                    } => {
                        let Some((entry, buffer)) = sync.current.as_mut() else {
                            continue;
                        };
                        if entry.sha256 != sha256 || offset != buffer.len() as u64 {
                            return Err(Error::Protocol(
                                "the master sent a file chunk out of order".into(),
                            ));
                        }
                        if buffer.len() as u64 + data.len() as u64 > entry.size {
                            return Err(Error::Protocol(format!(
                                "the master sent more bytes of {} than announced",
                                entry.name
                            )));
                        }
                        buffer.extend_from_slice(&data);
                        if last {
                            let Some((entry, buffer)) = sync.current.take() else {
                                continue;
                            };
                            let workplace = self.workplace.clone();
                            let installed = tokio::task::spawn_blocking(move || {
                                workplace.install(&entry, &buffer).map(|_| ())
                            })
                            .await
                            .map_err(|e| {
                                Error::Config(format!("installing assets stopped: {e}"))
                            })?;
                            if let Err(e) = installed {
                                let manifest = sync.manifest.take().unwrap_or_default();
                                self.finish_sync(
                                    &mut sync,
                                    manifest,
                                    Some(e.to_string()),
                                    &slots,
                                    &out_tx,
                                    &mut tasks,
                                )
                                .await;
                                continue;
                            }
                            self.request_next_file(&mut sync, &out_tx);
                            if sync.current.is_none()
                                && let Some(manifest) = sync.manifest.take()
                            {
                                self.finish_sync(
                                    &mut sync, manifest, None, &slots, &out_tx, &mut tasks,
                                )
                                .await;
                            }
                        }
                    }
                    ToWorker::FileMissing { .. } => {
                        // The assets changed while we fetched them: start over.
                        sync.needed.clear();
                        sync.current = None;
                        sync.manifest = None;
                        let _ = out_tx.send(Outbound::Message(ToMaster::GetManifest));
                    }
                }
            }
            Ok(())
        }
        .await;

        heartbeat.abort();
        tasks.abort_all();
        self.inner.running.store(0, Ordering::Relaxed);
        drop(out_tx);
        write_task.abort();
        result
    }

    fn request_next_file(&self, sync: &mut Sync, out_tx: &mpsc::UnboundedSender<Outbound>) {
        if sync.current.is_some() {
            return;
        }
        if let Some(entry) = sync.needed.pop_front() {
            let sha256: Sha256 = entry.sha256;
            sync.current = Some((entry, Vec::new()));
            let _ = out_tx.send(Outbound::Message(ToMaster::GetFile { sha256 }));
        }
    }

    /// The bundle is installed (or could not be): tell the executor, then run what waited.
    async fn finish_sync(
        &mut self,
        sync: &mut Sync,
        manifest: Manifest,
        error: Option<String>,
        slots: &Arc<Semaphore>,
        out_tx: &mpsc::UnboundedSender<Outbound>,
        tasks: &mut JoinSet<()>,
    ) {
        let mut failure = error;
        if failure.is_none()
            && let Some(entry) = manifest.dependency_bundle.clone()
        {
            let workplace = self.workplace.clone();
            match tokio::task::spawn_blocking(move || {
                crate::deps::unpack_bundle(&workplace, &entry)
            })
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failure = Some(e.to_string()),
                Err(e) => failure = Some(format!("unpacking dependencies stopped: {e}")),
            }
        }
        if failure.is_none()
            && let Err(e) = self
                .executor
                .assets_changed(self.workplace.root(), &manifest)
                .await
        {
            failure = Some(format!("the task could not be loaded: {e}"));
        }
        let bundle = manifest.bundle_hash();
        match &failure {
            None => {
                tracing::info!(%bundle, fetched = sync.fetched, "assets installed");
                let _ = self.events.send(WorkerEvent::AssetsInstalled {
                    bundle: bundle.to_string(),
                    fetched: sync.fetched,
                });
                self.installed = Some(bundle);
            }
            Some(e) => {
                tracing::error!("assets could not be installed: {e}");
                // Not recorded as installed: the next jobs ask again, after the master fixes it.
                self.installed = None;
            }
        }
        sync.active = false;
        sync.needed.clear();
        sync.current = None;
        for jobs in std::mem::take(&mut sync.pending) {
            self.start_jobs(jobs, slots, out_tx, tasks, failure.clone());
        }
    }

    /// Starts jobs (each waits for a free slot); with `failure`, fails them at once with it.
    fn start_jobs(
        &self,
        jobs: Vec<WireJob>,
        slots: &Arc<Semaphore>,
        out_tx: &mpsc::UnboundedSender<Outbound>,
        tasks: &mut JoinSet<()>,
        failure: Option<String>,
    ) {
        for job in jobs {
            self.inner.running.fetch_add(1, Ordering::Relaxed);
            let slots = slots.clone();
            let out_tx = out_tx.clone();
            let key = self.key.clone();
            let executor = self.executor.clone();
            let inner = self.inner.clone();
            let events = self.events.clone();
            let default_timeout = self.config.default_timeout;
            let failure = failure.clone();
            tasks.spawn(async move {
                let outcome = match failure {
                    Some(failure) => Err(failure),
                    None => match slots.acquire_owned().await {
                        Ok(_permit) => run_job(&key, &*executor, &job, default_timeout).await,
                        Err(_) => return,
                    },
                };
                let ok = outcome.is_ok();
                if ok {
                    inner.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    inner.failed.fetch_add(1, Ordering::Relaxed);
                }
                inner.running.fetch_sub(1, Ordering::Relaxed);
                let _ = events.send(WorkerEvent::JobFinished {
                    id: job.id.clone(),
                    error: outcome.as_ref().err().cloned(),
                });
                let body = match &outcome {
                    Ok(json) => key.seal(&protocol::result_context(&job.id, true), json.as_bytes()),
                    Err(error) => {
                        key.seal(&protocol::result_context(&job.id, false), error.as_bytes())
                    }
                };
                let _ = out_tx.send(Outbound::Result(WireResult {
                    id: job.id,
                    attempt: job.attempt,
                    ok,
                    body,
                }));
            });
        }
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
}

/// Runs one job through the executor, enforcing its timeout and catching panics.
async fn run_job(
    key: &TransferKey,
    executor: &dyn Executor,
    job: &WireJob,
    default_timeout: Option<Duration>,
) -> std::result::Result<String, String> {
    let data = key
        .open(&protocol::payload_context(&job.id), &job.payload)
        .map_err(|e| format!("the job's data could not be opened: {e}"))?;
    let data =
        String::from_utf8(data).map_err(|_| "the job's data is not UTF-8 text".to_string())?;
    let timeout = job
        .timeout_ms
        .map(Duration::from_millis)
        .or(default_timeout);
    let input = JobInput {
        id: job.id.clone(),
        data,
        task_type: job.task_type.clone(),
        attempt: job.attempt,
        timeout,
    };
    let run = std::panic::AssertUnwindSafe(executor.run(input)).catch_unwind();
    let outcome = match timeout {
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(format!(
                    "the job ran longer than its timeout of {} ms and was stopped",
                    limit.as_millis()
                ));
            }
        },
        None => run.await,
    };
    match outcome {
        Ok(Ok(json)) => Ok(json),
        Ok(Err(failure)) => Err(failure.message),
        Err(_) => Err("the task panicked".to_string()),
    }
}

#[derive(Default)]
struct Sync {
    active: bool,
    pending: VecDeque<Vec<WireJob>>,
    manifest: Option<Manifest>,
    needed: VecDeque<ManifestEntry>,
    current: Option<(ManifestEntry, Vec<u8>)>,
    fetched: usize,
}

enum Outbound {
    Message(ToMaster),
    Result(WireResult),
}

/// Seals and writes what the worker sends; results queued together travel in one frame.
async fn write_loop<W: futures::AsyncWrite + Unpin>(
    key: TransferKey,
    writer: W,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
) -> Result<()> {
    let mut sealer = FrameSealer::new(key, Direction::ToMaster);
    let mut writer = futures::io::BufWriter::with_capacity(64 * 1024, writer);
    let mut results = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Outbound::Result(r) => results.push(r),
                Outbound::Message(m) => {
                    if !results.is_empty() {
                        let frame =
                            sealer.seal(&ToMaster::Results(std::mem::take(&mut results)))?;
                        protocol::write_frame(&mut writer, &frame).await?;
                    }
                    let frame = sealer.seal(&m)?;
                    protocol::write_frame(&mut writer, &frame).await?;
                }
            }
            next = if results.len() >= 4096 {
                None
            } else {
                rx.try_recv().ok()
            };
        }
        if !results.is_empty() {
            let frame = sealer.seal(&ToMaster::Results(std::mem::take(&mut results)))?;
            protocol::write_frame(&mut writer, &frame).await?;
        }
        writer
            .flush()
            .await
            .map_err(|e| Error::Network(format!("writing to the master: {e}")))?;
    }
    let _ = writer.close().await;
    Ok(())
}
