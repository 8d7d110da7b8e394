//! Dependency bundles: the master turns its npm `dependencies` into one content-addressed tar
//! of `node_modules` and ships it like any other asset; workers unpack it once per hash and
//! never run npm.
//!
//! The master resolves and fetches with `npm install --ignore-scripts` in a temporary
//! directory, then packs `node_modules` deterministically (sorted entries, fixed times, owners
//! and modes; symlinks such as `node_modules/.bin` left out), so the same dependency list gives
//! the same bundle hash on every master. Built bundles are cached under the user's cache
//! directory (or `QUEUEXEC_CACHE_DIR`), so a master restart does not run npm again.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;

use crate::assets::{Manifest, ManifestEntry, Workplace};
use crate::error::{Error, Result};

/// The environment variable that overrides where built bundles are cached.
pub const DEPENDENCY_CACHE_DIR_ENV: &str = "QUEUEXEC_CACHE_DIR";

/// The directory every bundle entry lives under.
const NODE_MODULES: &str = "node_modules";

/// How much of npm's stderr a failure message quotes.
const STDERR_TAIL: usize = 2000;

/// Master side, blocking (call it from `spawn_blocking`): the dependency bundle for
/// `dependencies` (npm specs such as `big.js@6` or `moment`), built with
/// `npm install --ignore-scripts --no-audit --no-fund --no-package-lock` in a temporary
/// directory, or read from the bundle cache when this list was built before.
pub fn build_dependency_bundle(dependencies: &[String]) -> Result<Bytes> {
    let specs = normalized_specs(dependencies)?;
    let cache_file = cache_dir().map(|dir| {
        dir.join("bundles")
            .join(format!("{}.tar", list_key(&specs)))
    });
    if let Some(file) = &cache_file
        && let Ok(bytes) = std::fs::read(file)
    {
        return Ok(Bytes::from(bytes));
    }
    let bundle = Bytes::from(npm_bundle(&specs)?);
    if let Some(file) = &cache_file
        && let Err(e) = write_atomically(file, &bundle)
    {
        tracing::warn!(
            "could not cache the dependency bundle at {}: {e}",
            file.display()
        );
    }
    Ok(bundle)
}

