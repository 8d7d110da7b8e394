//! Fuzz target `envelope`: [`TransferKey::open`] on hostile input — arbitrary bytes, and real
//! envelopes flipped, truncated, extended, opened with another context or another key. It
//! never panics and always fails the same way, [`Error::Envelope`], so nothing leaks about
//! which check refused it. Corpus: `fuzz-corpus/envelope/`, envelopes sealed with
//! [`CORPUS_TOKEN`](super::CORPUS_TOKEN) and [`CONTEXT`].

use proptest::prelude::*;

use super::frames::key;
use super::{corpus, fuzz, mutations};
use crate::crypto::TransferKey;
use crate::error::Error;

/// The context every corpus envelope is sealed with.
pub(super) const CONTEXT: &[u8] = b"queuexec fuzz corpus\0job-1";

/// `open` refused `sealed` with [`Error::Envelope`], exactly.
fn refused_alike(key: &TransferKey, context: &[u8], sealed: &[u8]) -> Result<(), TestCaseError> {
    match key.open(context, sealed) {
        Err(Error::Envelope) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!(
            "refused with another error than Error::Envelope: {other:?}"
        ))),
        Ok(plain) => Err(TestCaseError::fail(format!(
            "a hostile envelope opened ({} bytes)",
            plain.len()
        ))),
    }
}

#[test]
fn the_envelope_corpus_opens_valid_envelopes_and_refuses_hostile_ones_alike() {
    let key = key();
    for (name, sealed) in corpus("envelope") {
        let opened = key.open(CONTEXT, &sealed);
        if name.starts_with("valid-") {
            assert!(opened.is_ok(), "envelope/{name}: {opened:?}");
        } else {
            assert!(
                matches!(opened, Err(Error::Envelope)),
                "envelope/{name}: expected Error::Envelope, got {opened:?}"
            );
        }
    }
}

#[test]
fn arbitrary_bytes_never_open_and_always_fail_alike() {
    let strategy = (
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(any::<u8>(), 0..32),
        any::<bool>(),
    );
    fuzz(
        "envelope/arbitrary",
        strategy,
        |(mut sealed, context, versioned)| {
            // Half the cases carry the real version byte and a plausible length, to pass the cheap
            // checks and reach the tag.
            if versioned && !sealed.is_empty() {
                sealed[0] = 1;
            }
            refused_alike(&key(), &context, &sealed)
        },
    );
}

#[test]
fn a_mutated_envelope_never_opens_and_always_fails_alike() {
    let seeds: Vec<Vec<u8>> = corpus("envelope")
        .into_iter()
        .filter(|(name, _)| name.starts_with("valid-"))
        .map(|(_, bytes)| bytes)
        .collect();
    let generated =
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|plain| key().seal(CONTEXT, &plain));
    let seed = prop_oneof![prop::sample::select(seeds), generated];
    fuzz(
        "envelope/mutated",
        (seed, mutations(3)),
        |(seed, changes)| {
            let mut sealed = seed.clone();
            for change in &changes {
                sealed = change.apply(&sealed);
            }
            if sealed == seed {
                prop_assert!(key().open(CONTEXT, &sealed).is_ok());
                return Ok(());
            }
            refused_alike(&key(), CONTEXT, &sealed)
        },
    );
}

#[test]
fn a_real_envelope_never_opens_under_another_context_or_key() {
    let strategy = (
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(any::<u8>(), 0..40),
        "[ -~]{32,48}",
    );
    fuzz(
        "envelope/other-context-or-key",
        strategy,
        |(plain, context, token)| {
            let sealed = key().seal(CONTEXT, &plain);
            prop_assert_eq!(key().open(CONTEXT, &sealed).ok(), Some(plain));
            if context != CONTEXT {
                refused_alike(&key(), &context, &sealed)?;
            }
            let other = TransferKey::from_token(&token).expect("32+ characters is a valid token");
            if token != super::CORPUS_TOKEN {
                refused_alike(&other, CONTEXT, &sealed)?;
            }
            Ok(())
        },
    );
}
