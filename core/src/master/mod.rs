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
//!
//! Files: this one holds the public handle ([`Master`]) and its start-up; `engine.rs` the engine
//! task, `delivery.rs` the task that makes results durable before they are handed out,
//! `session.rs` one worker connection, `push.rs` pushing jobs (and the rule for repeated ids),
//! `tests.rs` hostile workers against a real master.
//!
//! What one worker may take is bounded (see `engine.rs`): at most the window it announced in
//! its first credit message and at most [`MasterConfig::max_credits`]; a lease lasts at most
//! [`MasterConfig::max_lease`] (or the job's timeout plus one TTL) whatever the heartbeats;
//! losing a worker does not use a job's attempts, and a peer that keeps losing jobs is
//! quarantined.

mod bundles;
mod delivery;
mod engine;
mod insight;
mod inspect;
mod push;
mod session;
#[cfg(test)]
mod spill_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use self::delivery::deliver;
use self::engine::{Engine, EngineCommand};
pub use self::inspect::{JobInfo, JobStatus, Overview, Second, WorkerStatus};
use self::session::{Admission, SessionShared, serve_session};
use crate::assets::{AssetSet, AssetSpec};
use crate::crypto::{RoomKey, TransferKey};
use crate::error::{Error, Result};
use crate::job::{JobResult, WorkerInfo, now_ms};
use crate::net::{self, Net, NetConfig, NetEvent};
use crate::protocol;
use crate::room::{self, RoomEntry};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::store::{JobStore, SqliteStore, StoreWriter, StoredJob};

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
    /// Relays to meet workers through (multiaddrs ending in `/p2p/<id>`, as `queuexec relay`
    /// prints them). Empty: `QUEUEXEC_BOOTSTRAP` (comma separated), else none. With one, the
    /// master also listens on every interface (when `listen` is the default), holds a relay
    /// reservation until AutoNAT finds it reachable, and registers at the relay's rendezvous
    /// point under the room's namespace.
    pub bootstrap: Vec<String>,
    /// Map the listening ports on the local gateway with UPnP (with a bootstrap only).
    pub upnp: bool,
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
    /// A pushed id the master already has (queued, running or finished, also after a restart on
    /// the same store) is not queued again: the receipt says `duplicate`. Off by default, as in
    /// queue-xec: a job id is a label, and a repeated one is queued again as a new job (the
    /// receipt says `repeated`). Either way a warning is logged.
    pub idempotent_ids: bool,
    /// The most jobs one worker may hold at once, whatever window it announced (a worker gets
    /// at most the smaller of the two).
    pub max_credits: u32,
    /// The longest a worker may hold a job that has no timeout of its own, heartbeats or not
    /// (a job with a timeout may be held for its timeout plus `lease_ttl`). Past it the job is
    /// taken back as lost.
    pub max_lease: Duration,
    /// How many times a job may be lost (its worker disconnected, went quiet, or held it past
    /// its maximum lease) before it is dead-lettered. Losses do not use the job's attempts.
    pub max_losses: u32,
    /// A worker (by peer id) that loses jobs this many times within `quarantine_for` gets no
    /// jobs for `quarantine_for`.
    pub quarantine_after: u32,
    /// How long losses are remembered, and how long a quarantine lasts.
    pub quarantine_for: Duration,
    /// Mark results delivered as soon as they are handed out as events. When false, call
    /// [`Master::ack`] after handling each; unacknowledged results are handed out again after a
    /// restart on the same store.
    pub auto_ack: bool,
    /// Watch the asset files and reload them when they change, so workers fetch the new
    /// bundle before their next job (see [`crate::config::ASSET_WATCH_INTERVAL`]).
    pub watch_assets: bool,
    /// How often the workers' statistics are handed out ([`MasterEvent::Stats`]).
    pub stats_interval: Duration,
    /// With the SQLite store: the most ready durable jobs kept in memory. The rest wait only
    /// in the store (a few bytes each in memory) and are read back, best first, as the ones in
    /// memory run low; a restart reads only this many. Memory-only jobs are not counted.
    /// At least 1.
    pub max_resident_jobs: usize,
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
            bootstrap: Vec::new(),
            upnp: false,
            assets: Vec::new(),
            asset_base_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            dependencies: Vec::new(),
            default_retries: crate::config::DEFAULT_RETRIES,
            lease_ttl: crate::config::DEFAULT_LEASE_TTL,
            retry_backoff: crate::config::DEFAULT_RETRY_BACKOFF,
            max_workers: crate::config::DEFAULT_MAX_WORKERS,
            idempotent_ids: false,
            max_credits: 256,
            max_lease: Duration::from_secs(3600),
            max_losses: 10,
            quarantine_after: 3,
            quarantine_for: Duration::from_secs(60),
            auto_ack: true,
            watch_assets: crate::config::DEFAULT_WATCH_ASSETS,
            stats_interval: crate::stats::DEFAULT_STATS_INTERVAL,
            max_resident_jobs: crate::config::DEFAULT_MAX_RESIDENT_JOBS,
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
    /// A worker asks (a lookup, a change of one, a message): answer with [`Master::answer`].
    Call(crate::calls::WorkerCall),
    /// The workers' aggregated statistics, on [`MasterConfig::stats_interval`] when any worker
    /// reported since the last one.
    Stats(crate::stats::StatsReport),
    /// A worker could not install or load the task (a missing dependency, a syntax error, a
    /// dependency bundle the master could not build). The jobs it held went back to the queue
    /// without using attempts; it takes no jobs until the assets change (or, later, tries again).
    TaskLoadFailed {
        /// The worker.
        worker: WorkerInfo,
        /// Why, as the worker reported it.
        reason: String,
    },
    /// A dead letter was queued again ([`Master::retry_dead`]), with this job id: its earlier
    /// (error) result is followed by a new one. Sent after that earlier result.
    DeadRetried(String),
}

