//! One worker connection, on the master: admission (one handshake at a time per peer, a bounded
//! number in progress, each with a deadline; one session per peer, a newer one replacing the
//! older; at most `max_workers` sessions), the handshake,
//! then one task that reads and opens the worker's frames (results are decrypted here, off the
//! engine) and one that seals and writes what the engine and this reader queue for it.
//!
//! What a worker can make the master spend is bounded: jobs are limited by the credits the
//! engine grants; asset requests wait in a queue of [`MAX_ASSET_REQUESTS`] (a worker that asks
//! for more without reading is cut off); a file is shared ([`bytes::Bytes`]), never copied per
//! request, and cut into chunks only as the writer drains, so one chunk at a time is in memory.
//! Jobs are split into frames by bytes so that no frame is over what a worker accepts.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};

use crate::net::{Counted, Path, RelayedCounters};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::engine::EngineCommand;
use super::{lock, read_lock};
use crate::assets::{AssetSet, BundleHash, Sha256};
use crate::crypto::{RoomKey, TransferKey};
use crate::error::{Error, Result};
use crate::job::WorkerInfo;
use crate::net::Net;
use crate::protocol::{
    self, Direction, MasterHandshake, SealedReader, SealedWriter, ToMaster, ToWorker, WireJob,
    WireResult,
};
use crate::scheduler::{RunOutcome, SessionId};

/// Asset requests (manifest or file) a worker may have waiting at once. An honest worker asks
/// for one thing at a time; one that queues more than this without reading is cut off.
pub(super) const MAX_ASSET_REQUESTS: usize = 8;

/// The most characters of a worker's reason for a task that cannot load that the master keeps.
const MAX_REASON: usize = 4096;

/// How long a peer has to complete the handshake after opening its job stream.
pub(super) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

/// Handshakes in progress at once; further job streams wait (within the deadline) for a slot.
const MAX_PENDING_HANDSHAKES: usize = 128;

/// What every session of one master shares.
pub(super) struct SessionShared {
    pub(super) room: RoomKey,
    pub(super) key: TransferKey,
    pub(super) engine: mpsc::UnboundedSender<EngineCommand>,
    pub(super) assets: Arc<RwLock<AssetSet>>,
    pub(super) net: Net,
    pub(super) next_session: AtomicI64,
    pub(super) lease_ttl_ms: u64,
    pub(super) admission: Admission,
    /// Workers' calls waiting for the master's user.
    pub(super) calls: Arc<crate::calls::PendingCalls>,
    /// Workers' statistics.
    pub(super) board: Arc<crate::stats::StatsBoard>,
    /// Where calls are handed to the master's user.
    pub(super) events: mpsc::WeakUnboundedSender<super::MasterEvent>,
    /// The dependency bundle, built when a worker first asks for it.
    pub(super) bundles: super::bundles::DependencyBundles,
    /// Bytes of job streams that run through a relay, and how many do.
    pub(super) relayed: Arc<RelayedCounters>,
}

/// Who may hold a job stream: one handshake at a time per peer, a bounded number in total, one
/// session per peer (a newer one ends the older, so a worker whose old connection died silently
/// gets back in), and at most `max_workers` sessions.
pub(super) struct Admission {
    handshakes: Semaphore,
    /// Peers with a handshake in progress.
    peers: Mutex<HashSet<PeerId>>,
    sessions: Semaphore,
    /// Each peer's session: its id, and how to end it.
    active: Mutex<HashMap<PeerId, (SessionId, oneshot::Sender<()>)>>,
    max_workers: u32,
}

impl Admission {
    pub(super) fn new(max_workers: u32) -> Self {
        Admission {
            handshakes: Semaphore::new(MAX_PENDING_HANDSHAKES),
            peers: Mutex::new(HashSet::new()),
            sessions: Semaphore::new(max_workers as usize),
            active: Mutex::new(HashMap::new()),
            max_workers,
        }
    }
}

