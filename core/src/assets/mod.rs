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
//!
//! Files: this one holds the hashes and [`AssetSpec`]; `manifest.rs` the [`Manifest`] and
//! bundle hash; `asset_set.rs` the master's [`AssetSet`]; `workplace.rs` the worker's
//! [`Workplace`]; `paths.rs` the worker-path rules (the security boundary).

mod asset_set;
mod manifest;
mod paths;
mod workplace;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crypto;

pub use asset_set::AssetSet;
pub use manifest::{Manifest, ManifestEntry};
pub use workplace::Workplace;

/// The name of the dependency bundle's manifest entry.
pub(crate) const DEPENDENCY_BUNDLE_NAME: &str = "dependencies.tar";
/// Where the dependency bundle lands in a workplace. Reserved: no asset may use it.
pub(crate) const DEPENDENCY_BUNDLE_PATH: &str = ".queuexec/dependencies.tar";
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
    pub(crate) fn of(bytes: &[u8]) -> Sha256 {
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

#[cfg(test)]
mod tests;
