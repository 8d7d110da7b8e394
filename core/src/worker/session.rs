//! One connection to a master, on the worker: the dial and handshake, the credit window, the
//! heartbeats, the frame reader (jobs and asset-sync messages), the jobs run through the
//! [`Executor`], and the writer that batches results.
//!
//! The master is not trusted either: frames over the cap are refused by the reader, and a master
//! that sends more jobs than the credits this worker granted is cut off. Results are split into
//! frames by bytes so that none is over what the master accepts, and a result too large for any
//! frame fails its own job with an error saying so, never the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use futures::{AsyncReadExt, FutureExt};
use libp2p::{PeerId, Stream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::asset_sync::{AssetSync, give_back};
use super::discovery::Target;
use super::{Runner, WorkerEvent};
use crate::crypto::TransferKey;
use crate::error::{Error, Result};
use crate::executor::{Executor, JobInput};
use crate::net::{Counted, Path};
use crate::protocol::{
    self, Direction, SealedReader, SealedWriter, ToMaster, ToWorker, WireJob, WireResult,
    WorkerHandshake,
};

/// What one master connection's jobs need: where to send, the run slots, the running jobs.
pub(super) struct Connection {
    /// To the writer task.
    pub(super) out: mpsc::UnboundedSender<Outbound>,
    /// One permit per job that may run at once.
    pub(super) slots: Arc<Semaphore>,
    /// The jobs started on this connection; aborted when it ends.
    pub(super) tasks: JoinSet<()>,
    /// Credits granted to the master and not yet used by a job it sent: a window at the start,
    /// one more per result. A master that sends jobs beyond it is cut off.
    pub(super) credits: Arc<AtomicI64>,
    /// How to stop each job started on this connection and not finished, by key and lease
    /// fence (`ToWorker::Cancel`).
    pub(super) running: RunningJobs,
    /// Cancelled leases that had not started here (waiting for assets): skipped when they do.
    pub(super) cancelled: std::collections::HashSet<(String, u32)>,
    /// Jobs held waiting for the assets: their leases are kept alive by heartbeats too.
    pub(super) waiting: Arc<AtomicU64>,
}

/// The stop signal of each running job, by its key and lease fence.
pub(super) type RunningJobs = Arc<
    std::sync::Mutex<std::collections::HashMap<(String, u32), tokio::sync::oneshot::Sender<()>>>,
>;

fn lock_running(
    running: &RunningJobs,
) -> std::sync::MutexGuard<
    '_,
    std::collections::HashMap<(String, u32), tokio::sync::oneshot::Sender<()>>,
> {
    running
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a worker on a relayed connection waits for hole punching before it opens its job
/// stream on the relay. Behind cone NATs the punch ends well within it (60 to 100 ms after the
/// relayed connection in the namespace test; a few round trips on the internet), so the job
/// stream opens on the direct connection; behind a symmetric NAT the punch never succeeds and
/// jobs start through the relay after this wait. A punch that succeeds later still moves the
/// worker: the relayed connection is closed, the worker joins again on the direct one, and the
/// master hands out again, once, the jobs it held on the relay (their old leases are fenced off).
/// The master's unauthenticated-connection deadline (5 s) must leave room for the handshake
/// after it. `QUEUEXEC_HOLE_PUNCH_WAIT_MS` sets another (0: start on the relay at once).
const HOLE_PUNCH_WAIT: Duration = Duration::from_millis(1000);

/// Environment variable overriding [`HOLE_PUNCH_WAIT`], in milliseconds (at most 4000).
const HOLE_PUNCH_WAIT_ENV: &str = "QUEUEXEC_HOLE_PUNCH_WAIT_MS";

fn hole_punch_wait() -> Duration {
    match std::env::var(HOLE_PUNCH_WAIT_ENV) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(ms) => Duration::from_millis(ms.min(4000)),
            Err(_) => {
                tracing::warn!(
                    value = %text,
                    "{HOLE_PUNCH_WAIT_ENV} is not a number of milliseconds; using {} ms",
                    HOLE_PUNCH_WAIT.as_millis()
                );
                HOLE_PUNCH_WAIT
            }
        },
        Err(_) => HOLE_PUNCH_WAIT,
    }
}