/// Releases a peer's handshake slot when its handshake ends, however it ends.
struct PeerSlot<'a> {
    admission: &'a Admission,
    peer: PeerId,
}

impl Drop for PeerSlot<'_> {
    fn drop(&mut self) {
        lock(&self.admission.peers).remove(&self.peer);
    }
}

/// An asset request waiting for the writer.
enum AssetRequest {
    Manifest,
    File(Sha256),
    DependencyBundle,
}

/// Serves one worker connection until it ends.
pub(super) async fn serve_session(shared: Arc<SessionShared>, peer: PeerId, stream: Stream) {
    let path = shared.net.path(peer).await;
    let mut stream = Counted::new(stream, path == Path::Relayed, &shared.relayed);
    // One handshake at a time per peer: another stream meanwhile (a peer opening many) is
    // dropped at once.
    if !lock(&shared.admission.peers).insert(peer) {
        tracing::debug!(%peer, "dropped a second job stream from one peer");
        return;
    }
    let slot = PeerSlot {
        admission: &shared.admission,
        peer,
    };
    let started = tokio::time::Instant::now();
    let handshake = tokio::time::timeout(HANDSHAKE_DEADLINE, async {
        // Wait for a handshake slot within the same deadline.
        let _permit = shared
            .admission
            .handshakes
            .acquire()
            .await
            .map_err(|_| Error::Closed("the master"))?;
        handshake(&shared, peer, &mut stream).await
    })
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
            tracing::warn!(
                %peer,
                "refused a peer: no handshake within {} s",
                HANDSHAKE_DEADLINE.as_secs()
            );
            shared.net.disconnect(peer).await;
            return;
        }
    };
    drop(slot);
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed) as SessionId;
    // A newer session of the same peer replaces the older one (its permit comes back when it
    // has ended, hence the short wait below).
    let (cancel, cancelled) = oneshot::channel::<()>();
    if let Some((_, older)) = lock(&shared.admission.active).insert(peer, (id, cancel)) {
        let _ = older.send(());
    }
    let permit =
        tokio::time::timeout(Duration::from_secs(1), shared.admission.sessions.acquire()).await;
    let Ok(Ok(_worker_slot)) = permit else {
        end_active(&shared.admission, peer, id);
        tracing::warn!(
            %peer,
            "refused a worker: this master already serves max_workers = {} workers",
            shared.admission.max_workers
        );
        shared.net.disconnect(peer).await;
        return;
    };
    tracing::debug!(%peer, elapsed = ?started.elapsed(), "handshake done");
    if path == Path::Relayed {
        tracing::info!(%peer, "a worker joined through a relay (its bytes are counted in stats)");
    }
    shared.net.authenticated(peer, true).await;
    let worker_name = name.clone();
    let worker = WorkerInfo {
        id: peer.to_string(),
        name,
    };
    let caller = worker.clone();
    // Jobs from the engine: bounded by the credits the engine grants this session.
    let (outbound, outbound_rx) = mpsc::unbounded_channel::<ToWorker>();
    let replies = outbound.clone();
    if shared
        .engine
        .send(EngineCommand::SessionOpened {
            id,
            peer,
            worker,
            outbound,
            path,
        })
        .is_err()
    {
        end_active(&shared.admission, peer, id);
        return;
    }
    let (reader, writer) = stream.split();
    let (requests, requests_rx) = mpsc::channel(MAX_ASSET_REQUESTS);
    let write_task = tokio::spawn(write_session(
        shared.clone(),
        id,
        writer,
        outbound_rx,
        requests_rx,
    ));

    let result = tokio::select! {
        result = read_session(&shared, id, (&worker_name, &caller, &replies), reader, &requests) => result,
        _ = cancelled => Err(Error::Closed("this session: the worker opened a newer one")),
    };
    if let Err(e) = &result {
        tracing::info!(%peer, "worker session ended: {e}");
    }
    let _ = shared.engine.send(EngineCommand::SessionClosed { id });
    write_task.abort();
    if end_active(&shared.admission, peer, id) {
        shared.net.authenticated(peer, false).await;
    }
    if matches!(result, Err(Error::Envelope | Error::Protocol(..))) {
        // A peer that sends bad frames is cut off; the queue is unharmed. The master's user
        // hears of it once per session, with the reason.
        if let (Err(e), Some(events)) = (&result, shared.events.upgrade()) {
            let _ = events.send(super::MasterEvent::Warning(format!(
                "cut off worker {worker_name:?} ({peer}): {e}"
            )));
        }
        shared.net.disconnect(peer).await;
    }
}

