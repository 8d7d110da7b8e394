//! Frames on the job stream: a u32 big-endian length, then that many bytes, capped by the
//! receiver. After the handshake every frame is sealed with the transfer key and numbered per
//! direction ([`FrameSealer`]); [`SealedWriter`] and [`SealedReader`] are the one writer and the
//! one reader both the master's sessions and the worker use.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::{Deserialize, Serialize};

use super::{FRAME_BUDGET, MAX_FRAME, ToMaster, ToWorker, WireJob, WireResult};
use crate::assets::BundleHash;
use crate::crypto::TransferKey;
use crate::error::{Error, Result};

/// Bytes buffered before a write reaches the stream (batches small frames into one packet).
const BUFFER: usize = 64 * 1024;

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
            .map_err(|e| Error::protocol_from("could not encode a message", e))?;
        let sealed = self.key.seal(&self.context(), &plain);
        self.seq += 1;
        Ok(sealed)
    }

    pub(crate) fn open<T: for<'de> Deserialize<'de>>(&mut self, frame: &[u8]) -> Result<T> {
        let plain = self.key.open(&self.context(), frame)?;
        self.seq += 1;
        postcard::from_bytes(&plain)
            .map_err(|e| Error::protocol_from("a peer sent a message this version cannot read", e))
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
        Err(e) => return Err(Error::network_from("reading from a peer", e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(Error::protocol(format!(
            "a peer sent a {len}-byte frame; the limit is {max}"
        )));
    }
    let mut frame = vec![0u8; len];
    reader
        .read_exact(&mut frame)
        .await
        .map_err(|e| Error::network_from("reading from a peer", e))?;
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
        Err(e) => return Err(Error::network_from("reading from a peer", e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(Error::protocol(format!(
            "a peer sent a {len}-byte frame; the limit is {max}"
        )));
    }
    buf.resize(len, 0);
    reader
        .read_exact(buf)
        .await
        .map_err(|e| Error::network_from("reading from a peer", e))?;
    Ok(true)
}

/// Writes one frame (without flushing, so callers can batch).
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| {
        Error::protocol(format!("a {}-byte frame is too large to send", frame.len()))
    })?;
    writer
        .write_all(&len.to_be_bytes())
        .await
        .map_err(|e| Error::network_from("writing to a peer", e))?;
    writer
        .write_all(frame)
        .await
        .map_err(|e| Error::network_from("writing to a peer", e))
}

impl Direction {
    /// The peer frames in this direction go to, for messages.
    fn receiver(self) -> &'static str {
        match self {
            Direction::ToWorker => "a worker",
            Direction::ToMaster => "the master",
        }
    }

    /// The peer frames in this direction come from, for messages.
    fn sender(self) -> &'static str {
        match self {
            Direction::ToWorker => "the master",
            Direction::ToMaster => "the worker",
        }
    }
}

/// A message that may announce envelopes travelling after its sealed frame as plain frames of
/// their own ([`ToWorker::JobsDetached`], [`ToMaster::ResultsDetached`]). [`SealedReader::next`]
/// reads what a message announces and hands it back with the envelopes attached, so the
/// sessions only ever see whole messages.
pub(crate) trait Detachable: for<'de> Deserialize<'de> {
    /// The length and tag of each envelope this message announces, in order (none for most).
    fn announced(&self) -> Vec<(u32, [u8; 32])>;
    /// This message with the envelopes it announced, in the same order.
    fn attach(self, envelopes: Vec<Vec<u8>>) -> Self;
}

/// Seals, numbers and writes messages in one direction. Writes are buffered: call
/// [`flush`](Self::flush) once a batch is written.
pub(crate) struct SealedWriter<W> {
    sealer: FrameSealer,
    direction: Direction,
    writer: futures::io::BufWriter<W>,
}

impl<W: AsyncWrite + Unpin> SealedWriter<W> {
    pub(crate) fn new(key: TransferKey, direction: Direction, writer: W) -> Self {
        SealedWriter {
            sealer: FrameSealer::new(key, direction),
            direction,
            writer: futures::io::BufWriter::with_capacity(BUFFER, writer),
        }
    }

    /// Seals `message` as the next frame and writes it (buffered).
    pub(crate) async fn send<T: Serialize>(&mut self, message: &T) -> Result<()> {
        let frame = self.sealer.seal(message)?;
        write_frame(&mut self.writer, &frame).await
    }

