//! Keys and the envelope.
//!
//! Two tokens, two jobs:
//!
//! - the **transfer token** (queue-xec's `transferEncryptToken`) keys the envelope every job
//!   payload and result travels in: [`TransferKey`];
//! - the **room token** names the room peers meet in and lets a peer prove it belongs there:
//!   [`RoomKey`].
//!
//! The envelope is `[version = 1][IV 16][AES-256-CBC/PKCS#7 ciphertext][HMAC-SHA256 tag 32]`,
//! encrypt-then-MAC. The tag covers the version, a caller-chosen *context* (length-prefixed,
//! bound but not transmitted — typically a job id, so a payload cannot be replayed under
//! another job), the IV and the ciphertext. [`TransferKey::open`] checks the tag in constant
//! time before it decrypts or looks at the padding, and every failure is the same
//! [`Error::Envelope`], so a peer learns nothing about why a message was refused.
//!
//! Everything here is CPU work: call it off the network task (see `ARCHITECTURE.md`).
//!
//! The envelope's AES-256-CBC is AWS-LC's (`aws-lc-rs`, already in the build for QUIC's TLS):
//! its assembly was faster than the RustCrypto `aes`/`cbc` crates at every size measured on the
//! development machine (74 against 128 ns for three blocks, 1.03 against 1.13 ms for a
//! megabyte). HMAC-SHA256 stays on the RustCrypto crates, which were as fast for a megabyte and
//! faster for a short message (160 against 270 ns: AWS-LC copies its whole HMAC state per
//! message), and IVs come from the operating system's generator (`getrandom`; AWS-LC's DRBG
//! took 530 ns an IV where one `getrandom` call took 320). One call per IV was still a system
//! call per job and per result, with the kernel setting up its generator's state each time
//! (`crng_make_state` was 1.3 % of a busy worker's samples), so each thread draws 4 KiB at a time
//! and hands out 16 bytes per envelope ([`iv`]): the bytes are still the kernel's, nothing is
//! derived from them, and a forked child throws away the pool it inherited.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::cipher::{
    AES_256, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// The only envelope version this build writes and reads.
const ENVELOPE_VERSION: u8 = 1;
const BLOCK_LEN: usize = 16;
const IV_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// Version byte plus IV: everything before the ciphertext.
const HEADER_LEN: usize = 1 + IV_LEN;
/// The shortest possible envelope: PKCS#7 always adds at least one block of ciphertext.
const MIN_SEALED_LEN: usize = HEADER_LEN + BLOCK_LEN + TAG_LEN;

// HKDF domain separation. Changing any of these strings changes every key: they are part of
// the wire format.
const TRANSFER_SALT: &[u8] = b"queuexec/v1/transfer-token";
const TRANSFER_INFO_ENC: &[u8] = b"queuexec/v1/envelope/aes-256-cbc";
const TRANSFER_INFO_MAC: &[u8] = b"queuexec/v1/envelope/hmac-sha256";
const ROOM_SALT: &[u8] = b"queuexec/v1/room-token";
const ROOM_INFO_AUTH: &[u8] = b"queuexec/v1/room/auth-hmac-sha256";
const ROOM_INFO_RENDEZVOUS: &[u8] = b"queuexec/v1/room/rendezvous-namespace";

/// The keys derived from the transfer token (queue-xec's `transferEncryptToken`): an AES-256
/// key for the envelope's ciphertext and a separate HMAC-SHA256 key for its tag.
///
/// The AES key schedules and the keyed HMAC state are computed once, in
/// [`from_token`](Self::from_token), so sealing and opening cost only the cipher and hash
/// work. Cheap to clone (shared); `Send + Sync`.
#[derive(Clone)]
pub(crate) struct TransferKey {
    keys: Arc<EnvelopeKeys>,
}

