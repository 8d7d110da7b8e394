//! Hostile task.js: every test is an attack on the runtime's own JavaScript (prototypes,
//! iterators, getters, proxies, `Function.prototype.call`, stack-trace hooks, ...) written the
//! way a task author would write it. Each one runs in a child process of this test binary, so
//! that what an escape could do to a worker — write to its stdout (`op_print`), abort it
//! (`op_panic`) — is observed: the child must exit cleanly, its stdout must not carry the
//! attack's marker, the attacked runtime must keep serving jobs, a job in flight on the other
//! slot must complete, and the task's spies must never have seen an internal object (one with
//! an `ops`, `core`, `evalContext` or `op_*` key).

mod common;

use std::future::Future;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{job, task_dir};
use queuexec_core::Executor;
use queuexec_js::JsExecutor;

/// Set in a child process to the name of the one attack it runs.
const CHILD_ENV: &str = "QUEUEXEC_HOSTILE_CHILD";
/// What an escaped task writes to the worker's stdout.
const MARKER: &str = "PWNED-BY-TASK";
/// How long one attack (child process) may take.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `scenario` in a child process of this test binary and checks the worker process held:
/// it exited successfully, ran exactly this test, and nothing reached its stdout.
fn isolated<F, Fut>(name: &str, scenario: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async {
            tokio::time::timeout(CHILD_DEADLINE, scenario())
                .await
                .expect("the attack scenario did not finish within its deadline")
        });
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the attack's child process");
    let mut stdout_pipe = child.stdout.take().expect("stdout");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > CHILD_DEADLINE + Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the attack's child process ({name}) did not end in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    assert!(
        status.success(),
        "the worker process did not survive the attack {name}: {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        !stdout.contains(MARKER),
        "the attack {name} reached the worker's stdout:\n{stdout}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child did not run the attack {name}:\n{stdout}\n{stderr}"
    );
}

/// The task: `ATTACK` (an attack's code) runs at the top of task.js, before `new Task()`, with
/// `spy`, `inspect` and `apply` in scope; every job then drives the runtime's internal paths
/// (require, the lazy globals, timers, console, process, errors) and returns what it got and
/// every internal object the spies saw.
const TASK: &str = r#"
"use strict";
const apply = Reflect.apply;
const construct = Reflect.construct;
const reflectGet = Reflect.get;
const reflectHas = Reflect.has;
const getPrototypeOf = Reflect.getPrototypeOf;
const defineProperty = Object.defineProperty;
const getOwnPropertyNames = Object.getOwnPropertyNames;
const leaks = [];
const INTERNAL_KEYS = ["ops", "core", "evalContext", "op_print", "op_panic", "primordials", "__bootstrap"];

// The real attack: whatever internal object reaches a hook is used to write to the worker's
// stdout and to abort it. Only own properties are read, so the task's own getters on
// Object.prototype do not recurse into these helpers.
const hasOwn = Object.hasOwn;
const ownDescriptor = Reflect.getOwnPropertyDescriptor;
function own(v, key) {
  try {
    const d = ownDescriptor(v, key);
    return d === undefined ? undefined : d.value;
  } catch {
    return undefined;
  }
}
function exploit(v) {
  try {
    const core = own(v, "core");
    const ops = own(v, "ops") || (core && own(core, "ops")) || v;
    const print = own(ops, "op_print");
    const panic = own(ops, "op_panic");
    if (typeof print === "function") print("PWNED-BY-TASK\n", false);
    const corePrint = core && own(core, "print");
    if (typeof corePrint === "function") corePrint("PWNED-BY-TASK\n", false);
    if (typeof panic === "function") panic("PWNED-BY-TASK");
  } catch {}
}

