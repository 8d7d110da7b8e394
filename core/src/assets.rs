//! The files a master ships with its jobs, and their safe placement on a worker.
//!
//! - [`AssetSpec`]: what a master user names (queue-xec's `execAssets.files` entry).
//! - [`AssetSet`]: the master's side — the files read, hashed and held in memory, with their
//!   [`Manifest`] and [`BundleHash`].
//! - [`Workplace`]: the worker's side — the folder assets land in. Every `workerPath` from a
//!   manifest is checked before anything is written: relative, no escaping `..`, no NUL, no
//!   Windows drive or UNC forms, and never through a symbolic link.
//!
//! Worker paths use `/` (a `\` is read as a separator too, so a manifest means the same on
//! every platform). The master normalises them ("./lib//a.js" becomes "lib/a.js") before they
//! enter its manifest, so the bundle hash does not depend on how a path was spelled.
//!
//! All of this is blocking file I/O and hashing: call it off the network task.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest;

use crate::crypto;
use crate::error::{Error, Result};

/// The name of the dependency bundle's manifest entry.
pub(crate) const DEPENDENCY_BUNDLE_NAME: &str = "dependencies.tar";
/// Where the dependency bundle lands in a workplace. Reserved: no asset may use it.
pub(crate) const DEPENDENCY_BUNDLE_PATH: &str = ".queuexec/dependencies.tar";
/// The workplace folder queuexec keeps its own files in; no asset may be placed inside it.
const RESERVED_FOLDER: &str = ".queuexec";

/// A file's hash is cached only once its modification time is at least this old, so a file
/// rewritten within the file system's timestamp granularity is never taken for unchanged.
const HASH_CACHE_MIN_AGE: Duration = Duration::from_secs(2);

macro_rules! hex_digest {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in &self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.collect_str(self)
                } else {
                    self.0.serialize(serializer)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                    let mut bytes = [0u8; 32];
                    hex::decode_to_slice(text.as_bytes(), &mut bytes).map_err(|error| {
                        serde::de::Error::custom(format_args!(
                            "expected a SHA-256 as 64 hex digits: {error}"
                        ))
                    })?;
                    Ok($name(bytes))
                } else {
                    <[u8; 32]>::deserialize(deserializer).map($name)
                }
            }
        }
    };
}

hex_digest! {
    /// The SHA-256 of a file's content.
    ///
    /// Shown (`Display` and `Debug`) as 64 lowercase hex digits. Serialised as that hex
    /// string in human-readable formats (JSON) and as the 32 raw bytes in binary formats
    /// (postcard, on the wire).
    Sha256
}

hex_digest! {
    /// The hash of a whole [`Manifest`] (see [`Manifest::bundle_hash`]): master and worker
    /// compare it to know whether the worker has the right files.
    ///
    /// Shown as 64 lowercase hex digits; serialised like [`Sha256`].
    BundleHash
}

impl Sha256 {
    fn of(bytes: &[u8]) -> Sha256 {
        Sha256(crypto::sha256(bytes))
    }
}

/// One file a master ships, as its user names it (queue-xec's `execAssets.files` entry).
#[derive(Clone, Debug)]
pub struct AssetSpec {
    /// A name for the file, used in messages (queue-xec's `name`).
    pub name: String,
    /// Where the file is on the master (`masterPath`): relative to the base directory given
    /// to [`AssetSet::load`], unless absolute.
    pub master_path: PathBuf,
    /// Where the file goes inside the worker's workplace (`workerPath`): relative, with `/`.
    pub worker_path: String,
}

/// One file of a [`Manifest`]: where it goes, and what it must hash to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The asset's name, used in messages.
    pub name: String,
    /// Where the file goes inside the worker's workplace, relative, with `/`.
    pub worker_path: String,
    /// The SHA-256 of the file's content.
    pub sha256: Sha256,
    /// The file's size in bytes.
    pub size: u64,
}

/// Everything a worker needs besides the jobs: the files, the npm dependency list, and the
/// dependency bundle when there is one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The files (task.js and whatever it reads).
    pub files: Vec<ManifestEntry>,
    /// The npm dependencies, as the master user listed them (e.g. `"lodash@4"`).
    pub dependencies: Vec<String>,
    /// The packed dependencies, when the master built them.
    pub dependency_bundle: Option<ManifestEntry>,
}

impl Manifest {
    /// The bundle hash: SHA-256 over a canonical, length-prefixed encoding of the file
    /// entries sorted by `worker_path`, the sorted and de-duplicated dependency list, and the
    /// dependency bundle entry.
    ///
    /// It changes exactly when some file's content, size, path or name, a dependency or the
    /// dependency bundle changes, and does not depend on the order files or dependencies were
    /// listed in. Every field is length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
    pub fn bundle_hash(&self) -> BundleHash {
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"queuexec/bundle-hash/v1");