    /// Writes results as [`ToMaster::ResultsDetached`]: their heads in one sealed frame, then
    /// each body (already an envelope) as a plain frame of its own. The caller keeps the batch
    /// within [`FRAME_BUDGET`], which the reader checks.
    pub(crate) async fn send_results(&mut self, results: Vec<WireResult>) -> Result<()> {
        let heads = ToMaster::detach_results(&results)?;
        self.send_detached(&heads, results.iter().map(|r| r.body.as_slice()))
            .await
    }

    /// Writes jobs as [`ToWorker::JobsDetached`]: their heads in one sealed frame, then each
    /// payload (already an envelope) as a plain frame of its own, so no payload byte is
    /// encrypted or copied again. The caller keeps the batch within [`FRAME_BUDGET`] (see
    /// [`super::split_by_bytes`]), which the reader checks.
    pub(crate) async fn send_jobs(&mut self, bundle: BundleHash, jobs: Vec<WireJob>) -> Result<()> {
        let heads = ToWorker::detach_jobs(bundle, &jobs)?;
        self.send_detached(&heads, jobs.iter().map(|j| &j.payload[..]))
            .await
    }

    /// Seals `heads` as the next frame, then writes each envelope it announces as it is.
    async fn send_detached<'a, T: Serialize>(
        &mut self,
        heads: &T,
        envelopes: impl Iterator<Item = &'a [u8]>,
    ) -> Result<()> {
        self.send(heads).await?;
        for envelope in envelopes {
            write_frame(&mut self.writer, envelope).await?;
        }
        Ok(())
    }

    /// Sends everything written so far.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        self.writer.flush().await.map_err(|e| {
            Error::network_from(format!("writing to {}", self.direction.receiver()), e)
        })
    }

    /// Flushes and closes the stream's write side; errors are ignored (the peer may be gone).
    pub(crate) async fn close(mut self) {
        let _ = self.writer.close().await;
    }
}

/// Reads and opens frames in one direction, reusing one buffer (job frames are large and
/// frequent: a fresh buffer each time costs page faults).
pub(crate) struct SealedReader<R> {
    opener: FrameSealer,
    reader: futures::io::BufReader<R>,
    frame: Vec<u8>,
}

impl<R: AsyncRead + Unpin> SealedReader<R> {
    pub(crate) fn new(key: TransferKey, direction: Direction, reader: R) -> Self {
        SealedReader {
            opener: FrameSealer::new(key, direction),
            reader: futures::io::BufReader::with_capacity(BUFFER, reader),
            frame: Vec::new(),
        }
    }