/// Returns once this node has a direct connection to `peer`. DCUtR punches right after the
/// relayed connection opens (and retries a few times), so the checks start often and then thin
/// out: a session that stays relayed (a symmetric NAT) asks the swarm every 5 s, not 10 times a
/// second, for as long as it lasts.
async fn direct_path(net: &crate::net::Net, peer: PeerId) {
    let mut every = Duration::from_millis(100);
    loop {
        tokio::time::sleep(every).await;
        if net.paths(peer).await.0 > 0 {
            return;
        }
        every = (every * 3 / 2).min(Duration::from_secs(5));
    }
}

/// Most results in one frame (besides the byte limit).
const MAX_RESULTS_PER_FRAME: usize = 4096;

/// What the worker sends: results are batched into one frame, other messages go as they are.
pub(crate) enum Outbound {
    Message(ToMaster),
    Result(WireResult),
}

impl Runner {
    /// Dials the master, joins it, and serves it until the connection ends.
    pub(super) async fn session(&mut self, target: &Target) -> Result<()> {
        let addr = target.describe();
        let dial = async {
            match (target.peer, target.addrs.first()) {
                (Some(peer), _) => self.net.dial_peer(peer, target.addrs.clone()).await,
                (None, Some(first)) => self.net.dial(first.clone()).await,
                (None, None) => Err(Error::network("no address to dial")),
            }
        };
        let peer = tokio::time::timeout(Duration::from_secs(10), dial)
            .await
            .map_err(|_| Error::network(format!("no answer from {addr} within 10 s")))??;
        let path = self.settle_path(peer).await;
        let mut control = self.net.control();
        let mut stream = control
            .open_stream(peer, protocol::JOB_PROTOCOL)
            .await
            .map_err(|e| Error::network_from(format!("{addr} does not serve queuexec jobs"), e))?;
        let lease_ttl_ms =
            tokio::time::timeout(Duration::from_secs(10), self.handshake(peer, &mut stream))
                .await
                .map_err(|_| Error::network(format!("no handshake with {addr} within 10 s")))??;
        tracing::info!(master = %peer, %path, "joined the master");
        self.inner.connected.store(true, Ordering::Relaxed);
        self.inner.set_path(Some(path));
        // Announced by `serve` once calls can go out: a task or user that asks the master
        // as soon as it hears of the connection must find the link up.
        let connected = WorkerEvent::Connected {
            master: peer.to_string(),
            path,
        };
        let stream = Counted::new(stream, path == Path::Relayed, &self.inner.relayed);
        // On the relay, watch for a direct connection (hole punching that succeeds after the
        // job stream opened): then this session ends and the next one opens on it.
        let watch = (path == Path::Relayed).then(|| (self.net.clone(), peer));
        let result = self.serve(stream, lease_ttl_ms, watch, connected).await;
        self.inner.connected.store(false, Ordering::Relaxed);
        self.inner.set_path(None);
        let reason = match &result {
            Ok(()) => "the master closed the connection".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::info!(master = %peer, "left the master: {reason}");
        let _ = self.events.send(WorkerEvent::Disconnected { reason });
        match result {
            Err(e @ (Error::Unauthorized(_) | Error::TokenMismatch(_))) => Err(e),
            _ => Ok(()),
        }
    }

    /// On a relayed connection, gives hole punching (DCUtR, which starts by itself) a moment to
    /// replace it with a direct one before the job stream is opened: the stream stays on the
    /// connection it was opened on.
    async fn settle_path(&self, peer: PeerId) -> Path {
        let deadline = tokio::time::Instant::now() + hole_punch_wait();
        loop {
            let (direct, relayed) = self.net.paths(peer).await;
            let late = tokio::time::Instant::now() >= deadline;
            match (direct, relayed) {
                // Direct only (or no connection any more: opening the stream will say so).
                (_, 0) => return Path::Direct,
                // A direct connection replaces the relayed one (closing now).
                (1.., _) if late => return Path::Direct,
                (0, _) if late => {
                    tracing::info!(master = %peer, "no direct connection: jobs go through the relay");
                    return Path::Relayed;
                }
                _ => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
    }

    async fn handshake(&self, master: PeerId, stream: &mut Stream) -> Result<u64> {
        WorkerHandshake {
            room: &self.room,
            key: &self.key,
            master: &master.to_string(),
            worker: &self.net.peer_id().to_string(),
            name: &self.config.name,
            concurrency: self.config.concurrency as u32,
        }
        .run(stream)
        .await
    }

    /// Serves one master connection until it ends.
    async fn serve(
        &mut self,
        stream: Counted<Stream>,
        lease_ttl_ms: u64,
        watch: Option<(crate::net::Net, PeerId)>,
        connected: WorkerEvent,
    ) -> Result<()> {
        let (reader, writer) = stream.split();
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Outbound>();
        let write_task = tokio::spawn(write_loop(self.key.clone(), writer, out_rx));

        self.inner.link.connect(out_tx.clone());
        let _ = self.events.send(connected);
        let window = self.config.concurrency + self.config.prefetch;
        let _ = out_tx.send(Outbound::Message(ToMaster::Credits(window as u32)));
        let mut connection = Connection {
            out: out_tx,
            slots: Arc::new(Semaphore::new(self.config.concurrency)),
            tasks: JoinSet::new(),
            credits: Arc::new(AtomicI64::new(window as i64)),
            running: RunningJobs::default(),
            cancelled: std::collections::HashSet::new(),
            waiting: Arc::new(AtomicU64::new(0)),
        };

        // Heartbeats renew leases while jobs are held.
        let heartbeat = {
            let out_tx = connection.out.clone();
            let inner = self.inner.clone();
            let waiting = connection.waiting.clone();
            let period = Duration::from_millis((lease_ttl_ms / 3).max(30));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let held =
                        inner.running.load(Ordering::Relaxed) + waiting.load(Ordering::Relaxed);
                    if held > 0 && out_tx.send(Outbound::Message(ToMaster::Heartbeat)).is_err() {
                        break;
                    }
                }
            })
        };

        // Counters go to the master on an interval (and once more on close).
        let stats = {
            let inner = self.inner.clone();
            let period = self.config.stats_interval.max(Duration::from_millis(50));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if !inner.report_stats() {
                        break;
                    }
                }
            })
        };

        let mut reader = SealedReader::new(self.key.clone(), Direction::ToWorker, reader);
        let mut sync = AssetSync::default();
        let body = async {
            while let Some(message) = reader.next::<ToWorker>().await? {
                match message {
                    ToWorker::Jobs { bundle, jobs } => {
                        take_credits(&connection.credits, jobs.len())?;
                        if !sync.active && self.installed == Some(bundle) {
                            self.start_jobs(jobs, &mut connection, None);
                        } else if let (false, Some(reason)) =
                            (sync.active, sync.failed_recently(bundle))
                        {
                            // Sent before the master heard that this bundle does not load.
                            give_back(jobs, bundle, reason, &connection);
                        } else {
                            sync.wait_for_assets(jobs, &connection.out);
                            connection
                                .waiting
                                .store(sync.waiting() as u64, Ordering::Relaxed);
                        }
                    }
                    ToWorker::Manifest(manifest) => {
                        self.on_manifest(&mut sync, manifest, &mut connection)
                            .await?;
                    }
                    ToWorker::FileChunk {
                        sha256,
                        offset,
                        data,
                        last,
                    } => {
                        self.on_file_chunk(&mut sync, sha256, offset, data, last, &mut connection)
                            .await?;
                    }
                    ToWorker::FileMissing { .. } => sync.restart(&connection.out),
                    ToWorker::Cancel { id, attempt } => {
                        self.cancel_job(id, attempt, &mut connection)
                    }
                    ToWorker::Reply { call, ok, value } => self
                        .inner
                        .link
                        .answered(call, if ok { Ok(value) } else { Err(value) }),
                    ToWorker::Message { cmd, data } => {
                        let _ = self.events.send(WorkerEvent::Message { cmd, data });
                    }
                    ToWorker::Drained => {
                        if self.config.exit_when_drained
                            && self.inner.running.load(Ordering::Relaxed) == 0
                        {
                            tracing::info!(
                                "the master has no more jobs: this worker stops (exit when drained)"
                            );
                            let _ = self.events.send(WorkerEvent::Drained);
                            self.inner.report_stats();
                            // Let the writer send the final report before the connection goes.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            self.inner.stopped.store(true, Ordering::Release);
                            self.inner.stop.notify_one();
                            break;
                        }
                    }
                    ToWorker::Abort => {
                        tracing::warn!("the master aborted: this worker stops");
                        let _ = self.events.send(WorkerEvent::Aborted);
                        self.inner.stopped.store(true, Ordering::Release);
                        self.inner.stop.notify_one();
                        break;
                    }
                    ToWorker::DependencyBundle { entry, error } => {
                        self.on_dependency_bundle(&mut sync, entry, error, &mut connection)
                            .await?;
                    }
                    // `SealedReader::next` turns these into `Jobs` with their payloads.
                    ToWorker::JobsDetached { .. } => {
                        return Err(Error::protocol(
                            "a batch of jobs arrived without its payloads",
                        ));
                    }
                }
            }
            Ok(())
        };
        let result: Result<()> = match watch {
            Some((net, peer)) => tokio::select! {
                result = body => result,
                () = direct_path(&net, peer) => {
                    // The relayed connection is being closed (its streams may not notice):
                    // leave it; the master hands this session's jobs out again, once.
                    tracing::info!(master = %peer, "hole punched after joining: moving to the direct connection");
                    Ok(())
                }
            },
            None => body.await,
        };

        self.inner.link.disconnect();
        stats.abort();
        heartbeat.abort();
        connection.tasks.abort_all();
        self.inner.running.store(0, Ordering::Relaxed);
        drop(connection);
        write_task.abort();
        result
    }

    /// Starts jobs (each waits for a free slot); with `failure`, fails them at once with it.
    pub(super) fn start_jobs(
        &self,
        jobs: Vec<WireJob>,
        connection: &mut Connection,
        failure: Option<String>,
    ) {
        for job in jobs {
            let lease = (job.id.clone(), job.attempt);
            if connection.cancelled.remove(&lease) {
                // Cancelled while it waited for assets: its credit went back then.
                continue;
            }
            let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
            lock_running(&connection.running).insert(lease.clone(), stop);
            let running = connection.running.clone();
            self.inner.running.fetch_add(1, Ordering::Relaxed);
            let slots = connection.slots.clone();
            let out_tx = connection.out.clone();
            let key = self.key.clone();
            let executor = self.executor.clone();
            let inner = self.inner.clone();
            let events = self.events.clone();
            let default_timeout = self.config.default_timeout;
            let failure = failure.clone();
            let credits = connection.credits.clone();
            connection.tasks.spawn(async move {
                let work = async {
                    match failure {
                        Some(failure) => Err(failure),
                        None => match slots.acquire_owned().await {
                            Ok(_permit) => {
                                let started = std::time::Instant::now();
                                let outcome =
                                    run_job(&key, &*executor, &job, default_timeout).await;
                                inner.counters.busy(started.elapsed());
                                outcome
                            }
                            Err(_) => Err("the worker stopped".to_string()),
                        },
                    }
                };
                // A cancel (or the connection's end) stops the job wherever it is: waiting for a
                // slot or running (its future is dropped).
                let outcome = tokio::select! {
                    biased;
                    _ = &mut stopped => return,
                    outcome = work => outcome,
                };
                if lock_running(&running).remove(&lease).is_none() {
                    // Cancelled as it finished: the cancel did the accounting.
                    return;
                }
                let outcome = fit_in_a_frame(&job.id, outcome);
                let ok = outcome.is_ok();
                if ok {
                    inner.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    inner.failed.fetch_add(1, Ordering::Relaxed);
                }
                inner.running.fetch_sub(1, Ordering::Relaxed);
                let _ = events.send(WorkerEvent::JobFinished {
                    id: crate::job::label_of(&job.id).to_string(),
                    error: outcome.as_ref().err().cloned(),
                });
                let (body, ok) = match &outcome {
                    Ok(json) => (json, true),
                    Err(error) => (error, false),
                };
                let result = WireResult {
                    body: key.seal(&protocol::result_context(&job.id, ok), body.as_bytes()),
                    id: job.id,
                    attempt: job.attempt,
                    ok,
                };
                // The result hands the master one credit back.
                credits.fetch_add(1, Ordering::Relaxed);
                let _ = out_tx.send(Outbound::Result(result));
            });
        }
        // Reap finished tasks so the set does not grow without bound.
        while connection.tasks.try_join_next().is_some() {}
    }
}

