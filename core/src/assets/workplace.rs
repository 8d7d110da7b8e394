//! The worker's side of the assets: the folder they land in ([`Workplace`]), which files a
//! manifest still needs (with a hash cache), and atomic installs. Where a file may land is
//! decided by the rules in `paths.rs`.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use sha2::Digest;

use super::{Manifest, ManifestEntry, Sha256, paths};
use crate::crypto;
use crate::error::{Error, Result};

/// A file's hash is cached only once its modification time is at least this old, so a file
/// rewritten within the file system's timestamp granularity is never taken for unchanged.
const HASH_CACHE_MIN_AGE: Duration = Duration::from_secs(2);

/// The worker's side: the folder assets land in. Nothing is ever written outside it.
#[derive(Debug)]
pub struct Workplace {
    /// Canonical: symlinks above the workplace are resolved once, here; below it none are
    /// followed.
    root: PathBuf,
    /// SHA-256 of files already read, keyed by path and checked against size and mtime, so
    /// [`needed`](Self::needed) does not re-read unchanged files on every manifest.
    pub(super) hash_cache: Mutex<HashMap<PathBuf, CachedHash>>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct CachedHash {
    size: u64,
    modified: SystemTime,
    sha256: Sha256,
}

impl Workplace {
    /// Opens the workplace at `root`, creating the folder (and its parents) if needed.
    ///
    /// # Errors
    /// [`Error::Io`] if the folder cannot be created or resolved.
    pub fn open(root: impl Into<PathBuf>) -> Result<Workplace> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|error| Error::io("creating the workplace", &root, error))?;
        let root = fs::canonicalize(&root)
            .map_err(|error| Error::io("resolving the workplace", &root, error))?;
        Ok(Workplace {
            root,
            hash_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The workplace folder (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `worker_path` lands inside the workplace, if it may.
    ///
    /// Accepted: a relative path (`/` or `\` between parts) that stays inside the workplace
    /// after lexical normalisation (`"a/../b"` is `"b"`). Refused: empty, absolute (`/x`,
    /// `\x`, `C:\x`, `C:x`, `\\server\share`), a `..` that climbs out (`"a/../../b"`), a NUL
    /// byte, a `:` anywhere, a trailing separator, and any existing part of the path that is a
    /// symbolic link — refused outright, wherever it points, which is the simple safe rule.
    ///
    /// # Errors
    /// [`Error::AssetPath`] with the path as given and the reason; [`Error::Io`] if an existing
    /// part of the path cannot be inspected.
    pub fn resolve(&self, worker_path: &str) -> Result<PathBuf> {
        paths::resolve_in(&self.root, worker_path)
    }

    /// The entries of `manifest` (files and the dependency bundle) that must be fetched: those
    /// whose file is missing here or whose size or SHA-256 differs.
    ///
    /// Every path is checked first; if one is bad, that error is returned and nothing else is
    /// looked at. Hashes of files already read are cached by (path, size, modification time).
    ///
    /// # Errors
    /// [`Error::AssetPath`] for a bad path; [`Error::Io`] if an existing file cannot be read.
    pub fn needed(&self, manifest: &Manifest) -> Result<Vec<ManifestEntry>> {
        manifest.validate()?;
        let resolved = manifest
            .entries()
            .map(|entry| Ok((entry, self.resolve(&entry.worker_path)?)))
            .collect::<Result<Vec<_>>>()?;

        let mut cache = self
            .hash_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut needed = Vec::new();
        for (entry, path) in &resolved {
            if !is_current(&mut cache, entry, path)? {
                needed.push((*entry).clone());
            }
        }
        // Forget files the master no longer ships, so the cache stays as small as the manifest.
        cache.retain(|path, _| resolved.iter().any(|(_, wanted)| wanted == path));
        Ok(needed)
    }

    /// Installs one file: checks `content` against the entry's size and SHA-256, checks the
    /// path, creates missing parent folders (inside the workplace only), writes a temporary
    /// file in the target's folder and renames it over the target, so a reader sees the old
    /// file or the new one, never a partial one. Returns where the file landed.
    ///
    /// # Errors
    /// [`Error::AssetHash`] if the content does not match (nothing is written);
    /// [`Error::AssetPath`] for a bad path (nothing is written); [`Error::Io`] if writing fails
    /// (the temporary file is removed).
    pub fn install(&self, entry: &ManifestEntry, content: &[u8]) -> Result<PathBuf> {
        let actual = Sha256::of(content);
        if content.len() as u64 != entry.size || actual != entry.sha256 {
            return Err(Error::AssetHash {
                name: entry.name.clone(),
                expected: entry.sha256.to_string(),
                actual: actual.to_string(),
            });
        }
        let target = self.resolve(&entry.worker_path)?;
        let parts = paths::normalize(&entry.worker_path)?;
        let folder =
            paths::create_folders_in(&self.root, &entry.worker_path, &parts[..parts.len() - 1])?;

        let temporary = folder.join(format!(
            ".queuexec-{}.tmp",
            hex::encode(crypto::random_bytes::<8>())
        ));
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(content)?;
                file.sync_all()
            });
        if let Err(error) = written {
            let _ = fs::remove_file(&temporary);
            return Err(Error::io("writing", temporary, error));
        }
        if let Err(error) = fs::rename(&temporary, &target) {
            let _ = fs::remove_file(&temporary);
            return Err(Error::io("installing", target, error));
        }
        self.hash_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&target);
        Ok(target)
    }
}

/// Whether the file at `path` (already resolved) has the entry's size and SHA-256.
fn is_current(
    cache: &mut HashMap<PathBuf, CachedHash>,
    entry: &ManifestEntry,
    path: &Path,
) -> Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(Error::io("inspecting", path, error)),
    };
    if !meta.is_file() || meta.len() != entry.size {
        return Ok(false);
    }
    let modified = meta.modified().ok();
    if let Some(modified) = modified
        && let Some(cached) = cache.get(path)
        && cached.size == meta.len()
        && cached.modified == modified
    {
        return Ok(cached.sha256 == entry.sha256);
    }

    let sha256 = hash_file(path)?;
    if let Some(modified) = modified
        && SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age >= HASH_CACHE_MIN_AGE)
    {
        cache.insert(
            path.to_path_buf(),
            CachedHash {
                size: meta.len(),
                modified,
                sha256,
            },
        );
    } else {
        cache.remove(path);
    }
    Ok(sha256 == entry.sha256)
}

/// SHA-256 of a file, read in chunks (the dependency bundle may be large).
fn hash_file(path: &Path) -> Result<Sha256> {
    let read = || -> io::Result<Sha256> {
        let mut file = fs::File::open(path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buffer[..n]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(Sha256(hasher.finalize().into()))
    };
    read().map_err(|error| Error::io("reading", path, error))
}
