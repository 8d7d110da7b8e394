//! The wire: messages between a master and its workers, and how they are framed.
//!
//! One long-lived libp2p stream per worker carries length-prefixed frames (u32 big-endian length,
//! capped). The handshake frames are plain postcard: they carry only nonces and proofs. Every frame
//! after it is an [`Envelope`](crate::crypto::TransferKey::seal) over a postcard message, bound to
//! its direction and sequence number, so frames cannot be replayed, reordered or reflected.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::assets::{BundleHash, Manifest, Sha256};
use crate::crypto::TransferKey;
use crate::error::{Error, Result};

/// The libp2p protocol of the job stream.
pub(crate) const JOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/queuexec/jobs/1");

/// Wire version, checked in the handshake.
pub(crate) const WIRE_VERSION: u16 = 1;

/// Largest frame a peer accepts. Files travel in chunks well below it.
pub(crate) const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Largest handshake frame (they are tiny; a peer that sends more is not a queuexec peer).
pub(crate) const MAX_HANDSHAKE_FRAME: usize = 4 * 1024;

/// Size of the file chunks the master sends.
pub(crate) const FILE_CHUNK: usize = 1024 * 1024;

/// Master -> worker, first frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Challenge {
    pub(crate) version: u16,
    pub(crate) room_id: String,
    pub(crate) nonce: [u8; 32],
}

/// Worker -> master, answering the challenge.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) version: u16,
    pub(crate) room_id: String,
    pub(crate) nonce: [u8; 32],
    pub(crate) proof: [u8; 32],
    /// Sealed with the transfer key over the transcript: shows the worker holds the same
    /// transferEncryptToken before any job is handed to it.
    pub(crate) key_check: Vec<u8>,
    pub(crate) name: String,
    pub(crate) concurrency: u32,
}

/// Master -> worker, ending the handshake.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Verdict {
    /// Accepted; the master proves it holds the token too.
    Welcome {
        proof: [u8; 32],
        key_check: Vec<u8>,
        lease_ttl_ms: u64,
    },
    /// Refused, with the reason (the connection closes after it).
    Refused { reason: String },
}

/// A job as it travels to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireJob {
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) task_type: Option<String>,
    /// The data, sealed with the job id as context.
    pub(crate) payload: Vec<u8>,
    pub(crate) timeout_ms: Option<u64>,
}

/// A result as it travels to the master.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireResult {
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) ok: bool,
    /// The result JSON (ok) or error text, sealed with [`result_context`].
    pub(crate) body: Vec<u8>,
}

/// Messages from the master.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Jobs leased to this worker; they need the asset bundle `bundle`.
    Jobs {
        bundle: BundleHash,
        jobs: Vec<WireJob>,
    },
    /// The current manifest.
    Manifest(Manifest),
    /// A piece of a file.
    FileChunk {
        sha256: Sha256,
        offset: u64,
        data: Vec<u8>,
        last: bool,
    },
    /// The master no longer has that file (assets changed meanwhile).
    FileMissing { sha256: Sha256 },
}

/// Messages from a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToMaster {
    /// The worker can take this many more jobs. Each result also returns one credit.
    Credits(u32),
    /// Finished jobs.
    Results(Vec<WireResult>),
    /// Renews the leases of every job this worker holds.
    Heartbeat,
    /// Asks for the manifest.
    GetManifest,
    /// Asks for one file by hash.
    GetFile { sha256: Sha256 },
}

/// The context a job's payload is sealed with.
pub(crate) fn payload_context(job_id: &str) -> Vec<u8> {
    let mut context = b"queuexec payload\0".to_vec();
    context.extend_from_slice(job_id.as_bytes());
    context
}

/// The context a result body is sealed with.
pub(crate) fn result_context(job_id: &str, ok: bool) -> Vec<u8> {
    let mut context = if ok {
        b"queuexec result\0".to_vec()
    } else {
        b"queuexec error\0".to_vec()
    };
    context.extend_from_slice(job_id.as_bytes());
    context
}

/// Which way a frame travels; part of each frame's sealing context.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    ToWorker,
    ToMaster,
}

/// Seals and numbers frames in one direction.
pub(crate) struct FrameSealer {
    key: TransferKey,
    direction: Direction,
    seq: u64,
}

impl FrameSealer {
    pub(crate) fn new(key: TransferKey, direction: Direction) -> Self {
        FrameSealer {
            key,
            direction,
            seq: 0,
        }
    }

    fn context(&self) -> [u8; 9] {
        let mut context = [0u8; 9];
        context[0] = match self.direction {
            Direction::ToWorker => b'w',
            Direction::ToMaster => b'm',
        };
        context[1..].copy_from_slice(&self.seq.to_be_bytes());
        context
    }

    pub(crate) fn seal<T: Serialize>(&mut self, message: &T) -> Result<Vec<u8>> {
        let plain = postcard::to_stdvec(message)
            .map_err(|e| Error::Protocol(format!("could not encode a message: {e}")))?;
        let sealed = self.key.seal(&self.context(), &plain);
        self.seq += 1;
        Ok(sealed)
    }