        let mut files: Vec<&ManifestEntry> = self.files.iter().collect();
        files.sort_unstable_by(|a, b| {
            (&a.worker_path, &a.name, &a.sha256, a.size).cmp(&(
                &b.worker_path,
                &b.name,
                &b.sha256,
                b.size,
            ))
        });
        hash_len(&mut hasher, files.len());
        for entry in files {
            hash_entry(&mut hasher, entry);
        }

        let mut dependencies: Vec<&str> = self.dependencies.iter().map(String::as_str).collect();
        dependencies.sort_unstable();
        dependencies.dedup();
        hash_len(&mut hasher, dependencies.len());
        for dependency in dependencies {
            hash_field(&mut hasher, dependency.as_bytes());
        }

        match &self.dependency_bundle {
            None => hasher.update([0u8]),
            Some(entry) => {
                hasher.update([1u8]);
                hash_entry(&mut hasher, entry);
            }
        }
        BundleHash(hasher.finalize().into())
    }

    /// Checks every `worker_path` (files and the dependency bundle) with the rules of
    /// [`Workplace::resolve`], lexically (no file system access); that no file is placed in
    /// `.queuexec/`, the folder reserved for the dependency bundle and what is unpacked from
    /// it; and that no two entries land on the same file or need one another's file to be a
    /// folder.
    ///
    /// # Errors
    /// [`Error::AssetPath`] naming the first bad path.
    pub fn validate(&self) -> Result<()> {
        let mut paths = Vec::with_capacity(self.files.len() + 1);
        for entry in &self.files {
            let normalized = normalize(&entry.worker_path)?.join("/");
            check_not_reserved(&entry.worker_path, &normalized)?;
            paths.push((entry.worker_path.as_str(), normalized));
        }
        if let Some(bundle) = &self.dependency_bundle {
            paths.push((
                bundle.worker_path.as_str(),
                normalize(&bundle.worker_path)?.join("/"),
            ));
        }
        check_no_clashes(&paths)
    }

    /// The files, then the dependency bundle.
    fn entries(&self) -> impl Iterator<Item = &ManifestEntry> {
        self.files.iter().chain(self.dependency_bundle.as_ref())
    }
}

fn hash_len(hasher: &mut sha2::Sha256, len: usize) {
    hasher.update((len as u64).to_be_bytes());
}

fn hash_field(hasher: &mut sha2::Sha256, bytes: &[u8]) {
    hash_len(hasher, bytes.len());
    hasher.update(bytes);
}

fn hash_entry(hasher: &mut sha2::Sha256, entry: &ManifestEntry) {
    hash_field(hasher, entry.name.as_bytes());
    hash_field(hasher, entry.worker_path.as_bytes());
    hasher.update(entry.sha256.0);
    hasher.update(entry.size.to_be_bytes());
}

/// The master's side: the files it ships, read, hashed and held in memory (task files are
/// small), with their manifest and bundle hash.
pub struct AssetSet {
    specs: Vec<AssetSpec>,
    base_dir: PathBuf,
    manifest: Manifest,
    /// Contents of `manifest.files`, index for index.
    file_contents: Vec<Bytes>,
    bundle_content: Option<Bytes>,
    by_hash: HashMap<Sha256, Bytes>,
    bundle_hash: BundleHash,
}

impl AssetSet {
    /// Reads and hashes each file. A `master_path` is relative to `base_dir` unless it is
    /// absolute. Worker paths are checked like [`Workplace::resolve`] does and normalised
    /// (`"./lib//a.js"` becomes `"lib/a.js"`), so the master never announces a path a worker
    /// would refuse.
    ///
    /// # Errors
    /// - [`Error::AssetPath`] for a bad worker path, two assets with the same worker path
    ///   (compared without case, as Windows and macOS workers would), one asset's path inside
    ///   another's, or a path in `.queuexec/` (reserved for the dependency bundle);
    /// - [`Error::Io`] naming the file that is missing or unreadable.
    pub fn load(
        specs: &[AssetSpec],
        base_dir: &Path,
        dependencies: Vec<String>,
    ) -> Result<AssetSet> {
        let (files, file_contents) = read_files(specs, base_dir)?;
        let mut set = AssetSet {
            specs: specs.to_vec(),
            base_dir: base_dir.to_path_buf(),
            manifest: Manifest {
                files,
                dependencies,
                dependency_bundle: None,
            },
            file_contents,
            bundle_content: None,
            by_hash: HashMap::new(),
            bundle_hash: BundleHash([0; 32]),
        };
        set.refresh();
        Ok(set)
    }

    /// The manifest workers compare against.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest's bundle hash, computed when the set last changed.
    pub fn bundle_hash(&self) -> BundleHash {
        self.bundle_hash
    }