/// The envelope's keys, ready to use: AWS-LC's AES key schedules and the keyed HMAC state.
struct EnvelopeKeys {
    /// AES-256-CBC encryption (from the encryption key); the padding is written here.
    enc: EncryptingKey,
    /// AES-256-CBC decryption (same key).
    dec: DecryptingKey,
    /// HMAC-SHA256 keyed with the MAC key: the inner and outer pads are absorbed, and each
    /// message starts from a copy.
    mac: HmacSha256,
}

impl TransferKey {
    /// Derives the envelope keys from the transfer token (queue-xec's `transferEncryptToken`)
    /// with HKDF-SHA256: a fixed salt naming queuexec, and distinct `info` strings for the
    /// encryption key and the MAC key, so the two keys are independent.
    ///
    /// # Errors
    /// [`Error::Token`] if the token breaks [`crate::config::check_transfer_token`]'s rule (at
    /// least 32 characters). The message gives the count, never the token.
    pub(crate) fn from_token(token: &str) -> Result<TransferKey> {
        crate::config::check_transfer_token(token)?;
        let hkdf = Hkdf::<Sha256>::new(Some(TRANSFER_SALT), token.as_bytes());
        let enc_key = expand_32(&hkdf, TRANSFER_INFO_ENC)?;
        let mac_key = expand_32(&hkdf, TRANSFER_INFO_MAC)?;
        // A 32-byte key for AES-256 in CBC mode is never refused; no unwrap all the same.
        let refused = |_| Error::Token("could not key AES-256-CBC from the token".to_owned());
        let cbc_key = || UnboundCipherKey::new(&AES_256, &enc_key).map_err(refused);
        Ok(TransferKey {
            keys: Arc::new(EnvelopeKeys {
                enc: EncryptingKey::cbc(cbc_key()?).map_err(refused)?,
                dec: DecryptingKey::cbc(cbc_key()?).map_err(refused)?,
                mac: keyed_hmac(&mac_key)?,
            }),
        })
    }