/// Worker side, blocking: unpacks the installed bundle `entry` (the manifest's
/// `dependency_bundle`, already written and hash-checked in `workplace`) into
/// `<workplace>/.queuexec/bundles/<sha256>/node_modules`, unless it is there already, and
/// returns that directory. Entries that are absolute, contain `..`, or are links are refused.
pub fn unpack_dependency_bundle(workplace: &Workplace, entry: &ManifestEntry) -> Result<PathBuf> {
    let hash = hex::encode(entry.sha256.0);
    let bundles = workplace.root().join(".queuexec").join("bundles");
    let target = bundles.join(&hash);
    let node_modules = target.join(NODE_MODULES);
    if node_modules.is_dir() {
        return Ok(node_modules);
    }
    let archive_path = workplace.resolve(&entry.worker_path)?;
    let archive =
        std::fs::File::open(&archive_path).map_err(|e| Error::io("opening", &archive_path, e))?;
    std::fs::create_dir_all(&bundles).map_err(|e| Error::io("creating", &bundles, e))?;
    let staging = bundles.join(format!(".unpacking-{hash}-{}", std::process::id()));
    if staging.exists() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    std::fs::create_dir(&staging).map_err(|e| Error::io("creating", &staging, e))?;
    let unpacked = unpack_into(archive, &staging).and_then(|()| {
        if !staging.join(NODE_MODULES).is_dir() {
            std::fs::create_dir(staging.join(NODE_MODULES))
                .map_err(|e| Error::io("creating", staging.join(NODE_MODULES), e))?;
        }
        match std::fs::rename(&staging, &target) {
            Ok(()) => Ok(()),
            // Another worker process unpacked the same bundle first: use theirs.
            Err(_) if node_modules.is_dir() => {
                let _ = std::fs::remove_dir_all(&staging);
                Ok(())
            }
            Err(e) => Err(Error::io("moving the unpacked bundle to", &target, e)),
        }
    });
    if let Err(e) = unpacked {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(node_modules)
}

/// Where the dependency bundle of `manifest` is (or will be) unpacked, if it has one.
pub fn dependency_bundle_dir(workplace_root: &Path, manifest: &Manifest) -> Option<PathBuf> {
    let entry = manifest.dependency_bundle.as_ref()?;
    Some(
        workplace_root
            .join(".queuexec")
            .join("bundles")
            .join(hex::encode(entry.sha256.0))
            .join(NODE_MODULES),
    )
}

/// Sorted, de-duplicated specs; refuses specs npm would read as options or that are empty.
fn normalized_specs(dependencies: &[String]) -> Result<Vec<String>> {
    let mut specs = Vec::with_capacity(dependencies.len());
    for spec in dependencies {
        let spec = spec.trim();
        if spec.is_empty() || spec.starts_with('-') || spec.chars().any(|c| c.is_control()) {
            return Err(Error::dependencies(format!(
                "{spec:?} is not an npm package spec; list packages like \"big.js\" or \"moment@2.30\""
            )));
        }
        specs.push(spec.to_string());
    }
    specs.sort();
    specs.dedup();
    Ok(specs)
}

/// The cache key of a dependency list: SHA-256 of the sorted specs, one per line.
fn list_key(specs: &[String]) -> String {
    hex::encode(crate::crypto::sha256(specs.join("\n").as_bytes()))
}

fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os(DEPENDENCY_CACHE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::cache_dir().map(|d| d.join("queuexec")),
    }
}

fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    // A fresh file under a random name (created exclusively, so a link planted in the cache
    // is never followed), renamed over the cache file (replacing a link there, not following
    // it).
    let mut staging = tempfile::Builder::new()
        .prefix(".bundle-")
        .tempfile_in(dir)?;
    std::io::Write::write_all(&mut staging, bytes)?;
    staging.persist(file).map_err(|e| e.error)?;
    Ok(())
}

/// The npm executable on PATH, if any.
fn find_npm() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let names: &[&str] = if cfg!(windows) {
        &["npm.cmd", "npm.exe", "npm"]
    } else {
        &["npm"]
    };
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn npm_bundle(specs: &[String]) -> Result<Vec<u8>> {
    bundle_with_npm(find_npm(), specs)
}

