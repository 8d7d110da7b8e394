//! Fuzz target `deps-tar`: a hostile dependency bundle through
//! [`unpack_dependency_bundle`], as a worker unpacks what a master shipped. Whatever the
//! archive holds — symbolic and hard links, `..`, absolute paths, device files and FIFOs,
//! sparse files, PAX and GNU long names that rename an entry, sizes that lie — nothing panics,
//! nothing lands outside the workplace, no link or special file is created, and a refused
//! bundle leaves no half-unpacked folder. Corpus: `fuzz-corpus/deps-tar/`.

use std::path::Path;

use proptest::prelude::*;

use super::{corpus, fuzz, mutations};
use crate::assets::{ManifestEntry, Sha256, Workplace};
use crate::deps::unpack_dependency_bundle;
use crate::error::Error;

/// One tar entry written byte for byte, as a hostile packer would (no `tar::Builder` checks).
#[derive(Debug, Clone)]
pub(super) struct RawEntry {
    pub(super) path: String,
    pub(super) kind: u8,
    /// The size the header claims; the data that follows may be shorter or longer.
    pub(super) declared: u64,
    pub(super) data: Vec<u8>,
    pub(super) link: String,
}

/// The archive bytes of `entries`, closed by the two zero blocks when `terminated`.
pub(super) fn raw_tar(entries: &[RawEntry], terminated: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::new(entry.kind));
        header.set_size(entry.declared);
        header.set_mode(0o644);
        header.set_mtime(0);
        {
            let old = header.as_old_mut();
            let path = entry.path.as_bytes();
            let n = path.len().min(old.name.len());
            old.name[..n].copy_from_slice(&path[..n]);
            let link = entry.link.as_bytes();
            let n = link.len().min(old.linkname.len());
            old.linkname[..n].copy_from_slice(&link[..n]);
        }
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&entry.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    if terminated {
        out.resize(out.len() + 1024, 0);
    }
    out
}

/// A PAX record `path=<path>` (or another key), with its self-counting length.
pub(super) fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn entry_path() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        4 => Just(".."),
        3 => prop::sample::select(vec!["a", "index.js", "node_modules", "evil.js"]),
        1 => prop::sample::select(vec![".", "", "etc", "passwd", ".bin", "outside", "secret"]),
    ];
    // Mostly under node_modules/ (the one accepted root), so entries get past the first check
    // and the `..` that follow (up to eight, enough to climb out of the staging folder) are
    // what is tested.
    let first = prop_oneof![
        6 => Just("node_modules/"),
        // Absolute paths point into the test's own `outside` folder (see `check_unpack`), so an
        // unpacker that regressed writes there and is caught, not somewhere on the machine.
        1 => prop::sample::select(vec!["", "{outside}/", "./", "../"]),
    ];
    (
        first,
        prop::collection::vec(part, 1..10),
        prop::sample::select(vec!["", "", "/"]),
    )
        .prop_map(|(first, mut parts, suffix)| {
            if first.starts_with("{outside}") {
                // An absolute path with `..` could climb out of the test's folder.
                parts.retain(|part| *part != "..");
            }
            format!("{first}{}{suffix}", parts.join("/"))
        })
}

fn raw_entry() -> impl Strategy<Value = RawEntry> {
    let kind = prop::sample::select(vec![
        b'0', b'0', b'0', b'5', b'5', b'1', b'2', b'3', b'4', b'6', b'7', b'S', b'x', b'g', b'L',
        b'K', b'V', b'M', b'N', 0u8, b'Z',
    ]);
    let link = prop::sample::select(vec![
        "",
        "/etc/passwd",
        "../../outside/secret",
        "node_modules/a",
    ]);
    (
        entry_path(),
        kind,
        prop::collection::vec(any::<u8>(), 0..700),
        prop_oneof![
            Just(None),
            Just(Some(0u64)),
            Just(Some(1u64 << 40)),
            Just(Some(u64::MAX >> 1)),
            (0u64..2048).prop_map(Some)
        ],
        link,
        entry_path(),
    )
        .prop_map(|(path, kind, data, lie, link, pax_path)| {
            // PAX and GNU long-name entries carry the next entry's real name in their data.
            let data = match kind {
                b'x' | b'g' => pax_record("path", &pax_path),
                b'L' | b'K' => format!("{pax_path}\0").into_bytes(),
                _ => data,
            };
            RawEntry {
                declared: lie.unwrap_or(data.len() as u64),
                path,
                kind,
                data,
                link: link.to_owned(),
            }
        })
}

