//! Fuzz target `manifest`: a manifest as a worker receives it (postcard bytes from the master),
//! its validation ([`Manifest::validate`]) and the worker-path rules of `assets/paths.rs`
//! ([`Workplace::resolve`], [`Workplace::install`]). Whatever the bytes, nothing panics, and a
//! path that passes lands inside the workplace, outside `.queuexec/`, never through a symbolic
//! link. Corpus: `fuzz-corpus/manifest/`, postcard-encoded manifests.

use std::path::{Component, Path};

use proptest::prelude::*;

use super::{corpus, fuzz, mutations};
use crate::assets::{Manifest, ManifestEntry, Sha256, Workplace};
use crate::error::Error;

/// Worker paths built from the parts that break path rules: `..`, `.`, empty parts, both
/// separators, drives, `:`, NUL, dot-and-space names, the reserved folder in any case, and a
/// symbolic link the tests plant in the workplace.
pub(super) fn worker_path() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        4 => prop::sample::select(vec!["a", "lib", "task.js", "util.js", "é", "node_modules"])
            .prop_map(String::from),
        3 => prop::sample::select(vec!["..", ".", ""]).prop_map(String::from),
        2 => prop::sample::select(vec![
            ".queuexec", ".QueueXec", "link", "C:", "x:y", "...", ". .", "a\0b", "con", "a ",
        ])
        .prop_map(String::from),
        1 => "[a-z.]{1,4}",
    ];
    let separator = prop::sample::select(vec!["/", "\\", "//"]);
    let prefix = prop::sample::select(vec![
        "",
        "",
        "",
        "/",
        "\\",
        "\\\\server\\",
        "C:\\",
        "c:",
        "./",
    ]);
    (
        prefix,
        prop::collection::vec((part, separator), 1..6),
        prop::sample::select(vec!["", "", "/", "\\"]),
    )
        .prop_map(|(prefix, parts, suffix)| {
            let mut path = prefix.to_owned();
            for (index, (part, separator)) in parts.iter().enumerate() {
                if index > 0 {
                    path.push_str(separator);
                }
                path.push_str(part);
            }
            path.push_str(suffix);
            path
        })
}

fn entry(worker_path: String, content: &[u8]) -> ManifestEntry {
    ManifestEntry {
        name: worker_path.clone(),
        worker_path,
        sha256: Sha256::of(content),
        size: content.len() as u64,
    }
}

/// Manifests whose paths come from [`worker_path`].
pub(super) fn manifest_strategy() -> impl Strategy<Value = Manifest> {
    (
        prop::collection::vec(worker_path(), 0..5),
        prop::collection::vec("[a-z@.0-9-]{0,12}", 0..3),
        proptest::option::of(worker_path()),
    )
        .prop_map(|(paths, dependencies, bundle)| Manifest {
            files: paths.into_iter().map(|p| entry(p, b"content")).collect(),
            dependencies,
            dependency_bundle: bundle.map(|p| entry(p, b"bundle")),
        })
}

/// What must hold of any path `validate` accepted: resolving it stays inside `root`, outside
/// the reserved folder, with no `..` left.
fn accepted_path_is_safe(
    root: &Path,
    worker_path: &str,
    bundle: bool,
) -> Result<(), TestCaseError> {
    prop_assert!(
        lexically_inside(worker_path),
        "an accepted path breaks the worker-path rules: {worker_path:?}"
    );
    let workplace = Workplace::open(root).map_err(|e| TestCaseError::fail(e.to_string()))?;
    match workplace.resolve(worker_path) {
        Ok(resolved) => {
            let rest = resolved
                .strip_prefix(root)
                .map_err(|_| TestCaseError::fail(format!("{worker_path:?} left the workplace")))?;
            prop_assert!(
                rest.components().all(|c| matches!(c, Component::Normal(_))),
                "{worker_path:?} resolved to {}",
                resolved.display()
            );
            let first = rest
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().to_lowercase());
            prop_assert!(
                bundle || first.as_deref() != Some(".queuexec"),
                "{worker_path:?}"
            );
        }
        // Only the planted link may refuse a lexically valid path.
        Err(Error::AssetPath { reason, .. }) => {
            prop_assert!(
                reason.contains("symbolic link"),
                "{worker_path:?}: {reason}"
            )
        }
        Err(other) => return Err(TestCaseError::fail(format!("{worker_path:?}: {other:?}"))),
    }
    Ok(())
}

