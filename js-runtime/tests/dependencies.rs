//! The whole dependency path: a master builds the bundle from real npm packages, ships it with
//! task.js, and a worker (which never runs npm or node) unpacks it and runs the task.

mod common;

use std::path::PathBuf;

use common::{job, small_config, write_files};
use queuexec_core::Executor;
use queuexec_core::testing::{AssetSet, build_dependency_bundle, dependency_bundle_dir};
use queuexec_core::{AssetSpec, Manifest, Workplace};
use queuexec_js::JsExecutor;

const TASK: &str = r#"
const Big = require('big.js');
const moment = require('moment');
const { label } = require('./lib/label');

class Task {
  async run(job) {
    const { a, b, date, days } = JSON.parse(job.data);
    return {
      sum: new Big(a).plus(b).toString(),
      product: new Big(a).times(b).toFixed(4),
      date: moment.utc(date).add(days, 'days').format('YYYY-MM-DD dddd'),
      label: label(job.id),
    };
  }
}

module.exports = Task;
"#;

const DEPENDENCIES: [&str; 2] = ["big.js@6.2.2", "moment@2.30.1"];

fn spec(name: &str) -> AssetSpec {
    AssetSpec {
        name: name.into(),
        master_path: PathBuf::from(name),
        worker_path: name.into(),
    }
}

/// The master's side: files and the npm bundle, as the manifest and contents it ships.
async fn master_assets() -> (tempfile::TempDir, AssetSet) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(
        dir.path(),
        &[
            ("task.js", TASK),
            ("lib/label.js", "exports.label = (id) => `job ${id}`;\n"),
        ],
    );
    let dependencies: Vec<String> = DEPENDENCIES.iter().map(|d| d.to_string()).collect();
    let list = dependencies.clone();
    let bundle = tokio::task::spawn_blocking(move || build_dependency_bundle(&list))
        .await
        .expect("join")
        .expect("npm builds the bundle");
    let mut assets = AssetSet::load(
        &[spec("task.js"), spec("lib/label.js")],
        dir.path(),
        dependencies,
    )
    .expect("assets");
    assets.set_dependency_bundle(bundle);
    (dir, assets)
}

/// The worker's side: installs what the manifest lists, as the worker engine does.
fn install(workplace: &Workplace, assets: &AssetSet, manifest: &Manifest) {
    for entry in workplace.needed(manifest).expect("needed") {
        let content = assets.content(&entry.sha256).expect("content");
        workplace.install(&entry, &content).expect("install");
    }
}

#[tokio::test]
async fn a_task_using_big_js_and_moment_runs_from_the_shipped_bundle() {
    let (_master_dir, assets) = master_assets().await;
    let manifest = assets.manifest().clone();
    assert!(manifest.dependency_bundle.is_some());

    let worker_dir = tempfile::tempdir().expect("tempdir");
    let workplace = Workplace::open(worker_dir.path()).expect("workplace");
    install(&workplace, &assets, &manifest);

    let executor = JsExecutor::new(small_config(2)).expect("executor");
    executor
        .assets_changed(workplace.root(), &manifest)
        .await
        .expect("task loads");

    let data =
        serde_json::json!({"a": "0.1", "b": "0.2", "date": "2024-02-28", "days": 2}).to_string();
    // The master pushed that JSON as a string; its JSON text is a JSON string.
    let pushed = serde_json::Value::String(data).to_string();
    let result = executor.run(job("7", &pushed)).await.expect("job");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&result).expect("json"),
        serde_json::json!({"sum": "0.3", "product": "0.0200", "date": "2024-03-01 Friday", "label": "job 7"})
    );

    // The bundle is unpacked once per hash: a second load reuses it.
    let unpacked = dependency_bundle_dir(workplace.root(), &manifest).expect("bundle dir");
    assert!(unpacked.join("big.js/package.json").is_file());
    let marker = unpacked.join("moment/.unpacked-once");
    std::fs::write(&marker, "").expect("marker");
    executor
        .assets_changed(workplace.root(), &manifest)
        .await
        .expect("reload");
    assert!(
        marker.exists(),
        "the cached bundle was reused, not unpacked again"
    );
    let again = executor
        .run(job("8", &pushed))
        .await
        .expect("job after reload");
    assert!(again.contains("2024-03-01 Friday"), "{again}");
}

