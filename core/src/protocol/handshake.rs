//! The handshake, both halves: the master challenges, the worker answers with proofs that it
//! holds the room token and the transfer token, and the master answers with its own proofs (or
//! a refusal saying why). Frames here are plain postcard: they carry only nonces and proofs.
//!
//! Keeping the two halves side by side is the point: they are one protocol.

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use serde::{Deserialize, Serialize};

use super::frame::{read_frame, write_frame};
use super::{MAX_HANDSHAKE_FRAME, WIRE_VERSION};
use crate::crypto::{RoomKey, TransferKey, random_bytes};
use crate::error::{Error, Result};

/// Master -> worker, first frame.
#[derive(Debug, Serialize, Deserialize)]
struct Challenge {
    version: u16,
    room_id: String,
    nonce: [u8; 32],
}

/// Worker -> master, answering the challenge.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    version: u16,
    room_id: String,
    nonce: [u8; 32],
    proof: [u8; 32],
    /// Sealed with the transfer key over the transcript: shows the worker holds the same
    /// transferEncryptToken before any job is handed to it.
    key_check: Vec<u8>,
    name: String,
    concurrency: u32,
}

/// Master -> worker, ending the handshake.
#[derive(Debug, Serialize, Deserialize)]
enum Verdict {
    /// Accepted; the master proves it holds the token too.
    Welcome {
        proof: [u8; 32],
        key_check: Vec<u8>,
        lease_ttl_ms: u64,
    },
    /// Refused, with the reason (the connection closes after it).
    Refused { reason: String },
    /// Refused because the worker holds another transfer token than the master (it proved
    /// the room token); the connection closes after it.
    TokenMismatch { reason: String },
}

/// The master's half of a handshake with one worker.
pub(crate) struct MasterHandshake<'a> {
    pub(crate) room: &'a RoomKey,
    pub(crate) key: &'a TransferKey,
    /// The master's peer id.
    pub(crate) master: &'a str,
    /// The worker's peer id (as the transport authenticated it).
    pub(crate) worker: &'a str,
    /// Announced to the worker, which heartbeats well within it.
    pub(crate) lease_ttl_ms: u64,
}

impl MasterHandshake<'_> {
    /// Challenges the worker, checks its proofs and welcomes or refuses it. Returns the
    /// worker's name (at most 128 characters).
    ///
    /// # Errors
    /// [`Error::Unauthorized`] when the worker is refused (it was told why),
    /// [`Error::TokenMismatch`] when it holds another transfer token (told too);
    /// [`Error::Protocol`] or [`Error::Network`] when the peer does not speak the handshake.
    pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
    ) -> Result<String> {
        let nonce: [u8; 32] = random_bytes();
        let challenge = Challenge {
            version: WIRE_VERSION,
            room_id: self.room.room_id().to_string(),
            nonce,
        };
        write_frame(stream, &encode_plain(&challenge)?).await?;
        stream
            .flush()
            .await
            .map_err(|e| Error::network_from("sending the handshake", e))?;
        let frame = read_frame(stream, MAX_HANDSHAKE_FRAME)
            .await?
            .ok_or_else(|| Error::protocol("the peer closed the stream during the handshake"))?;
        let hello: Hello = decode_plain(&frame)?;
        if hello.version != WIRE_VERSION {
            return refuse(stream, format!(
                "wire version {} is not supported by this master (it speaks {}); use the same queuexec version",
                hello.version,
                WIRE_VERSION
            ))
            .await;
        }
        let transcript = transcript_of("hello", &nonce, &hello.nonce, self.master, self.worker);
        if hello.room_id != self.room.room_id() || !self.room.verify(&transcript, &hello.proof) {
            return refuse(
                stream,
                "the worker could not prove it holds this room's token".to_string(),
            )
            .await;
        }
        if !verify_key_check(self.key, &transcript, &hello.key_check) {
            let reason = "the worker's transferEncryptToken differs from the master's; \
                          copy the master's .env to the worker";
            let verdict = Verdict::TokenMismatch {
                reason: reason.to_string(),
            };
            tell(stream, &verdict).await;
            return Err(Error::TokenMismatch(reason.to_string()));
        }
        let welcome = transcript_of("welcome", &nonce, &hello.nonce, self.master, self.worker);
        let verdict = Verdict::Welcome {
            proof: self.room.prove(&welcome),
            key_check: key_check(self.key, &welcome),
            lease_ttl_ms: self.lease_ttl_ms,
        };
        write_frame(stream, &encode_plain(&verdict)?).await?;
        stream
            .flush()
            .await
            .map_err(|e| Error::network_from("sending the handshake", e))?;
        Ok(hello.name.chars().take(128).collect())
    }
}

/// Tells the peer why it is refused, then fails the handshake.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, reason: String) -> Result<String> {
    let verdict = Verdict::Refused {
        reason: reason.clone(),
    };
    tell(stream, &verdict).await;
    Err(Error::Unauthorized(reason))
}

