//! The worker engine: finds the master, proves it holds the token, keeps the master's assets
//! installed, takes jobs through a credit window and runs them through an [`Executor`].
//!
//! No polling for work: the worker grants the master credits and the master pushes jobs as soon
//! as it has them. Heartbeats renew the leases of running jobs. When the connection drops,
//! running jobs are abandoned (the master requeues them) and the worker looks for the master
//! again.
//!
//! Files: this one holds the public handle ([`Worker`]) and the loop that finds and serves
//! masters; `discovery.rs` finds the master, `session.rs` serves one connection,
//! `asset_sync.rs` keeps the master's assets installed.

mod asset_sync;
mod discovery;
mod session;

pub(crate) use session::Outbound;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{Notify, mpsc, watch};

use crate::assets::{BundleHash, Workplace};
use crate::crypto::{RoomKey, TransferKey};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::net::{self, Net, NetConfig, NetEvent, Path, RelayedCounters};
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
    /// Relays to find the master through (multiaddrs ending in `/p2p/<id>`). Empty:
    /// `QUEUEXEC_BOOTSTRAP` (comma separated), else none. With one, the worker asks the relay's
    /// rendezvous point for the room's master, dials it directly or through the relay, and
    /// punches a hole for a direct connection (DCUtR).
    pub bootstrap: Vec<String>,
    /// Map the listening ports on the local gateway with UPnP (with a bootstrap only).
    pub upnp: bool,
    /// Wall-clock limit of a job that does not set its own.
    pub default_timeout: Option<Duration>,
    /// Stop once the master has nothing queued, delayed or running (Distributo's workers that
    /// exit when no work is left; meteor-cluster's pool that closes when the queue is empty).
    pub exit_when_drained: bool,
    /// How often this worker reports its counters to the master (okanjo-conductor's
    /// `statsInterval`); it also reports when it closes.
    pub stats_interval: Duration,
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
            bootstrap: Vec::new(),
            upnp: false,
            default_timeout: None,
            stats_interval: crate::stats::DEFAULT_STATS_INTERVAL,
            exit_when_drained: false,
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
        /// How the job stream reaches it: directly (also through hole-punched NATs) or
        /// through a relay.
        path: Path,
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
    /// A message from the master (`Master::send_message`); `data` is JSON.
    Message {
        /// The command name.
        cmd: String,
        /// The data, as JSON text.
        data: String,
    },
    /// The master aborted: this worker stopped (its unfinished jobs stay queued there).
    Aborted,
    /// The master ran dry and this worker has `exit_when_drained`: it stopped.
    Drained,
    /// The master cancelled a job this worker was running (`Master::cancel`); it was stopped
    /// and no result is sent for it.
    JobCancelled {
        /// The job id.
        id: String,
    },
    /// The master refused this worker (wrong token); the worker has stopped.
    Refused {
        /// The master's reason.
        reason: String,
        /// The code of the error [`Worker::wait`] returns for it: `ERR_QUEUEXEC_UNAUTHORIZED`
        /// (another room token) or `ERR_QUEUEXEC_TOKEN_MISMATCH` (another transfer token).
        code: &'static str,
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
    /// How it is connected: `None` when it is not.
    pub path: Option<Path>,
    /// Bytes of job traffic that went through relays (both directions), since the start.
    pub relayed_bytes: u64,
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
    /// 0: not connected, 1: direct, 2: relayed.
    path: AtomicU8,
    relayed: Arc<RelayedCounters>,
    stop: Notify,
    stopped: AtomicBool,
    /// `Some` once the worker has stopped: `Err` carries why the master refused it.
    outcome: watch::Sender<Option<Result<(), Refusal>>>,
    /// Calls to the master on the live connection.
    link: crate::calls::WorkerLink,
    /// Busy time and custom metrics, reported to the master.
    counters: crate::stats::WorkerCounters,
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
            return Err(Error::config("concurrency must be at least 1"));
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
                .map_err(|e| Error::config_from("opening the workplace stopped", e))??
        };
        let mdns = net::mdns_wanted(config.mdns);
        let bootstrap = net::Bootstrap::new(
            &config.bootstrap,
            room.rendezvous_namespace(),
            false,
            config.upnp,
        )?;
        let bootstrap = bootstrap.map(|mut b| {
            b.listen_wide = config.listen.is_empty();
            b
        });
        let reaching = bootstrap.is_some();
        let (net, net_events) = net::spawn(NetConfig {
            listen,
            mdns,
            // A worker only listens for mDNS; nobody needs many connections to it.
            budget: net::Budget {
                max_pending: 32,
                max_unauthenticated: 16,
                ..net::Budget::default()
            },
            bootstrap,
            identity: None,
        })?;
        let inner = Arc::new(WorkerInner {
            peer_id: net.peer_id(),
            name: config.name.clone(),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            running: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            path: AtomicU8::new(0),
            relayed: Arc::new(RelayedCounters::default()),
            stop: Notify::new(),
            stopped: AtomicBool::new(false),
            outcome: watch::Sender::new(None),
            link: crate::calls::WorkerLink::default(),
            counters: crate::stats::WorkerCounters::default(),
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
            rendezvous_found: VecDeque::new(),
            reaching,
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
            path: match self.inner.path.load(Ordering::Relaxed) {
                1 => Some(Path::Direct),
                2 => Some(Path::Relayed),
                _ => None,
            },
            relayed_bytes: self.inner.relayed.bytes.load(Ordering::Relaxed),
        }
    }

    /// Asks the master (a lookup, a change of one, a message) over the live connection;
    /// resolves with the master's answer: its JSON, or the error text of its handler. Fails
    /// when no master is connected or the connection ends before the answer.
    pub async fn call(
        &self,
        request: crate::calls::WorkerRequest,
    ) -> Result<std::result::Result<String, String>> {
        self.inner.link.call(request).await
    }

    /// Adds `delta` to this worker's custom metric `name` (okanjo-conductor's worker stats),
    /// reported to the master with the built-in counters. False when the name is empty or
    /// longer than 256 bytes, the delta is not finite, or 256 other names are in use.
    pub fn metric(&self, name: &str, delta: f64) -> bool {
        self.inner.counters.add(name, delta)
    }

    /// Stops the worker. Running jobs are abandoned; the master gives them to other workers.
    /// Its counters are reported to the master one last time first.
    pub async fn close(&self) {
        if self.inner.connected.load(Ordering::Relaxed) && self.inner.report_stats() {
            // Give the writer a moment to send the final report before the connection goes.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
        outcome.unwrap_or(Ok(())).map_err(Refusal::into_error)
    }
}

