//! The master's side of the assets: the files it ships, read, hashed and held in memory, with
//! their manifest and bundle hash.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{
    AssetSpec, BundleHash, DEPENDENCY_BUNDLE_NAME, DEPENDENCY_BUNDLE_PATH, Manifest, ManifestEntry,
    Sha256, paths,
};
use crate::error::{Error, Result};

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
        let normalized = paths::normalize(&spec.worker_path)?.join("/");
        paths::check_not_reserved(&spec.worker_path, &normalized)?;
        paths.push((spec.worker_path.as_str(), normalized));
    }
    paths::check_no_clashes(&paths)?;

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
