//! Tests of the assets: bundle hash, worker-path rules, workplace installs, the master's set.

use super::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::error::{Error, Result};

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
    let reason = assert_path_refused(AssetSet::load(&duplicate, dir.path(), vec![]), "./task.js");
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
    let mut set =
        AssetSet::load(&[spec("task", "task.js", "task.js")], dir.path(), vec![]).expect("load");
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