/// Sends a refusal; errors are ignored (the peer may be gone, and it is refused anyway).
async fn tell<S: AsyncWrite + Unpin>(stream: &mut S, verdict: &Verdict) {
    if let Ok(bytes) = encode_plain(verdict) {
        let _ = write_frame(stream, &bytes).await;
        let _ = stream.flush().await;
    }
}

/// The worker's half of a handshake with a master.
pub(crate) struct WorkerHandshake<'a> {
    pub(crate) room: &'a RoomKey,
    pub(crate) key: &'a TransferKey,
    /// The master's peer id (as the transport authenticated it).
    pub(crate) master: &'a str,
    /// This worker's peer id.
    pub(crate) worker: &'a str,
    /// The name the master reports for this worker.
    pub(crate) name: &'a str,
    /// Jobs this worker runs at once.
    pub(crate) concurrency: u32,
}

impl WorkerHandshake<'_> {
    /// Answers the master's challenge and checks the master's proofs. Returns the lease time
    /// the master announced (at least 100 ms).
    ///
    /// # Errors
    /// [`Error::Unauthorized`] when the master refused this worker, serves another room, or
    /// cannot prove it holds the room token; [`Error::TokenMismatch`] when the two hold
    /// different transfer tokens; [`Error::Protocol`] or [`Error::Network`] when
    /// the peer does not speak the handshake.
    pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
    ) -> Result<u64> {
        let master = self.master;
        let frame = read_frame(stream, MAX_HANDSHAKE_FRAME)
            .await?
            .ok_or_else(|| Error::protocol("the master closed the stream during the handshake"))?;
        let challenge: Challenge = decode_plain(&frame)?;
        if challenge.version != WIRE_VERSION {
            return Err(Error::protocol(format!(
                "the master speaks wire version {}, this worker {}; use the same queuexec version",
                challenge.version, WIRE_VERSION
            )));
        }
        if challenge.room_id != self.room.room_id() {
            return Err(Error::Unauthorized(format!(
                "the master {master} serves another room: this worker's token differs from the master's"
            )));
        }
        let nonce: [u8; 32] = random_bytes();
        let transcript = transcript_of("hello", &challenge.nonce, &nonce, master, self.worker);
        let hello = Hello {
            version: WIRE_VERSION,
            room_id: self.room.room_id().to_string(),
            nonce,
            proof: self.room.prove(&transcript),
            key_check: key_check(self.key, &transcript),
            name: self.name.to_string(),
            concurrency: self.concurrency,
        };
        write_frame(stream, &encode_plain(&hello)?).await?;
        stream
            .flush()
            .await
            .map_err(|e| Error::network_from("sending the handshake", e))?;
        let frame = read_frame(stream, MAX_HANDSHAKE_FRAME)
            .await?
            .ok_or_else(|| {
                Error::Unauthorized("the master closed the connection during the handshake".into())
            })?;
        match decode_plain::<Verdict>(&frame)? {
            Verdict::Welcome {
                proof,
                key_check,
                lease_ttl_ms,
            } => {
                let expected =
                    transcript_of("welcome", &challenge.nonce, &nonce, master, self.worker);
                if !self.room.verify(&expected, &proof) {
                    return Err(Error::Unauthorized(format!(
                        "the master {master} could not prove it holds this room's token"
                    )));
                }
                if !verify_key_check(self.key, &expected, &key_check) {
                    return Err(Error::TokenMismatch(format!(
                        "the master {master} holds another transferEncryptToken; copy the master's .env to this worker"
                    )));
                }
                Ok(lease_ttl_ms.max(100))
            }
            Verdict::Refused { reason } => Err(Error::Unauthorized(reason)),
            Verdict::TokenMismatch { reason } => Err(Error::TokenMismatch(reason)),
        }
    }
}

/// Encodes a plain handshake message.
fn encode_plain<T: Serialize>(message: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(message)
        .map_err(|e| Error::protocol_from("could not encode a handshake", e))
}

/// What a key check seals: a fixed word, bound to the handshake transcript.
const KEY_CHECK: &[u8] = b"queuexec key check";

/// Proves possession of the transfer key for this handshake.
fn key_check(key: &TransferKey, transcript: &[u8]) -> Vec<u8> {
    key.seal(transcript, KEY_CHECK)
}

/// Checks another side's key check.
fn verify_key_check(key: &TransferKey, transcript: &[u8], sealed: &[u8]) -> bool {
    key.open(transcript, sealed)
        .is_ok_and(|plain| plain == KEY_CHECK)
}

/// Decodes a plain handshake message.
fn decode_plain<T: for<'de> Deserialize<'de>>(frame: &[u8]) -> Result<T> {
    postcard::from_bytes(frame)
        .map_err(|_| Error::protocol("the peer does not speak the queuexec handshake".to_string()))
}