    /// Seals `plaintext` into an envelope:
    /// `[version 1][IV 16][AES-256-CBC/PKCS#7 ciphertext][HMAC-SHA256 tag 32]`, with a fresh
    /// random IV per call, so two seals of the same plaintext differ.
    ///
    /// The tag is `HMAC(mac_key, version || u32-be len(context) || context || IV || ciphertext)`.
    /// `context` is bound to the message but not transmitted: [`open`](Self::open) must be
    /// given the same bytes (for example the job id), so a sealed payload cannot be moved to
    /// another job. Contexts are expected to be short; one longer than `u32::MAX` bytes has its
    /// length field saturated.
    ///
    /// The output is the only allocation.
    ///
    /// # Panics
    /// Only if no random IV can be had ([`random_bytes`]), or AWS-LC refuses to encrypt whole
    /// blocks; neither happens on the platforms queuexec supports.
    pub(crate) fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.seal_parts(context, &[plaintext])
    }

    /// [`seal`](Self::seal) of the concatenation of `parts`, without building it first: a big
    /// payload is copied once, into the envelope.
    pub(crate) fn seal_parts(&self, context: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        self.seal_with_iv(context, parts, iv())
    }

    fn seal_with_iv(&self, context: &[u8], parts: &[&[u8]], iv: [u8; IV_LEN]) -> Vec<u8> {
        let plain_len: usize = parts.iter().map(|p| p.len()).sum();
        // PKCS#7: always 1..=16 bytes of padding, each holding the padding length.
        let pad = BLOCK_LEN - plain_len % BLOCK_LEN;
        let ciphertext_len = plain_len + pad;
        let mut out = Vec::with_capacity(HEADER_LEN + ciphertext_len + TAG_LEN);
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&iv);
        for part in parts {
            out.extend_from_slice(part);
        }
        // `pad` is at most 16, so the cast cannot truncate.
        out.resize(HEADER_LEN + ciphertext_len, pad as u8);

        // CBC over whole blocks with a 16-byte IV, which AWS-LC does not refuse; were it ever to,
        // nothing half-encrypted may leave here.
        if self
            .keys
            .enc
            .less_safe_encrypt(
                &mut out[HEADER_LEN..],
                EncryptionContext::Iv128(FixedLength::from(iv)),
            )
            .is_err()
        {
            panic!("AES-256-CBC refused whole blocks and a 16-byte IV");
        }

        let tag = self.tag(context, &out);
        out.extend_from_slice(&tag);
        out
    }

    /// Opens an envelope made by [`seal`](Self::seal) with the same key and `context`.
    ///
    /// The tag is checked in constant time before anything is decrypted or unpadded.
    ///
    /// # Errors
    /// [`Error::Envelope`] for every failure alike — unknown version, too short, bad length,
    /// altered bytes, wrong context, wrong key, bad padding — so nothing leaks about which.
    pub(crate) fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        // Length and version are public, so checking them first leaks nothing.
        if sealed.len() < MIN_SEALED_LEN
            || !(sealed.len() - HEADER_LEN - TAG_LEN).is_multiple_of(BLOCK_LEN)
            || sealed[0] != ENVELOPE_VERSION
        {
            return Err(Error::Envelope);
        }
        let (authenticated, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        if self
            .mac_over(context, authenticated)
            .verify_slice(tag)
            .is_err()
        {
            return Err(Error::Envelope);
        }

        let iv: [u8; IV_LEN] = authenticated[1..HEADER_LEN]
            .try_into()
            .map_err(|_| Error::Envelope)?;
        let mut plain = authenticated[HEADER_LEN..].to_vec();
        self.keys
            .dec
            .decrypt(&mut plain, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| Error::Envelope)?;

        // The tag was valid, so only a sealer holding the key could produce bad padding; it is
        // still refused rather than trusted.
        let pad = usize::from(*plain.last().ok_or(Error::Envelope)?);
        if pad == 0
            || pad > BLOCK_LEN
            || plain[plain.len() - pad..]
                .iter()
                .any(|&b| usize::from(b) != pad)
        {
            return Err(Error::Envelope);
        }
        plain.truncate(plain.len() - pad);
        Ok(plain)
    }

    /// The tag over `authenticated` (version, IV and ciphertext) bound to `context`.
    fn tag(&self, context: &[u8], authenticated: &[u8]) -> [u8; TAG_LEN] {
        self.mac_over(context, authenticated)
            .finalize()
            .into_bytes()
            .into()
    }

    /// A copy of the keyed HMAC that has absorbed
    /// `version || u32-be len(context) || context || IV || ciphertext`.
    fn mac_over(&self, context: &[u8], authenticated: &[u8]) -> HmacSha256 {
        let (version, rest) = authenticated.split_at(1);
        let context_len = u32::try_from(context.len()).unwrap_or(u32::MAX);
        let mut mac = self.keys.mac.clone();
        mac.update(version);
        mac.update(&context_len.to_be_bytes());
        mac.update(context);
        mac.update(rest);
        mac
    }
}

impl fmt::Debug for TransferKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferKey").finish_non_exhaustive()
    }
}

/// What the room token gives a peer: the room id peers meet under, and an authentication key
/// to prove, by challenge and response, that it holds the token.
#[derive(Clone)]
pub(crate) struct RoomKey {
    room_id: String,
    /// The rendezvous namespace (HKDF from the token, independent of the room id and the auth
    /// key): what a master registers under at a relay.
    namespace: String,
    /// HMAC-SHA256 keyed with the auth key (HKDF from the token, independent of the room id).
    auth: HmacSha256,
}