    /// The content of a file or of the dependency bundle, by its SHA-256 (a cheap clone of
    /// the bytes held in memory).
    pub fn content(&self, sha256: &Sha256) -> Option<Bytes> {
        self.by_hash.get(sha256).cloned()
    }

    /// Adds, or replaces, the dependency bundle (built by [`crate::deps`]): its entry is named
    /// `dependencies.tar` and lands at `.queuexec/dependencies.tar` in the workplace.
    pub fn set_dependency_bundle(&mut self, bundle: Bytes) {
        self.manifest.dependency_bundle = Some(ManifestEntry {
            name: DEPENDENCY_BUNDLE_NAME.to_owned(),
            worker_path: DEPENDENCY_BUNDLE_PATH.to_owned(),
            sha256: Sha256::of(&bundle),
            size: bundle.len() as u64,
        });
        self.bundle_content = Some(bundle);
        self.refresh();
    }

    /// Reads the files again (same specs, same base directory), for when task.js changes on
    /// the master. Returns whether the bundle hash changed.
    ///
    /// # Errors
    /// As [`load`](Self::load); on error the set is left as it was.
    pub fn reload(&mut self) -> Result<bool> {
        let (files, file_contents) = read_files(&self.specs, &self.base_dir)?;
        let before = self.bundle_hash;
        self.manifest.files = files;
        self.file_contents = file_contents;
        self.refresh();
        Ok(self.bundle_hash != before)
    }

    fn refresh(&mut self) {
        self.by_hash.clear();
        for (entry, content) in self.manifest.files.iter().zip(&self.file_contents) {
            self.by_hash.insert(entry.sha256, content.clone());
        }
        if let (Some(entry), Some(content)) =
            (&self.manifest.dependency_bundle, &self.bundle_content)
        {
            self.by_hash.insert(entry.sha256, content.clone());
        }
        self.bundle_hash = self.manifest.bundle_hash();
    }
}

impl fmt::Debug for AssetSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssetSet")
            .field("base_dir", &self.base_dir)
            .field("bundle_hash", &self.bundle_hash)
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}

/// Checks every spec's worker path (all before reading anything), then reads and hashes
/// the files.
fn read_files(specs: &[AssetSpec], base_dir: &Path) -> Result<(Vec<ManifestEntry>, Vec<Bytes>)> {
    let mut paths = Vec::with_capacity(specs.len());
    for spec in specs {
        let normalized = normalize(&spec.worker_path)?.join("/");
        check_not_reserved(&spec.worker_path, &normalized)?;
        paths.push((spec.worker_path.as_str(), normalized));
    }
    check_no_clashes(&paths)?;

    let mut entries = Vec::with_capacity(specs.len());
    let mut contents = Vec::with_capacity(specs.len());
    for (spec, (_, worker_path)) in specs.iter().zip(paths) {
        let path = base_dir.join(&spec.master_path);
        let content = fs::read(&path)
            .map(Bytes::from)
            .map_err(|error| Error::io("reading asset file", path, error))?;
        entries.push(ManifestEntry {
            name: spec.name.clone(),
            worker_path,
            sha256: Sha256::of(&content),
            size: content.len() as u64,
        });
        contents.push(content);
    }
    Ok((entries, contents))
}

/// The worker's side: the folder assets land in. Nothing is ever written outside it.
#[derive(Debug)]
pub struct Workplace {
    /// Canonical: symlinks above the workplace are resolved once, here; below it none are
    /// followed.
    root: PathBuf,
    /// SHA-256 of files already read, keyed by path and checked against size and mtime, so
    /// [`needed`](Self::needed) does not re-read unchanged files on every manifest.
    hash_cache: Mutex<HashMap<PathBuf, CachedHash>>,
}

#[derive(Clone, Copy, Debug)]
struct CachedHash {
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
        let parts = normalize(worker_path)?;
        let last = parts.len() - 1;
        let mut path = self.root.clone();
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
        let parts = normalize(&entry.worker_path)?;
        let folder = self.create_folders(&entry.worker_path, &parts[..parts.len() - 1])?;

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