/// In a child process of this test binary: the bundle cache directory, where the child writes
/// the bundle it built, and the order it lists the dependencies in.
const CHILD_CACHE_ENV: &str = queuexec_core::DEPENDENCY_CACHE_DIR_ENV;
const CHILD_OUT_ENV: &str = "QUEUEXEC_TEST_BUNDLE_OUT";
const CHILD_ORDER_ENV: &str = "QUEUEXEC_TEST_BUNDLE_ORDER";

#[tokio::test]
async fn the_same_dependency_list_in_any_order_gives_the_same_bundle() {
    const NAME: &str = "the_same_dependency_list_in_any_order_gives_the_same_bundle";
    if let Ok(out) = std::env::var(CHILD_OUT_ENV) {
        // The child: one build, from an empty cache of its own.
        let mut list: Vec<String> = DEPENDENCIES.iter().map(|d| d.to_string()).collect();
        if std::env::var(CHILD_ORDER_ENV).as_deref() == Ok("reversed") {
            list.reverse();
        }
        let bundle = tokio::task::spawn_blocking(move || build_dependency_bundle(&list))
            .await
            .expect("join")
            .expect("npm builds the bundle");
        std::fs::write(out, &bundle).expect("write the bundle");
        return;
    }
    // Two independent builds (separate processes, separate empty caches), in opposite orders.
    let mut bundles = Vec::new();
    for order in ["reversed", "listed"] {
        let cache = tempfile::tempdir().expect("tempdir");
        let out = tempfile::tempdir().expect("tempdir");
        let out_file = out.path().join("bundle.tar");
        let run = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_CACHE_ENV, cache.path())
            .env(CHILD_OUT_ENV, &out_file)
            .env(CHILD_ORDER_ENV, order)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(std::time::Duration::from_secs(600), run)
            .await
            .expect("a bundle build finishes within 10 minutes")
            .expect("run the build");
        assert!(
            output.status.success(),
            "the {order} build failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "the child did not run the build"
        );
        // The bundle was built by npm in this child, not read back: its cache started empty
        // and now holds exactly the one bundle it wrote.
        let cached: Vec<_> = std::fs::read_dir(cache.path().join("bundles"))
            .expect("the build cached its bundle")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "tar"))
            .collect();
        assert_eq!(cached.len(), 1, "one bundle in the {order} build's cache");
        let bundle = std::fs::read(&out_file).expect("the child wrote its bundle");
        assert_eq!(
            std::fs::read(cached[0].path()).expect("cached bundle"),
            bundle
        );
        bundles.push(bundle);
    }
    assert!(
        bundles[0].len() > 10_000,
        "the bundle holds the packages ({} bytes)",
        bundles[0].len()
    );
    assert!(
        bundles[0] == bundles[1],
        "two independent builds of the same list in different orders differ ({} and {} bytes)",
        bundles[0].len(),
        bundles[1].len()
    );
}

#[tokio::test]
async fn a_manifest_without_task_js_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(
        dir.path(),
        &[("worker.js", "module.exports = class { run() {} };\n")],
    );
    let assets = AssetSet::load(&[spec("worker.js")], dir.path(), Vec::new()).expect("assets");
    let worker_dir = tempfile::tempdir().expect("tempdir");
    let workplace = Workplace::open(worker_dir.path()).expect("workplace");
    install(&workplace, &assets, assets.manifest());
    let executor = JsExecutor::new(small_config(1)).expect("executor");
    let failure = executor
        .assets_changed(workplace.root(), assets.manifest())
        .await
        .expect_err("no task.js");
    assert!(
        failure.message.contains("no task.js") && failure.message.contains("worker.js"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_task_in_a_subfolder_is_found_by_its_worker_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(
        dir.path(),
        &[
            (
                "jobs/task.js",
                "const h = require('../shared/h');\nmodule.exports = class { run(job) { return h(job.id) } };\n",
            ),
            ("shared/h.js", "module.exports = (id) => 'h' + id;\n"),
        ],
    );
    let specs = [
        AssetSpec {
            name: "the task".into(),
            master_path: "jobs/task.js".into(),
            worker_path: "jobs/task.js".into(),
        },
        spec("shared/h.js"),
    ];
    let assets = AssetSet::load(&specs, dir.path(), Vec::new()).expect("assets");
    let worker_dir = tempfile::tempdir().expect("tempdir");
    let workplace = Workplace::open(worker_dir.path()).expect("workplace");
    install(&workplace, &assets, assets.manifest());
    let executor = JsExecutor::new(small_config(1)).expect("executor");
    executor
        .assets_changed(workplace.root(), assets.manifest())
        .await
        .expect("load");
    assert_eq!(
        executor.run(job("1", "null")).await.expect("job"),
        r#""h1""#
    );
}