/// The answer to one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReceipt {
    /// The job's id.
    pub id: String,
    /// True when a job with this id already existed and ids are idempotent
    /// ([`MasterConfig::idempotent_ids`]), so nothing was queued.
    pub duplicate: bool,
    /// True when a job with this id already existed and it was queued again as a new job (the
    /// default).
    pub repeated: bool,
}

/// Counts of a master's jobs and workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Worker connections that run through a relay now (the rest are direct).
    pub relayed_workers: u64,
    /// Bytes of job traffic that went through relays (both directions), since the start.
    pub relayed_bytes: u64,
}

/// A master. Cheap to clone; every clone drives the same engine.
#[derive(Clone)]
pub struct Master {
    inner: Arc<Inner>,
}

struct Inner {
    engine: mpsc::UnboundedSender<EngineCommand>,
    /// Relayed job streams and their bytes.
    relayed: Arc<net::RelayedCounters>,
    durable: Option<StoreWriter>,
    memory: MemoryIds,
    key: TransferKey,
    room_id: String,
    room_dir: Option<PathBuf>,
    peer_id: PeerId,
    seq: AtomicI64,
    default_max_attempts: u32,
    idempotent_ids: bool,
    addrs: Arc<Mutex<Vec<Multiaddr>>>,
    assets: Arc<RwLock<AssetSet>>,
    closed: AtomicBool,
    net: Net,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    deliver_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Held while the master lives: one master per store file.
    store_lock: Mutex<Option<std::fs::File>>,
    /// Workers' calls waiting for an answer.
    calls: Arc<crate::calls::PendingCalls>,
    /// Workers' statistics.
    board: Arc<crate::stats::StatsBoard>,
    /// Whether the engine takes durable jobs before their commit (`push.rs`), as it last said.
    takes_uncommitted: Arc<AtomicBool>,
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
            return Err(Error::config(format!(
                "lease_ttl must be at least {} ms, got {} ms",
                crate::config::MIN_LEASE_TTL.as_millis(),
                config.lease_ttl.as_millis()
            )));
        }
        if config.max_lease < config.lease_ttl {
            return Err(Error::config(format!(
                "max_lease ({} ms) must be at least lease_ttl ({} ms)",
                config.max_lease.as_millis(),
                config.lease_ttl.as_millis()
            )));
        }
        let listen = config
            .listen
            .iter()
            .map(|a| net::parse_addr(a, "listen address"))
            .collect::<Result<Vec<_>>>()?;

        // The dependency bundle is built only when a worker that needs it asks (bundles.rs):
        // never at start.
        let assets = AssetSet::load(
            &config.assets,
            &config.asset_base_dir,
            config.dependencies.clone(),
        )?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();

        let mut store_lock = None;
        let mut pager = None;
        let durable = match &config.store {
            StoreConfig::Memory => None,
            StoreConfig::Sqlite(path) => {
                store_lock = Some(lock_store(path)?);
                let path = path.clone();
                let (store, reader) = tokio::task::spawn_blocking(move || {
                    let store = SqliteStore::open(&path)?;
                    Ok::<_, Error>((store, SqliteStore::open_reader(&path)?))
                })
                .await
                .map_err(|e| Error::Store {
                    location: "sqlite".into(),
                    message: format!("opening stopped: {e}"),
                    source: None,
                })??;
                pager = Some(reader);
                Some(StoreWriter::spawn(Box::new(store) as Box<dyn JobStore>))
            }
        };
        let memory: MemoryIds = Arc::new(Mutex::new(HashSet::new()));

        let mut scheduler = Scheduler::new(SchedulerConfig {
            lease_ttl_ms: config.lease_ttl.as_millis() as i64,
            backoff_base_ms: config.retry_backoff.as_millis() as i64,
            backoff_cap_ms: 60_000,
            max_lease_ms: config.max_lease.as_millis().min(i64::MAX as u128 / 2) as i64,
            max_losses: config.max_losses.max(1),
            resident_window: config.max_resident_jobs.max(1),
        });
        let mut max_seq = 0;
        let mut insight = insight::Insight::new();
        if let (Some(durable), Some(reader)) = (&durable, pager.take()) {
            max_seq = durable.max_seq().await?;
            let now = now_ms();
            // Ready jobs are only noted (priority and push number) and the resident window is
            // read back; the rest stay in the store until the window runs low.
            let (mut reader, recovered) = tokio::task::spawn_blocking(move || {
                let mut reader = reader;
                let recovered = reader.recover(now);
                (reader, recovered)
            })
            .await
            .map_err(|e| Error::Store {
                location: "sqlite".into(),
                message: format!("loading open jobs stopped: {e}"),
                source: None,
            })?;
            let recovered = recovered?;
            let mut resumed = recovered.ready.len();
            for job in recovered.whole {
                if job.state.is_terminal() {
                    if let Some(result) = stored_result(&key, &job) {
                        let _ = events_tx.send(MasterEvent::Result(result));
                    }
                } else {
                    resumed += 1;
                    insight.enqueued(&job, now);
                    scheduler.enqueue(job, false, now);
                }
            }
            for (priority, seq) in recovered.ready {
                insight.spilled();
                scheduler.spill(priority, seq);
            }
            if scheduler.page_due()
                && !engine::page_in(&mut scheduler, &mut insight, &mut reader, now)
            {
                return Err(Error::Store {
                    location: reader.location(),
                    message: "could not read the queued jobs back; see the log".into(),
                    source: None,
                });
            }
            pager = Some(reader);
            if resumed > 0 {
                tracing::info!(resumed, "resumed unfinished jobs from the store");
            }
        }

        let (net, net_events) = net::spawn(NetConfig {
            listen,
            mdns: net::mdns_wanted(config.mdns),
            budget: net::Budget::default(),
            bootstrap: net::Bootstrap::new(
                &config.bootstrap,
                room.rendezvous_namespace(),
                true,
                config.upnp,
            )?
            .map(|mut b| {
                b.listen_wide = config.listen == MasterConfig::new("", "").listen;
                b
            }),
            // A master on a store keeps its peer id across restarts (`<store>.key`): workers
            // that knew it, and the rendezvous registration, name the same peer again.
            identity: match &config.store {
                StoreConfig::Sqlite(path) => Some(net::identity::load_or_create(&key_path(path))?),
                StoreConfig::Memory => None,
            },
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
        let calls = Arc::new(crate::calls::PendingCalls::default());
        let board = Arc::new(crate::stats::StatsBoard::default());
        let deliver_task = tokio::spawn(deliver(
            delivery_rx,
            durable.clone(),
            events_tx.clone(),
            config.auto_ack,
        ));
        let ever_had_jobs = !scheduler.is_idle();
        let takes_uncommitted = Arc::new(AtomicBool::new(false));
        let engine = Engine {
            takes_uncommitted: takes_uncommitted.clone(),
            uncommitted: crate::FastMap::default(),
            scheduler,
            sessions: crate::FastMap::default(),
            order: VecDeque::new(),
            durable: durable.clone(),
            pager,
            events: events_tx.clone(),
            delivery: delivery_tx,
            bundle,
            drained_sent: false,
            ever_had_jobs,
            stats: Stats::default(),
            idle_asked: Vec::new(),
            paused: false,
            calls: calls.clone(),
            fairness: engine::Fairness::new(
                config.max_credits,
                config.quarantine_after,
                config.quarantine_for,
            ),
            insight,
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
            return Err(Error::network(format!(
                "the master reported no listening address within 5 s (asked for {:?})",
                config.listen
            )));
        }
        let relayed = Arc::new(net::RelayedCounters::default());
        let inner = Arc::new(Inner {
            engine: engine_tx.clone(),
            relayed: relayed.clone(),
            durable,
            memory,
            key: key.clone(),
            room_id: room.room_id().to_string(),
            room_dir: room_dir.clone(),
            peer_id,
            seq: AtomicI64::new(max_seq),
            default_max_attempts: config.default_retries.saturating_add(1),
            idempotent_ids: config.idempotent_ids,
            addrs: addrs.clone(),
            assets: assets.clone(),
            closed: AtomicBool::new(false),
            net: net.clone(),
            tasks: Mutex::new(Vec::new()),
            deliver_task: Mutex::new(Some(deliver_task)),
            store_lock: Mutex::new(store_lock),
            calls: calls.clone(),
            board: board.clone(),
            takes_uncommitted,
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
            .map_err(|e| Error::network_from("cannot accept job streams", e))?;
        let bundles = bundles::DependencyBundles::new(engine_tx.clone());
        let shared = Arc::new(SessionShared {
            room,
            key,
            engine: engine_tx,
            assets,
            net,
            next_session: AtomicI64::new(1),
            lease_ttl_ms: config.lease_ttl.as_millis() as u64,
            admission: Admission::new(config.max_workers),
            calls,
            board: board.clone(),
            // Weak: the event stream ends when the engine and delivery task are gone.
            events: events_tx.downgrade(),
            bundles,
            relayed: relayed.clone(),
        });
        let report_task = {
            let events = events_tx.downgrade();
            let period = config.stats_interval.max(Duration::from_millis(50));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(events) = events.upgrade() else {
                        break;
                    };
                    if let Some(report) = board.report()
                        && events.send(MasterEvent::Stats(report)).is_err()
                    {
                        break;
                    }
                }
            })
        };
        let accept_task = tokio::spawn(async move {
            while let Some((peer, stream)) = incoming.next().await {
                tokio::spawn(serve_session(shared.clone(), peer, stream));
            }
        });
        lock(&master.inner.tasks).extend([addr_task, accept_task, report_task]);
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

    /// Marks results as handled, so a restart on the same store does not hand them out again.
    /// Needed only with `auto_ack: false`. Takes each result's [`key`](JobResult::key), or its
    /// job id when that id was pushed only once.
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

    /// Cancels the job with this id (as pushed, or the master's key of one): queued, delayed or
    /// running. A running job's worker is told to stop it (its task's abort signal fires, its
    /// command is killed). Each cancelled job ends with the error
    /// `"the job was cancelled (cancel() on the master)"`, delivered like any other result (and
    /// kept in the durable store). An id pushed more than once cancels each. Returns how many
    /// jobs were cancelled: 0 when none with this id was waiting or running.
    pub async fn cancel(&self, id: &str) -> Result<usize> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .engine
            .send(EngineCommand::Cancel {
                id: id.to_string(),
                reply,
            })
            .map_err(|_| Error::Closed("the master"))?;
        rx.await.map_err(|_| Error::Closed("the master"))
    }

    /// Answers a worker's call ([`MasterEvent::Call`]): JSON, or an error text the worker's
    /// call fails with. Returns false when the call is unknown (answered already, or its worker
    /// left).
    pub fn answer(&self, call: u64, outcome: std::result::Result<String, String>) -> bool {
        let outcome = match outcome {
            Ok(json) => match crate::job::canonical_json(&json) {
                Ok(json) => Ok(json),
                Err(why) => Err(format!("the master's answer is not JSON ({why})")),
            },
            Err(error) => Err(error),
        };
        self.inner.calls.answer(call, outcome)
    }

    /// Sends a message (`cmd`, JSON `data`) to the worker with this peer id, or with `None` to
    /// every worker. Returns how many workers it was sent to.
    pub async fn send_message(&self, worker: Option<&str>, cmd: &str, data: &str) -> Result<usize> {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(data) {
            return Err(Error::payload_from(
                format!("the message data must be JSON text ({e})"),
                e,
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .engine
            .send(EngineCommand::Message {
                worker: worker.map(str::to_string),
                cmd: cmd.to_string(),
                data: data.to_string(),
                reply,
            })
            .map_err(|_| Error::Closed("the master"))?;
        rx.await.map_err(|_| Error::Closed("the master"))
    }

    /// Stops every worker: each is told to leave, and this master hands out no more jobs. The
    /// jobs they held go back to the queue (and stay in the durable store) without using an
    /// attempt. Returns how many workers were told.
    pub async fn abort(&self) -> Result<usize> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .engine
            .send(EngineCommand::Abort(reply))
            .map_err(|_| Error::Closed("the master"))?;
        rx.await.map_err(|_| Error::Closed("the master"))
    }

    /// The workers' aggregated statistics now, when any worker reported since the last report
    /// (the same report [`MasterEvent::Stats`] carries; taking it here resets "since").
    pub fn stats_report(&self) -> Option<crate::stats::StatsReport> {
        self.inner.board.report()
    }

    /// Counts of jobs and workers.
    pub async fn stats(&self) -> Result<Stats> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .engine
            .send(EngineCommand::Stats(reply))
            .map_err(|_| Error::Closed("the master"))?;
        let stats = rx.await.map_err(|_| Error::Closed("the master"))?;
        Ok(Stats {
            relayed_workers: self.inner.relayed.streams.load(Ordering::Relaxed),
            relayed_bytes: self.inner.relayed.bytes.load(Ordering::Relaxed),
            ..stats
        })
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
        .map_err(|e| Error::config_from("reloading assets stopped", e))??;
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

/// The file next to the store that keeps the master's libp2p identity (`<store>.key`).
fn key_path(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
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
                // Stored results were re-serialised when they arrived; parse them again anyway,
                // so a store written by an older version cannot hand out a worker's text.
                Ok(plain) => crate::job::canonical_json(&String::from_utf8_lossy(&plain))
                    .map_err(|why| format!("the stored result is not JSON ({why})")),
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
        job_id: crate::job::label_of(&job.id).to_string(),
        key: job.id.clone(),
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
