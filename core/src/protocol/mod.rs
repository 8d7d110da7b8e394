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

use bytes::Bytes;
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::assets::{BundleHash, Manifest, ManifestEntry, Sha256};

#[cfg(test)]
pub(crate) use frame::Detachable;
pub(crate) use frame::{Direction, SealedReader, SealedWriter};

use crate::error::{Error, Result};
pub(crate) use handshake::{MasterHandshake, WorkerHandshake};

/// The libp2p protocol of the job stream.
pub(crate) const JOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/queuexec/jobs/1");

/// Wire version, checked in the handshake. Version 2: jobs travel as a sealed list of heads
/// followed by their already-sealed payloads ([`ToWorker::JobsDetached`]).
pub(crate) const WIRE_VERSION: u16 = 2;

/// Largest frame a peer accepts. Files travel in chunks well below it.
pub(crate) const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Largest handshake frame (they are tiny; a peer that sends more is not a queuexec peer).
pub(crate) const MAX_HANDSHAKE_FRAME: usize = 4 * 1024;

/// Size of the file chunks the master sends.
pub(crate) const FILE_CHUNK: usize = 1024 * 1024;

/// Bytes a sealed frame adds around the jobs or results it carries, bounded from above: the
/// message tag, the bundle hash, the list length, the envelope (version, IV, padding, MAC).
const FRAME_OVERHEAD: usize = 1024;

/// Bytes one job or result adds to its frame beyond its id, task type and sealed bytes (postcard
/// varints and option tags), bounded from above.
const ITEM_OVERHEAD: usize = 64;

/// Most bytes of jobs or results one frame carries: a sender splits by this so that no frame it
/// builds is over [`MAX_FRAME`].
pub(crate) const FRAME_BUDGET: usize = MAX_FRAME - FRAME_OVERHEAD;

impl WireJob {
    /// An upper bound of this job's bytes inside a frame.
    pub(crate) fn wire_len(&self) -> usize {
        job_wire_len(&self.id, self.task_type.as_deref(), self.payload.len())
    }
}

impl WireResult {
    /// An upper bound of this result's bytes inside a frame.
    pub(crate) fn wire_len(&self) -> usize {
        self.id.len() + self.body.len() + ITEM_OVERHEAD
    }
}

/// An upper bound of a job's bytes inside a frame, from its parts.
pub(crate) fn job_wire_len(id: &str, task_type: Option<&str>, sealed_len: usize) -> usize {
    id.len() + task_type.map_or(0, str::len) + sealed_len + ITEM_OVERHEAD
}

/// The most bytes of plain data a sealed body may hold so that it travels in one frame, given
/// what else its item carries (`other` bytes of id and task type).
pub(crate) fn max_plain_len(other: usize) -> usize {
    // A sealed body is 49 bytes of envelope plus the data padded to whole 16-byte blocks.
    let sealed_room = FRAME_BUDGET.saturating_sub(other + ITEM_OVERHEAD + 49);
    (sealed_room / 16).saturating_sub(1) * 16 + 15
}

/// Splits `items` into batches of at most `max_items` whose [`FRAME_BUDGET`] is not exceeded;
/// items that do not fit a frame even alone come back separately.
pub(crate) fn split_by_bytes<T>(
    items: Vec<T>,
    len: impl Fn(&T) -> usize,
    max_items: usize,
) -> (Vec<Vec<T>>, Vec<T>) {
    let mut batches = Vec::new();
    let mut oversized = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    for item in items {
        let n = len(&item);
        if n > FRAME_BUDGET {
            oversized.push(item);
            continue;
        }
        if !batch.is_empty() && (bytes + n > FRAME_BUDGET || batch.len() >= max_items) {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += n;
        batch.push(item);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    (batches, oversized)
}

/// A job as it travels to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireJob {
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) task_type: Option<String>,
    /// The data, sealed with the job id as context: the scheduler's bytes, shared, not copied.
    #[serde(with = "raw_bytes")]
    pub(crate) payload: Bytes,
    pub(crate) timeout_ms: Option<u64>,
}

/// A job's head in [`ToWorker::JobsDetached`]: everything but its payload, which follows the
/// sealed frame as a frame of its own, bound to this head by its envelope's tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireJobHead {
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) task_type: Option<String>,
    pub(crate) timeout_ms: Option<u64>,
    /// The sealed payload's length in bytes.
    pub(crate) payload_len: u32,
    /// The sealed payload's HMAC tag (its last 32 bytes).
    pub(crate) payload_tag: [u8; 32],
}

/// A result's head in [`ToMaster::ResultsDetached`]: everything but its body, which follows the
/// sealed frame as a frame of its own, bound to this head by its envelope's tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireResultHead {
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) ok: bool,
    /// The sealed body's length in bytes.
    pub(crate) body_len: u32,
    /// The sealed body's HMAC tag (its last 32 bytes).
    pub(crate) body_tag: [u8; 32],
}

