//! The worker-path rules: the security boundary between a master's manifest and the worker's
//! disk. Every `workerPath` is checked here before anything is written: relative, no `..` that
//! climbs out, no NUL, no Windows drive, UNC or `:` forms, never through a symbolic link, and
//! never inside `.queuexec/` (queuexec's own folder). Nothing else in the crate decides where
//! a worker writes an asset.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The workplace folder queuexec keeps its own files in; no asset may be placed inside it.
const RESERVED_FOLDER: &str = ".queuexec";

/// Where `worker_path` lands inside the workplace `root`, if it may: the lexical rules of
/// [`normalize`], then every existing part of the path checked on disk, refusing symbolic
/// links (wherever they point), a file where a folder is needed and a folder where the file
/// goes. The rules are documented on [`Workplace::resolve`](super::Workplace::resolve).
pub(super) fn resolve_in(root: &Path, worker_path: &str) -> Result<PathBuf> {
    let parts = normalize(worker_path)?;
    let last = parts.len() - 1;
    let mut path = root.to_path_buf();
    let mut exists = true;
    for (index, part) in parts.iter().enumerate() {
        path.push(part);
        if !exists {
            continue;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refuse(
                    worker_path,
                    format!(
                        "{} is a symbolic link, and worker paths never go through symbolic \
                         links (so nothing can land outside the workplace); remove the link \
                         from the workplace or give the asset another workerPath",
                        path.display()
                    ),
                ));
            }
            Ok(meta) if index < last && !meta.is_dir() => {
                return Err(refuse(
                    worker_path,
                    format!(
                        "{} is a file, but this workerPath needs it to be a folder; remove \
                         it from the workplace or give the asset another workerPath",
                        path.display()
                    ),
                ));
            }
            Ok(meta) if index == last && meta.is_dir() => {
                return Err(refuse(
                    worker_path,
                    format!(
                        "{} is a folder, not a file; remove it from the workplace or give \
                         the asset another workerPath",
                        path.display()
                    ),
                ));
            }
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => exists = false,
            Err(error) => return Err(Error::io("inspecting", path, error)),
        }
    }
    Ok(path)
}

/// Creates the folders `parts` below the root one at a time, refusing any that turns out
/// to be a symbolic link or a file (even one that appeared since [`resolve_in`] looked).
/// Returns the innermost folder.
pub(super) fn create_folders_in(root: &Path, worker_path: &str, parts: &[&str]) -> Result<PathBuf> {
    let mut folder = root.to_path_buf();
    for part in parts {
        folder.push(part);
        match fs::create_dir(&folder) {
            Ok(()) => continue,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(Error::io("creating folder", folder, error)),
        }
        let meta = fs::symlink_metadata(&folder)
            .map_err(|error| Error::io("inspecting", &folder, error))?;
        if meta.file_type().is_symlink() || !meta.is_dir() {
            return Err(refuse(
                worker_path,
                format!(
                    "{} is not a plain folder (a symbolic link or a file); remove it from the \
                     workplace or give the asset another workerPath",
                    folder.display()
                ),
            ));
        }
    }
    Ok(folder)
}

fn refuse(worker_path: &str, reason: impl Into<String>) -> Error {
    Error::AssetPath {
        path: worker_path.to_owned(),
        reason: reason.into(),
    }
}

/// The lexical rules for a worker path. Returns its parts after normalisation (never empty).
pub(super) fn normalize(worker_path: &str) -> Result<Vec<&str>> {
    const USE: &str = "a workerPath is relative to the worker's workplace, such as \"task.js\" or \
                       \"lib/util.js\"";
    let bytes = worker_path.as_bytes();
    if worker_path.is_empty() {
        return Err(refuse(worker_path, format!("it is empty; {USE}")));
    }
    if worker_path.contains('\0') {
        return Err(refuse(
            worker_path,
            "it contains a NUL byte; remove it from the workerPath",
        ));
    }
    if bytes[0] == b'/' || bytes[0] == b'\\' {
        return Err(refuse(
            worker_path,
            format!("it is an absolute path; {USE}"),
        ));
    }
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(refuse(
            worker_path,
            format!(
                "it starts with a Windows drive (\"{}\"); {USE}",
                &worker_path[..2]
            ),
        ));
    }
    if worker_path.contains(':') {
        return Err(refuse(
            worker_path,
            "it contains ':', which Windows reads as a drive or an alternate data stream; \
             choose a workerPath without ':'",
        ));
    }
    if worker_path.ends_with(['/', '\\']) {
        return Err(refuse(
            worker_path,
            "it ends with a separator, so it names a folder, not a file; name the file itself, \
             such as \"lib/util.js\"",
        ));
    }

    let mut parts: Vec<&str> = Vec::new();
    for part in worker_path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(refuse(
                        worker_path,
                        format!("its \"..\" climbs out of the workplace; {USE}"),
                    ));
                }
            }
            // Windows drops trailing dots and spaces, so "..." or ". ." could act as "." or "..".
            _ if part.bytes().all(|b| b == b'.' || b == b' ') => {
                return Err(refuse(
                    worker_path,
                    format!(
                        "its part {part:?} is only dots and spaces, which Windows reads as \
                         \".\" or \"..\"; {USE}"
                    ),
                ));
            }
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(refuse(
            worker_path,
            format!("it names the workplace itself, not a file; {USE}"),
        ));
    }
    Ok(parts)
}

/// Refuses an asset inside `.queuexec/`, the folder queuexec keeps its own files in (the
/// dependency bundle and what is unpacked from it).
pub(super) fn check_not_reserved(given: &str, normalized: &str) -> Result<()> {
    let first = normalized.split('/').next().unwrap_or_default();
    if first.eq_ignore_ascii_case(RESERVED_FOLDER) {
        return Err(refuse(
            given,
            format!(
                "the folder {RESERVED_FOLDER:?} is reserved for queuexec's own files (the \
                 dependency bundle and its unpacked modules); choose another workerPath"
            ),
        ));
    }
    Ok(())
}

/// Refuses two paths that land on the same file (compared without case, as on Windows and
/// macOS) and a path that needs another's file to be a folder. `paths` holds
/// (as given, normalised) pairs.
pub(super) fn check_no_clashes(paths: &[(&str, String)]) -> Result<()> {
    let mut seen: HashMap<String, &str> = HashMap::with_capacity(paths.len());
    for (given, normalized) in paths {
        if let Some(other) = seen.insert(normalized.to_lowercase(), given) {
            return Err(refuse(
                given,
                format!(
                    "it lands on the same file as the asset with workerPath {other:?}; give each \
                     asset its own workerPath"
                ),
            ));
        }
    }
    for (given, normalized) in paths {
        let normalized = normalized.to_lowercase();
        for (index, _) in normalized.match_indices('/') {
            let folder = &normalized[..index];
            if let Some(other) = seen.get(folder) {
                return Err(refuse(
                    given,
                    format!(
                        "it needs {folder:?} to be a folder, but that is the file of the asset \
                         with workerPath {other:?}; give each asset its own workerPath"
                    ),
                ));
            }
        }
    }
    Ok(())
}