function isInternal(v) {
  if (v === null || (typeof v !== "object" && typeof v !== "function")) return false;
  try {
    for (let i = 0; i < INTERNAL_KEYS.length; i++) if (hasOwn(v, INTERNAL_KEYS[i])) return true;
    const names = getOwnPropertyNames(v);
    for (let i = 0; i < names.length; i++) {
      const n = names[i];
      if (typeof n === "string" && n.length > 3 && n[0] === "o" && n[1] === "p" && n[2] === "_") return true;
    }
  } catch {}
  return false;
}

let inspecting = false;
function inspect(label, v) {
  if (inspecting) return;
  inspecting = true;
  try {
    if (isInternal(v)) {
      leaks[leaks.length] = label;
      exploit(v);
    }
  } finally {
    inspecting = false;
  }
}

// A transparent spy: looks at `this` and every argument, then does what the original did.
function spy(label, original) {
  return function (...args) {
    inspect(label + " (this)", this);
    for (let i = 0; i < args.length; i++) inspect(label + " (argument)", args[i]);
    return new.target ? construct(original, args, new.target) : apply(original, this, args);
  };
}

// ----------------------------------------------------------------------- the attack
ATTACK
// ------------------------------------------------------------------------------------

async function exercise(job) {
  const out = {};
  out.rel = require("./helper.js").value;
  out.json = require("./data.json").n;
  out.path = require("path").join("a", "b");
  out.util = require("util").format("%s-%d", "x", 1);
  try { require("fs"); out.fs = "granted"; } catch (e) { out.fs = e.code; }
  try { require("node:child_process"); out.cp = "granted"; } catch (e) { out.cp = e.code; }
  try { require("./missing.js"); out.missing = "found"; } catch (e) { out.missing = e.code; }
  out.enc = new TextEncoder().encode("h\u00e9").length;
  out.dec = new TextDecoder().decode(new Uint8Array([104, 105]));
  out.b64 = btoa("hi") + atob("aGk=");
  out.url = new URL("https://example.com/a?b=1").searchParams.get("b");
  try { new URL("not a url"); out.badUrl = "parsed"; } catch (e) { out.badUrl = e.name; }
  out.buf = Buffer.from("hi").toString("hex") + Buffer.from("aGk=", "base64").toString();
  console.log("plain line");
  console.log("%s formatted", "x", { a: [1] }, new Error("logged"));
  console.group("g");
  console.info("in group");
  console.groupEnd();
  console.time("t");
  console.timeEnd("t");
  console.warn(new Map([[1, 2]]), [1, 2, 3]);
  out.clone = structuredClone({ a: [1, 2] }).a.length;
  try { structuredClone(() => 1); out.cloneErr = "cloned"; } catch (e) { out.cloneErr = e.name; }
  out.uuid = crypto.randomUUID().length;
  out.random = crypto.getRandomValues(new Uint8Array(4)).length;
  out.timer = await new Promise((resolve) => setTimeout((v) => resolve(v), 1, "fired"));
  await new Promise((resolve) => setImmediate(resolve));
  const interval = setInterval(() => {}, 1);
  clearInterval(interval);
  const t = setTimeout(() => {}, 1000);
  t.unref(); t.ref(); t.refresh(); clearTimeout(t);
  out.tick = await new Promise((resolve) => process.nextTick((v) => resolve(v), "ticked"));
  process.on("custom", () => {});
  out.emitted = process.emit("custom", 1);
  out.hrtime = process.hrtime().length;
  out.perf = typeof performance.now();
  const EventEmitter = require("events");
  const emitter = new EventEmitter();
  let heard = 0;
  emitter.on("e", (n) => { heard += n; });
  emitter.emit("e", 2);
  out.events = heard;
  require("assert").strictEqual(1, 1);
  await require("timers/promises").setTimeout(1);
  out.crypto = require("crypto").randomBytes(4).length;
  out.sd = new (require("string_decoder").StringDecoder)("utf8").write(Buffer.from("ok"));
  out.qs = require("querystring").stringify({ a: 1 });
  out.id = job.id;
  out.data = job.data;
  return out;
}