/// The transcript each side proves over: both nonces and both peer ids, in a fixed order, with a
/// label per direction so a proof cannot be reflected back.
fn transcript_of(
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
    use std::time::Duration;
    use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

    const ROOM: &str = "room token for the handshake tests";
    const TRANSFER: &str = "0123456789abcdef0123456789abcdef";
    const MASTER_ID: &str = "12D3KooWMaster";
    const WORKER_ID: &str = "12D3KooWWorker";

    fn duplex() -> (
        Compat<tokio::io::DuplexStream>,
        Compat<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(16 * 1024);
        (a.compat(), b.compat())
    }

    /// Runs both halves against each other over an in-memory stream, each half dropping its
    /// end when it finishes (as a session does), within 10 s.
    async fn run_both(
        master_tokens: (&str, &str),
        worker_tokens: (&str, &str),
    ) -> (Result<String>, Result<u64>) {
        let master_room = RoomKey::from_token(master_tokens.0).expect("room token");
        let master_key = TransferKey::from_token(master_tokens.1).expect("transfer token");
        let worker_room = RoomKey::from_token(worker_tokens.0).expect("room token");
        let worker_key = TransferKey::from_token(worker_tokens.1).expect("transfer token");
        let (mut master_end, mut worker_end) = duplex();
        let master = async {
            let result = MasterHandshake {
                room: &master_room,
                key: &master_key,
                master: MASTER_ID,
                worker: WORKER_ID,
                lease_ttl_ms: 15_000,
            }
            .run(&mut master_end)
            .await;
            drop(master_end);
            result
        };
        let worker = async {
            let result = WorkerHandshake {
                room: &worker_room,
                key: &worker_key,
                master: MASTER_ID,
                worker: WORKER_ID,
                name: "builder-1",
                concurrency: 2,
            }
            .run(&mut worker_end)
            .await;
            drop(worker_end);
            result
        };
        tokio::time::timeout(
            Duration::from_secs(10),
            futures::future::join(master, worker),
        )
        .await
        .expect("the handshake ends within 10 s")
    }

    #[tokio::test]
    async fn the_same_tokens_complete_the_handshake_with_the_name_and_lease_time() {
        let (master, worker) = run_both((ROOM, TRANSFER), (ROOM, TRANSFER)).await;
        assert_eq!(master.expect("the master welcomes the worker"), "builder-1");
        assert_eq!(worker.expect("the worker accepts the master"), 15_000);
    }

    #[tokio::test]
    async fn a_worker_with_another_room_token_is_refused_before_it_proves_anything() {
        let (master, worker) = run_both((ROOM, TRANSFER), ("another room", TRANSFER)).await;
        let err = worker.expect_err("the worker sees another room");
        assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
        assert!(err.to_string().contains("serves another room"), "{err}");
        assert!(
            master.is_err(),
            "the master must not welcome it: {master:?}"
        );
    }

    #[tokio::test]
    async fn a_worker_with_another_transfer_token_is_refused_and_told_why() {
        let other = "fedcba9876543210fedcba9876543210";
        let (master, worker) = run_both((ROOM, TRANSFER), (ROOM, other)).await;
        let err = master.expect_err("the master refuses the worker");
        assert!(matches!(err, Error::TokenMismatch(_)), "{err:?}");
        let told = worker.expect_err("the worker is refused");
        assert!(matches!(told, Error::TokenMismatch(_)), "{told:?}");
        assert_eq!(told.code(), "ERR_QUEUEXEC_TOKEN_MISMATCH");
        assert!(
            told.to_string().contains("transferEncryptToken differs"),
            "{told}"
        );
    }

    #[tokio::test]
    async fn a_peer_that_sends_garbage_instead_of_a_hello_is_not_welcomed() {
        let room = RoomKey::from_token(ROOM).expect("room token");
        let key = TransferKey::from_token(TRANSFER).expect("transfer token");
        let (mut master_end, mut peer) = duplex();
        let master = async {
            MasterHandshake {
                room: &room,
                key: &key,
                master: MASTER_ID,
                worker: WORKER_ID,
                lease_ttl_ms: 15_000,
            }
            .run(&mut master_end)
            .await
        };
        let peer = async {
            let _challenge = read_frame(&mut peer, MAX_HANDSHAKE_FRAME).await;
            write_frame(&mut peer, &[0xff; 16]).await.expect("write");
            peer.flush().await.expect("flush");
            peer
        };
        let (result, _peer) =
            tokio::time::timeout(Duration::from_secs(10), futures::future::join(master, peer))
                .await
                .expect("the master answers within 10 s");
        assert!(matches!(result, Err(Error::Protocol(..))), "{result:?}");
    }

    #[test]
    fn transcripts_are_length_prefixed_so_parts_cannot_shift() {
        let a = transcript_of("hello", &[0; 32], &[1; 32], "ab", "c");
        let b = transcript_of("hello", &[0; 32], &[1; 32], "a", "bc");
        assert_ne!(a, b);
    }
}
