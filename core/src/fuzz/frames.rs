//! Fuzz target `frames`: what a peer's bytes go through on the job stream — a u32 length
//! prefix, the frame cap, the envelope with its direction and sequence number, then postcard
//! decoding of a [`ToWorker`] or [`ToMaster`] message — via the one reader both sides use,
//! [`SealedReader`]. Corpus: `fuzz-corpus/frames-to-worker/` and `frames-to-master/`, each a
//! stream of frames sealed with [`CORPUS_TOKEN`](super::CORPUS_TOKEN).

use std::fmt::Debug;

use proptest::prelude::*;
use serde::Serialize;

use super::manifest::manifest_strategy;
use super::{CORPUS_TOKEN, Mutation, corpus, fuzz, mutations};
use crate::assets::{BundleHash, ManifestEntry, Sha256};
use crate::crypto::TransferKey;
use crate::error::Error;
use crate::protocol::{
    Detachable, Direction, SealedReader, SealedWriter, ToMaster, ToWorker, WireJob, WireResult,
};

pub(super) fn key() -> TransferKey {
    TransferKey::from_token(CORPUS_TOKEN).expect("the corpus token is valid")
}

/// How reading a stream ended.
#[derive(Debug)]
pub(super) enum End {
    /// A clean end of stream after the messages.
    Clean,
    /// The error that stopped the reader.
    Refused(Error),
}

/// Reads every message of `bytes` the way a session does, until the end or the first error.
pub(super) fn read_stream<T: Detachable>(direction: Direction, bytes: &[u8]) -> (Vec<T>, End) {
    let mut reader = SealedReader::new(key(), direction, futures::io::Cursor::new(bytes));
    let mut messages = Vec::new();
    loop {
        match futures::executor::block_on(reader.next::<T>()) {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return (messages, End::Clean),
            Err(error) => return (messages, End::Refused(error)),
        }
        // Every frame costs at least its 4-byte length, so a reader that goes on is looping.
        assert!(
            messages.len() * 4 <= bytes.len(),
            "the reader returned more messages than the stream has frames"
        );
    }
}

/// Seals `messages` into one stream, as a [`SealedWriter`] sends them.
pub(super) fn seal_stream<T: Serialize>(direction: Direction, messages: &[T]) -> Vec<u8> {
    let mut bytes = Vec::new();
    futures::executor::block_on(async {
        let mut writer = SealedWriter::new(key(), direction, futures::io::Cursor::new(&mut bytes));
        for message in messages {
            writer.send(message).await.expect("sealing into memory");
        }
        writer.flush().await.expect("flushing into memory");
    });
    bytes
}

/// Where each frame of a well-formed stream ends (exclusive), length prefix included.
fn frame_ends(stream: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at + 4 <= stream.len() {
        let len = u32::from_be_bytes([stream[at], stream[at + 1], stream[at + 2], stream[at + 3]]);
        at += 4 + len as usize;
        ends.push(at);
    }
    assert_eq!(at, stream.len(), "a seed stream is whole frames");
    ends
}

/// The errors a reader may stop with on hostile bytes; anything else (or a panic) is a bug.
fn assert_refusal_is_expected(end: &End) -> Result<(), TestCaseError> {
    if let End::Refused(error) = end {
        prop_assert!(
            matches!(
                error,
                Error::Protocol(..) | Error::Envelope | Error::Network(..)
            ),
            "unexpected error kind: {error:?}"
        );
    }
    Ok(())
}

