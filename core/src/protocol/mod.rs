//! The wire: messages between a master and its workers, and how they are framed.
//!
//! One long-lived libp2p stream per worker carries length-prefixed frames (u32 big-endian length,
//! capped). The handshake frames are plain postcard: they carry only nonces and proofs. Every frame
//! after it is an [`Envelope`](crate::crypto::TransferKey::seal) over a postcard message, bound to
//! its direction and sequence number, so frames cannot be replayed, reordered or reflected.
//!
//! - this file: the messages after the handshake and the sealing contexts of job data and
//!   results;
//! - [`frame`]: length-prefixed frames, their sealing ([`FrameSealer`]) and the one sealed
//!   writer both sides send through ([`SealedWriter`]);
//! - [`handshake`]: both halves of the handshake (the master's challenge and the worker's
//!   answer), so the two can never drift apart.

mod frame;
mod handshake;

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::assets::{BundleHash, Manifest, Sha256};

pub(crate) use frame::{Direction, SealedReader, SealedWriter};
pub(crate) use handshake::{MasterHandshake, WorkerHandshake};

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
