//! Every way out of the sandbox that task code could try is refused.

mod common;

use common::{loaded, ok, small_config, task_dir, write_files};
use queuexec_js::{Grants, JsConfig, JsExecutor};

/// A task whose run(job) evaluates one probe named by job.data and reports what happened.
const PROBE_TASK: &str = r#"
const probes = {
  requireFs: () => require("fs"),
  requireNodeFs: () => require("node:fs"),
  requireFsPromises: () => require("fs/promises"),
  requireChildProcess: () => require("child_process"),
  requireHttp: () => require("http"),
  requireHttps: () => require("https"),
  requireNet: () => require("net"),
  requireTls: () => require("tls"),
  requireDgram: () => require("dgram"),
  requireDns: () => require("dns"),
  requireOs: () => require("os"),
  requireVm: () => require("vm"),
  requireWorkerThreads: () => require("worker_threads"),
  requireCluster: () => require("cluster"),
  requireModule: () => require("module"),
  requireInspector: () => require("inspector"),
  requireV8: () => require("v8"),
  requireAbsolute: () => require("/etc/passwd"),
  requireParent: () => require("../outside.js"),
  requireDeepParent: () => require("../../../../../../../../etc/hostname"),
  requireSymlink: () => require("./escape.js"),
  importFile: () => import("file:///etc/passwd"),
  importNode: () => import("node:fs"),
  importHttp: () => import("https://example.invalid/x.js"),
  timerString: () => setTimeout("globalThis.pwned = true", 1),
  processExit: () => process.exit(1),
  processBinding: () => process.binding("fs"),
};

module.exports = class {
  async run(job) {
    const probe = probes[job.data];
    if (!probe) {
      // Report what is visible instead.
      return {
        deno: typeof Deno, bootstrap: typeof __bootstrap, internals: typeof __queuexec,
        globalsWithDeno: Object.getOwnPropertyNames(globalThis).filter((n) => /deno|bootstrap|queuexec/i.test(n)),
        fetch: typeof fetch, xhr: typeof XMLHttpRequest, websocket: typeof WebSocket, worker: typeof Worker,
        env: Object.keys(process.env), granted: process.env.QUEUEXEC_TEST_GRANTED ?? null,
      };
    }
    try {
      await probe();
      return { refused: false };
    } catch (e) {
      return { refused: true, message: String(e && e.message || e), code: e && e.code || null };
    }
  }
};
"#;

async fn probe(executor: &JsExecutor, name: &str) -> serde_json::Value {
    let result = ok(
        executor,
        name,
        &serde_json::Value::String(name.into()).to_string(),
    )
    .await;
    serde_json::from_str(&result).expect("json")
}

fn setup() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    write_files(
        root.path(),
        &[
            ("outside.js", "module.exports = 'secret';\n"),
            ("task/task.js", PROBE_TASK),
        ],
    );
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        root.path().join("outside.js"),
        root.path().join("task/escape.js"),
    )
    .expect("symlink");
    root
}

#[tokio::test]
async fn node_builtins_that_reach_outside_are_not_granted() {
    let root = setup();
    let executor = JsExecutor::new(small_config(1)).expect("executor");
    executor
        .load_dir(root.path().join("task"), None)
        .await
        .expect("load");
    for name in [
        "requireFs",
        "requireNodeFs",
        "requireFsPromises",
        "requireChildProcess",
        "requireHttp",
        "requireHttps",
        "requireNet",
        "requireTls",
        "requireDgram",
        "requireDns",
        "requireOs",
        "requireVm",
        "requireWorkerThreads",
        "requireCluster",
        "requireModule",
        "requireInspector",
        "requireV8",
    ] {
        let r = probe(&executor, name).await;
        assert_eq!(r["refused"], true, "{name}: {r}");
        let message = r["message"].as_str().unwrap_or_default();
        assert!(message.contains("does not grant"), "{name}: {message}");
    }
}

#[tokio::test]
async fn files_outside_the_task_cannot_be_required() {
    let root = setup();
    let executor = JsExecutor::new(small_config(1)).expect("executor");
    executor
        .load_dir(root.path().join("task"), None)
        .await
        .expect("load");
    let mut names = vec!["requireAbsolute", "requireParent", "requireDeepParent"];
    if cfg!(unix) {
        names.push("requireSymlink");
    }
    for name in names {
        let r = probe(&executor, name).await;
        assert_eq!(r["refused"], true, "{name}: {r}");
        assert_eq!(r["code"], "MODULE_NOT_FOUND", "{name}: {r}");
    }
}

#[tokio::test]
async fn dynamic_code_from_outside_the_bundle_is_refused() {
    let root = setup();
    let executor = JsExecutor::new(small_config(1)).expect("executor");
    executor
        .load_dir(root.path().join("task"), None)
        .await
        .expect("load");
    for name in ["importFile", "importNode", "importHttp", "timerString"] {
        let r = probe(&executor, name).await;
        assert_eq!(r["refused"], true, "{name}: {r}");
    }
}

#[tokio::test]
async fn process_control_is_refused() {
    let root = setup();
    let executor = JsExecutor::new(small_config(1)).expect("executor");
    executor
        .load_dir(root.path().join("task"), None)
        .await
        .expect("load");
    for name in ["processExit", "processBinding"] {
        let r = probe(&executor, name).await;
        assert_eq!(r["refused"], true, "{name}: {r}");
        assert!(
            r["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not allowed"),
            "{name}: {r}"
        );
    }
    // The worker is still there to run the next job.
    let r = probe(&executor, "visible").await;
    assert_eq!(r["deno"], "undefined");
}

#[tokio::test]
async fn engine_internals_network_apis_and_the_environment_are_hidden() {
    let root = setup();
    let executor = JsExecutor::new(small_config(1)).expect("executor");
    executor
        .load_dir(root.path().join("task"), None)
        .await
        .expect("load");
    let r = probe(&executor, "visible").await;
    assert_eq!(r["deno"], "undefined", "{r}");
    assert_eq!(r["bootstrap"], "undefined", "{r}");
    assert_eq!(r["internals"], "undefined", "{r}");
    assert_eq!(r["globalsWithDeno"], serde_json::json!([]), "{r}");
    for api in ["fetch", "xhr", "websocket", "worker"] {
        assert_eq!(r[api], "undefined", "{api}: {r}");
    }
    assert!(
        std::env::var_os("PATH").is_some(),
        "the test needs an environment to hide"
    );
    assert_eq!(
        r["env"],
        serde_json::json!([]),
        "no environment variable is visible: {r}"
    );
}

#[tokio::test]
async fn environment_variables_are_visible_only_when_granted() {
    // PATH is set in every test environment; grant it by name and only it.
    let dir = task_dir(&[(
        "task.js",
        "module.exports = class { run() { return Object.keys(process.env) } };\n",
    )]);
    let config = JsConfig {
        grants: Grants::none().with_env(["PATH"]),
        ..small_config(1)
    };
    let executor = JsExecutor::new(config).expect("executor");
    executor.load_dir(dir.path(), None).await.expect("load");
    assert_eq!(ok(&executor, "1", "null").await, r#"["PATH"]"#);
    let (default, _dir) = loaded(
        &[(
            "task.js",
            "module.exports = class { run() { return Object.keys(process.env) } };\n",
        )],
        small_config(1),
    )
    .await;
    assert_eq!(ok(&default, "1", "null").await, "[]");
}
