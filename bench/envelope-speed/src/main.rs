//! Times sealing one message three ways (see Cargo.toml; the third, crypto.rs's mix, takes its
//! IVs from a pool as `iv()` does), and each part alone, in rounds that alternate them:
//! `envelope-speed [seals per round] [message bytes]`.

use std::hint::black_box;
use std::time::Instant;

use aes::Aes256Enc;
use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac as lc_hmac;
use aws_lc_rs::iv::FixedLength;
use cbc::cipher::{Block, BlockModeEncrypt, InnerIvInit, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const HEADER: usize = 17;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(300_000);
    let len: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(32);
    let key = [7u8; 32];
    let rc_enc = Aes256Enc::new(&key.into());
    let rc_mac = <HmacSha256 as KeyInit>::new_from_slice(&key).expect("any key length");
    let lc_enc =
        EncryptingKey::cbc(UnboundCipherKey::new(&AES_256, &key).expect("key")).expect("cbc");
    let lc_mac = lc_hmac::Key::new(lc_hmac::HMAC_SHA256, &key);
    let plain = vec![b'x'; len];
    let padded = (len / 16 + 1) * 16;

    let frame = |iv: [u8; 16]| {
        let mut out = Vec::with_capacity(HEADER + padded + 32);
        out.push(1);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&plain);
        out.resize(HEADER + padded, (padded - len) as u8);
        out
    };
    let os_iv = || {
        let mut iv = [0u8; 16];
        getrandom::fill(&mut iv).expect("getrandom");
        iv
    };
    // As core/src/crypto.rs's `iv()`: 4 KiB of the kernel's bytes at a time, 16 per envelope.
    let pool = std::cell::RefCell::new((vec![0u8; 4096], 4096usize));
    let pool_iv = || {
        let mut pool = pool.borrow_mut();
        if pool.1 + 16 > pool.0.len() {
            getrandom::fill(&mut pool.0).expect("getrandom");
            pool.1 = 0;
        }
        let mut iv = [0u8; 16];
        let at = pool.1;
        iv.copy_from_slice(&pool.0[at..at + 16]);
        pool.1 += 16;
        iv
    };
    let lc_iv = || {
        let mut iv = [0u8; 16];
        aws_lc_rs::rand::fill(&mut iv).expect("RAND_bytes");
        iv
    };
    let rc_cbc = |buf: &mut [u8], iv: [u8; 16]| {
        let (blocks, _) = Block::<Aes256Enc>::slice_as_chunks_mut(buf);
        cbc::Encryptor::<Aes256Enc>::inner_iv_init(rc_enc.clone(), &iv.into())
            .encrypt_blocks(blocks);
    };
    let lc_cbc = |buf: &mut [u8], iv: [u8; 16]| {
        lc_enc
            .less_safe_encrypt(buf, EncryptionContext::Iv128(FixedLength::from(iv)))
            .expect("whole blocks");
    };
    let rc_tag = |data: &[u8]| -> [u8; 32] {
        let mut m = rc_mac.clone();
        m.update(b"context");
        m.update(data);
        m.finalize().into_bytes().into()
    };
    let lc_tag = |data: &[u8]| -> [u8; 32] {
        let mut m = lc_hmac::Context::with_key(&lc_mac);
        m.update(b"context");
        m.update(data);
        m.sign().as_ref().try_into().expect("32 bytes")
    };
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() / n as f64 * 1e9
    };
    type Iv<'a> = &'a dyn Fn() -> [u8; 16];
    type Cbc<'a> = &'a dyn Fn(&mut [u8], [u8; 16]);
    type Tag<'a> = &'a dyn Fn(&[u8]) -> [u8; 32];
    // One whole seal, as core/src/crypto.rs does it, from the given parts.
    let seal = |iv: Iv, cbc: Cbc, tag: Tag| {
        let iv = iv();
        let mut out = frame(iv);
        cbc(&mut out[HEADER..], iv);
        let tag = tag(&out);
        out.extend_from_slice(&tag);
        black_box(out);
    };

    for round in 1..=3 {
        let rustcrypto = time(&mut || seal(&os_iv, &rc_cbc, &rc_tag));
        let aws_lc = time(&mut || seal(&lc_iv, &lc_cbc, &lc_tag));
        let chosen = time(&mut || seal(&pool_iv, &lc_cbc, &rc_tag));
        let mut buf = vec![0u8; padded];
        let parts = [
            (
                "IV getrandom",
                time(&mut || {
                    black_box(os_iv());
                }),
            ),
            (
                "IV getrandom 4 KiB pool",
                time(&mut || {
                    black_box(pool_iv());
                }),
            ),
            (
                "IV AWS-LC",
                time(&mut || {
                    black_box(lc_iv());
                }),
            ),
            (
                "HMAC RustCrypto",
                time(&mut || {
                    black_box(rc_tag(&plain));
                }),
            ),
            (
                "HMAC AWS-LC",
                time(&mut || {
                    black_box(lc_tag(&plain));
                }),
            ),
        ];
        let cbc_rc = time(&mut || rc_cbc(black_box(&mut buf), [1; 16]));
        let cbc_lc = time(&mut || lc_cbc(black_box(&mut buf), [1; 16]));
        println!(
            "round {round}, {len} bytes: seal RustCrypto {rustcrypto:.0} ns, AWS-LC {aws_lc:.0} ns, \
             crypto.rs's mix {chosen:.0} ns | CBC RustCrypto {cbc_rc:.0}, AWS-LC {cbc_lc:.0} | {}",
            parts
                .iter()
                .map(|(what, ns)| format!("{what} {ns:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