impl RoomKey {
    /// Derives the room id and the authentication key from the room `token`, used exactly as
    /// given (no trimming), so every peer must be given the same string.
    ///
    /// # Errors
    /// [`Error::Token`] if the token is empty or only whitespace
    /// ([`crate::config::check_room_token`]).
    pub(crate) fn from_token(token: &str) -> Result<RoomKey> {
        crate::config::check_room_token(token)?;
        let room_id = hex::encode(sha256(token.as_bytes()));
        let hkdf = Hkdf::<Sha256>::new(Some(ROOM_SALT), token.as_bytes());
        let auth_key = expand_32(&hkdf, ROOM_INFO_AUTH)?;
        let namespace = hex::encode(expand_32(&hkdf, ROOM_INFO_RENDEZVOUS)?);
        Ok(RoomKey {
            room_id,
            namespace,
            auth: keyed_hmac(&auth_key)?,
        })
    }

    /// The room id: the lowercase hex SHA-256 of the token (64 characters). Peers meet in
    /// this room; it also names files and appears in the handshake. It is public.
    pub(crate) fn room_id(&self) -> &str {
        &self.room_id
    }

    /// The namespace masters of this room register under at a rendezvous point: 64 hex digits
    /// of HKDF-SHA256 output from the token. A relay operator sees it, and can tell registrations
    /// of one room apart from another's, but it neither names the room (it is not the room id)
    /// nor opens it (the token cannot be recovered from it, and joining needs the token).
    pub(crate) fn rendezvous_namespace(&self) -> &str {
        &self.namespace
    }

    /// The proof that this peer holds the room token: HMAC-SHA256 under the auth key over
    /// `transcript` (which should hold both sides' fresh challenges and identities).
    pub(crate) fn prove(&self, transcript: &[u8]) -> [u8; 32] {
        self.auth
            .clone()
            .chain_update(transcript)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks, in constant time, a `proof` another peer gave for `transcript`. A proof of the
    /// wrong length is refused.
    pub(crate) fn verify(&self, transcript: &[u8], proof: &[u8]) -> bool {
        self.auth
            .clone()
            .chain_update(transcript)
            .verify_slice(proof)
            .is_ok()
    }
}

impl fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The room id is public (it is a hash of the token); the auth key is not printed.
        f.debug_struct("RoomKey")
            .field("room_id", &self.room_id)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `N` bytes from the operating system's random number generator.
///
/// # Panics
/// If the operating system's random number generator is unavailable. There is no safe
/// fallback for key material or IVs, and on the platforms queuexec supports this does not
/// happen once the system has booted.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Err(error) = getrandom::fill(&mut bytes) {
        panic!("the operating system's random number generator is unavailable: {error}");
    }
    bytes
}

/// How many bytes of the kernel's generator each thread draws at a time for IVs: one system call
/// per 256 envelopes.
const IV_POOL: usize = 4096;

/// Bumped in a child after `fork`, so that the child never hands out the IVs of the pool it
/// inherited from its parent (both would send the same ones).
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct IvPool {
    bytes: Box<[u8; IV_POOL]>,
    /// Bytes from here on are not handed out yet.
    next: usize,
    /// `FORKS` when the pool was filled.
    forks: u64,
}

thread_local! {
    static IV_POOLS: std::cell::RefCell<IvPool> = {
        // Before any pool is filled, so no fork can copy one unnoticed.
        watch_forks();
        std::cell::RefCell::new(IvPool {
            bytes: Box::new([0; IV_POOL]),
            next: IV_POOL,
            forks: 0,
        })
    };
}

#[cfg(unix)]
fn watch_forks() {
    extern "C" fn forked() {
        FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `forked` only bumps an atomic, which is async-signal-safe, as a child handler
        // must be; the handler stays valid for the life of the process (a plain function).
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forked)) };
        assert_eq!(
            rc, 0,
            "pthread_atfork failed: cannot keep IVs apart across fork"
        );
    });
}

#[cfg(not(unix))]
fn watch_forks() {}