impl Runner {
    /// The master cancelled a lease: stop its job and give its credit back (the master no
    /// longer counts it); no result is sent for it.
    fn cancel_job(&self, id: String, attempt: u32, connection: &mut Connection) {
        let lease = (id, attempt);
        connection.credits.fetch_add(1, Ordering::Relaxed);
        let stop = lock_running(&connection.running).remove(&lease);
        let label = crate::job::label_of(&lease.0).to_string();
        match stop {
            Some(stop) => {
                let _ = stop.send(());
                self.inner.running.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(job = %label, "the master cancelled a running job");
                let _ = self.events.send(WorkerEvent::JobCancelled { id: label });
            }
            None => {
                // Not started yet (waiting for assets), or already finished (its result, on its
                // way, is ignored by the master). Remembered so it is skipped if it starts.
                if connection.cancelled.len() >= 4096 {
                    connection.cancelled.clear();
                }
                connection.cancelled.insert(lease);
            }
        }
    }
}

/// Uses one granted credit per job the master sent; more jobs than granted is a protocol
/// error (the connection is closed).
fn take_credits(credits: &AtomicI64, jobs: usize) -> Result<()> {
    let jobs = i64::try_from(jobs).unwrap_or(i64::MAX);
    let left = credits.fetch_sub(jobs, Ordering::Relaxed) - jobs;
    if left < 0 {
        return Err(Error::protocol(format!(
            "the master sent {jobs} jobs with only {} credits granted; a master sends no more jobs than a worker asks for",
            left + jobs
        )));
    }
    Ok(())
}