    pub(crate) fn open<T: for<'de> Deserialize<'de>>(&mut self, frame: &[u8]) -> Result<T> {
        let plain = self.key.open(&self.context(), frame)?;
        self.seq += 1;
        postcard::from_bytes(&plain).map_err(|e| {
            Error::Protocol(format!(
                "a peer sent a message this version cannot read: {e}"
            ))
        })
    }
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::Network(format!("reading from a peer: {e}"))),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(Error::Protocol(format!(
            "a peer sent a {len}-byte frame; the limit is {max}"
        )));
    }
    let mut frame = vec![0u8; len];
    reader
        .read_exact(&mut frame)
        .await
        .map_err(|e| Error::Network(format!("reading from a peer: {e}")))?;
    Ok(Some(frame))
}

/// Reads one frame into `buf`, reusing its allocation (job frames are large and frequent: a
/// fresh buffer each time costs page faults). `Ok(false)` at a clean end of stream.
pub(crate) async fn read_frame_into<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<bool> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(Error::Network(format!("reading from a peer: {e}"))),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(Error::Protocol(format!(
            "a peer sent a {len}-byte frame; the limit is {max}"
        )));
    }
    buf.resize(len, 0);
    reader
        .read_exact(buf)
        .await
        .map_err(|e| Error::Network(format!("reading from a peer: {e}")))?;
    Ok(true)
}

/// Writes one frame (without flushing, so callers can batch).
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| {
        Error::Protocol(format!("a {}-byte frame is too large to send", frame.len()))
    })?;
    writer
        .write_all(&len.to_be_bytes())
        .await
        .map_err(|e| Error::Network(format!("writing to a peer: {e}")))?;
    writer
        .write_all(frame)
        .await
        .map_err(|e| Error::Network(format!("writing to a peer: {e}")))
}

/// Encodes a plain handshake message.
pub(crate) fn encode_plain<T: Serialize>(message: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(message)
        .map_err(|e| Error::Protocol(format!("could not encode a handshake: {e}")))
}

/// What a key check seals: a fixed word, bound to the handshake transcript.
pub(crate) const KEY_CHECK: &[u8] = b"queuexec key check";

/// Proves possession of the transfer key for this handshake.
pub(crate) fn key_check(key: &TransferKey, transcript: &[u8]) -> Vec<u8> {
    key.seal(transcript, KEY_CHECK)
}

/// Checks another side's key check.
pub(crate) fn verify_key_check(key: &TransferKey, transcript: &[u8], sealed: &[u8]) -> bool {
    key.open(transcript, sealed)
        .is_ok_and(|plain| plain == KEY_CHECK)
}

/// Decodes a plain handshake message.
pub(crate) fn decode_plain<T: for<'de> Deserialize<'de>>(frame: &[u8]) -> Result<T> {
    postcard::from_bytes(frame)
        .map_err(|_| Error::Protocol("the peer does not speak the queuexec handshake".to_string()))
}

/// The transcript each side proves over: both nonces and both peer ids, in a fixed order, with a
/// label per direction so a proof cannot be reflected back.
pub(crate) fn transcript(
    label: &str,
    master_nonce: &[u8; 32],
    worker_nonce: &[u8; 32],
    master: &str,
    worker: &str,
) -> Vec<u8> {
    let mut t = Vec::with_capacity(label.len() + 64 + master.len() + worker.len() + 16);
    for part in [
        label.as_bytes(),
        master_nonce,
        worker_nonce,
        master.as_bytes(),
        worker.as_bytes(),
    ] {
        t.extend_from_slice(&(part.len() as u32).to_be_bytes());
        t.extend_from_slice(part);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TransferKey {
        TransferKey::from_token("0123456789abcdef0123456789abcdef").expect("valid token")
    }

    #[test]
    fn frames_round_trip_in_order_only() {
        let mut tx = FrameSealer::new(key(), Direction::ToMaster);
        let mut rx = FrameSealer::new(key(), Direction::ToMaster);
        let a = tx.seal(&ToMaster::Credits(3)).expect("seal");
        let b = tx.seal(&ToMaster::Heartbeat).expect("seal");
        // b before a: its sequence number does not match, so it is refused.
        assert!(rx.open::<ToMaster>(&b).is_err());
        let mut rx = FrameSealer::new(key(), Direction::ToMaster);
        assert!(matches!(
            rx.open::<ToMaster>(&a).expect("open a"),
            ToMaster::Credits(3)
        ));
        assert!(matches!(
            rx.open::<ToMaster>(&b).expect("open b"),
            ToMaster::Heartbeat
        ));
    }

    #[test]
    fn a_frame_cannot_be_reflected_to_the_other_direction() {
        let mut tx = FrameSealer::new(key(), Direction::ToMaster);
        let mut rx = FrameSealer::new(key(), Direction::ToWorker);
        let frame = tx.seal(&ToMaster::Heartbeat).expect("seal");
        assert!(matches!(rx.open::<ToWorker>(&frame), Err(Error::Envelope)));
    }

    #[tokio::test]
    async fn oversized_frames_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &[7u8; 100]).await.expect("write");
        let mut reader = futures::io::Cursor::new(buf);
        let err = read_frame(&mut reader, 99).await.expect_err("over the cap");
        assert!(err.to_string().contains("limit is 99"), "{err}");
    }

    #[tokio::test]
    async fn a_truncated_stream_ends_cleanly_or_errors() {
        let mut reader = futures::io::Cursor::new(Vec::<u8>::new());
        assert!(
            read_frame(&mut reader, 10)
                .await
                .expect("empty stream")
                .is_none()
        );
        let mut reader = futures::io::Cursor::new(vec![0, 0, 0, 9, 1, 2]);
        assert!(read_frame(&mut reader, 10).await.is_err());
    }
}