/// A fresh IV: the next 16 bytes of this thread's pool of the operating system's random bytes.
///
/// Bytes are handed out once and in order, and never outlive a `fork` (the child refills), so
/// no two envelopes of any process share an IV but by the generator's own chance.
///
/// # Panics
/// As [`random_bytes`], if the operating system's generator is unavailable.
pub(crate) fn iv() -> [u8; IV_LEN] {
    IV_POOLS.with(|pool| {
        let mut pool = pool.borrow_mut();
        let forks = FORKS.load(std::sync::atomic::Ordering::Relaxed);
        if pool.next + IV_LEN > IV_POOL || pool.forks != forks {
            if let Err(error) = getrandom::fill(&mut pool.bytes[..]) {
                panic!("the operating system's random number generator is unavailable: {error}");
            }
            pool.next = 0;
            pool.forks = forks;
        }
        let start = pool.next;
        pool.next += IV_LEN;
        let mut out = [0u8; IV_LEN];
        out.copy_from_slice(&pool.bytes[start..pool.next]);
        out
    })
}

fn expand_32(hkdf: &Hkdf<Sha256>, info: &[u8]) -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    // HKDF-SHA256 can produce up to 8160 bytes, so 32 never fails; no unwrap all the same.
    hkdf.expand(info, &mut key)
        .map_err(|_| Error::Token("could not derive a key from the token (HKDF)".to_owned()))?;
    Ok(key)
}