/// A result as it travels to the master.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireResult {
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) ok: bool,
    /// The result JSON (ok) or error text, sealed with [`result_context`].
    #[serde(with = "raw_bytes")]
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
        #[serde(with = "raw_bytes")]
        data: Vec<u8>,
        last: bool,
    },
    /// The master no longer has that file (assets changed meanwhile).
    FileMissing { sha256: Sha256 },
    /// The master cancelled this lease of a job (`Master::cancel`): stop running it and send
    /// no result for it. Its credit comes back to the master with this message.
    Cancel { id: String, attempt: u32 },
    /// The answer to the worker's call `call`: JSON when `ok`, else the error text.
    Reply { call: u64, ok: bool, value: String },
    /// A message from the master's user (`data` is JSON).
    Message { cmd: String, data: String },
    /// The master aborts: stop working and leave (unfinished jobs stay queued on the master).
    Abort,
    /// The master has nothing queued, delayed or running (a worker with `exit_when_drained`
    /// leaves).
    Drained,
    /// The answer to [`ToMaster::GetDependencyBundle`]: the bundle's entry (fetch it with
    /// `GetFile`), or why the master could not build it.
    DependencyBundle {
        entry: Option<ManifestEntry>,
        error: Option<String>,
    },
    /// Jobs leased to this worker, as they travel: the heads in this sealed frame, then each
    /// job's payload, in the same order, as a frame of its own that is *not* sealed again. A
    /// payload is already an envelope (sealed with the transfer key, its job id as context)
    /// whose tag is in the sealed, numbered head: a payload frame that is not the one its head
    /// announced (another job's, a replayed one, another length or tag) ends the session at
    /// once, and one altered anywhere else fails its HMAC when the worker opens it, so the job
    /// fails and nothing altered runs. Sealing it a second time inside the frame cost a second
    /// AES and HMAC pass over every byte on both sides. Written by
    /// [`SealedWriter::send_jobs`], read back into [`ToWorker::Jobs`] by
    /// [`SealedReader::next`]; never handed to the session code as such.
    JobsDetached {
        bundle: BundleHash,
        jobs: Vec<WireJobHead>,
    },
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
    /// A call (a lookup, a change of one, a message), answered by `ToWorker::Reply`.
    Call {
        call: u64,
        request: crate::calls::WorkerRequest,
    },
    /// The worker's counters (cumulative) and the milliseconds since its previous report.
    Stats {
        counters: Vec<(String, f64)>,
        span_ms: u64,
    },
    /// The worker could not install or load the task of bundle `bundle` (`reason` says why): it
    /// gives back `jobs` (id and attempt) unrun and takes no jobs of that bundle.
    TaskLoadFailed {
        bundle: BundleHash,
        reason: String,
        jobs: Vec<(String, u32)>,
    },
    /// Asks for the dependency bundle (npm dependencies packed by the master, built when first
    /// asked for). Only workers that cannot install dependencies themselves ask; the answer is
    /// [`ToWorker::DependencyBundle`].
    GetDependencyBundle,
    /// Finished jobs, as they travel: the heads in this sealed frame, then each result's body
    /// (already an envelope, sealed with [`result_context`]) as a plain frame of its own, bound
    /// to its head by its tag, as [`ToWorker::JobsDetached`] does for payloads. Written by
    /// [`SealedWriter::send_results`], read back into [`ToMaster::Results`] by
    /// [`SealedReader::next`].
    ResultsDetached(Vec<WireResultHead>),
}

/// The length and tag (its last 32 bytes) of an envelope about to travel detached.
fn envelope_head(id: &str, sealed: &[u8]) -> Result<(u32, [u8; 32])> {
    let tag = sealed
        .last_chunk::<32>()
        .copied()
        .zip(u32::try_from(sealed.len()).ok())
        .ok_or_else(|| {
            Error::protocol(format!(
                "{id:?} has {} sealed bytes, not an envelope that can travel",
                sealed.len()
            ))
        })?;
    Ok((tag.1, tag.0))
}