    /// The next message; `Ok(None)` at a clean end of stream.
    ///
    /// # Errors
    /// [`Error::Protocol`] for a frame over [`MAX_FRAME`] or a message this version cannot
    /// read, [`Error::Envelope`] for a frame that does not open, [`Error::Network`] when reading
    /// fails.
    /// A message that announces envelopes ([`Detachable`]) comes back with them: they follow
    /// its frame as plain frames, each the length and tag its head announced, and together
    /// they are bounded like one frame's bytes before any is read. [`Error::Protocol`] when
    /// they announce more, [`Error::Envelope`] when a frame is not the one announced.
    pub(crate) async fn next<T: Detachable>(&mut self) -> Result<Option<T>> {
        if !read_frame_into(&mut self.reader, MAX_FRAME, &mut self.frame).await? {
            return Ok(None);
        }
        let message: T = self.opener.open(&self.frame)?;
        let heads = message.announced();
        if heads.is_empty() {
            return Ok(Some(message));
        }
        let from = self.opener.direction.sender();
        let announced = heads
            .iter()
            .map(|(len, _)| *len as usize)
            .fold(0usize, usize::saturating_add);
        if announced > FRAME_BUDGET {
            return Err(Error::protocol(format!(
                "{from} announced {announced} bytes in one batch; the limit is {FRAME_BUDGET}"
            )));
        }
        let mut envelopes = Vec::with_capacity(heads.len());
        for (len, tag) in heads {
            let mut sealed = Vec::new();
            if !read_frame_into(&mut self.reader, len as usize, &mut sealed).await? {
                return Err(Error::protocol(format!(
                    "{from} closed the stream in the middle of a batch"
                )));
            }
            if sealed.len() != len as usize || !sealed.ends_with(&tag) {
                return Err(Error::Envelope);
            }
            envelopes.push(sealed);
        }
        Ok(Some(message.attach(envelopes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ToMaster, ToWorker};

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

    fn duplex() -> (
        tokio_util::compat::Compat<tokio::io::DuplexStream>,
        tokio_util::compat::Compat<tokio::io::DuplexStream>,
    ) {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let (a, b) = tokio::io::duplex(64 * 1024);
        (a.compat(), b.compat())
    }

    #[tokio::test]
    async fn sealed_writer_and_reader_round_trip_messages_in_order_over_a_stream() {
        let (a, b) = duplex();
        let mut writer = SealedWriter::new(key(), Direction::ToMaster, a);
        let mut reader = SealedReader::new(key(), Direction::ToMaster, b);
        let run = async {
            writer.send(&ToMaster::Credits(7)).await?;
            writer.send(&ToMaster::Heartbeat).await?;
            writer.send(&ToMaster::GetManifest).await?;
            writer.flush().await?;
            writer.close().await;
            let mut got = Vec::new();
            while let Some(message) = reader.next::<ToMaster>().await? {
                got.push(format!("{message:?}"));
            }
            Ok::<_, Error>(got)
        };
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), run)
            .await
            .expect("the round trip finishes within 10 s")
            .expect("every frame opens");
        assert_eq!(got, ["Credits(7)", "Heartbeat", "GetManifest"]);
    }

    #[tokio::test]
    async fn a_reader_refuses_a_frame_over_the_cap_without_reading_it() {
        let (mut a, b) = duplex();
        let mut reader = SealedReader::new(key(), Direction::ToWorker, b);
        let run = async {
            // Only the length: a reader that tried to read the body would wait forever.
            a.write_all(&((MAX_FRAME + 1) as u32).to_be_bytes())
                .await
                .expect("write the length");
            a.flush().await.expect("flush");
            reader.next::<ToWorker>().await
        };
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), run)
            .await
            .expect("the refusal comes within 10 s");
        let err = result.expect_err("a frame over the cap is refused");
        assert!(matches!(err, Error::Protocol(..)), "{err:?}");
        assert!(
            err.to_string().contains(&format!("limit is {MAX_FRAME}")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_reader_with_another_key_refuses_the_first_frame() {
        let (a, b) = duplex();
        let mut writer = SealedWriter::new(key(), Direction::ToWorker, a);
        let other = TransferKey::from_token("another transfer token of 32 chars!").expect("valid");
        let mut reader = SealedReader::new(other, Direction::ToWorker, b);
        let run = async {
            writer
                .send(&ToWorker::FileMissing {
                    sha256: crate::assets::Sha256([1; 32]),
                })
                .await?;
            writer.flush().await?;
            reader.next::<ToWorker>().await
        };
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), run)
            .await
            .expect("the answer comes within 10 s");
        assert!(matches!(result, Err(Error::Envelope)), "{result:?}");
    }

    fn sealed_job(id: &str, bytes: usize) -> WireJob {
        WireJob {
            id: id.into(),
            attempt: 2,
            task_type: Some("t".into()),
            payload: key()
                .seal(&crate::protocol::payload_context(id), &vec![b'x'; bytes])
                .into(),
            timeout_ms: Some(5_000),
        }
    }

