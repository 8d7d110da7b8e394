//! Writes the seed corpus in `core/fuzz-corpus/` (an ignored test, run by hand when a message,
//! the envelope or the bundle format changes):
//! `cargo test -p queuexec-core fuzz::corpus::regenerate -- --ignored`.
//! Envelopes carry random IVs, so regenerating changes the bytes but not what each file means.

use std::path::Path;

use super::deps_tar::{RawEntry, pax_record, raw_tar};
use super::envelope::CONTEXT;
use super::frames::{key, seal_stream};
use super::{CORPUS_TOKEN, corpus_dir};
use crate::assets::{BundleHash, Manifest, ManifestEntry, Sha256};
use crate::crypto::TransferKey;
use crate::protocol::{Direction, MAX_FRAME, ToMaster, ToWorker, WireJob, WireResult};

/// The absolute path of the corpus's absolute-path entry: the tar replay checks that it never
/// appears (a fixed place, as a corpus file cannot know the test's temporary folder).
pub(super) const ESCAPE_PROBE: &str = "/tmp/queuexec-fuzz-escape-probe/evil.js";

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).expect("creating the corpus folder");
    std::fs::write(dir.join(name), bytes).expect("writing a corpus file");
}

fn clear(target: &str) {
    let _ = std::fs::remove_dir_all(corpus_dir(target));
}

fn entry(path: &str) -> ManifestEntry {
    ManifestEntry {
        name: path.into(),
        worker_path: path.into(),
        sha256: Sha256::of(path.as_bytes()),
        size: path.len() as u64,
    }
}

fn manifest(paths: &[&str], bundle: Option<&str>) -> Manifest {
    Manifest {
        files: paths.iter().map(|p| entry(p)).collect(),
        dependencies: vec!["big.js@6".into()],
        dependency_bundle: bundle.map(entry),
    }
}

/// A frame sealed with the right key and sequence number whose plaintext is `plain`.
fn sealed_frame(direction: u8, seq: u64, plain: &[u8]) -> Vec<u8> {
    let mut context = vec![direction];
    context.extend_from_slice(&seq.to_be_bytes());
    let sealed = key().seal(&context, plain);
    let mut frame = (sealed.len() as u32).to_be_bytes().to_vec();
    frame.extend(sealed);
    frame
}

fn frames(target: &str, letter: u8, valid: &[(&str, Vec<u8>)], reflected: Vec<u8>) {
    clear(target);
    for (name, stream) in valid {
        write(target, &format!("valid-{name}.bin"), stream);
    }
    let stream = &valid[0].1;
    let first_len = u32::from_be_bytes(stream[..4].try_into().expect("4 bytes")) as usize;
    let (first, rest) = stream.split_at(4 + first_len);
    write(target, "hostile-length-4gib.bin", &u32::MAX.to_be_bytes());
    write(
        target,
        "hostile-length-over-cap.bin",
        &((MAX_FRAME + 1) as u32).to_be_bytes(),
    );
    write(target, "hostile-length-only.bin", &64u32.to_be_bytes());
    write(
        target,
        "hostile-truncated-body.bin",
        &stream[..stream.len() - 1],
    );
    let mut flipped = stream.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    write(target, "hostile-flipped-tag.bin", &flipped);
    let mut flipped = stream.clone();
    flipped[5] ^= 0x80;
    write(target, "hostile-flipped-iv.bin", &flipped);
    write(target, "hostile-reordered.bin", &[rest, first].concat());
    write(
        target,
        "hostile-replayed-first-frame.bin",
        &[first, first].concat(),
    );
    write(target, "hostile-reflected.bin", &reflected);
    write(
        target,
        "hostile-garbage.bin",
        b"\0\0\0\x10GET / HTTP/1.1\r\n",
    );
    write(
        target,
        "hostile-not-a-message.bin",
        &sealed_frame(letter, 0, &[0xff; 40]),
    );
    write(
        target,
        "hostile-empty-message.bin",
        &sealed_frame(letter, 0, &[]),
    );
    let other = TransferKey::from_token("another transfer token, 0123456789abcdef").expect("token");
    let mut context = vec![letter];
    context.extend_from_slice(&0u64.to_be_bytes());
    let sealed = other.seal(&context, &[0]);
    let mut frame = (sealed.len() as u32).to_be_bytes().to_vec();
    frame.extend(sealed);
    write(target, "hostile-other-key.bin", &frame);
}