impl ToWorker {
    /// The heads of `jobs` as [`ToWorker::JobsDetached`] (their payloads travel after it).
    pub(crate) fn detach_jobs(bundle: BundleHash, jobs: &[WireJob]) -> Result<ToWorker> {
        let jobs = jobs
            .iter()
            .map(|job| {
                let (payload_len, payload_tag) = envelope_head(&job.id, &job.payload)?;
                Ok(WireJobHead {
                    id: job.id.clone(),
                    attempt: job.attempt,
                    task_type: job.task_type.clone(),
                    timeout_ms: job.timeout_ms,
                    payload_len,
                    payload_tag,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ToWorker::JobsDetached { bundle, jobs })
    }
}

impl frame::Detachable for ToWorker {
    fn announced(&self) -> Vec<(u32, [u8; 32])> {
        match self {
            ToWorker::JobsDetached { jobs, .. } => jobs
                .iter()
                .map(|h| (h.payload_len, h.payload_tag))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn attach(self, payloads: Vec<Vec<u8>>) -> Self {
        let ToWorker::JobsDetached { bundle, jobs } = self else {
            return self;
        };
        let jobs = jobs
            .into_iter()
            .zip(payloads)
            .map(|(head, payload)| WireJob {
                id: head.id,
                attempt: head.attempt,
                task_type: head.task_type,
                payload: payload.into(),
                timeout_ms: head.timeout_ms,
            })
            .collect();
        ToWorker::Jobs { bundle, jobs }
    }
}

impl ToMaster {
    /// The heads of `results` as [`ToMaster::ResultsDetached`] (their bodies travel after it).
    pub(crate) fn detach_results(results: &[WireResult]) -> Result<ToMaster> {
        let heads = results
            .iter()
            .map(|r| {
                let (body_len, body_tag) = envelope_head(&r.id, &r.body)?;
                Ok(WireResultHead {
                    id: r.id.clone(),
                    attempt: r.attempt,
                    ok: r.ok,
                    body_len,
                    body_tag,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ToMaster::ResultsDetached(heads))
    }
}

impl frame::Detachable for ToMaster {
    fn announced(&self) -> Vec<(u32, [u8; 32])> {
        match self {
            ToMaster::ResultsDetached(heads) => {
                heads.iter().map(|h| (h.body_len, h.body_tag)).collect()
            }
            _ => Vec::new(),
        }
    }

    fn attach(self, bodies: Vec<Vec<u8>>) -> Self {
        let ToMaster::ResultsDetached(heads) = self else {
            return self;
        };
        let results = heads
            .into_iter()
            .zip(bodies)
            .map(|(h, body)| WireResult {
                id: h.id,
                attempt: h.attempt,
                ok: h.ok,
                body,
            })
            .collect();
        ToMaster::Results(results)
    }
}

/// Byte fields as one block instead of one element at a time. The postcard encoding is the same
/// (a length, then the bytes), so the wire does not change; only the cost does: megabytes of
/// payload no longer go through serde one `u8` at a time.
mod raw_bytes {
    use serde::{Deserializer, Serializer, de};

    pub(crate) fn serialize<S: Serializer, B: AsRef<[u8]>>(
        bytes: &B,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes.as_ref())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, B: From<Vec<u8>>>(
        deserializer: D,
    ) -> Result<B, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                // Bounded by what the input holds, not by the length it claims.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_byte_buf(Visitor).map(B::from)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::TransferKey;

    fn job(id: &str, payload: usize) -> WireJob {
        WireJob {
            id: id.into(),
            attempt: u32::MAX,
            task_type: Some("a task type".into()),
            payload: vec![7; payload].into(),
            timeout_ms: Some(u64::MAX),
        }
    }

    #[test]
    fn byte_fields_keep_the_encoding_of_a_list_of_u8() {
        #[derive(Serialize)]
        struct Plain {
            id: String,
            attempt: u32,
            task_type: Option<String>,
            payload: Vec<u8>,
            timeout_ms: Option<u64>,
        }
        let wire = job("job-9", 300);
        let plain = Plain {
            id: wire.id.clone(),
            attempt: wire.attempt,
            task_type: wire.task_type.clone(),
            payload: wire.payload.to_vec(),
            timeout_ms: wire.timeout_ms,
        };
        let a = postcard::to_stdvec(&wire).expect("encode");
        let b = postcard::to_stdvec(&plain).expect("encode");
        assert_eq!(a, b);
        let back: WireJob = postcard::from_bytes(&b).expect("decode");
        assert_eq!(back.payload, wire.payload);
    }

    #[test]
    fn a_frame_built_from_one_split_batch_is_never_over_the_cap() {
        let key = TransferKey::from_token("0123456789abcdef0123456789abcdef").expect("key");
        let jobs: Vec<WireJob> = (0..10).map(|i| job(&format!("job-{i}"), 3 << 20)).collect();
        let (batches, oversized) = split_by_bytes(jobs, WireJob::wire_len, usize::MAX);
        assert!(oversized.is_empty());
        assert_eq!(batches.len(), 5, "two 3 MB jobs per 8 MiB frame");
        for jobs in batches {
            let mut sealer = frame::FrameSealer::new(key.clone(), frame::Direction::ToWorker);
            let frame = sealer
                .seal(&ToWorker::Jobs {
                    bundle: BundleHash([0; 32]),
                    jobs,
                })
                .expect("seal");
            assert!(frame.len() <= MAX_FRAME, "{} bytes", frame.len());
        }
    }

    #[test]
    fn the_largest_plain_body_that_fits_makes_a_frame_at_most_the_cap() {
        let key = TransferKey::from_token("0123456789abcdef0123456789abcdef").expect("key");
        let id = "job-1";
        let max = max_plain_len(id.len() + "a task type".len());
        let payload = key.seal(&payload_context(id), &vec![1u8; max]);
        let fits = job(id, payload.len());
        assert!(fits.wire_len() <= FRAME_BUDGET);
        let over = key.seal(&payload_context(id), &vec![1u8; max + 1]);
        assert!(job(id, over.len()).wire_len() > FRAME_BUDGET);
        let (batches, oversized) = split_by_bytes(vec![job(id, over.len())], WireJob::wire_len, 9);
        assert!(batches.is_empty());
        assert_eq!(oversized.len(), 1);
    }
}