    /// Writes `jobs` with `send_jobs` into a buffer (the bytes as they go on the stream).
    async fn jobs_on_the_wire(jobs: Vec<WireJob>) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut writer = SealedWriter::new(key(), Direction::ToWorker, &mut wire);
        writer
            .send_jobs(BundleHash([3; 32]), jobs)
            .await
            .expect("send");
        writer.flush().await.expect("flush");
        drop(writer);
        wire
    }

    async fn read_back(wire: Vec<u8>) -> Result<Option<ToWorker>> {
        let mut reader =
            SealedReader::new(key(), Direction::ToWorker, futures::io::Cursor::new(wire));
        reader.next::<ToWorker>().await
    }

    #[tokio::test]
    async fn jobs_travel_with_their_sealed_payloads_verbatim_and_come_back_whole() {
        let jobs = vec![sealed_job("a", 300_000), sealed_job("b", 10)];
        let wire = jobs_on_the_wire(jobs.clone()).await;
        // Each payload is on the wire as it was sealed at push: not encrypted a second time.
        for job in &jobs {
            assert!(
                wire.windows(job.payload.len())
                    .any(|w| w == &job.payload[..]),
                "payload of {} travels as sealed at push",
                job.id
            );
        }
        let Some(ToWorker::Jobs { bundle, jobs: got }) = read_back(wire).await.expect("read")
        else {
            panic!("a batch of jobs");
        };
        assert_eq!(bundle, BundleHash([3; 32]));
        assert_eq!(got.len(), 2);
        for (want, got) in jobs.iter().zip(&got) {
            assert_eq!(
                (
                    &got.id,
                    got.attempt,
                    &got.task_type,
                    &got.payload,
                    got.timeout_ms
                ),
                (
                    &want.id,
                    want.attempt,
                    &want.task_type,
                    &want.payload,
                    want.timeout_ms
                )
            );
            key()
                .open(&crate::protocol::payload_context(&got.id), &got.payload)
                .expect("the payload opens with its job id");
        }
    }

    #[tokio::test]
    async fn a_swapped_or_altered_payload_frame_is_refused() {
        let a = sealed_job("a", 100);
        let b = sealed_job("b", 100);
        let wire = jobs_on_the_wire(vec![a.clone(), b.clone()]).await;
        // Swap the two payload frames (same length): each no longer matches its head's tag.
        let at = |p: &[u8]| {
            wire.windows(p.len())
                .position(|w| w == p)
                .expect("on the wire")
        };
        let (ia, ib) = (at(&a.payload), at(&b.payload));
        let mut swapped = wire.clone();
        swapped[ia..ia + a.payload.len()].copy_from_slice(&b.payload);
        swapped[ib..ib + b.payload.len()].copy_from_slice(&a.payload);
        assert!(matches!(read_back(swapped).await, Err(Error::Envelope)));
        // One bit of a payload's tag flipped.
        let mut altered = wire;
        altered[ia + a.payload.len() - 1] ^= 1;
        assert!(matches!(read_back(altered).await, Err(Error::Envelope)));
    }

    #[tokio::test]
    async fn heads_announcing_more_than_a_frame_of_payload_are_refused_before_reading() {
        let heads = (0..3)
            .map(|i| crate::protocol::WireJobHead {
                id: format!("j{i}"),
                attempt: 1,
                task_type: None,
                timeout_ms: None,
                payload_len: (MAX_FRAME / 2) as u32,
                payload_tag: [0; 32],
            })
            .collect();
        let mut wire = Vec::new();
        let mut writer = SealedWriter::new(key(), Direction::ToWorker, &mut wire);
        writer
            .send(&ToWorker::JobsDetached {
                bundle: BundleHash([0; 32]),
                jobs: heads,
            })
            .await
            .expect("send");
        writer.flush().await.expect("flush");
        drop(writer);
        // No payload frames follow: a reader that tried to read them would see the end.
        let err = read_back(wire).await.expect_err("refused");
        assert!(matches!(err, Error::Protocol(..)), "{err:?}");
        assert!(err.to_string().contains("announced"), "{err}");
    }

    #[tokio::test]
    async fn results_travel_with_their_sealed_bodies_verbatim_and_a_swap_is_refused() {
        let result = |id: &str, bytes: usize| WireResult {
            id: id.into(),
            attempt: 1,
            ok: true,
            body: key().seal(
                &crate::protocol::result_context(id, true),
                &vec![b'r'; bytes],
            ),
        };
        let (a, b) = (result("a", 200_000), result("b", 200_000));
        let mut wire = Vec::new();
        let mut writer = SealedWriter::new(key(), Direction::ToMaster, &mut wire);
        writer
            .send_results(vec![a.clone(), b.clone()])
            .await
            .expect("send");
        writer.flush().await.expect("flush");
        drop(writer);
        let read = |wire: Vec<u8>| async move {
            SealedReader::new(key(), Direction::ToMaster, futures::io::Cursor::new(wire))
                .next::<ToMaster>()
                .await
        };
        let Some(ToMaster::Results(got)) = read(wire.clone()).await.expect("read") else {
            panic!("a batch of results");
        };
        assert_eq!(got.len(), 2);
        assert_eq!((&got[0].id, &got[0].body), (&a.id, &a.body));
        assert_eq!((&got[1].id, &got[1].body), (&b.id, &b.body));
        let at = |p: &[u8]| {
            wire.windows(p.len())
                .position(|w| w == p)
                .expect("verbatim")
        };
        let (ia, ib) = (at(&a.body), at(&b.body));
        let mut swapped = wire.clone();
        swapped[ia..ia + a.body.len()].copy_from_slice(&b.body);
        swapped[ib..ib + b.body.len()].copy_from_slice(&a.body);
        assert!(matches!(read(swapped).await, Err(Error::Envelope)));
    }
}