/// A job's outcome as it can travel: a result or error text too large for one frame becomes an
/// error saying so, which fails this job only.
fn fit_in_a_frame(
    id: &str,
    outcome: std::result::Result<String, String>,
) -> std::result::Result<String, String> {
    let limit = protocol::max_plain_len(id.len());
    let (size, what) = match &outcome {
        Ok(json) => (json.len(), "result"),
        Err(error) => (error.len(), "error text"),
    };
    if size <= limit {
        return outcome;
    }
    Err(format!(
        "the job's {what} is {size} bytes; the limit for a result is {limit} bytes (it travels in one frame of at most {} bytes), so it was not sent. Return less from the task, or write large output somewhere and return where",
        protocol::MAX_FRAME
    ))
}

/// Runs one job through the executor, enforcing its timeout and catching panics.
async fn run_job(
    key: &TransferKey,
    executor: &dyn Executor,
    job: &WireJob,
    default_timeout: Option<Duration>,
) -> std::result::Result<String, String> {
    let body = key
        .open(&protocol::payload_context(&job.id), &job.payload)
        .map_err(|e| format!("the job's data could not be opened: {e}"))?;
    let (shape, data) = crate::shape::decode_body(body);
    let data =
        String::from_utf8(data).map_err(|_| "the job's data is not UTF-8 text".to_string())?;
    let timeout = job
        .timeout_ms
        .map(Duration::from_millis)
        .or(default_timeout);
    let input = JobInput {
        // The wire carries the master's key; the task sees the job id as pushed.
        id: crate::job::label_of(&job.id).to_string(),
        data,
        task_type: job.task_type.clone(),
        attempt: job.attempt,
        timeout,
        shape,
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

/// Seals and writes what the worker sends; results queued together travel together, in as few
/// frames as fit under the cap.
async fn write_loop<W: futures::AsyncWrite + Unpin>(
    key: TransferKey,
    writer: W,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
) -> Result<()> {
    let mut writer = SealedWriter::new(key, Direction::ToMaster, writer);
    let mut results = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Outbound::Result(r) => results.push(r),
                Outbound::Message(m) => {
                    send_results(&mut writer, std::mem::take(&mut results)).await?;
                    writer.send(&m).await?;
                }
            }
            next = if results.len() >= MAX_RESULTS_PER_FRAME {
                None
            } else {
                rx.try_recv().ok()
            };
        }
        send_results(&mut writer, std::mem::take(&mut results)).await?;
        writer.flush().await?;
    }
    writer.close().await;
    Ok(())
}

/// Sends results split into frames under the cap (each was made to fit alone by
/// [`fit_in_a_frame`]; one that still did not would be dropped with a log line).
async fn send_results<W: futures::AsyncWrite + Unpin>(
    writer: &mut SealedWriter<W>,
    results: Vec<WireResult>,
) -> Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    let (batches, oversized) =
        protocol::split_by_bytes(results, WireResult::wire_len, MAX_RESULTS_PER_FRAME);
    for r in oversized {
        tracing::error!(job = %r.id, "a result too large for any frame was not sent");
    }
    for batch in batches {
        writer.send_results(batch).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