fn bundle_with_npm(npm: Option<PathBuf>, specs: &[String]) -> Result<Vec<u8>> {
    let npm = npm.ok_or_else(|| {
        Error::dependencies(
            "npm was not found on PATH: the master cannot build the dependency bundle that workers without Node need; install Node.js and npm, or remove `dependencies`",
        )
    })?;
    let dir = tempfile::Builder::new()
        .prefix("queuexec-deps-")
        .tempdir()
        .map_err(|e| Error::io("creating a temporary directory in", std::env::temp_dir(), e))?;
    let package_json = dir.path().join("package.json");
    std::fs::write(
        &package_json,
        "{\"name\":\"queuexec-dependency-bundle\",\"version\":\"0.0.0\",\"private\":true}\n",
    )
    .map_err(|e| Error::io("writing", &package_json, e))?;
    let mut args: Vec<OsString> = [
        "install",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--no-package-lock",
        "--no-progress",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.extend(specs.iter().map(OsString::from));
    let output = Command::new(&npm)
        .args(&args)
        .current_dir(dir.path())
        .env("npm_config_update_notifier", "false")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::dependencies_from(format!("could not run {}", npm.display()), e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = {
            let trimmed = stderr.trim_end();
            let start = trimmed
                .char_indices()
                .rev()
                .nth(STDERR_TAIL)
                .map_or(0, |(i, _)| i);
            trimmed[start..].to_string()
        };
        return Err(Error::dependencies(format!(
            "`npm install {}` failed ({}): {tail}",
            specs.join(" "),
            output.status
        )));
    }
    let node_modules = dir.path().join(NODE_MODULES);
    if !node_modules.is_dir() {
        std::fs::create_dir(&node_modules).map_err(|e| Error::io("creating", &node_modules, e))?;
    }
    pack(&node_modules)
}

/// A deterministic tar of `node_modules`: entries sorted by path under `node_modules/`, regular
/// files and directories only, mtime 0, owner 0:0, modes 0644 / 0755.
pub(crate) fn pack(node_modules: &Path) -> Result<Vec<u8>> {
    let mut entries = Vec::new();
    collect(node_modules, node_modules, &mut entries)?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    let dir_header = |path: &str| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        (header, format!("{path}/"))
    };
    let (mut root, root_path) = dir_header(NODE_MODULES);
    builder
        .append_data(&mut root, &root_path, std::io::empty())
        .map_err(|e| Error::io("packing", node_modules, e))?;
    for (rel, real, is_dir) in entries {
        let name = format!("{NODE_MODULES}/{rel}");
        if is_dir {
            let (mut header, path) = dir_header(&name);
            builder
                .append_data(&mut header, &path, std::io::empty())
                .map_err(|e| Error::io("packing", &real, e))?;
        } else {
            let data = std::fs::read(&real).map_err(|e| Error::io("reading", &real, e))?;
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            builder
                .append_data(&mut header, &name, data.as_slice())
                .map_err(|e| Error::io("packing", &real, e))?;
        }
    }
    builder
        .into_inner()
        .map_err(|e| Error::io("packing", node_modules, e))
}

/// Every regular file and directory below `dir`, as ('/'-separated path relative to `base`,
/// real path, is a directory). Symlinks and npm's own bookkeeping are left out.
fn collect(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf, bool)>) -> Result<()> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    for item in read {
        let item = item.map_err(|e| Error::io("listing", dir, e))?;
        let path = item.path();
        let kind = item
            .file_type()
            .map_err(|e| Error::io("inspecting", &path, e))?;
        if kind.is_symlink() {
            continue;
        }
        let rel: Vec<String> = match path.strip_prefix(base) {
            Ok(rel) => rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect(),
            Err(_) => continue,
        };
        if rel.len() == 1 && matches!(rel[0].as_str(), ".package-lock.json" | ".bin" | ".cache") {
            continue;
        }
        let rel = rel.join("/");
        if kind.is_dir() {
            out.push((rel, path.clone(), true));
            collect(base, &path, out)?;
        } else if kind.is_file() {
            out.push((rel, path, false));
        }
    }
    Ok(())
}