/// An oracle written apart from `assets/paths.rs`: the path is relative, has no NUL, no `:`,
/// no trailing separator, no part of only dots and spaces but `.` and `..`, and never climbs
/// above the workplace while it is read part by part.
fn lexically_inside(worker_path: &str) -> bool {
    if worker_path.is_empty()
        || worker_path.contains(['\0', ':'])
        || worker_path.starts_with(['/', '\\'])
        || worker_path.ends_with(['/', '\\'])
    {
        return false;
    }
    let mut depth: i64 = 0;
    for part in worker_path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ if part.chars().all(|c| c == '.' || c == ' ') => return false,
            _ => depth += 1,
        }
    }
    depth > 0
}

/// A workplace inside `outer`, with `link` planted in it pointing to a folder outside.
fn workplace_with_planted_link(outer: &Path) -> std::path::PathBuf {
    let root = outer.join("workplace");
    let outside = outer.join("outside");
    std::fs::create_dir_all(&root).expect("creating the workplace");
    std::fs::create_dir_all(&outside).expect("creating the outside folder");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, root.join("link")).expect("planting a symbolic link");
    root
}

/// Checks a decoded manifest end to end: validation, resolution, installation.
fn check_manifest(manifest: &Manifest) -> Result<(), TestCaseError> {
    let outer = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let root = workplace_with_planted_link(outer.path());
    let _ = manifest.bundle_hash();
    if manifest.validate().is_err() {
        return Ok(());
    }
    for entry in &manifest.files {
        accepted_path_is_safe(&root, &entry.worker_path, false)?;
    }
    if let Some(bundle) = &manifest.dependency_bundle {
        accepted_path_is_safe(&root, &bundle.worker_path, true)?;
    }
    let workplace = Workplace::open(&root).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let _ = workplace.needed(manifest);
    for entry in &manifest.files {
        // The content matches only the generated entries; others are refused on their hash.
        let _ = workplace.install(entry, b"content");
    }
    let escaped: Vec<_> = std::fs::read_dir(outer.path().join("outside"))
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .collect();
    prop_assert!(
        escaped.is_empty(),
        "a file landed outside the workplace: {escaped:?}"
    );
    Ok(())
}

#[test]
fn the_manifest_corpus_accepts_valid_manifests_and_refuses_hostile_paths() {
    for (name, bytes) in corpus("manifest") {
        let manifest: Manifest = postcard::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("manifest/{name} does not decode: {e}"));
        let verdict = manifest.validate();
        if name.starts_with("valid-") {
            assert!(verdict.is_ok(), "manifest/{name}: {verdict:?}");
        } else {
            assert!(
                matches!(verdict, Err(Error::AssetPath { .. })),
                "manifest/{name}: a hostile manifest passed: {verdict:?}"
            );
        }
        if let Err(failure) = check_manifest(&manifest) {
            panic!("manifest/{name}: {failure}");
        }
    }
}

#[test]
fn arbitrary_bytes_decode_to_a_manifest_or_fail_without_panicking() {
    fuzz(
        "manifest/arbitrary",
        prop::collection::vec(any::<u8>(), 0..512),
        |bytes| {
            if let Ok(manifest) = postcard::from_bytes::<Manifest>(&bytes) {
                check_manifest(&manifest)?;
            }
            Ok(())
        },
    );
}

#[test]
fn a_mutated_corpus_manifest_is_safe_whenever_it_is_accepted() {
    let seeds: Vec<Vec<u8>> = corpus("manifest")
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    fuzz(
        "manifest/mutated-corpus",
        (prop::sample::select(seeds), mutations(3)),
        |(seed, changes)| {
            let mut bytes = seed;
            for change in &changes {
                bytes = change.apply(&bytes);
            }
            if let Ok(manifest) = postcard::from_bytes::<Manifest>(&bytes) {
                check_manifest(&manifest)?;
            }
            Ok(())
        },
    );
}

#[test]
fn generated_hostile_worker_paths_never_escape_the_workplace() {
    fuzz("manifest/paths", manifest_strategy(), |manifest| {
        // Round trip through the wire encoding first, as a worker receives it.
        let bytes =
            postcard::to_stdvec(&manifest).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let decoded: Manifest =
            postcard::from_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&decoded, &manifest);
        check_manifest(&decoded)
    });
}