#[test]
#[ignore = "rewrites core/fuzz-corpus; run by hand"]
fn regenerate() {
    let sha = |b: u8| Sha256([b; 32]);
    let jobs = ToWorker::Jobs {
        bundle: BundleHash([7; 32]),
        jobs: vec![
            WireJob {
                id: "job-1".into(),
                attempt: 1,
                task_type: None,
                payload: key().seal(b"queuexec payload\0job-1", b"{\"n\":1}").into(),
                timeout_ms: Some(30_000),
            },
            WireJob {
                id: "job-2".into(),
                attempt: 2,
                task_type: Some("resize".into()),
                payload: vec![1, 2, 3].into(),
                timeout_ms: None,
            },
        ],
    };
    let to_worker = seal_stream(
        Direction::ToWorker,
        &[
            jobs,
            ToWorker::Manifest(manifest(
                &["task.js", "lib/util.js"],
                Some(".queuexec/dependencies.tar"),
            )),
            ToWorker::FileChunk {
                sha256: sha(1),
                offset: 0,
                data: b"module.exports = 1;".to_vec(),
                last: true,
            },
            ToWorker::FileMissing { sha256: sha(2) },
        ],
    );
    let to_master = seal_stream(
        Direction::ToMaster,
        &[
            ToMaster::Credits(4),
            ToMaster::GetManifest,
            ToMaster::GetFile { sha256: sha(1) },
            ToMaster::Heartbeat,
            ToMaster::Results(vec![
                WireResult {
                    id: "job-1".into(),
                    attempt: 1,
                    ok: true,
                    body: vec![9; 48],
                },
                WireResult {
                    id: "job-2".into(),
                    attempt: 2,
                    ok: false,
                    body: vec![],
                },
            ]),
        ],
    );
    let single_worker = seal_stream(
        Direction::ToWorker,
        &[ToWorker::FileMissing { sha256: sha(3) }],
    );
    let single_master = seal_stream(Direction::ToMaster, &[ToMaster::Heartbeat]);
    frames(
        "frames-to-worker",
        b'w',
        &[("session", to_worker.clone()), ("one-frame", single_worker)],
        to_master.clone(),
    );
    frames(
        "frames-to-master",
        b'm',
        &[("session", to_master), ("one-frame", single_master)],
        to_worker,
    );

    clear("envelope");
    for (name, plain) in [
        ("empty", vec![]),
        ("short", b"{\"n\":1}".to_vec()),
        ("block", vec![5; 16]),
        ("4k", vec![6; 4096]),
    ] {
        write(
            "envelope",
            &format!("valid-{name}.bin"),
            &key().seal(CONTEXT, &plain),
        );
    }
    let sealed = key().seal(CONTEXT, b"{\"n\":1}");
    let flip = |at: usize| {
        let mut s = sealed.clone();
        s[at] ^= 1;
        s
    };
    write("envelope", "hostile-empty.bin", b"");
    write("envelope", "hostile-version-only.bin", &[1]);
    write(
        "envelope",
        "hostile-truncated.bin",
        &sealed[..sealed.len() - 1],
    );
    write(
        "envelope",
        "hostile-truncated-block.bin",
        &sealed[..sealed.len() - 16],
    );
    write(
        "envelope",
        "hostile-appended.bin",
        &[sealed.as_slice(), &[0; 16]].concat(),
    );
    write("envelope", "hostile-flipped-version.bin", &flip(0));
    write("envelope", "hostile-flipped-iv.bin", &flip(1));
    write("envelope", "hostile-flipped-ciphertext.bin", &flip(20));
    write(
        "envelope",
        "hostile-flipped-tag.bin",
        &flip(sealed.len() - 1),
    );
    write(
        "envelope",
        "hostile-other-context.bin",
        &key().seal(b"queuexec fuzz corpus\0job-2", b"{\"n\":1}"),
    );
    let other = TransferKey::from_token("another transfer token, 0123456789abcdef").expect("token");
    write(
        "envelope",
        "hostile-other-key.bin",
        &other.seal(CONTEXT, b"{\"n\":1}"),
    );
    write("envelope", "hostile-zeros.bin", &[0; 65]);
    assert_ne!(CORPUS_TOKEN, "another transfer token, 0123456789abcdef");

    clear("manifest");
    let manifests: &[(&str, Manifest)] = &[
        ("valid-simple", manifest(&["task.js"], None)),
        (
            "valid-nested-with-bundle",
            manifest(
                &["task.js", "lib/util.js", "data/a.json"],
                Some(".queuexec/dependencies.tar"),
            ),
        ),
        (
            "valid-spelled-oddly",
            manifest(
                &["./task.js", "lib//util.js", "a/../b.js", "lib\\x.js"],
                None,
            ),
        ),
        ("valid-empty", Manifest::default()),
        ("hostile-dotdot", manifest(&["../evil.js"], None)),
        ("hostile-dotdot-deep", manifest(&["a/../../evil.js"], None)),
        (
            "hostile-dotdot-backslash",
            manifest(&["a\\..\\..\\evil.js"], None),
        ),
        ("hostile-absolute", manifest(&["/etc/passwd"], None)),
        ("hostile-absolute-backslash", manifest(&["\\evil.js"], None)),
        (
            "hostile-unc",
            manifest(&["\\\\server\\share\\evil.js"], None),
        ),
        ("hostile-drive", manifest(&["C:\\evil.js"], None)),
        ("hostile-drive-relative", manifest(&["c:evil.js"], None)),
        ("hostile-colon-stream", manifest(&["task.js:stream"], None)),
        ("hostile-nul", manifest(&["task.js\0.png"], None)),
        ("hostile-empty-path", manifest(&[""], None)),
        ("hostile-dot", manifest(&["."], None)),
        ("hostile-trailing-slash", manifest(&["lib/"], None)),
        (
            "hostile-dots-and-spaces",
            manifest(&["a/. ./evil.js"], None),
        ),
        ("hostile-triple-dot", manifest(&[".../evil.js"], None)),
        (
            "hostile-reserved",
            manifest(&[".queuexec/bundles/x/node_modules/a.js"], None),
        ),
        (
            "hostile-reserved-case",
            manifest(&[".QUEUEXEC/dependencies.tar"], None),
        ),
        (
            "hostile-same-file-twice",
            manifest(&["task.js", "Task.js"], None),
        ),
        (
            "hostile-file-as-folder",
            manifest(&["lib", "lib/util.js"], None),
        ),
        (
            "hostile-bundle-dotdot",
            manifest(&["task.js"], Some("../dependencies.tar")),
        ),
        (
            "hostile-bundle-clash",
            manifest(&["task.js"], Some("task.js")),
        ),
    ];
    for (name, manifest) in manifests {
        write(
            "manifest",
            &format!("{name}.postcard"),
            &postcard::to_stdvec(manifest).expect("encode"),
        );
    }

    clear("deps-tar");
    let dir = tempfile::tempdir().expect("tempdir");
    let modules = dir.path().join("node_modules");
    for (rel, text) in [
        ("big.js/package.json", "{\"main\":\"big.js\"}"),
        ("big.js/big.js", "module.exports = 1;"),
    ] {
        let path = modules.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    write(
        "deps-tar",
        "valid-packed.tar",
        &crate::deps::pack(&modules).expect("pack"),
    );
    let file = |path: &str, kind: u8, data: &[u8], link: &str| RawEntry {
        path: path.into(),
        kind,
        declared: data.len() as u64,
        data: data.to_vec(),
        link: link.into(),
    };
    write(
        "deps-tar",
        "valid-raw.tar",
        &raw_tar(
            &[
                file("node_modules/", b'5', b"", ""),
                file("node_modules/a/index.js", b'0', b"1", ""),
            ],
            true,
        ),
    );
    let hostile: &[(&str, Vec<RawEntry>)] = &[
        (
            "dotdot",
            vec![file("node_modules/../../evil.js", b'0', b"x", "")],
        ),
        ("absolute", vec![file(ESCAPE_PROBE, b'0', b"x", "")]),
        (
            "outside-node-modules",
            vec![file("elsewhere/x.js", b'0', b"x", "")],
        ),
        (
            "dot-component",
            vec![file("./node_modules/x.js", b'0', b"x", "")],
        ),
        (
            "symlink-out",
            vec![file("node_modules/link", b'2', b"", "/etc/passwd")],
        ),
        (
            "symlink-then-write-through",
            vec![
                file("node_modules/link", b'2', b"", "../../outside"),
                file("node_modules/link/secret", b'0', b"x", ""),
            ],
        ),
        (
            "hardlink-out",
            vec![file("node_modules/hard", b'1', b"", "/etc/passwd")],
        ),
        (
            "hardlink-inside",
            vec![
                file("node_modules/a", b'0', b"x", ""),
                file("node_modules/b", b'1', b"", "node_modules/a"),
            ],
        ),
        (
            "char-device",
            vec![file("node_modules/null", b'3', b"", "")],
        ),
        (
            "block-device",
            vec![file("node_modules/sda", b'4', b"", "")],
        ),
        ("fifo", vec![file("node_modules/fifo", b'6', b"", "")]),
        ("sparse", vec![file("node_modules/sparse", b'S', b"", "")]),
        (
            "pax-path-escape",
            vec![
                file(
                    "pax",
                    b'x',
                    &pax_record("path", "node_modules/../../evil.js"),
                    "",
                ),
                file("node_modules/ok.js", b'0', b"x", ""),
            ],
        ),
        (
            "pax-linkpath",
            vec![
                file("pax", b'x', &pax_record("linkpath", "/etc/passwd"), ""),
                file("node_modules/l", b'2', b"", "x"),
            ],
        ),
        (
            "gnu-longname-escape",
            vec![
                file("././@LongLink", b'L', b"../../../evil.js\0", ""),
                file("node_modules/ok.js", b'0', b"x", ""),
            ],
        ),
        (
            "declared-size-1tib",
            vec![RawEntry {
                declared: 1 << 40,
                ..file("node_modules/big.js", b'0', &[1; 600], "")
            }],
        ),
        (
            "declared-size-past-end",
            vec![RawEntry {
                declared: 4096,
                ..file("node_modules/a.js", b'0', b"short", "")
            }],
        ),
    ];
    for (name, entries) in hostile {
        write(
            "deps-tar",
            &format!("hostile-{name}.tar"),
            &raw_tar(entries, true),
        );
    }
    let _ = Path::new("");
}
