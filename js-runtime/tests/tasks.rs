//! queue-xec style tasks in the embedded runtime: the task contract, require(), failures that
//! stay with their job, and the globals a task expects.

mod common;

use std::time::Duration;

use common::{fails, job, job_with_timeout, loaded, ok, small_config, task_dir};
use queuexec_core::Executor;
use queuexec_js::{JsConfig, JsError, JsExecutor};

/// A task written for queue-xec-worker: a class, state built once, async run(job).
const QUEUE_XEC_TASK: &str = r#"
class Task {
  constructor() {
    this.runs = 0;
  }
  async run(job) {
    this.runs += 1;
    const input = JSON.parse(job.data);
    await new Promise((resolve) => setTimeout(resolve, 1));
    return { id: job.id, sum: input.a + input.b, runs: this.runs };
  }
}
module.exports = Task;
"#;

#[tokio::test]
async fn a_queue_xec_task_runs_unmodified_and_keeps_its_instance() {
    let (executor, _dir) = loaded(&[("task.js", QUEUE_XEC_TASK)], small_config(1)).await;
    // The master pushed the string '{"a":1,"b":2}': its JSON text is a JSON string.
    let first = ok(&executor, "j1", r#""{\"a\":1,\"b\":2}""#).await;
    assert_eq!(first, r#"{"id":"j1","sum":3,"runs":1}"#);
    let second = ok(&executor, "j2", r#""{\"a\":40,\"b\":2}""#).await;
    assert_eq!(
        second, r#"{"id":"j2","sum":42,"runs":2}"#,
        "new Task() is built once per runtime"
    );
}

#[tokio::test]
async fn job_data_is_the_value_the_master_pushed_and_results_are_json() {
    let task = r#"
module.exports = class {
  run(job) {
    switch (job.id) {
      case "echo": return job.data;
      case "undefined": return undefined;
      case "string": return "text";
      case "bigint": return 1n;
      case "type": return typeof job.data;
    }
  }
};
"#;
    let (executor, _dir) = loaded(&[("task.js", task)], small_config(1)).await;
    assert_eq!(
        ok(&executor, "echo", r#"{"n":[1,2]}"#).await,
        r#"{"n":[1,2]}"#
    );
    assert_eq!(ok(&executor, "type", r#""a string""#).await, r#""string""#);
    assert_eq!(ok(&executor, "type", r#"{"n":1}"#).await, r#""object""#);
    assert_eq!(ok(&executor, "undefined", "null").await, "null");
    assert_eq!(ok(&executor, "string", "null").await, r#""text""#);
    let message = fails(&executor, job("bigint", "null")).await;
    assert!(
        message.contains("cannot be sent to the master as JSON"),
        "{message}"
    );
}

#[tokio::test]
async fn relative_requires_resolve_among_the_shipped_files() {
    let files = [
        (
            "task.js",
            r#"
const Helper = require('./lib/Helper.js');
const util = require('./lib/util');
const config = require('./config.json');
const shapes = require('./shapes');
module.exports = class Task {
  run(job) {
    return { helper: new Helper(config.factor).scale(job.data), twice: util.twice(2), area: shapes.square(3),
             sameModule: require('./lib/util') === util, dirname: __dirname, filename: __filename };
  }
};
"#,
        ),
        (
            "lib/Helper.js",
            "const { twice } = require('./util');\nmodule.exports = class Helper { constructor(f) { this.f = f } scale(x) { return twice(x) * this.f } };\n",
        ),
        ("lib/util.js", "exports.twice = (x) => x * 2;\n"),
        ("config.json", r#"{"factor": 10}"#),
        (
            "shapes/index.js",
            "exports.square = (s) => require('../lib/util').twice(s) * s / 2;\n",
        ),
    ];
    let (executor, _dir) = loaded(&files, small_config(1)).await;
    assert_eq!(
        ok(&executor, "1", "4").await,
        r#"{"helper":80,"twice":4,"area":9,"sameModule":true,"dirname":"/task","filename":"/task/task.js"}"#
    );
}

#[tokio::test]
async fn a_missing_module_names_itself_and_the_file_that_asked() {
    let dir = task_dir(&[
        (
            "task.js",
            "require('./lib/a');\nmodule.exports = class { run() {} };\n",
        ),
        ("lib/a.js", "require('./nope');\n"),
    ]);
    let executor = JsExecutor::new(small_config(1)).expect("executor");
    let err = executor
        .load_dir(dir.path(), None)
        .await
        .expect_err("load must fail");
    let message = err.to_string();
    assert!(
        message.contains("'./nope'") && message.contains("/task/lib/a.js"),
        "{message}"
    );

    let dir = task_dir(&[(
        "task.js",
        "module.exports = class { run() { return require('left-pad')('x', 3) } };\n",
    )]);
    executor
        .load_dir(dir.path(), None)
        .await
        .expect("a lazy require loads");
    let message = fails(&executor, job("1", "null")).await;
    assert!(
        message.contains("'left-pad'")
            && message.contains("/task/task.js")
            && message.contains("dependencies"),
        "{message}"
    );
}

#[tokio::test]
async fn load_failures_are_clear() {
    let executor = JsExecutor::new(small_config(1)).expect("executor");
    let empty = task_dir(&[("other.js", "")]);
    let err = executor
        .load_dir(empty.path(), None)
        .await
        .expect_err("no task.js");
    assert!(matches!(err, JsError::TaskNotFound(_)), "{err}");

    let not_a_class = task_dir(&[("task.js", "module.exports = 42;\n")]);
    let err = executor
        .load_dir(not_a_class.path(), None)
        .await
        .expect_err("not a task");
    assert!(err.to_string().contains("module.exports = Task"), "{err}");

    let throws = task_dir(&[("task.js", "throw new Error('top-level boom');\n")]);
    let err = executor
        .load_dir(throws.path(), None)
        .await
        .expect_err("throws");
    assert!(err.to_string().contains("top-level boom"), "{err}");

    let syntax = task_dir(&[("task.js", "module.exports = class { run( { };\n")]);
    let err = executor
        .load_dir(syntax.path(), None)
        .await
        .expect_err("syntax error");
    assert!(err.to_string().contains("SyntaxError"), "{err}");

    // Jobs say why there is no task.
    let message = fails(&executor, job("1", "null")).await;
    assert!(message.contains("task.js failed to load"), "{message}");

    // A good task afterwards works.
    let good = task_dir(&[(
        "task.js",
        "module.exports = class { run() { return 'ok' } };\n",
    )]);
    executor
        .load_dir(good.path(), None)
        .await
        .expect("good task");
    assert_eq!(ok(&executor, "2", "null").await, r#""ok""#);
}

#[tokio::test]
async fn a_job_before_any_task_fails_with_a_reason() {
    let executor = JsExecutor::new(small_config(1)).expect("executor");
    let message = fails(&executor, job("1", "null")).await;
    assert!(message.contains("no task.js is loaded"), "{message}");
}

const FAILING_TASK: &str = r#"
module.exports = class Task {
  constructor() { this.hoard = []; }
  async run(job) {
    switch (job.data) {
      case "throw": throw new Error("boom from the task");
      case "reject": return Promise.reject(new TypeError("rejected on purpose"));
      case "throw-string": throw "a bare string";
      case "spin": while (true) {}
      case "spin-async": await null; for (;;) {}
      case "sleep": await new Promise((r) => setTimeout(r, 60000)); return "woke";
      case "never": return new Promise(() => {});
      case "memory": { const a = []; for (;;) a.push(new Array(100000).fill(a.length)); }
      // About 13 MB per job (100 000 numbers per array): under the 64 MiB limit in one job,
      // over it after a handful kept across jobs.
      case "hoard": { for (let i = 0; i < 8; i++) this.hoard.push(new Array(100000).fill(i)); return this.hoard.length; }
      default: return "fine " + job.id;
    }
  }
};
"#;

#[tokio::test]
async fn thrown_errors_and_rejections_fail_only_their_job() {
    let (executor, _dir) = loaded(&[("task.js", FAILING_TASK)], small_config(1)).await;
    let message = fails(&executor, job("1", r#""throw""#)).await;
    assert!(message.contains("Error: boom from the task"), "{message}");
    assert!(
        message.contains("/task/task.js"),
        "the stack names the file: {message}"
    );
    assert_eq!(ok(&executor, "2", r#""ok""#).await, r#""fine 2""#);

    let message = fails(&executor, job("3", r#""reject""#)).await;
    assert!(
        message.contains("TypeError: rejected on purpose"),
        "{message}"
    );
    assert_eq!(ok(&executor, "4", r#""ok""#).await, r#""fine 4""#);

    let message = fails(&executor, job("5", r#""throw-string""#)).await;
    assert!(message.contains("a bare string"), "{message}");

    let message = fails(&executor, job("6", r#""never""#)).await;
    assert!(message.contains("never settled"), "{message}");
    assert_eq!(ok(&executor, "7", r#""ok""#).await, r#""fine 7""#);
}

#[tokio::test]
async fn an_endless_loop_times_out_and_the_next_job_succeeds() {
    let (executor, _dir) = loaded(&[("task.js", FAILING_TASK)], small_config(1)).await;
    for (id, what) in [
        ("spin", r#""spin""#),
        ("spin-async", r#""spin-async""#),
        ("sleep", r#""sleep""#),
    ] {
        let message = fails(
            &executor,
            job_with_timeout(id, what, Duration::from_millis(300)),
        )
        .await;
        assert!(message.contains("timed out after 300ms"), "{id}: {message}");
        assert_eq!(
            ok(&executor, "next", r#""ok""#).await,
            r#""fine next""#,
            "after {id}"
        );
    }
}

#[tokio::test]
async fn the_worker_default_timeout_applies_to_jobs_without_one() {
    let config = JsConfig {
        default_timeout: Some(Duration::from_millis(200)),
        ..small_config(1)
    };
    let (executor, _dir) = loaded(&[("task.js", FAILING_TASK)], config).await;
    let message = fails(&executor, job("spin", r#""spin""#)).await;
    assert!(message.contains("timed out after 200ms"), "{message}");
    assert_eq!(ok(&executor, "next", r#""ok""#).await, r#""fine next""#);
}

#[tokio::test]
async fn a_memory_bomb_fails_its_job_and_the_next_job_succeeds() {
    let (executor, _dir) = loaded(&[("task.js", FAILING_TASK)], small_config(1)).await;
    let message = fails(
        &executor,
        job_with_timeout("bomb", r#""memory""#, Duration::from_secs(60)),
    )
    .await;
    assert!(message.contains("ran out of JavaScript heap"), "{message}");
    assert_eq!(ok(&executor, "next", r#""ok""#).await, r#""fine next""#);
    // Memory held across jobs counts too: each job keeps a share well under the limit, and the
    // limit is crossed only by what earlier jobs left behind. The rebuilt runtime starts empty.
    let mut succeeded = 0;
    let mut failure = None;
    for i in 0..40 {
        match executor.run(job(&format!("hoard{i}"), r#""hoard""#)).await {
            Ok(held) => {
                succeeded += 1;
                assert_eq!(
                    held,
                    (succeeded * 8).to_string(),
                    "the task keeps what it hoarded"
                );
            }
            Err(e) => {
                failure = Some(e.message);
                break;
            }
        }
    }
    let message = failure.expect("hoarding across jobs must hit the heap limit");
    assert!(
        succeeded >= 2,
        "one job's share must fit under the limit; only {succeeded} jobs succeeded before: {message}"
    );
    assert!(message.contains("ran out of JavaScript heap"), "{message}");
    assert_eq!(ok(&executor, "after", r#""ok""#).await, r#""fine after""#);
    assert_eq!(
        ok(&executor, "fresh", r#""hoard""#).await,
        "8",
        "the rebuilt runtime starts without the hoard"
    );
}

#[tokio::test]
async fn dropping_the_job_future_stops_the_job() {
    let (executor, _dir) = loaded(&[("task.js", FAILING_TASK)], small_config(1)).await;
    let spin = executor.run(job("spin", r#""spin""#));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), spin)
            .await
            .is_err()
    );
    // The only slot is free again, with a working runtime.
    let next = tokio::time::timeout(
        Duration::from_secs(20),
        executor.run(job("next", r#""ok""#)),
    )
    .await
    .expect("the abandoned job was stopped");
    assert_eq!(next.expect("next job"), r#""fine next""#);
}

#[tokio::test]
async fn each_concurrency_slot_has_its_own_runtime() {
    let task = r#"
const me = crypto.randomUUID();
module.exports = class {
  async run(job) {
    const until = Date.now() + 300;
    while (Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    return me;
  }
};
"#;
    let (executor, _dir) = loaded(&[("task.js", task)], small_config(2)).await;
    let (a, b) = tokio::join!(
        executor.run(job("a", "null")),
        executor.run(job("b", "null"))
    );
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_ne!(a, b, "two jobs at once ran in two runtimes");
}

#[tokio::test]
async fn reloading_replaces_the_task_in_every_slot() {
    let dir = task_dir(&[(
        "task.js",
        "module.exports = class { run() { return 1 } };\n",
    )]);
    let executor = JsExecutor::new(small_config(2)).expect("executor");
    executor.load_dir(dir.path(), None).await.expect("load v1");
    assert_eq!(ok(&executor, "1", "null").await, "1");
    common::write_files(
        dir.path(),
        &[(
            "task.js",
            "module.exports = class { run() { return 2 } };\n",
        )],
    );
    executor.load_dir(dir.path(), None).await.expect("load v2");
    let (a, b) = tokio::join!(
        executor.run(job("a", "null")),
        executor.run(job("b", "null"))
    );
    assert_eq!(
        (a.expect("a"), b.expect("b")),
        ("2".to_string(), "2".to_string())
    );
}

#[tokio::test]
async fn the_globals_a_task_expects_are_there() {
    let task = r#"
module.exports = class {
  async run() {
    const checks = {};
    const enc = new TextEncoder().encode("héllo €");
    checks.textEncoding = new TextDecoder().decode(enc) === "héllo €" && enc.length === 10;
    const streamed = new TextDecoder();
    checks.textStreaming = streamed.decode(enc.subarray(0, 2), { stream: true }) + streamed.decode(enc.subarray(2)) === "héllo €";
    try { new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff])); checks.fatal = false } catch (e) { checks.fatal = e instanceof TypeError }
    checks.base64 = btoa("hello") === "aGVsbG8=" && atob("aGVsbG8=") === "hello";
    const url = new URL("../b?x=1&y=two#frag", "https://user@example.com:8080/a/c");
    url.searchParams.append("z", "3 4");
    checks.url = url.href === "https://user@example.com:8080/b?x=1&y=two&z=3+4#frag" && url.port === "8080" && url.searchParams.get("y") === "two";
    checks.urlInvalid = (() => { try { new URL("not a url"); return false } catch (e) { return e instanceof TypeError } })();
    const original = { a: [1, { b: new Date(0) }], m: new Map([[1, 2]]) };
    const clone = structuredClone(original);
    checks.structuredClone = clone !== original && clone.a[1].b.getTime() === 0 && clone.m.get(1) === 2;
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    checks.random = bytes.some((b) => b !== 0) && /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID());
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 20));
    checks.timers = performance.now() - t0 >= 15;
    let ticks = 0;
    await new Promise((resolve) => { const h = setInterval(() => { if (++ticks === 3) { clearInterval(h); resolve(); } }, 1); });
    let cleared = true;
    clearTimeout(setTimeout(() => { cleared = false }, 1));
    await new Promise((r) => setTimeout(r, 10));
    checks.intervalsAndClear = ticks === 3 && cleared;
    const order = [];
    queueMicrotask(() => order.push("micro"));
    process.nextTick(() => order.push("tick"));
    await new Promise((r) => setImmediate(r));
    checks.microtasks = order.length === 2;
    const buf = Buffer.from("héllo");
    checks.buffer = buf.length === 6 && buf.toString("hex") === "68c3a96c6c6f" && Buffer.from("aGk=", "base64").toString() === "hi" &&
      Buffer.concat([buf, Buffer.alloc(2)]).length === 8 && Buffer.isBuffer(buf.slice(1)) && buf.readUInt16BE(0) === 0x68c3;
    checks.globalAlias = global === globalThis && typeof require("buffer").Buffer === "function";
    checks.util = require("util").format("%s=%d %j", "n", 42, { a: 1 }) === "n=42 {\"a\":1}";
    const EventEmitter = require("events");
    const ee = new EventEmitter(); let got = 0; ee.once("x", (v) => { got += v }); ee.emit("x", 2); ee.emit("x", 2);
    checks.events = got === 2;
    checks.path = require("path").join("/a/b", "../c", "d.js") === "/a/c/d.js";
    console.log("log line", { n: 1 });
    console.info("info line"); console.warn("warn line"); console.error("error line"); console.debug("debug line"); console.dir({ deep: { er: [1] } });
    return checks;
  }
};
"#;
    let (executor, _dir) = loaded(&[("task.js", task)], small_config(1)).await;
    let result = ok(&executor, "1", "null").await;
    let checks: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&result).expect("json");
    let failed: Vec<&String> = checks
        .iter()
        .filter(|(_, v)| **v != serde_json::Value::Bool(true))
        .map(|(k, _)| k)
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:?} in {result}");
    assert!(checks.len() >= 15, "{result}");
}

#[tokio::test]
async fn the_demo_task_estimates_pi() {
    let (executor, _dir) = loaded(
        &[("task.js", queuexec_js::demo::MONTE_CARLO_PI)],
        small_config(2),
    )
    .await;
    // As an object, and as the JSON string a queue-xec master would push.
    for data in [r#"{"samples":200000}"#, r#""{\"samples\":200000}""#] {
        let result = ok(&executor, "pi", data).await;
        let value: serde_json::Value = serde_json::from_str(&result).expect("json");
        let pi = value["pi"].as_f64().expect("pi");
        assert_eq!(value["samples"], 200000, "{result}");
        assert!((pi - std::f64::consts::PI).abs() < 0.05, "{result}");
    }
}

#[test]
fn a_task_runtime_runs_on_the_current_thread() {
    let dir = task_dir(&[(
        "task.js",
        "module.exports = class { constructor() { this.n = 0 } run(job) { return [job.id, ++this.n] } };\n",
    )]);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let _entered = tokio.enter();
    let mut runtime = queuexec_js::TaskRuntime::new(&small_config(1)).expect("runtime");
    assert!(!runtime.is_loaded());
    runtime
        .load(&queuexec_js::TaskSource::from_dir(dir.path(), None).expect("source"))
        .expect("load");
    assert_eq!(
        tokio.block_on(runtime.run("a", "null")).expect("run"),
        r#"["a",1]"#
    );
    assert_eq!(
        tokio.block_on(runtime.run("b", "null")).expect("run"),
        r#"["b",2]"#
    );
    let again = runtime.load(&queuexec_js::TaskSource::from_dir(dir.path(), None).expect("source"));
    assert!(again.is_err(), "a runtime holds one task");
}