fn keyed_hmac(key: &[u8; 32]) -> Result<HmacSha256> {
    // HMAC accepts keys of any length, so this never fails; no unwrap all the same.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .map_err(|_| Error::Token("could not key HMAC-SHA256 from the token".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef-test-transfer-token";
    const OTHER_TOKEN: &str = "fedcba9876543210fedcba9876543210-other-transfer-token";

    fn key() -> TransferKey {
        TransferKey::from_token(TOKEN).expect("valid token")
    }

    fn assert_refused(key: &TransferKey, context: &[u8], sealed: &[u8], what: &str) {
        match key.open(context, sealed) {
            Err(Error::Envelope) => {}
            Err(other) => panic!("{what}: expected Error::Envelope, got {other:?}"),
            Ok(_) => panic!("{what}: a tampered envelope was accepted"),
        }
    }

    #[test]
    fn round_trip_of_every_interesting_length() {
        let key = key();
        let mib: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            vec![7],
            vec![1; 15],
            vec![2; 16],
            vec![3; 17],
            (0..100u8).collect(),
            mib,
        ];
        for plaintext in cases {
            let sealed = key.seal(b"job-1", &plaintext);
            let padded = (plaintext.len() / 16 + 1) * 16;
            assert_eq!(
                sealed.len(),
                1 + 16 + padded + 32,
                "len {}",
                plaintext.len()
            );
            assert_eq!(sealed[0], 1, "version byte");
            if plaintext.len() >= 16 {
                assert!(
                    !sealed.windows(16).any(|w| w == &plaintext[..16]),
                    "plaintext visible in the envelope (len {})",
                    plaintext.len()
                );
            }
            let opened = key.open(b"job-1", &sealed).expect("round trip");
            assert_eq!(opened, plaintext, "len {}", plaintext.len());
        }
    }

    #[test]
    fn a_key_from_the_same_token_opens_what_another_sealed() {
        let sealed = key().seal(b"ctx", b"shared between master and worker");
        let opened = TransferKey::from_token(TOKEN)
            .expect("token")
            .open(b"ctx", &sealed);
        assert_eq!(opened.expect("open"), b"shared between master and worker");
    }

    #[test]
    fn envelope_and_proof_match_an_independent_implementation() {
        // Known answers computed with Python's `cryptography` (HKDF, AES-CBC, PKCS7) and
        // `hmac`, from the salt and info strings above: this pins the wire format.
        let sealed = key().seal_with_iv(b"job-7", &[b"hello queuexec"], [9; 16]);
        assert_eq!(
            hex::encode(&sealed),
            "0109090909090909090909090909090909\
             18a08ed633890c0164be200ff934d620\
             921a95f7c59b56a443f9bf95d5a26fc0c9c699bea8732c70c6d86d32af7f34ad"
        );
        assert_eq!(
            key().open(b"job-7", &sealed).expect("open"),
            b"hello queuexec"
        );

        let room = RoomKey::from_token("the room token").expect("room");
        assert_eq!(
            hex::encode(room.prove(b"transcript")),
            "10c87abf7af4e7bbe038ee857b2a95732099e99622683c2f02678974bd16ff5c"
        );
    }

    #[test]
    fn every_byte_flip_is_rejected() {
        let key = key();
        let sealed = key.seal(
            b"job-42",
            b"the payload of job forty-two, a bit longer than a block",
        );
        for i in 0..sealed.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut tampered = sealed.clone();
                tampered[i] ^= flip;
                assert_refused(&key, b"job-42", &tampered, &format!("byte {i} ^ {flip:#x}"));
            }
        }
    }

    #[test]
    fn every_bit_flip_of_a_short_message_is_rejected() {
        let key = key();
        let sealed = key.seal(b"c", b"hi");
        for bit in 0..sealed.len() * 8 {
            let mut tampered = sealed.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            assert_refused(&key, b"c", &tampered, &format!("bit {bit}"));
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let key = key();
        let sealed = key.seal(b"c", b"twenty bytes of data");
        for len in 0..sealed.len() {
            assert_refused(&key, b"c", &sealed[..len], &format!("truncated to {len}"));
        }
        // Dropping leading bytes is no better.
        for start in 1..sealed.len() {
            assert_refused(
                &key,
                b"c",
                &sealed[start..],
                &format!("first {start} bytes dropped"),
            );
        }
    }

    #[test]
    fn appended_bytes_are_rejected() {
        let key = key();
        let sealed = key.seal(b"c", b"payload");
        for extra in [1usize, 15, 16, 32, 48] {
            let mut longer = sealed.clone();
            longer.extend(std::iter::repeat_n(0u8, extra));
            assert_refused(&key, b"c", &longer, &format!("{extra} zero bytes appended"));
            let mut longer = sealed.clone();
            longer.extend_from_slice(&sealed[sealed.len() - extra.min(sealed.len())..]);
            assert_refused(&key, b"c", &longer, &format!("{extra} tag bytes appended"));
        }
    }

    #[test]
    fn wrong_key_is_rejected() {
        let sealed = key().seal(b"c", b"payload");
        let other = TransferKey::from_token(OTHER_TOKEN).expect("token");
        assert_refused(&other, b"c", &sealed, "other token");
        // A token differing in one character is just as foreign.
        let mut near = TOKEN.to_owned();
        near.push('!');
        let near = TransferKey::from_token(&near).expect("token");
        assert_refused(&near, b"c", &sealed, "near token");
    }

    #[test]
    fn wrong_context_is_rejected() {
        let key = key();
        let sealed = key.seal(b"job-1", b"payload");
        assert_refused(&key, b"job-2", &sealed, "other job id");
        assert_refused(&key, b"", &sealed, "empty context");
        assert_refused(&key, b"job-1\0", &sealed, "longer context");
        let sealed_empty = key.seal(b"", b"payload");
        assert_refused(
            &key,
            b"job-1",
            &sealed_empty,
            "context where none was bound",
        );
        assert_eq!(
            key.open(b"", &sealed_empty).expect("empty context"),
            b"payload"
        );
    }

    #[test]
    fn context_and_ciphertext_boundary_is_unambiguous() {
        // With the same IV, moving a byte from the context into the IV position must not
        // produce the same tag: the context length prefix prevents it.
        let key = key();
        let iv = [9u8; 16];
        let a = key.seal_with_iv(b"ab", &[b"x"], iv);
        let b = key.seal_with_iv(b"a", &[b"x"], iv);
        assert_ne!(a[a.len() - 32..], b[b.len() - 32..]);
    }

    #[test]
    fn sealing_parts_is_sealing_their_concatenation() {
        let key = key();
        let plain: Vec<u8> = (0..40u8).collect();
        for split in [0, 1, 15, 16, 17, 40] {
            let (a, b) = plain.split_at(split);
            assert_eq!(
                key.seal_with_iv(b"c", &[a, b], [3; 16]),
                key.seal_with_iv(b"c", &[&plain], [3; 16]),
                "split at {split}"
            );
            let opened = key.open(b"c", &key.seal_parts(b"c", &[a, &[], b]));
            assert_eq!(opened.expect("opens"), plain, "split at {split}");
        }
    }

    #[test]
    fn two_seals_of_the_same_plaintext_differ() {
        let key = key();
        let a = key.seal(b"c", b"same plaintext");
        let b = key.seal(b"c", b"same plaintext");
        assert_ne!(a, b);
        assert_ne!(a[1..17], b[1..17], "IVs must be fresh");
        assert_eq!(
            key.open(b"c", &a).expect("a"),
            key.open(b"c", &b).expect("b")
        );
    }

    #[test]
    fn a_correctly_tagged_envelope_with_bad_padding_is_rejected() {
        // Forge, with the real keys, a message whose last block decrypts to bad padding.
        let key = key();
        let iv = [3u8; 16];
        let mut forged = vec![ENVELOPE_VERSION];
        forged.extend_from_slice(&iv);
        let mut block = [0u8; 16]; // padding byte 0 is invalid
        key.keys
            .enc
            .less_safe_encrypt(&mut block, EncryptionContext::Iv128(FixedLength::from(iv)))
            .expect("one block");
        forged.extend_from_slice(&block);
        let tag = key.tag(b"c", &forged);
        forged.extend_from_slice(&tag);
        assert_refused(&key, b"c", &forged, "bad padding under a valid tag");
    }

    #[test]
    fn other_versions_are_rejected() {
        let key = key();
        let sealed = key.seal(b"c", b"payload");
        for version in [0u8, 2, 255] {
            let mut other = sealed.clone();
            other[0] = version;
            assert_refused(&key, b"c", &other, &format!("version {version}"));
        }
    }

    #[test]
    fn short_transfer_token_is_refused_without_echoing_it() {
        let short = "only-31-characters-long-secret!";
        assert_eq!(short.chars().count(), 31);
        let error = TransferKey::from_token(short).expect_err("too short");
        assert!(matches!(error, Error::Token(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("32"), "{message}");
        assert!(message.contains("31"), "{message}");
        assert!(message.contains("queuexec setup"), "{message}");
        assert!(
            !message.contains(short),
            "the token must never be printed: {message}"
        );

        let empty = TransferKey::from_token("").expect_err("empty");
        assert!(empty.to_string().contains("has 0"), "{empty}");
    }

    #[test]
    fn token_length_counts_characters_not_bytes() {
        // 16 two-byte characters: 32 bytes but only 16 characters.
        let token = "é".repeat(16);
        assert!(TransferKey::from_token(&token).is_err());
        assert!(TransferKey::from_token(&"é".repeat(32)).is_ok());
        assert!(TransferKey::from_token(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn debug_prints_no_key_material() {
        let printed = format!("{:?}", key());
        assert_eq!(printed, "TransferKey { .. }");
        let room = RoomKey::from_token("room secret").expect("room");
        let printed = format!("{room:?}");
        assert!(printed.contains(room.room_id()));
        assert!(!printed.contains("room secret"));
    }

    #[test]
    fn room_id_is_the_sha256_hex_of_the_token() {
        let room = RoomKey::from_token("abc").expect("room");
        assert_eq!(
            room.room_id(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_rendezvous_namespace_is_per_token_and_neither_the_room_id_nor_the_token() {
        let room = RoomKey::from_token("room secret").expect("room");
        let again = RoomKey::from_token("room secret").expect("room");
        let other = RoomKey::from_token("another room").expect("room");
        let ns = room.rendezvous_namespace();
        assert_eq!(ns, again.rendezvous_namespace(), "the same token meets");
        assert_ne!(ns, other.rendezvous_namespace(), "another token does not");
        assert_eq!(ns.len(), 64);
        assert!(ns.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(ns, room.room_id());
        assert!(!ns.contains("room secret"));
    }

    #[test]
    fn missing_room_token_is_refused() {
        for token in ["", "   ", "\t\n"] {
            let error = RoomKey::from_token(token).expect_err("missing");
            assert!(matches!(error, Error::Token(_)));
            let message = error.to_string();
            assert!(
                message.contains("room token (`token`) is empty"),
                "{message}"
            );
            assert!(message.contains("`token`"), "{message}");
        }
    }

    #[test]
    fn prove_and_verify() {
        let room = RoomKey::from_token("the room token").expect("room");
        let same = RoomKey::from_token("the room token").expect("room");
        let other = RoomKey::from_token("another room token").expect("room");
        let transcript = b"challenge-a|challenge-b|peer-a|peer-b";

        let proof = room.prove(transcript);
        assert!(same.verify(transcript, &proof));
        assert!(room.verify(transcript, &proof));

        assert!(
            !room.verify(transcript, &other.prove(transcript)),
            "proof from another token"
        );
        assert!(
            !room.verify(b"another transcript", &proof),
            "proof for another transcript"
        );
        assert!(!room.verify(transcript, &proof[..31]), "truncated proof");
        assert!(!room.verify(transcript, &[]), "empty proof");
        let mut flipped = proof;
        flipped[0] ^= 1;
        assert!(!room.verify(transcript, &flipped), "altered proof");
    }

    #[test]
    fn random_bytes_are_random() {
        let a: [u8; 32] = random_bytes();
        let b: [u8; 32] = random_bytes();
        assert_ne!(a, b);
        let empty: [u8; 0] = random_bytes();
        assert!(empty.is_empty());
    }

    /// Several pools' worth of IVs, on two threads: none repeats, and the envelopes carry them.
    #[test]
    fn ivs_never_repeat_across_refills_and_threads() {
        let draw = || (0..3 * IV_POOL / IV_LEN).map(|_| iv()).collect::<Vec<_>>();
        let other = std::thread::spawn(draw);
        let mut all = draw();
        all.extend(other.join().expect("the other thread"));
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len(), "an IV was handed out twice");
        assert!(all.iter().all(|iv| iv != &[0; IV_LEN]));

        let key = key();
        let a = key.seal(b"ctx", b"same");
        let b = key.seal(b"ctx", b"same");
        assert_ne!(
            a[1..HEADER_LEN],
            b[1..HEADER_LEN],
            "two envelopes with one IV"
        );
    }

    /// A forked child does not hand out the IVs its parent's pool still holds (a Python worker
    /// started by `multiprocessing` forks a process that has already sealed envelopes).
    #[cfg(unix)]
    #[test]
    fn a_forked_child_does_not_reuse_its_parents_ivs() {
        // Fill this thread's pool, so the parent and the child both hold its rest.
        let _ = iv();
        let mut fds = [0; 2];
        // SAFETY: a two-int array for pipe(2).
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        // SAFETY: the child only draws an IV (no allocation: the pool exists), writes it to the
        // pipe and leaves with _exit, touching nothing the parent's other threads hold.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let child = iv();
            // SAFETY: writes 16 bytes from a live array, then leaves without unwinding.
            unsafe {
                libc::write(fds[1], child.as_ptr().cast(), IV_LEN);
                libc::_exit(0);
            }
        }
        let parent = iv();
        let mut child = [0u8; IV_LEN];
        // SAFETY: reads at most 16 bytes into a live array; then reaps the child.
        let read = unsafe { libc::read(fds[0], child.as_mut_ptr().cast(), IV_LEN) };
        let mut status = 0;
        unsafe {
            libc::waitpid(pid, &mut status, 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!(read, IV_LEN as isize, "the child's IV");
        assert_ne!(parent, child, "the child handed out its parent's next IV");
    }
}
