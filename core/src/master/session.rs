//! One worker connection, on the master: the handshake, then one task that reads and opens the
//! worker's frames (results are decrypted here, off the engine) and one that seals and writes
//! what the engine and this reader queue for it (jobs, the manifest, file chunks).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use tokio::sync::mpsc;

use super::engine::EngineCommand;
use super::read_lock;
use crate::assets::{AssetSet, Sha256};
use crate::crypto::{RoomKey, TransferKey};
use crate::error::{Error, Result};
use crate::job::WorkerInfo;
use crate::net::Net;
use crate::protocol::{
    self, Direction, MasterHandshake, SealedReader, SealedWriter, ToMaster, ToWorker, WireResult,
};
use crate::scheduler::{RunOutcome, SessionId};

/// What every session of one master shares.
pub(super) struct SessionShared {
    pub(super) room: RoomKey,
    pub(super) key: TransferKey,
    pub(super) engine: mpsc::UnboundedSender<EngineCommand>,
    pub(super) assets: Arc<RwLock<AssetSet>>,
    pub(super) net: Net,
    pub(super) next_session: AtomicI64,
    pub(super) lease_ttl_ms: u64,
}

/// Serves one worker connection until it ends.
pub(super) async fn serve_session(shared: Arc<SessionShared>, peer: PeerId, mut stream: Stream) {
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
    let worker_name = name.clone();
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
    let (reader, writer) = stream.split();

    // Writer: seal and send, batching whatever is queued into one flush.
    let mut writer = SealedWriter::new(shared.key.clone(), Direction::ToWorker, writer);
    let write_task = tokio::spawn(async move {
        while let Some(message) = outbound_rx.recv().await {
            let mut next = Some(message);
            while let Some(message) = next {
                writer.send(&message).await?;
                next = outbound_rx.try_recv().ok();
            }
            writer.flush().await?;
        }
        writer.close().await;
        Ok::<(), Error>(())
    });

    let result = read_session(&shared, id, &worker_name, reader, &outbound).await;
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

async fn read_session<R: futures::AsyncRead + Unpin>(
    shared: &SessionShared,
    id: SessionId,
    worker_name: &str,
    reader: R,
    outbound: &mpsc::UnboundedSender<ToWorker>,
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
            ToMaster::GetManifest => {
                let manifest = read_lock(&shared.assets).manifest().clone();
                let _ = outbound.send(ToWorker::Manifest(manifest));
            }
            ToMaster::GetFile { sha256 } => send_file(shared, sha256, outbound),
        }
    }
    Ok(())
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
    let text =
        String::from_utf8(plain).map_err(|_| Error::Protocol("a result is not UTF-8".into()))?;
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