/// Unpacks a bundle tar into `dest`, refusing any entry that could land outside it.
fn unpack_into(archive: impl Read, dest: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(archive);
    let entries = archive
        .entries()
        .map_err(|e| Error::io("reading the dependency bundle in", dest, e))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| Error::io("reading the dependency bundle in", dest, e))?;
        let kind = entry.header().entry_type();
        let path = entry
            .path()
            .map_err(|e| Error::io("reading the dependency bundle in", dest, e))?
            .into_owned();
        let shown = path.display().to_string();
        let refuse = |why: &str| {
            Error::dependencies(format!("refused dependency bundle entry {shown:?}: {why}"))
        };
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        if !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(refuse("its path is absolute or contains `..` or `.`"));
        }
        if path
            .components()
            .next()
            .is_none_or(|c| c.as_os_str() != NODE_MODULES)
        {
            return Err(refuse("it is not under node_modules/"));
        }
        let target = dest.join(&path);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| Error::io("creating", &target, e))?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
            }
            let mut file =
                std::fs::File::create(&target).map_err(|e| Error::io("writing", &target, e))?;
            std::io::copy(&mut entry, &mut file).map_err(|e| Error::io("writing", &target, e))?;
        } else {
            return Err(refuse("links and special files are not allowed"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn packing_is_deterministic_and_skips_symlinks() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        for (dir, order) in [
            (a.path(), ["x/index.js", "a/b/c.js"]),
            (b.path(), ["a/b/c.js", "x/index.js"]),
        ] {
            for rel in order {
                write(&dir.join("node_modules"), rel, rel);
            }
            write(
                &dir.join("node_modules"),
                ".package-lock.json",
                &format!("{:?}", dir),
            );
            #[cfg(unix)]
            {
                std::fs::create_dir_all(dir.join("node_modules/.bin")).expect("mkdir");
                std::os::unix::fs::symlink("../x/index.js", dir.join("node_modules/.bin/x"))
                    .expect("symlink");
            }
        }
        let ta = pack(&a.path().join("node_modules")).expect("pack a");
        let tb = pack(&b.path().join("node_modules")).expect("pack b");
        assert_eq!(ta, tb, "the same files give the same bytes");
        let names: Vec<String> = tar::Archive::new(ta.as_slice())
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "node_modules/",
                "node_modules/a/",
                "node_modules/a/b/",
                "node_modules/a/b/c.js",
                "node_modules/x/",
                "node_modules/x/index.js"
            ]
        );
    }

    #[test]
    fn unpacking_refuses_escapes_and_links() {
        let dest = tempfile::tempdir().expect("tempdir");
        let raw = |path: &str, kind: tar::EntryType| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(0);
            header.set_mode(0o644);
            // set_path refuses `..`; write the name field directly as a hostile archive would.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if kind == tar::EntryType::Symlink {
                header.set_link_name("/etc/passwd").expect("link name");
            }
            header.set_cksum();
            let mut b = tar::Builder::new(Vec::new());
            b.append(&header, std::io::empty()).expect("append");
            b.into_inner().expect("tar")
        };
        for (path, kind) in [
            ("node_modules/../../evil.js", tar::EntryType::Regular),
            ("/etc/evil.js", tar::EntryType::Regular),
            ("elsewhere/x.js", tar::EntryType::Regular),
            ("node_modules/link", tar::EntryType::Symlink),
            ("node_modules/hard", tar::EntryType::Link),
        ] {
            let err = unpack_into(raw(path, kind).as_slice(), dest.path()).expect_err(path);
            assert!(matches!(err, Error::Dependencies(..)), "{path}: {err}");
        }
        assert!(
            !dest
                .path()
                .parent()
                .expect("parent")
                .join("evil.js")
                .exists()
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_bundle_cache_never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let victim = outside.path().join("victim.txt");
        std::fs::write(&victim, "precious").expect("write");
        let file = dir.path().join("bundles").join("abc.tar");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        // Links at the names the cache used to write to.
        for name in [format!(".{}.abc.tar", std::process::id()), "abc.tar".into()] {
            std::os::unix::fs::symlink(&victim, dir.path().join("bundles").join(name))
                .expect("symlink");
        }
        write_atomically(&file, b"bundle bytes").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        assert_eq!(std::fs::read(&file).expect("read"), b"bundle bytes");
        assert!(
            !std::fs::symlink_metadata(&file)
                .expect("cache file")
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_master_without_npm_says_so() {
        let err = bundle_with_npm(None, &["big.js".into()]).expect_err("no npm");
        let message = err.to_string();
        assert!(
            message.contains("npm was not found on PATH")
                && message.contains("remove `dependencies`"),
            "{message}"
        );
    }

    #[test]
    fn specs_that_npm_would_read_as_options_are_refused() {
        assert!(normalized_specs(&["--registry=http://example.invalid".into()]).is_err());
        assert!(normalized_specs(&["".into()]).is_err());
        assert_eq!(
            normalized_specs(&["moment".into(), "big.js".into(), "moment".into()]).expect("specs"),
            ["big.js", "moment"]
        );
    }
}