const EXPECTED = {
  rel: "helper", json: 7, path: "a/b", util: "x-1", fs: "ERR_ACCESS_DENIED", cp: "ERR_ACCESS_DENIED",
  missing: "MODULE_NOT_FOUND", enc: 3, dec: "hi", b64: "aGk=hi", url: "1", badUrl: "TypeError", buf: "6869hi",
  clone: 2, cloneErr: "DataCloneError", uuid: 36, random: 4, timer: "fired", tick: "ticked", emitted: true,
  hrtime: 2, perf: "number", events: 2, crypto: 4, sd: "ok", qs: "a=1",
};

module.exports = class Task {
  async run(job) {
    if (job.data === "victim") {
      await new Promise((resolve) => setTimeout(resolve, 300));
      return { victim: "done", leaks };
    }
    const out = await exercise(job);
    const wrong = [];
    for (const key of Object.keys(EXPECTED)) {
      if (out[key] !== EXPECTED[key]) wrong.push(key + ": " + String(out[key]) + " (expected " + String(EXPECTED[key]) + ")");
    }
    return { wrong, leaks, id: out.id, data: out.data };
  }
};
"#;

fn files(attack: &str) -> Vec<(&'static str, String)> {
    vec![
        ("task.js", TASK.replace("\nATTACK\n", &format!("\n{attack}\n"))),
        (
            "helper.js",
            // Sloppy on purpose: a module wrapper asking for its callers.
            "if (typeof __probeCallers === 'function') __probeCallers('module wrapper', arguments.callee);\nmodule.exports = { value: 'helper' };\n".into(),
        ),
        ("data.json", "{\"n\": 7}\n".into()),
    ]
}