    /// Creates the folders `parts` below the root one at a time, refusing any that turns out
    /// to be a symbolic link or a file (even one that appeared since [`resolve`](Self::resolve)
    /// looked). Returns the innermost folder.
    fn create_folders(&self, worker_path: &str, parts: &[&str]) -> Result<PathBuf> {
        let mut folder = self.root.clone();
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

fn refuse(worker_path: &str, reason: impl Into<String>) -> Error {
    Error::AssetPath {
        path: worker_path.to_owned(),
        reason: reason.into(),
    }
}

/// The lexical rules for a worker path. Returns its parts after normalisation (never empty).
fn normalize(worker_path: &str) -> Result<Vec<&str>> {
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
fn check_not_reserved(given: &str, normalized: &str) -> Result<()> {
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
fn check_no_clashes(paths: &[(&str, String)]) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn entry(name: &str, worker_path: &str, content: &[u8]) -> ManifestEntry {
        ManifestEntry {
            name: name.to_owned(),
            worker_path: worker_path.to_owned(),
            sha256: Sha256::of(content),
            size: content.len() as u64,
        }
    }

    fn manifest(files: Vec<ManifestEntry>, dependencies: &[&str]) -> Manifest {
        Manifest {
            files,
            dependencies: dependencies.iter().map(|d| (*d).to_owned()).collect(),
            dependency_bundle: None,
        }
    }

    /// Every path under `dir` (not following links), sorted: to assert nothing was written.
    fn snapshot(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(folder) = stack.pop() {
            for item in fs::read_dir(&folder).expect("read_dir") {
                let path = item.expect("entry").path();
                let meta = fs::symlink_metadata(&path).expect("metadata");
                if meta.is_dir() {
                    stack.push(path.clone());
                }
                found.push(path);
            }
        }
        found.sort();
        found
    }

    fn spec(name: &str, master_path: &str, worker_path: &str) -> AssetSpec {
        AssetSpec {
            name: name.to_owned(),
            master_path: master_path.into(),
            worker_path: worker_path.to_owned(),
        }
    }

    fn assert_path_refused(result: Result<impl fmt::Debug>, worker_path: &str) -> String {
        match result {
            Err(Error::AssetPath { path, reason }) => {
                assert_eq!(path, worker_path);
                let message = Error::AssetPath {
                    path: path.clone(),
                    reason: reason.clone(),
                }
                .to_string();
                assert!(message.contains(&format!("{worker_path:?}")), "{message}");
                reason
            }
            other => panic!("{worker_path:?}: expected Error::AssetPath, got {other:?}"),
        }
    }

    #[test]
    fn sha256_shows_and_serialises_as_hex_in_json_and_bytes_in_postcard() {
        let hash = Sha256::of(b"abc");
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hash.to_string(), hex);
        assert_eq!(format!("{hash:?}"), hex);
        assert_eq!(
            serde_json::to_string(&hash).expect("json"),
            format!("\"{hex}\"")
        );
        let back: Sha256 = serde_json::from_str(&format!("\"{hex}\"")).expect("json");
        assert_eq!(back, hash);
        assert!(serde_json::from_str::<Sha256>("\"abc\"").is_err());
        assert!(serde_json::from_str::<Sha256>(&format!("\"{}\"", "zz".repeat(32))).is_err());

        let bytes = postcard::to_stdvec(&hash).expect("postcard");
        assert_eq!(bytes, hash.0);
        assert_eq!(
            postcard::from_bytes::<Sha256>(&bytes).expect("postcard"),
            hash
        );

        let manifest = Manifest {
            files: vec![entry("task", "task.js", b"x")],
            dependencies: vec!["lodash@4".to_owned()],
            dependency_bundle: Some(entry("dependencies.tar", DEPENDENCY_BUNDLE_PATH, b"tar")),
        };
        let json = serde_json::to_string(&manifest).expect("json");
        assert_eq!(
            serde_json::from_str::<Manifest>(&json).expect("json"),
            manifest
        );
        let wire = postcard::to_stdvec(&manifest).expect("postcard");
        assert_eq!(
            postcard::from_bytes::<Manifest>(&wire).expect("postcard"),
            manifest
        );
        assert_eq!(
            BundleHash([0xab; 32]).to_string(),
            "ab".repeat(32),
            "bundle hash shows as hex"
        );
    }

    #[test]
    fn bundle_hash_ignores_order_of_files_and_dependencies() {
        let a = entry("task", "task.js", b"module.exports = 1");
        let b = entry("util", "lib/util.js", b"exports.x = 2");
        let c = entry("data", "data.json", b"{}");
        let one = manifest(
            vec![a.clone(), b.clone(), c.clone()],
            &["lodash@4", "axios"],
        );
        let two = manifest(vec![c, a, b], &["axios", "lodash@4", "axios"]);
        assert_eq!(one.bundle_hash(), two.bundle_hash());
        assert_eq!(
            Manifest::default().bundle_hash(),
            Manifest::default().bundle_hash()
        );
    }

    #[test]
    fn bundle_hash_changes_with_content_path_name_dependencies_and_bundle() {
        let base = manifest(
            vec![
                entry("task", "task.js", b"module.exports = 1"),
                entry("u", "u.js", b"u"),
            ],
            &["lodash@4"],
        );
        let hash = base.bundle_hash();

        let mut changed = base.clone();
        changed.files[0] = entry("task", "task.js", b"module.exports = 2");
        assert_ne!(changed.bundle_hash(), hash, "one byte of content");

        let mut changed = base.clone();
        changed.files[0].worker_path = "task2.js".to_owned();
        assert_ne!(changed.bundle_hash(), hash, "worker path");

        let mut changed = base.clone();
        changed.files[0].name = "main".to_owned();
        assert_ne!(changed.bundle_hash(), hash, "name");

        let mut changed = base.clone();
        changed.files[0].size += 1;
        assert_ne!(changed.bundle_hash(), hash, "size");

        let mut changed = base.clone();
        changed.dependencies.push("axios".to_owned());
        assert_ne!(changed.bundle_hash(), hash, "dependency added");

        let mut changed = base.clone();
        changed.dependencies[0] = "lodash@5".to_owned();
        assert_ne!(changed.bundle_hash(), hash, "dependency changed");

        let mut changed = base.clone();
        changed.files.pop();
        assert_ne!(changed.bundle_hash(), hash, "file removed");

        let mut changed = base.clone();
        changed.dependency_bundle = Some(entry("dependencies.tar", DEPENDENCY_BUNDLE_PATH, b""));
        assert_ne!(changed.bundle_hash(), hash, "dependency bundle added");
    }

    #[test]
    fn bundle_hash_fields_are_length_prefixed() {
        let sha = Sha256::of(b"same");
        let with = |name: &str, path: &str| {
            manifest(
                vec![ManifestEntry {
                    name: name.to_owned(),
                    worker_path: path.to_owned(),
                    sha256: sha,
                    size: 4,
                }],
                &[],
            )
            .bundle_hash()
        };
        assert_ne!(with("ab", "c"), with("a", "bc"));
        assert_ne!(
            manifest(vec![], &["ab", "c"]).bundle_hash(),
            manifest(vec![], &["a", "bc"]).bundle_hash()
        );
        assert_ne!(
            manifest(vec![], &["abc"]).bundle_hash(),
            manifest(vec![], &["ab", "c"]).bundle_hash()
        );
    }

    const BAD_PATHS: &[&str] = &[
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a\0b",
        "C:\\x",
        "c:x",
        "\\\\server\\share\\x",
        "\\x",
        "a\\..\\..\\x",
        "task.js:stream",
        ".",
        "a/..",
        "lib/",
        "a/.../b",
    ];

    #[test]
    fn bad_worker_paths_are_refused_naming_the_path_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workplace = Workplace::open(dir.path().join("work")).expect("workplace");
        let before = snapshot(dir.path());
        for &bad in BAD_PATHS {
            let content = b"evil";
            let e = entry("evil", bad, content);
            assert_path_refused(workplace.resolve(bad), bad);
            assert_path_refused(workplace.install(&e, content), bad);
            assert_path_refused(manifest(vec![e.clone()], &[]).validate(), bad);
            // One bad entry among good ones: needed() refuses the whole manifest.
            let mixed = manifest(vec![entry("ok", "ok.js", b"ok"), e], &[]);
            assert_path_refused(workplace.needed(&mixed), bad);
        }
        assert_eq!(snapshot(dir.path()), before, "nothing may be written");
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn reasons_say_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workplace = Workplace::open(dir.path()).expect("workplace");
        let reason = assert_path_refused(workplace.resolve("/etc/passwd"), "/etc/passwd");
        assert!(
            reason.contains("absolute") && reason.contains("task.js"),
            "{reason}"
        );
        let reason = assert_path_refused(workplace.resolve("a/../../x"), "a/../../x");
        assert!(reason.contains("climbs out"), "{reason}");
        let reason = assert_path_refused(workplace.resolve("a\0b"), "a\0b");
        assert!(reason.contains("NUL"), "{reason}");
    }

    #[test]
    fn harmless_dot_dot_and_separators_are_normalised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workplace = Workplace::open(dir.path()).expect("workplace");
        let root = workplace.root().to_path_buf();
        assert_eq!(workplace.resolve("a/../b").expect("a/../b"), root.join("b"));
        assert_eq!(
            workplace.resolve("./lib//util.js").expect("dots"),
            root.join("lib/util.js")
        );
        assert_eq!(
            workplace.resolve("lib\\util.js").expect("backslash"),
            root.join("lib/util.js")
        );
        assert_eq!(
            workplace.resolve(".hidden").expect("hidden"),
            root.join(".hidden")
        );
        assert_eq!(
            workplace.resolve("a..b/c").expect("dots in name"),
            root.join("a..b/c")
        );
    }