/// Replaces the `{outside}` placeholder in an entry's path, link and PAX or GNU long name.
fn aim_at(entry: &mut RawEntry, outside: &str) {
    entry.path = entry.path.replace("{outside}", outside);
    entry.link = entry.link.replace("{outside}", outside);
    let text = String::from_utf8_lossy(&entry.data).into_owned();
    if !text.contains("{outside}") {
        return;
    }
    let declared_whole = entry.declared == entry.data.len() as u64;
    entry.data = match entry.kind {
        b'x' | b'g' => match text.split_once(" path=") {
            Some((_, value)) => pax_record(
                "path",
                &value.trim_end_matches('\n').replace("{outside}", outside),
            ),
            None => entry.data.clone(),
        },
        _ => text.replace("{outside}", outside).into_bytes(),
    };
    if declared_whole {
        entry.declared = entry.data.len() as u64;
    }
}

/// Folders between the test's temporary folder and the workplace: deeper than any run of `..`
/// the generator makes can climb from the unpacking folder, so a regressed unpacker writes
/// inside the test's folder, where it is caught, never elsewhere on the machine.
const PADDING: usize = 12;

/// What must hold after any unpack attempt, successful or not. `bundle` builds the archive
/// given the absolute path of a folder outside the workplace (generated entries aim at it).
fn check_unpack(bundle: impl FnOnce(&str) -> Vec<u8>) -> Result<(), TestCaseError> {
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    let outer = tempfile::tempdir().map_err(|e| fail(&e))?;
    let outside = outer.path().join("outside");
    std::fs::create_dir(&outside).map_err(|e| fail(&e))?;
    std::fs::write(outside.join("secret"), b"secret").map_err(|e| fail(&e))?;
    let mut root = outer.path().to_path_buf();
    for _ in 0..PADDING {
        root.push("p");
    }
    root.push("workplace");
    std::fs::create_dir_all(&root).map_err(|e| fail(&e))?;
    let bundle = bundle(&outside.to_string_lossy());
    let workplace = Workplace::open(&root).map_err(|e| fail(&e))?;
    let entry = ManifestEntry {
        name: "dependencies.tar".into(),
        worker_path: crate::assets::DEPENDENCY_BUNDLE_PATH.into(),
        sha256: Sha256::of(&bundle),
        size: bundle.len() as u64,
    };
    workplace.install(&entry, &bundle).map_err(|e| fail(&e))?;

    let outcome = unpack_dependency_bundle(&workplace, &entry);
    match &outcome {
        Ok(node_modules) => {
            prop_assert!(
                node_modules.starts_with(&root) && node_modules.is_dir(),
                "{node_modules:?}"
            )
        }
        Err(Error::Dependencies(..) | Error::Io { .. }) => {}
        Err(other) => {
            return Err(TestCaseError::fail(format!(
                "unexpected error kind: {other:?}"
            )));
        }
    }
    // Nothing outside the workplace changed: each padding folder holds only the next one.
    let mut dir = outer.path().to_path_buf();
    for level in 0..=PADDING {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| fail(&e))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| fail(&e))?;
        names.sort();
        let expected: &[&str] = match level {
            0 => &["outside", "p"],
            PADDING => &["workplace"],
            _ => &["p"],
        };
        prop_assert_eq!(
            &names,
            expected,
            "something appeared outside the workplace, in {}",
            dir.display()
        );
        dir.push(if level == PADDING { "workplace" } else { "p" });
    }
    let outside_names: Vec<_> = std::fs::read_dir(&outside).map_err(|e| fail(&e))?.collect();
    prop_assert_eq!(outside_names.len(), 1);
    prop_assert_eq!(
        std::fs::read(outside.join("secret")).map_err(|e| fail(&e))?,
        b"secret".to_vec()
    );
    // Inside: only plain folders and plain files, no links (hard or symbolic), no leftovers.
    check_tree(&root)
}