/// Loads the attack, runs an attacked job while a victim job is in flight on the other slot,
/// then two more jobs at once (so the attacked runtime serves again), and checks every answer.
async fn attack_holds(attack: &str) {
    let files = files(attack);
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let dir = task_dir(&refs);
    let executor = JsExecutor::new(common::small_config(2)).expect("executor");
    executor
        .load_dir(dir.path(), None)
        .await
        .expect("the attacking task.js loads");

    let victim = executor.run(job("victim", r#""victim""#));
    let attacked = executor.run(job("attack-1", r#"{"n":1}"#));
    let (victim, attacked) = tokio::join!(victim, attacked);
    let victim = victim.unwrap_or_else(|e| {
        panic!("the job in flight on the other slot did not complete: {e} (the attacked job: {attacked:?})")
    });
    let victim: serde_json::Value = serde_json::from_str(&victim).expect("json");
    assert_eq!(victim["victim"], "done");
    check(&attacked.expect("the attacked job runs"), "attack-1");

    let (a, b) = tokio::join!(
        executor.run(job("after-1", r#"{"n":1}"#)),
        executor.run(job("after-2", r#"{"n":1}"#))
    );
    check(&a.expect("the next job works"), "after-1");
    check(&b.expect("the next job works"), "after-2");
}

fn check(result: &str, id: &str) {
    let value: serde_json::Value = serde_json::from_str(result).expect("the result is JSON");
    assert_eq!(
        value["leaks"],
        serde_json::json!([]),
        "internal objects reached the task's hooks: {value}"
    );
    assert_eq!(
        value["wrong"],
        serde_json::json!([]),
        "the attack changed what the runtime does: {value}"
    );
    assert_eq!(value["id"], id, "{value}");
    assert_eq!(value["data"], serde_json::json!({"n": 1}), "{value}");
}

#[test]
fn a_replaced_array_iterator_never_sees_the_runtimes_internals() {
    isolated(
        "a_replaced_array_iterator_never_sees_the_runtimes_internals",
        || {
            attack_holds(
                r#"
// The reported escape: the bootstrap destructured `const [factory, error] = ...` after task code
// ran, so the iterator could hand back a factory of its own, which was then called with the
// runtime's internals.
const originalIterator = Array.prototype[Symbol.iterator];
const ArrayIteratorPrototype = Object.getPrototypeOf([][Symbol.iterator]());
const originalNext = ArrayIteratorPrototype.next;
function fakeFactory(real) {
  return function (...args) {
    for (let i = 0; i < args.length; i++) inspect("fake factory (argument)", args[i]);
    return apply(real, this, args);
  };
}
Array.prototype[Symbol.iterator] = function () {
  inspect("Array.prototype[Symbol.iterator] (this)", this);
  for (let i = 0; i < this.length; i++) inspect("Array.prototype[Symbol.iterator] (element)", this[i]);
  if (this.length === 2 && typeof this[0] === "function") {
    return apply(originalIterator, [fakeFactory(this[0]), this[1]], []);
  }
  return apply(originalIterator, this, []);
};
ArrayIteratorPrototype.next = function () {
  const step = apply(originalNext, this, []);
  inspect("ArrayIterator next (value)", step.value);
  if (typeof step.value === "function" && !step.done) step.value = fakeFactory(step.value);
  return step;
};
for (const proto of [Map.prototype, Set.prototype, String.prototype]) {
  const original = proto[Symbol.iterator];
  proto[Symbol.iterator] = spy("iterator", original);
}
Object.prototype[Symbol.iterator] = function* () { inspect("Object.prototype[Symbol.iterator] (this)", this); };
"#,
            )
        },
    );
}

#[test]
fn replaced_call_apply_and_bind_never_see_the_runtimes_internals() {
    isolated(
        "replaced_call_apply_and_bind_never_see_the_runtimes_internals",
        || {
            attack_holds(
                r#"
const originalCall = Function.prototype.call;
const originalApply = Function.prototype.apply;
const originalBind = Function.prototype.bind;
const originalToString = Function.prototype.toString;
Function.prototype.call = function (thisArg, ...args) {
  inspect("Function.prototype.call (function)", this);
  inspect("Function.prototype.call (this)", thisArg);
  for (let i = 0; i < args.length; i++) inspect("Function.prototype.call (argument)", args[i]);
  return apply(this, thisArg, args);
};
Function.prototype.apply = function (thisArg, args) {
  inspect("Function.prototype.apply (function)", this);
  inspect("Function.prototype.apply (this)", thisArg);
  if (args) for (let i = 0; i < args.length; i++) inspect("Function.prototype.apply (argument)", args[i]);
  return apply(this, thisArg, args || []);
};
Function.prototype.bind = function (thisArg, ...args) {
  inspect("Function.prototype.bind (function)", this);
  inspect("Function.prototype.bind (this)", thisArg);
  for (let i = 0; i < args.length; i++) inspect("Function.prototype.bind (argument)", args[i]);
  return apply(originalBind, this, [thisArg, ...args]);
};
Function.prototype.toString = spy("Function.prototype.toString", originalToString);
Reflect.apply = spy("Reflect.apply", apply);
Reflect.construct = spy("Reflect.construct", Reflect.construct);
"#,
            )
        },
    );
}

#[test]
fn getters_and_setters_on_object_prototype_never_see_the_runtimes_internals() {
    isolated(
        "getters_and_setters_on_object_prototype_never_see_the_runtimes_internals",
        || {
            attack_holds(
                r#"
// A getter on Object.prototype sees every object on which the key is looked up and not found;
// a setter every object on which the key is assigned without an own property.
for (const key of ["core", "ops", "then", "factory", "error", "thrown", "lazy", "exports", "id", "filename", "code",
                   "loaded", "children", "parent", "path", "paths", "require", "catch", "constructor_", "q", "groupIndent"]) {
  defineProperty(Object.prototype, key, {
    configurable: true,
    get() { inspect("getter " + key + " (this)", this); return undefined; },
    set(v) {
      inspect("setter " + key + " (this)", this);
      inspect("setter " + key + " (value)", v);
      defineProperty(this, key, { __proto__: null, value: v, writable: true, enumerable: true, configurable: true });
    },
  });
}
"#,
            )
        },
    );
}

#[test]
fn a_replaced_promise_then_never_sees_the_runtimes_internals() {
    isolated(
        "a_replaced_promise_then_never_sees_the_runtimes_internals",
        || {
            attack_holds(
                r#"
const originalThen = Promise.prototype.then;
Promise.prototype.then = function (onFulfilled, onRejected) {
  inspect("Promise.prototype.then (this)", this);
  const wrap = (f, label) => typeof f === "function" ? function (v) { inspect(label, v); return apply(f, this, [v]); } : f;
  return apply(originalThen, this, [wrap(onFulfilled, "then fulfilled value"), wrap(onRejected, "then rejected value")]);
};
Promise.prototype.catch = spy("Promise.prototype.catch", Promise.prototype.catch);
Promise.prototype.finally = spy("Promise.prototype.finally", Promise.prototype.finally);
Promise.resolve = spy("Promise.resolve", Promise.resolve);
Promise.all = spy("Promise.all", Promise.all);
defineProperty(Promise, Symbol.species, { configurable: true, get() { inspect("Promise[Symbol.species] (this)", this); return Promise; } });
"#,
            )
        },
    );
}

#[test]
fn proxies_in_place_of_the_global_constructors_never_see_the_runtimes_internals() {
    isolated(
        "proxies_in_place_of_the_global_constructors_never_see_the_runtimes_internals",
        || {
            attack_holds(
                r#"
function trap(name, target) {
  return new Proxy(target, {
    get(t, key, receiver) {
      const value = reflectGet(t, key, t);
      return typeof value === "function" ? spy(name + "." + String(key), value) : value;
    },
    apply(t, thisArg, args) {
      inspect(name + "() (this)", thisArg);
      for (let i = 0; i < args.length; i++) inspect(name + "() (argument)", args[i]);
      return apply(t, thisArg, args);
    },
    construct(t, args, newTarget) {
      for (let i = 0; i < args.length; i++) inspect("new " + name + " (argument)", args[i]);
      return construct(t, args, newTarget === trap_cache[name] ? t : newTarget);
    },
  });
}
const trap_cache = Object.create(null);
for (const name of ["Object", "Array", "JSON", "Promise", "String", "Symbol", "Reflect", "Map", "Set", "WeakMap", "Error",
                    "TypeError", "SyntaxError", "Math", "Number", "Uint8Array", "ArrayBuffer", "Date", "BigInt", "Function"]) {
  trap_cache[name] = trap(name, globalThis[name]);
  try {
    defineProperty(globalThis, name, { __proto__: null, value: trap_cache[name], writable: true, configurable: true, enumerable: false });
  } catch {
    // The runtime keeps `Error` fixed (deno_core looks up Error.prepareStackTrace through it).
    if (name !== "Error") throw new TypeError("could not replace globalThis." + name);
  }
}
globalThis.queueMicrotask = spy("queueMicrotask", queueMicrotask);
// Wrap the global object's prototype chain as well.
Object.setPrototypeOf(globalThis, new Proxy(getPrototypeOf(globalThis) || {}, {
  get(t, key, receiver) { inspect("global proto get " + String(key) + " (receiver)", receiver); return reflectGet(t, key, receiver); },
  has(t, key) { return reflectHas(t, key); },
}));
"#,
            )
        },
    );
}

#[test]
fn traps_defined_on_the_global_object_are_never_touched_by_the_runtime() {
    isolated(
        "traps_defined_on_the_global_object_are_never_touched_by_the_runtime",
        || {
            attack_holds(
                r#"
for (const name of ["Deno", "__bootstrap", "__queuexec", "core", "ops", "q", "primordials", "internals", "op_print"]) {
  defineProperty(globalThis, name, {
    configurable: true,
    get() { leaks[leaks.length] = "the runtime read globalThis." + name; return undefined; },
    set(v) { leaks[leaks.length] = "the runtime wrote globalThis." + name; inspect("global setter " + name, v); },
  });
}
"#,
            )
        },
    );
}

#[test]
fn async_iterator_and_iterator_symbols_never_see_the_runtimes_internals() {
    isolated(
        "async_iterator_and_iterator_symbols_never_see_the_runtimes_internals",
        || {
            attack_holds(
                r#"
Object.prototype[Symbol.asyncIterator] = async function* () { inspect("Symbol.asyncIterator (this)", this); };
Array.prototype[Symbol.asyncIterator] = async function* () { inspect("Array Symbol.asyncIterator (this)", this); };
defineProperty(Object.prototype, Symbol.toPrimitive, { configurable: true, writable: true, value: function (hint) {
  inspect("Symbol.toPrimitive (this)", this);
  return hint === "number" ? NaN : "[object]";
} });
defineProperty(Object.prototype, Symbol.toStringTag, { configurable: true, get() { inspect("Symbol.toStringTag (this)", this); return undefined; } });
defineProperty(Object.prototype, Symbol.hasInstance, { configurable: true, writable: true, value: function (v) { inspect("Symbol.hasInstance (this)", this); return false; } });
defineProperty(Object.prototype, Symbol.isConcatSpreadable, { configurable: true, get() { inspect("Symbol.isConcatSpreadable (this)", this); return undefined; } });
"#,
            )
        },
    );
}

#[test]
fn replaced_string_methods_used_by_require_never_see_the_runtimes_internals() {
    isolated(
        "replaced_string_methods_used_by_require_never_see_the_runtimes_internals",
        || {
            attack_holds(
                r#"
for (const name of ["startsWith", "endsWith", "slice", "includes", "charCodeAt", "lastIndexOf", "indexOf", "split",
                    "replace", "padStart", "toString", "concat", "trim", "substring", "toUpperCase", "toLowerCase"]) {
  String.prototype[name] = spy("String.prototype." + name, String.prototype[name]);
}
for (const name of ["push", "join", "includes", "indexOf", "slice", "splice", "map", "filter", "forEach"]) {
  Array.prototype[name] = spy("Array.prototype." + name, Array.prototype[name]);
}
for (const name of ["get", "set", "has", "delete"]) {
  Map.prototype[name] = spy("Map.prototype." + name, Map.prototype[name]);
  WeakMap.prototype[name] = spy("WeakMap.prototype." + name, WeakMap.prototype[name]);
}
for (const name of ["assign", "create", "defineProperty", "keys", "entries", "freeze", "getPrototypeOf"]) {
  Object[name] = spy("Object." + name, Object[name]);
}
Uint8Array.prototype.subarray = spy("Uint8Array.prototype.subarray", Uint8Array.prototype.subarray);
Number.prototype.toString = spy("Number.prototype.toString", Number.prototype.toString);
"#,
            )
        },
    );
}

#[test]
fn a_replaced_json_changes_neither_the_jobs_data_nor_its_result() {
    isolated(
        "a_replaced_json_changes_neither_the_jobs_data_nor_its_result",
        || {
            attack_holds(
                r#"
// Forge both directions: what the job receives and what the master gets back.
const originalParse = JSON.parse;
const originalStringify = JSON.stringify;
JSON.parse = function (text, reviver) {
  inspect("JSON.parse (this)", this);
  originalParse(text, reviver);
  return { forged: true };
};
JSON.stringify = function (value, replacer, space) {
  inspect("JSON.stringify (value)", value);
  return '"forged"';
};
"#,
            )
        },
    );
}

#[test]
fn error_prepare_stack_trace_never_sees_the_runtimes_frames() {
    isolated(
        "error_prepare_stack_trace_never_sees_the_runtimes_frames",
        || {
            attack_holds(
                r#"
// A stack-trace hook is handed call sites; getThis() and getFunction() of the runtime's own
// frames would give away its internals.
function look(frames) {
  if (!frames || typeof frames.length !== "number") return;
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i];
    try { inspect("CallSite.getThis()", f.getThis && f.getThis()); } catch {}
    try {
      const fn = f.getFunction && f.getFunction();
      inspect("CallSite.getFunction()", fn);
      // A function of the runtime called with a fake internals object.
      if (typeof fn === "function" && typeof f.getFileName === "function" && !String(f.getFileName()).includes("/task/")) {
        inspect("runtime function's result", apply(fn, undefined, [{ core: null }, globalThis]));
      }
    } catch {}
    try { f.getFileName && f.getFileName(); f.getLineNumber && f.getLineNumber(); } catch {}
  }
}
Error.prepareStackTrace = function (error, frames) {
  look(frames);
  return String(error && error.message);
};
// Saving and restoring the hook, as the `callsites` package does, keeps it working.
const saved = Error.prepareStackTrace;
Error.prepareStackTrace = (_, frames) => frames;
const ownFrames = new Error("own frames").stack;
if (!Array.isArray(ownFrames) || ownFrames.length === 0 || !String(ownFrames[0].getFileName()).includes("/task/task.js")) {
  leaks[leaks.length] = "the task's hook did not get its own frames: " + String(ownFrames);
}
Error.prepareStackTrace = saved;
// deno_core finds the hook through the global Error: replacing it must not bypass the above.
try { globalThis.Error = { prepareStackTrace: (error, frames) => { look(frames); return ""; } }; } catch {}
try {
  defineProperty(globalThis, "Error", { value: { prepareStackTrace: (error, frames) => { look(frames); return ""; } } });
} catch {}
const stack = {};
Error.captureStackTrace(stack);
void stack.stack;
"#,
            )
        },
    );
}

#[test]
fn the_function_constructor_and_callers_lead_to_nothing_internal() {
    isolated(
        "the_function_constructor_and_callers_lead_to_nothing_internal",
        || {
            attack_holds(
                r#"
const g = ({}).constructor.constructor("return this")();
const g2 = Function("return this")();
const AsyncFunction = (async function () {}).constructor;
const GeneratorFunction = (function* () {}).constructor;
if (g !== globalThis || g2 !== globalThis) leaks[leaks.length] = "the Function constructor gave another global";
void AsyncFunction("return this"), GeneratorFunction("yield this");
// Everything the global object holds, one level down.
for (const name of getOwnPropertyNames(g)) {
  if (/^(Deno|__bootstrap|__queuexec|gc)$/.test(name)) leaks[leaks.length] = "global " + name;
  let value;
  try { value = g[name]; } catch { continue; }
  inspect("global " + name, value);
  if (value !== null && (typeof value === "object" || typeof value === "function")) {
    for (const key of getOwnPropertyNames(value)) {
      try { inspect("global " + name + "." + key, value[key]); } catch {}
    }
  }
}
// Sloppy-mode functions called by the runtime, asking for their callers.
function callerChain(label, f) {
  let current = f;
  for (let depth = 0; depth < 8 && current; depth++) {
    let next;
    try { next = current.caller; } catch { return; }
    if (!next) return;
    inspect(label + " caller", next);
    if (typeof next === "function") {
      try { inspect(label + " caller's result", apply(next, undefined, [{ core: null }, globalThis])); } catch {}
    }
    current = next;
  }
}
globalThis.__probeCallers = callerChain;
setTimeout(new Function("__probeCallers('setTimeout callback', arguments.callee)"), 0);
process.nextTick(new Function("__probeCallers('nextTick callback', arguments.callee)"));
"#,
            )
        },
    );
}