impl WorkerInner {
    /// Sends this worker's counters to the master; false when not connected.
    fn report_stats(&self) -> bool {
        let (counters, span_ms) = self.counters.snapshot(
            self.done.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        );
        self.link
            .send(crate::protocol::ToMaster::Stats { counters, span_ms })
    }

    fn set_path(&self, path: Option<Path>) {
        let code = match path {
            None => 0,
            Some(Path::Direct) => 1,
            Some(Path::Relayed) => 2,
        };
        self.path.store(code, Ordering::Relaxed);
    }
}

/// Why the master refused this worker: kept so [`Worker::wait`] returns the same error (and
/// code) the handshake gave.
#[derive(Debug, Clone)]
enum Refusal {
    /// [`Error::Unauthorized`].
    Unauthorized(String),
    /// [`Error::TokenMismatch`].
    TokenMismatch(String),
}

impl Refusal {
    /// The refusal in `error`, if it is one: the worker stops on these rather than retrying.
    fn of(error: &Error) -> Option<Refusal> {
        match error {
            Error::Unauthorized(reason) => Some(Refusal::Unauthorized(reason.clone())),
            Error::TokenMismatch(reason) => Some(Refusal::TokenMismatch(reason.clone())),
            _ => None,
        }
    }

    fn reason(&self) -> &str {
        match self {
            Refusal::Unauthorized(reason) | Refusal::TokenMismatch(reason) => reason,
        }
    }

    fn into_error(self) -> Error {
        match self {
            Refusal::Unauthorized(reason) => Error::Unauthorized(reason),
            Refusal::TokenMismatch(reason) => Error::TokenMismatch(reason),
        }
    }
}

/// The worker's task: finds masters and serves them.
struct Runner {
    inner: Arc<WorkerInner>,
    room: RoomKey,
    key: TransferKey,
    net: Net,
    net_events: mpsc::UnboundedReceiver<NetEvent>,
    master: Option<Multiaddr>,
    room_dir: PathBuf,
    mdns_found: VecDeque<Multiaddr>,
    /// Masters the rendezvous points named, not yet tried.
    rendezvous_found: VecDeque<discovery::Target>,
    /// A bootstrap is set: ask the rendezvous points.
    reaching: bool,
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
        let outcome = match outcome.as_ref().err().and_then(Refusal::of) {
            Some(refusal) => {
                let reason = refusal.reason().to_string();
                let code = refusal.clone().into_error().code();
                tracing::error!("the master refused this worker: {reason}");
                let _ = self.events.send(WorkerEvent::Refused { reason, code });
                Err(refusal)
            }
            None => Ok(()),
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
            let targets = self.discover().await;
            let mut served = false;
            for target in targets {
                let name = target.describe();
                match self.session(&target).await {
                    Ok(()) => {
                        served = true;
                        break;
                    }
                    // mDNS finds every master on the LAN, other rooms' too: skip those.
                    Err(e) if target.shared && Refusal::of(&e).is_some() => {
                        let reason = e.to_string();
                        tracing::debug!(master = %name, "not this room's master: {reason}");
                    }
                    Err(e) if Refusal::of(&e).is_some() => return Err(e),
                    Err(e) => {
                        tracing::debug!(master = %name, "no session with the master: {e}");
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
}