    #[test]
    fn symlinks_inside_the_workplace_are_refused_and_nothing_lands_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).expect("outside");
        fs::write(outside.join("target.js"), b"outside file").expect("write");
        let workplace = Workplace::open(dir.path().join("work")).expect("workplace");
        symlink(&outside, workplace.root().join("link")).expect("dir link");
        symlink(
            outside.join("target.js"),
            workplace.root().join("file-link.js"),
        )
        .expect("file link");
        fs::create_dir(workplace.root().join("lib")).expect("lib");
        symlink(&outside, workplace.root().join("lib/deeper")).expect("nested link");
        let before = snapshot(dir.path());

        for bad in [
            "link/evil.js",
            "link/sub/evil.js",
            "file-link.js",
            "lib/deeper/evil.js",
        ] {
            let reason = assert_path_refused(workplace.resolve(bad), bad);
            assert!(reason.contains("symbolic link"), "{reason}");
            let content = b"evil";
            assert_path_refused(
                workplace.install(&entry("evil", bad, content), content),
                bad,
            );
            assert_path_refused(
                workplace.needed(&manifest(vec![entry("evil", bad, content)], &[])),
                bad,
            );
        }
        assert_eq!(snapshot(dir.path()), before, "nothing may be written");
        assert_eq!(
            fs::read(outside.join("target.js")).expect("read"),
            b"outside file"
        );
    }

    #[test]
    fn a_workplace_under_a_symlinked_folder_works() {
        // Links *above* the workplace are resolved once by open(), not refused.
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("real")).expect("real");
        symlink(dir.path().join("real"), dir.path().join("alias")).expect("link");
        let workplace = Workplace::open(dir.path().join("alias/work")).expect("workplace");
        let e = entry("task", "task.js", b"x");
        let landed = workplace.install(&e, b"x").expect("install");
        assert_eq!(
            fs::read(dir.path().join("real/work/task.js")).expect("read"),
            b"x"
        );
        assert_eq!(landed, workplace.root().join("task.js"));
    }

    #[test]
    fn install_writes_atomically_into_new_folders_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workplace = Workplace::open(dir.path().join("a/b/work")).expect("creates parents");
        let first = entry("util", "lib/deep/util.js", b"v1");
        let path = workplace.install(&first, b"v1").expect("install");
        assert_eq!(path, workplace.root().join("lib/deep/util.js"));
        assert_eq!(fs::read(&path).expect("read"), b"v1");

        let second = entry("util", "lib/deep/util.js", b"version two");
        workplace.install(&second, b"version two").expect("replace");
        assert_eq!(fs::read(&path).expect("read"), b"version two");
        // No temporary files are left behind.
        let names: Vec<_> = snapshot(workplace.root())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".queuexec-"))
            })
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn install_rejects_a_wrong_hash_or_size_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workplace = Workplace::open(dir.path()).expect("workplace");
        let announced = entry("task", "lib/task.js", b"the real task");

        let error = workplace
            .install(&announced, b"the fake task")
            .expect_err("wrong hash");
        match &error {
            Error::AssetHash {
                name,
                expected,
                actual,
            } => {
                assert_eq!(name, "task");
                assert_eq!(expected, &announced.sha256.to_string());
                assert_eq!(actual, &Sha256::of(b"the fake task").to_string());
            }
            other => panic!("expected AssetHash, got {other:?}"),
        }
        let mut wrong_size = announced.clone();
        wrong_size.size += 1;
        assert!(matches!(
            workplace.install(&wrong_size, b"the real task"),
            Err(Error::AssetHash { .. })
        ));
        assert!(
            snapshot(dir.path()).is_empty(),
            "nothing may be written, not even lib/"
        );
    }

    #[test]
    fn install_refuses_a_file_where_a_folder_is_needed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workplace = Workplace::open(dir.path()).expect("workplace");
        workplace
            .install(&entry("lib", "lib", b"file"), b"file")
            .expect("install");
        let nested = entry("util", "lib/util.js", b"u");
        let reason = assert_path_refused(workplace.install(&nested, b"u"), "lib/util.js");
        assert!(reason.contains("folder"), "{reason}");
        fs::create_dir(workplace.root().join("dir.js")).expect("dir");
        assert_path_refused(
            workplace.install(&entry("d", "dir.js", b"d"), b"d"),
            "dir.js",
        );
    }

    #[test]
    fn needed_lists_only_missing_and_changed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workplace = Workplace::open(dir.path()).expect("workplace");
        let task = entry("task", "task.js", b"module.exports = 1");
        let util = entry("util", "lib/util.js", b"exports.u = 1");
        let data = entry("data", "data.json", b"{}");
        let bundle = entry(DEPENDENCY_BUNDLE_NAME, DEPENDENCY_BUNDLE_PATH, b"tar bytes");
        let mut m = manifest(
            vec![task.clone(), util.clone(), data.clone()],
            &["lodash@4"],
        );
        m.dependency_bundle = Some(bundle.clone());

        assert_eq!(
            workplace.needed(&m).expect("needed"),
            vec![task.clone(), util.clone(), data.clone(), bundle.clone()]
        );

        workplace
            .install(&task, b"module.exports = 1")
            .expect("task");
        workplace.install(&util, b"exports.u = 1").expect("util");
        workplace.install(&bundle, b"tar bytes").expect("bundle");
        assert_eq!(workplace.needed(&m).expect("needed"), vec![data.clone()]);

        // Same size, different content: found by hash.
        fs::write(workplace.root().join("task.js"), b"module.exports = 2").expect("edit");
        assert_eq!(
            workplace.needed(&m).expect("needed"),
            vec![task.clone(), data.clone()]
        );

        // A new version in the manifest.
        let util2 = entry("util", "lib/util.js", b"exports.u = 22");
        m.files[1] = util2.clone();
        workplace.install(&data, b"{}").expect("data");
        workplace
            .install(&task, b"module.exports = 1")
            .expect("task");
        assert_eq!(workplace.needed(&m).expect("needed"), vec![util2]);
    }

    #[test]
    fn needed_uses_the_hash_cache_and_still_sees_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workplace = Workplace::open(dir.path()).expect("workplace");
        let task = entry("task", "task.js", b"aaaa");
        let path = workplace.install(&task, b"aaaa").expect("install");
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(hour_ago))
            .expect("set mtime");
        let m = manifest(vec![task.clone()], &[]);
        assert!(workplace.needed(&m).expect("needed").is_empty());
        assert!(
            workplace
                .hash_cache
                .lock()
                .expect("lock")
                .contains_key(&path),
            "cached"
        );
        assert!(
            workplace.needed(&m).expect("needed").is_empty(),
            "served from the cache"
        );

        // Rewritten now (same size): the new mtime misses the cache and the hash differs.
        fs::write(&path, b"bbbb").expect("rewrite");
        assert_eq!(workplace.needed(&m).expect("needed"), vec![task.clone()]);
        // A recently modified file is not cached (its mtime may not have ticked yet).
        assert!(
            !workplace
                .hash_cache
                .lock()
                .expect("lock")
                .contains_key(&path)
        );

        // Files no longer in the manifest are forgotten.
        workplace.needed(&Manifest::default()).expect("needed");
        assert!(workplace.hash_cache.lock().expect("lock").is_empty());
    }

    #[test]
    fn manifest_validate_refuses_clashing_paths() {
        let a = entry("a", "lib/a.js", b"a");
        let same = entry("b", "./lib//a.js", b"b");
        assert_path_refused(
            manifest(vec![a.clone(), same], &[]).validate(),
            "./lib//a.js",
        );
        let case = entry("b", "LIB/A.js", b"b");
        assert_path_refused(manifest(vec![a.clone(), case], &[]).validate(), "LIB/A.js");
        let file_as_folder = entry("b", "lib/a.js/b.js", b"b");
        assert_path_refused(
            manifest(vec![a.clone(), file_as_folder], &[]).validate(),
            "lib/a.js/b.js",
        );
        let fine = entry("b", "lib/b.js", b"b");
        manifest(vec![a.clone(), fine], &[])
            .validate()
            .expect("distinct paths");

        // Only the dependency bundle may live in .queuexec/.
        let mut with_bundle = manifest(vec![a.clone()], &[]);
        with_bundle.dependency_bundle = Some(entry(
            DEPENDENCY_BUNDLE_NAME,
            DEPENDENCY_BUNDLE_PATH,
            b"tar",
        ));
        with_bundle.validate().expect("bundle in .queuexec");
        let sneaky = entry("x", ".queuexec/bundles/evil.js", b"x");
        assert_path_refused(
            manifest(vec![a.clone(), sneaky], &[]).validate(),
            ".queuexec/bundles/evil.js",
        );
        // A bundle that claims a file's path clashes.
        with_bundle.dependency_bundle = Some(entry(DEPENDENCY_BUNDLE_NAME, "lib/a.js", b"tar"));
        assert_path_refused(with_bundle.validate(), "lib/a.js");
    }

    fn write(dir: &Path, name: &str, content: &[u8]) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, content).expect("write");
    }

    #[test]
    fn asset_set_loads_hashes_and_serves_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "task.js", b"module.exports = async () => 1");
        write(dir.path(), "src/util.js", b"exports.u = 1");
        let absolute = tempfile::tempdir().expect("tempdir");
        write(absolute.path(), "data.json", b"{\"a\":1}");
        let specs = vec![
            spec("task", "task.js", "./task.js"),
            spec("util", "src/util.js", "lib//util.js"),
            AssetSpec {
                name: "data".to_owned(),
                master_path: absolute.path().join("data.json"),
                worker_path: "data.json".to_owned(),
            },
        ];
        let set = AssetSet::load(&specs, dir.path(), vec!["lodash@4".to_owned()]).expect("load");
        let m = set.manifest();
        assert_eq!(m.files.len(), 3);
        assert_eq!(
            m.files[0],
            entry("task", "task.js", b"module.exports = async () => 1")
        );
        assert_eq!(m.files[1].worker_path, "lib/util.js", "normalised");
        assert_eq!(m.files[2].sha256, Sha256::of(b"{\"a\":1}"));
        assert_eq!(m.dependencies, vec!["lodash@4".to_owned()]);
        assert_eq!(set.bundle_hash(), m.bundle_hash());
        assert_eq!(
            set.content(&m.files[1].sha256).expect("content").as_ref(),
            b"exports.u = 1"
        );
        assert!(set.content(&Sha256::of(b"not shipped")).is_none());
        m.validate().expect("the master's own manifest is valid");
    }

    #[test]
    fn asset_set_refuses_missing_files_and_bad_or_duplicate_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "task.js", b"t");

        let error = AssetSet::load(&[spec("task", "missing.js", "task.js")], dir.path(), vec![])
            .expect_err("missing");
        match &error {
            Error::Io { path, .. } => assert_eq!(path, &dir.path().join("missing.js")),
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(error.to_string().contains("missing.js"), "{error}");

        for &bad in BAD_PATHS {
            assert_path_refused(
                AssetSet::load(&[spec("t", "task.js", bad)], dir.path(), vec![]),
                bad,
            );
        }
        let duplicate = [
            spec("a", "task.js", "task.js"),
            spec("b", "task.js", "./task.js"),
        ];
        let reason =
            assert_path_refused(AssetSet::load(&duplicate, dir.path(), vec![]), "./task.js");
        assert!(reason.contains("\"task.js\""), "{reason}");
        for reserved in [
            ".queuexec/dependencies.tar",
            ".queuexec",
            "./.QueueXec/bundles/x.js",
        ] {
            let reason = assert_path_refused(
                AssetSet::load(&[spec("a", "task.js", reserved)], dir.path(), vec![]),
                reserved,
            );
            assert!(reason.contains("reserved"), "{reason}");
        }
    }

    #[test]
    fn asset_set_reload_detects_a_changed_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "task.js", b"module.exports = 1");
        let specs = [spec("task", "task.js", "task.js")];
        let mut set = AssetSet::load(&specs, dir.path(), vec![]).expect("load");
        let before = set.bundle_hash();
        let old_sha = set.manifest().files[0].sha256;

        assert!(!set.reload().expect("reload"), "nothing changed");
        assert_eq!(set.bundle_hash(), before);

        write(dir.path(), "task.js", b"module.exports = 2");
        assert!(set.reload().expect("reload"), "one byte changed");
        assert_ne!(set.bundle_hash(), before);
        assert_eq!(set.bundle_hash(), set.manifest().bundle_hash());
        let new_sha = set.manifest().files[0].sha256;
        assert_eq!(
            set.content(&new_sha).expect("new").as_ref(),
            b"module.exports = 2"
        );
        assert!(set.content(&old_sha).is_none(), "old content is dropped");

        // A failed reload leaves the set as it was.
        fs::remove_file(dir.path().join("task.js")).expect("remove");
        let hash = set.bundle_hash();
        assert!(matches!(set.reload(), Err(Error::Io { .. })));
        assert_eq!(set.bundle_hash(), hash);
        assert!(set.content(&new_sha).is_some());
    }

    #[test]
    fn asset_set_dependency_bundle() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "task.js", b"t");
        let mut set = AssetSet::load(&[spec("task", "task.js", "task.js")], dir.path(), vec![])
            .expect("load");
        let without = set.bundle_hash();

        set.set_dependency_bundle(Bytes::from_static(b"tar v1"));
        let with_v1 = set.bundle_hash();
        assert_ne!(with_v1, without);
        let bundle = set
            .manifest()
            .dependency_bundle
            .clone()
            .expect("bundle entry");
        assert_eq!(bundle.name, "dependencies.tar");
        assert_eq!(bundle.worker_path, ".queuexec/dependencies.tar");
        assert_eq!(bundle.size, 6);
        assert_eq!(
            set.content(&bundle.sha256).expect("content").as_ref(),
            b"tar v1"
        );

        set.set_dependency_bundle(Bytes::from_static(b"tar v2"));
        assert_ne!(set.bundle_hash(), with_v1, "replaced");
        assert!(set.content(&bundle.sha256).is_none(), "old bundle dropped");
        assert!(!set.reload().expect("reload"), "reload keeps the bundle");
        set.manifest().validate().expect("valid");

        // A worker installs the bundle like any file.
        let workplace = Workplace::open(dir.path().join("work")).expect("workplace");
        let bundle = set.manifest().dependency_bundle.clone().expect("bundle");
        let content = set.content(&bundle.sha256).expect("content");
        let path = workplace.install(&bundle, &content).expect("install");
        assert_eq!(path, workplace.root().join(".queuexec/dependencies.tar"));
        assert!(
            workplace.needed(set.manifest()).expect("needed").len() == 1,
            "task.js only"
        );
    }
}