/// Forgets session `id` as `peer`'s session, unless a newer one replaced it; returns whether it
/// was still the peer's session.
fn end_active(admission: &Admission, peer: PeerId, id: SessionId) -> bool {
    let mut active = lock(&admission.active);
    if active.get(&peer).is_some_and(|(current, _)| *current == id) {
        active.remove(&peer);
        true
    } else {
        false
    }
}

async fn handshake<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(
    shared: &SessionShared,
    peer: PeerId,
    stream: &mut S,
) -> Result<String> {
    MasterHandshake {
        room: &shared.room,
        key: &shared.key,
        master: &shared.net.peer_id().to_string(),
        worker: &peer.to_string(),
        lease_ttl_ms: shared.lease_ttl_ms,
    }
    .run(stream)
    .await
}

/// Seals and writes jobs (split by bytes into frames a worker accepts) and answers asset
/// requests one at a time, producing file chunks only as the stream drains.
async fn write_session<W: futures::AsyncWrite + Unpin>(
    shared: Arc<SessionShared>,
    id: SessionId,
    writer: W,
    mut jobs: mpsc::UnboundedReceiver<ToWorker>,
    mut requests: mpsc::Receiver<AssetRequest>,
) -> Result<()> {
    let mut writer = SealedWriter::new(shared.key.clone(), Direction::ToWorker, writer);
    // Answers that wait for the dependency bundle's build, which must not hold up the writer.
    let (late_tx, mut late) = mpsc::unbounded_channel::<ToWorker>();
    let mut bundle_asks = 0usize;
    loop {
        tokio::select! {
            biased;
            message = jobs.recv() => {
                let Some(message) = message else { break };
                let mut next = Some(message);
                while let Some(message) = next {
                    send_jobs(&shared, id, &mut writer, message).await?;
                    next = jobs.try_recv().ok();
                }
            }
            request = requests.recv() => {
                let Some(request) = request else { break };
                match request {
                    AssetRequest::Manifest => {
                        let manifest = read_lock(&shared.assets).manifest().clone();
                        writer.send(&ToWorker::Manifest(manifest)).await?;
                    }
                    AssetRequest::File(sha256) => send_file(&shared, &mut writer, sha256).await?,
                    AssetRequest::DependencyBundle => {
                        bundle_asks += 1;
                        if bundle_asks > MAX_ASSET_REQUESTS {
                            return Err(Error::protocol(format!(
                                "the worker asked for the dependency bundle more than {MAX_ASSET_REQUESTS} times before the answers came; a worker asks once"
                            )));
                        }
                        let dependencies = read_lock(&shared.assets).manifest().dependencies.clone();
                        let build = (!dependencies.is_empty())
                            .then(|| shared.bundles.get(&dependencies));
                        let late_tx = late_tx.clone();
                        tokio::spawn(async move {
                            let answer = match build {
                                None => ToWorker::DependencyBundle {
                                    entry: None,
                                    error: Some("the master lists no dependencies".into()),
                                },
                                Some(build) => match build.await {
                                    Ok(built) => ToWorker::DependencyBundle {
                                        entry: Some(built.0.clone()),
                                        error: None,
                                    },
                                    Err(error) => ToWorker::DependencyBundle {
                                        entry: None,
                                        error: Some(error),
                                    },
                                },
                            };
                            let _ = late_tx.send(answer);
                        });
                    }
                }
            }
            answer = late.recv() => {
                let Some(answer) = answer else { break };
                bundle_asks = bundle_asks.saturating_sub(1);
                writer.send(&answer).await?;
            }
        }
        writer.flush().await?;
    }
    writer.close().await;
    Ok(())
}

