//! The manifest: what a worker needs besides its jobs (files with their SHA-256 and size, the
//! npm dependency list, the dependency bundle), and the bundle hash master and worker compare.

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{BundleHash, Sha256, paths};
use crate::error::Result;

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
            let normalized = paths::normalize(&entry.worker_path)?.join("/");
            paths::check_not_reserved(&entry.worker_path, &normalized)?;
            paths.push((entry.worker_path.as_str(), normalized));
        }
        if let Some(bundle) = &self.dependency_bundle {
            paths.push((
                bundle.worker_path.as_str(),
                paths::normalize(&bundle.worker_path)?.join("/"),
            ));
        }
        paths::check_no_clashes(&paths)
    }

    /// The files, then the dependency bundle.
    pub(super) fn entries(&self) -> impl Iterator<Item = &ManifestEntry> {
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