fn sha() -> impl Strategy<Value = Sha256> {
    any::<[u8; 32]>().prop_map(Sha256)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

pub(super) fn to_master() -> impl Strategy<Value = ToMaster> {
    let result =
        (".{0,24}", any::<u32>(), any::<bool>(), bytes(96)).prop_map(|(id, attempt, ok, body)| {
            WireResult {
                id,
                attempt,
                ok,
                body,
            }
        });
    prop_oneof![
        any::<u32>().prop_map(ToMaster::Credits),
        Just(()).prop_map(|()| ToMaster::Heartbeat),
        Just(()).prop_map(|()| ToMaster::GetManifest),
        sha().prop_map(|sha256| ToMaster::GetFile { sha256 }),
        prop::collection::vec(result, 0..4).prop_map(ToMaster::Results),
        (
            any::<[u8; 32]>(),
            ".{0,48}",
            prop::collection::vec((".{0,24}", any::<u32>()), 0..4)
        )
            .prop_map(|(bundle, reason, jobs)| ToMaster::TaskLoadFailed {
                bundle: BundleHash(bundle),
                reason,
                jobs,
            }),
        Just(()).prop_map(|()| ToMaster::GetDependencyBundle),
    ]
}

pub(super) fn to_worker() -> impl Strategy<Value = ToWorker> {
    let job = (
        ".{0,24}",
        any::<u32>(),
        proptest::option::of(".{0,12}"),
        bytes(96),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(id, attempt, task_type, payload, timeout_ms)| WireJob {
            id,
            attempt,
            task_type,
            payload: payload.into(),
            timeout_ms,
        });
    prop_oneof![
        (any::<[u8; 32]>(), prop::collection::vec(job, 0..4)).prop_map(|(bundle, jobs)| {
            ToWorker::Jobs {
                bundle: BundleHash(bundle),
                jobs,
            }
        }),
        manifest_strategy().prop_map(ToWorker::Manifest),
        (sha(), any::<u64>(), bytes(256), any::<bool>()).prop_map(
            |(sha256, offset, data, last)| {
                ToWorker::FileChunk {
                    sha256,
                    offset,
                    data,
                    last,
                }
            }
        ),
        sha().prop_map(|sha256| ToWorker::FileMissing { sha256 }),
        (
            proptest::option::of((".{0,24}", ".{0,24}", sha(), any::<u64>())),
            proptest::option::of(".{0,48}")
        )
            .prop_map(|(entry, error)| ToWorker::DependencyBundle {
                entry: entry.map(|(name, worker_path, sha256, size)| ManifestEntry {
                    name,
                    worker_path,
                    sha256,
                    size,
                }),
                error,
            }),
    ]
}

/// Bytes that look like a frame stream: mostly plausible length prefixes, then anything.
fn hostile_stream() -> impl Strategy<Value = Vec<u8>> {
    let frame = (
        prop_oneof![
            any::<u32>(),
            0u32..64,
            Just(u32::MAX),
            Just(8 * 1024 * 1024),
            Just(8 * 1024 * 1024 + 1)
        ],
        bytes(128),
    )
        .prop_map(|(len, body)| {
            let mut frame = len.to_be_bytes().to_vec();
            frame.extend(body);
            frame
        });
    prop_oneof![
        bytes(512),
        prop::collection::vec(frame, 0..4).prop_map(|frames| frames.concat()),
    ]
}

/// Replays one direction's corpus: valid streams open to the end, hostile ones are refused.
fn replay<T: Detachable + Debug>(target: &str, direction: Direction) {
    for (name, stream) in corpus(target) {
        let (messages, end) = read_stream::<T>(direction, &stream);
        if name.starts_with("valid-") {
            assert!(
                matches!(end, End::Clean) && !messages.is_empty(),
                "{target}/{name}: a valid stream must open to its end, got {} messages then {end:?}",
                messages.len()
            );
        } else {
            match &end {
                End::Refused(Error::Protocol(..) | Error::Envelope | Error::Network(..)) => {}
                other => panic!(
                    "{target}/{name}: a hostile stream must be refused, got {} messages then {other:?}",
                    messages.len()
                ),
            }
        }
    }
}

/// A valid stream with one mutation gives exactly the messages of the frames before the first
/// changed byte, then stops: no altered frame ever opens, and nothing panics.
fn mutated_stream_yields_only_untouched_frames<T: Detachable + Debug>(
    direction: Direction,
    seed: &[u8],
    mutation: &Mutation,
) -> Result<(), TestCaseError> {
    let (originals, end) = read_stream::<T>(direction, seed);
    prop_assert!(
        matches!(end, End::Clean),
        "the seed is a valid stream: {end:?}"
    );
    let mutated = mutation.apply(seed);
    let (messages, end) = read_stream::<T>(direction, &mutated);
    assert_refusal_is_expected(&end)?;
    let ends = frame_ends(seed);
    let first_change = seed
        .iter()
        .zip(&mutated)
        .position(|(a, b)| a != b)
        .unwrap_or(seed.len().min(mutated.len()));
    let untouched = if mutated == seed {
        ends.len()
    } else {
        ends.iter().take_while(|&&end| end <= first_change).count()
    };
    let shown = |list: &[T]| list.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>();
    prop_assert_eq!(shown(&messages), shown(&originals[..untouched]));
    Ok(())
}

#[test]
fn the_frame_corpus_replays_valid_streams_whole_and_refuses_hostile_ones() {
    replay::<ToWorker>("frames-to-worker", Direction::ToWorker);
    replay::<ToMaster>("frames-to-master", Direction::ToMaster);
}

#[test]
fn arbitrary_bytes_never_open_as_a_message_and_never_panic() {
    fuzz("frames/arbitrary", hostile_stream(), |stream| {
        let (to_worker, end) = read_stream::<ToWorker>(Direction::ToWorker, &stream);
        assert_refusal_is_expected(&end)?;
        prop_assert!(to_worker.is_empty(), "forged frames opened: {to_worker:?}");
        let (to_master, end) = read_stream::<ToMaster>(Direction::ToMaster, &stream);
        assert_refusal_is_expected(&end)?;
        prop_assert!(to_master.is_empty(), "forged frames opened: {to_master:?}");
        Ok(())
    });
}

#[test]
fn every_generated_message_stream_round_trips_in_order() {
    let streams = (
        prop::collection::vec(to_worker(), 1..6),
        prop::collection::vec(to_master(), 1..6),
    );
    fuzz("frames/round-trip", streams, |(to_worker, to_master)| {
        let sealed = seal_stream(Direction::ToWorker, &to_worker);
        let (opened, end) = read_stream::<ToWorker>(Direction::ToWorker, &sealed);
        prop_assert!(matches!(end, End::Clean), "{end:?}");
        let as_text = |list: &[ToWorker]| list.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>();
        prop_assert_eq!(as_text(&opened), as_text(&to_worker));
        // A worker's stream read as the master's is refused at its first frame (no reflection).
        let (reflected, end) = read_stream::<ToMaster>(Direction::ToMaster, &sealed);
        prop_assert!(reflected.is_empty() && matches!(end, End::Refused(Error::Envelope)));

        let sealed = seal_stream(Direction::ToMaster, &to_master);
        let (opened, end) = read_stream::<ToMaster>(Direction::ToMaster, &sealed);
        prop_assert!(matches!(end, End::Clean), "{end:?}");
        let as_text = |list: &[ToMaster]| list.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>();
        prop_assert_eq!(as_text(&opened), as_text(&to_master));
        Ok(())
    });
}

#[test]
fn a_mutated_corpus_stream_opens_only_the_frames_before_the_change() {
    let seeds: Vec<(bool, Vec<u8>)> = corpus("frames-to-worker")
        .into_iter()
        .filter(|(name, _)| name.starts_with("valid-"))
        .map(|(_, bytes)| (true, bytes))
        .chain(
            corpus("frames-to-master")
                .into_iter()
                .filter(|(name, _)| name.starts_with("valid-"))
                .map(|(_, bytes)| (false, bytes)),
        )
        .collect();
    let strategy = (prop::sample::select(seeds), mutations(1));
    fuzz(
        "frames/mutated-corpus",
        strategy,
        |((to_worker, seed), mutation)| {
            if to_worker {
                mutated_stream_yields_only_untouched_frames::<ToWorker>(
                    Direction::ToWorker,
                    &seed,
                    &mutation[0],
                )
            } else {
                mutated_stream_yields_only_untouched_frames::<ToMaster>(
                    Direction::ToMaster,
                    &seed,
                    &mutation[0],
                )
            }
        },
    );
}

#[test]
fn a_mutated_generated_stream_opens_only_the_frames_before_the_change() {
    let strategy = (prop::collection::vec(to_worker(), 1..4), mutations(1));
    fuzz(
        "frames/mutated-generated",
        strategy,
        |(messages, mutation)| {
            let seed = seal_stream(Direction::ToWorker, &messages);
            mutated_stream_yields_only_untouched_frames::<ToWorker>(
                Direction::ToWorker,
                &seed,
                &mutation[0],
            )
        },
    );
}