/// Sends what the engine queued; `Jobs` are split so that no frame is over [`protocol::MAX_FRAME`].
/// A job too large for any frame (stored before pushes were checked) fails with a clear error
/// instead of taking the connection down.
async fn send_jobs<W: futures::AsyncWrite + Unpin>(
    shared: &SessionShared,
    id: SessionId,
    writer: &mut SealedWriter<W>,
    message: ToWorker,
) -> Result<()> {
    let ToWorker::Jobs { bundle, jobs } = message else {
        return writer.send(&message).await;
    };
    let (batches, oversized) = protocol::split_by_bytes(jobs, WireJob::wire_len, usize::MAX);
    if !oversized.is_empty() {
        fail_oversized(shared, id, oversized);
    }
    for jobs in batches {
        send_batch(writer, bundle, jobs).await?;
    }
    Ok(())
}

async fn send_batch<W: futures::AsyncWrite + Unpin>(
    writer: &mut SealedWriter<W>,
    bundle: BundleHash,
    jobs: Vec<WireJob>,
) -> Result<()> {
    writer.send_jobs(bundle, jobs).await
}

fn fail_oversized(shared: &SessionShared, id: SessionId, jobs: Vec<WireJob>) {
    let results = jobs
        .into_iter()
        .map(|job| {
            let error = format!(
                "the job's sealed data is {} bytes, over what one frame carries ({} bytes of a {}-byte frame), so no worker can receive it; push smaller jobs",
                job.payload.len(),
                protocol::FRAME_BUDGET,
                protocol::MAX_FRAME
            );
            tracing::warn!(job = %job.id, "{error}");
            (job.id, job.attempt, RunOutcome::Err(error))
        })
        .collect();
    let _ = shared.engine.send(EngineCommand::Results { id, results });
}

/// Sends one file in chunks, each cut from the shared content only when the previous one is
/// written: memory per request is one chunk, whatever the file's size.
async fn send_file<W: futures::AsyncWrite + Unpin>(
    shared: &SessionShared,
    writer: &mut SealedWriter<W>,
    sha256: Sha256,
) -> Result<()> {
    let content = read_lock(&shared.assets).content(&sha256);
    let Some(content) = content.or_else(|| shared.bundles.content(&sha256)) else {
        return writer.send(&ToWorker::FileMissing { sha256 }).await;
    };
    let mut offset = 0usize;
    loop {
        let end = (offset + protocol::FILE_CHUNK).min(content.len());
        writer
            .send(&ToWorker::FileChunk {
                sha256,
                offset: offset as u64,
                data: content[offset..end].to_vec(),
                last: end == content.len(),
            })
            .await?;
        if end == content.len() {
            return Ok(());
        }
        // Each chunk reaches the stream before the next is cut: a worker that does not read
        // holds the writer here, not the master's memory.
        writer.flush().await?;
        offset = end;
    }
}