fn check_tree(dir: &Path) -> Result<(), TestCaseError> {
    for entry in std::fs::read_dir(dir).map_err(|e| TestCaseError::fail(e.to_string()))? {
        let entry = entry.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = entry.path();
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        prop_assert!(
            !name.starts_with(".unpacking-"),
            "a refused bundle left {}",
            path.display()
        );
        if meta.is_dir() {
            check_tree(&path)?;
        } else {
            prop_assert!(
                meta.file_type().is_file(),
                "not a plain file: {}",
                path.display()
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                prop_assert_eq!(meta.nlink(), 1, "a hard link: {}", path.display());
            }
        }
    }
    Ok(())
}

#[test]
fn the_tar_corpus_unpacks_valid_bundles_and_refuses_hostile_ones() {
    for (name, bundle) in corpus("deps-tar") {
        if let Err(failure) = check_unpack(|_| bundle.clone()) {
            panic!("deps-tar/{name}: {failure}");
        }
        // Unpacked again in a fresh workplace to see the verdict itself.
        let dir = tempfile::tempdir().expect("tempdir");
        let workplace = Workplace::open(dir.path()).expect("workplace");
        let entry = ManifestEntry {
            name: "dependencies.tar".into(),
            worker_path: crate::assets::DEPENDENCY_BUNDLE_PATH.into(),
            sha256: Sha256::of(&bundle),
            size: bundle.len() as u64,
        };
        workplace
            .install(&entry, &bundle)
            .expect("install the bundle file");
        let outcome = unpack_dependency_bundle(&workplace, &entry);
        if name.starts_with("valid-") {
            let node_modules = outcome.unwrap_or_else(|e| panic!("deps-tar/{name}: {e}"));
            assert!(
                std::fs::read_dir(&node_modules)
                    .expect("node_modules")
                    .count()
                    > 0,
                "deps-tar/{name}: nothing was unpacked"
            );
        } else {
            assert!(
                outcome.is_err(),
                "deps-tar/{name}: a hostile bundle was accepted"
            );
        }
    }
    let probe = Path::new(super::corpus::ESCAPE_PROBE);
    let escaped = probe.exists();
    if let Some(folder) = probe.parent().filter(|_| escaped) {
        // Ours by its name: clean it up before failing.
        let _ = std::fs::remove_dir_all(folder);
    }
    assert!(!escaped, "a hostile bundle wrote {}", probe.display());
}

#[test]
fn generated_hostile_tars_never_write_outside_or_create_links() {
    let strategy = (
        prop::collection::vec(raw_entry(), 1..6),
        any::<bool>(),
        any::<bool>(),
    );
    fuzz(
        "deps-tar/generated",
        strategy,
        |(mut entries, folders_first, terminated)| {
            if folders_first {
                // Real bundles start with their folders, so links and files have a parent to land in.
                let folder = |path: &str| RawEntry {
                    path: path.into(),
                    kind: b'5',
                    declared: 0,
                    data: Vec::new(),
                    link: String::new(),
                };
                entries.splice(0..0, [folder("node_modules/"), folder("node_modules/a/")]);
            }
            check_unpack(|outside| {
                for entry in &mut entries {
                    aim_at(entry, outside);
                }
                raw_tar(&entries, terminated)
            })
        },
    );
}

#[test]
fn a_mutated_corpus_tar_never_writes_outside_or_creates_links() {
    let seeds: Vec<Vec<u8>> = corpus("deps-tar")
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    fuzz(
        "deps-tar/mutated-corpus",
        (prop::sample::select(seeds), mutations(4)),
        |(seed, changes)| {
            let mut bundle = seed;
            for change in &changes {
                bundle = change.apply(&bundle);
            }
            check_unpack(|_| bundle)
        },
    );
}
