//! The standing fuzz suite (issue 9): property tests that feed hostile bytes to every place a
//! peer's or a manifest's bytes are parsed — frames ([`frames`]), envelopes ([`envelope`]),
//! manifests and worker paths ([`manifest`]) and dependency tars ([`deps_tar`]).
//!
//! Why proptest and not cargo-fuzz: cargo-fuzz needs a nightly toolchain and this project
//! builds on stable only. Each target is a proptest property over generated inputs *and* over
//! mutations of the checked-in seed corpus in `core/fuzz-corpus/<target>/` (real valid inputs,
//! named `valid-*`, and known-hostile ones, named `hostile-*`), and each target also replays
//! every corpus file as is. A failure proptest finds is printed shrunk: add it to the corpus
//! as a `hostile-*` file so it is replayed forever.
//!
//! Bounded for CI: [`DEFAULT_CASES`] cases per property (or `PROPTEST_CASES`); a long run sets
//! `QUEUEXEC_FUZZ_CASES`, e.g. `QUEUEXEC_FUZZ_CASES=100000`. Every property runs on its own
//! thread under a deadline that grows with the case count ([`within_deadline`]).
//!
//! `cargo test -p queuexec-core fuzz::corpus::regenerate -- --ignored` rewrites the seed corpus.

mod corpus;
mod deps_tar;
mod envelope;
mod frames;
mod manifest;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Cases per property when neither `QUEUEXEC_FUZZ_CASES` nor `PROPTEST_CASES` is set.
const DEFAULT_CASES: u32 = 1000;

/// The environment variable that sets the number of cases for a long fuzz run.
const CASES_ENV: &str = "QUEUEXEC_FUZZ_CASES";

/// The transfer token every sealed corpus file is sealed with.
const CORPUS_TOKEN: &str = "queuexec fuzz corpus transfer token, 0123456789";

/// Cases per property: `QUEUEXEC_FUZZ_CASES`, else `PROPTEST_CASES`, else [`DEFAULT_CASES`].
fn cases() -> u32 {
    let from = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
    from(CASES_ENV)
        .or_else(|| from("PROPTEST_CASES"))
        .unwrap_or(DEFAULT_CASES)
}

/// Runs `test` over `strategy` for [`cases`] cases, on its own thread, failing if it has not
/// finished by the deadline.
fn fuzz<S>(
    name: &'static str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError> + Send + 'static,
) where
    S: Strategy + Send + 'static,
{
    let cases = cases();
    within_deadline(name, cases, move || {
        let config = Config {
            cases,
            // Failures become corpus files by hand (see the module docs), not files in src/.
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(failure) = runner.run(&strategy, test) {
            panic!("fuzz target {name} failed: {failure}");
        }
    });
}

/// Runs `body` on its own thread and waits at most 120 s plus 20 ms a case for it.
fn within_deadline(name: &str, cases: u32, body: impl FnOnce() + Send + 'static) {
    let deadline = Duration::from_secs(120) + Duration::from_millis(20) * cases;
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(deadline) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: report its panic, not ours.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("fuzz target {name} did not finish {cases} cases within {deadline:?}")
        }
    }
}

/// The seed corpus of `target`, sorted by name: (file name, bytes). Panics if it is empty, so
/// a lost corpus cannot pass silently.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading the fuzz corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus directory entry").path();
            let name = path
                .file_name()
                .expect("a corpus file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("reading corpus file {}: {e}", path.display()));
            (name, bytes)
        })
        .collect();
    files.sort();
    assert!(
        files.iter().any(|(name, _)| name.starts_with("valid-"))
            && files.iter().any(|(name, _)| name.starts_with("hostile-")),
        "the fuzz corpus {} needs valid-* and hostile-* files; regenerate it (see src/fuzz/mod.rs)",
        dir.display()
    );
    files
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target)
}

/// One change to a seed: how fuzzers mutate a valid input into a nearly valid hostile one.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR the byte at the index with a non-zero mask.
    Flip(prop::sample::Index, u8),
    /// Keep only the first `n` bytes (`n` taken modulo the length + 1).
    Truncate(prop::sample::Index),
    /// Insert bytes at the index.
    Insert(prop::sample::Index, Vec<u8>),
    /// Overwrite bytes from the index on (a length field, a tag, a path...).
    Overwrite(prop::sample::Index, Vec<u8>),
}

impl Mutation {
    /// `seed` with this change applied.
    fn apply(&self, seed: &[u8]) -> Vec<u8> {
        let mut out = seed.to_vec();
        match self {
            Mutation::Flip(at, mask) if !out.is_empty() => {
                let at = at.index(out.len());
                out[at] ^= (*mask).max(1);
            }
            Mutation::Flip(..) => {}
            Mutation::Truncate(at) => out.truncate(at.index(out.len() + 1)),
            Mutation::Insert(at, bytes) => {
                let at = at.index(out.len() + 1);
                out.splice(at..at, bytes.iter().copied());
            }
            Mutation::Overwrite(at, bytes) => {
                let at = at.index(out.len() + 1);
                for (offset, byte) in bytes.iter().enumerate() {
                    match out.get_mut(at + offset) {
                        Some(slot) => *slot = *byte,
                        None => out.push(*byte),
                    }
                }
            }
        }
        out
    }
}

/// Up to `n` mutations, weighted towards the small changes that reach deepest.
fn mutations(n: usize) -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        3 => (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<prop::sample::Index>(), prop::collection::vec(interesting_byte(), 1..8))
            .prop_map(|(i, b)| Mutation::Overwrite(i, b)),
    ];
    prop::collection::vec(one, 1..=n)
}

/// Bytes that hit boundaries: 0, 0xff, the top bit, '/', '.', '\\', ':'.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(0u8),
        Just(0xff),
        Just(0x80),
        Just(0x7f),
        Just(b'/'),
        Just(b'.'),
        Just(b'\\'),
        Just(b':'),
        any::<u8>(),
    ]
}