async fn read_session<R: futures::AsyncRead + Unpin>(
    shared: &SessionShared,
    id: SessionId,
    (worker_name, caller, replies): (&str, &WorkerInfo, &mpsc::UnboundedSender<ToWorker>),
    reader: R,
    requests: &mpsc::Sender<AssetRequest>,
) -> Result<()> {
    let mut reader = SealedReader::new(shared.key.clone(), Direction::ToMaster, reader);
    let closed = || Error::Closed("the master");
    while let Some(message) = reader.next::<ToMaster>().await? {
        match message {
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
                    .map(|r| open_result(&shared.key, worker_name, r))
                    .collect::<Result<Vec<_>>>()?;
                shared
                    .engine
                    .send(EngineCommand::Results { id, results })
                    .map_err(|_| closed())?;
            }
            ToMaster::GetManifest => queue_request(requests, AssetRequest::Manifest)?,
            ToMaster::GetFile { sha256 } => queue_request(requests, AssetRequest::File(sha256))?,
            ToMaster::Stats { counters, span_ms } => shared.board.record(caller, counters, span_ms),
            ToMaster::Call { call, request } => {
                if let Err(why) = request.check().and_then(|()| shared.calls.admit(&request)) {
                    // A bad call fails itself, not the session.
                    let _ = replies.send(ToWorker::Reply {
                        call,
                        ok: false,
                        value: format!("the master refused the call: {why}"),
                    });
                    continue;
                }
                let Some(events) = shared.events.upgrade() else {
                    return Err(closed());
                };
                let call_id = shared.calls.open(id, call, replies.clone())?;
                let _ = events.send(super::MasterEvent::Call(crate::calls::WorkerCall {
                    id: call_id,
                    worker: caller.clone(),
                    request,
                }));
            }
            ToMaster::TaskLoadFailed {
                bundle,
                reason,
                jobs,
            } => shared
                .engine
                .send(EngineCommand::TaskLoadFailed {
                    id,
                    bundle,
                    reason: cap_reason(reason),
                    jobs,
                })
                .map_err(|_| closed())?,
            ToMaster::GetDependencyBundle => {
                queue_request(requests, AssetRequest::DependencyBundle)?
            }
            // `SealedReader::next` turns these into `Results` with their bodies.
            ToMaster::ResultsDetached(_) => {
                return Err(Error::protocol(
                    "a batch of results arrived without its bodies",
                ));
            }
        }
    }
    Ok(())
}

/// A worker's reason, cut to [`MAX_REASON`] characters.
fn cap_reason(reason: String) -> String {
    match reason.char_indices().nth(MAX_REASON) {
        Some((end, _)) => format!("{}…", &reason[..end]),
        None => reason,
    }
}

/// Queues an asset request for the writer; a worker with [`MAX_ASSET_REQUESTS`] already waiting
/// is not reading what it asked for, and is cut off.
fn queue_request(requests: &mpsc::Sender<AssetRequest>, request: AssetRequest) -> Result<()> {
    match requests.try_send(request) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(Error::protocol(format!(
            "the worker has more than {MAX_ASSET_REQUESTS} asset requests waiting without reading the answers; a worker asks for one file at a time"
        ))),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(Error::Closed("the session writer")),
    }
}

/// Opens one result. A result body is parsed as JSON and re-serialised (and sealed again for
/// the store) here, off the engine: the master never keeps or hands out a worker's text. A body
/// that is not JSON fails the attempt with an error that says so.
fn open_result(
    key: &TransferKey,
    worker_name: &str,
    r: WireResult,
) -> Result<(String, u32, RunOutcome)> {
    let plain = key.open(&protocol::result_context(&r.id, r.ok), &r.body)?;
    let text = String::from_utf8(plain).map_err(|_| Error::protocol("a result is not UTF-8"))?;
    let outcome = if r.ok {
        match crate::job::canonical_json(&text) {
            Ok(json) => RunOutcome::Ok {
                sealed: key.seal(&protocol::result_context(&r.id, true), json.as_bytes()),
                json,
            },
            Err(why) => RunOutcome::Err(format!(
                "worker {worker_name} returned a result that is not JSON ({why}); the task must \
                 return JSON-serialisable data"
            )),
        }
    } else {
        RunOutcome::Err(text)
    };
    Ok((r.id, r.attempt, outcome))
}

#[cfg(test)]
mod tests;
