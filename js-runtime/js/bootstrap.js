// queuexec task runtime: the bootstrap every runtime evaluates before task code.
//
// It keeps startup small: what every task touches is defined here (timers, performance,
// crypto, structuredClone, process, console's plain-text path, require); the rest (console
// formatting, TextEncoder/TextDecoder, atob/btoa, URL, Buffer, the Node built-in modules) lives
// in js/lazy/*.js and is evaluated the first time a task uses it.
//
// Module files are resolved and read by ops (ops.rs, modules.rs) with Node's rules, confined to
// the files the master shipped (`/task/...`) and the dependency bundle
// (`/deps/node_modules/...`); those virtual paths are what tasks see as __filename.
//
// The completion value is `[load, run]`, which the runtime keeps; every trace of deno_core and
// of these internals is then removed from the global object.
//
// Hostile task code (see README "Sandbox"): task code runs in this realm and may replace any
// prototype method, iterator, getter, `then`, global constructor or `Function.prototype.call`.
// So this file
//   - captures deno_core's primordials (uncurried copies of the builtins, taken before any task
//     code exists) and uses only them and local bindings after startup: no destructuring,
//     spread, for-of, iterator protocol, `.call/.apply/.bind`, prototype method, global
//     constructor or getter looked up at run time;
//   - keeps deno_core's `core` and its op table in this closure only: nothing it hands out, and
//     nothing it passes to a function task code could have replaced, holds them. The lazily
//     evaluated parts get `lib`, a frozen object of harmless capabilities (this crate's own ops,
//     the lazy loader), never `core`;
//   - builds property descriptors and internal records with a null prototype;
//   - never resolves a promise with an internal object (no `then` lookup on one);
//   - hands a task's `Error.prepareStackTrace` call sites that give no `this` or function and
//     omit the runtime's own frames (and keeps the global `Error` it is looked up on fixed).
"use strict";

((globalThis) => {
  const primordials = globalThis.__bootstrap.primordials;
  const core = globalThis.Deno.core;
  const {
    ArrayBufferIsView,
    ArrayIsArray,
    ArrayPrototypeIndexOf,
    ArrayPrototypeJoin,
    ArrayPrototypePush,
    ArrayPrototypeSlice,
    ArrayPrototypeSplice,
    BigInt,
    DateNow,
    Error,
    JSONParse,
    JSONStringify,
    MathFloor,
    MathMin,
    NumberPrototypeToString,
    ObjectCreate,
    ObjectDefineProperty,
    ObjectFreeze,
    ObjectGetOwnPropertyDescriptor,
    ObjectGetPrototypeOf,
    ObjectHasOwn,
    ObjectKeys,
    ReflectApply,
    SafeMap,
    SafeWeakMap,
    String,
    StringPrototypeCharCodeAt,
    StringPrototypeEndsWith,
    StringPrototypeIncludes,
    StringPrototypeLastIndexOf,
    StringPrototypePadStart,
    StringPrototypeSlice,
    StringPrototypeStartsWith,
    SymbolToPrimitive,
    SyntaxError,
    TypeError,
    TypedArrayPrototypeGetBuffer,
    TypedArrayPrototypeGetByteLength,
    TypedArrayPrototypeGetByteOffset,
    TypedArrayPrototypeGetSymbolToStringTag,
    TypedArrayPrototypeSubarray,
    Uint8Array,
    uncurryThis,
  } = primordials;
  const ops = core.ops;
  const op_bootstrap_source = ops.op_bootstrap_source;
  const op_console_write = ops.op_console_write;
  const op_crypto_fill_random = ops.op_crypto_fill_random;
  const op_encoding_decode_utf8 = ops.op_encoding_decode_utf8;
  const op_eval_context = ops.op_eval_context;
  const op_module_read = ops.op_module_read;
  const op_module_resolve = ops.op_module_resolve;
  const op_perf_now = ops.op_perf_now;
  const op_runtime_info = ops.op_runtime_info;
  const op_url_parse = ops.op_url_parse;
  const op_url_set = ops.op_url_set;
  const op_master_call = ops.op_master_call;
  const op_master_metric = ops.op_master_metric;
  // deno_core's own functions, called as plain functions (never as methods of `core`).
  const coreEncode = core.encode;
  const coreByteLength = core.byteLength;
  const coreStructuredClone = core.structuredClone;
  const createTimer = core.createTimer;
  const cancelTimer = core.cancelTimer;
  const refreshTimer = core.refreshTimer;
  const refTimer = core.refTimer;
  const unrefTimer = core.unrefTimer;
  const queueMicrotask = globalThis.queueMicrotask;

  // ------------------------------------------------------------ internals

  /** An own, writable property, set without running any setter task code put on a prototype. */
  function setOwn(object, key, value, enumerable = true) {
    ObjectDefineProperty(object, key, { __proto__: null, value, writable: true, enumerable, configurable: true });
  }

  /** Evaluates `source` as a script named `specifier`; returns its completion value or throws. */
  function evaluate(source, specifier) {
    // op_eval_context returns [result, null] or [result, [thrown, isNativeError, isCompileError]];
    // own elements, read by index.
    const outcome = op_eval_context(source, specifier, undefined);
    const error = outcome[1];
    if (error !== null && error !== undefined) throw error[0];
    return outcome[0];
  }

  const now = () => op_perf_now();
  function randomBytes(n) {
    const b = new Uint8Array(n);
    for (let off = 0; off < n; off += 65536) {
      op_crypto_fill_random(TypedArrayPrototypeSubarray(b, off, MathMin(n, off + 65536)));
    }
    return b;
  }

  const lazyExports = ObjectCreate(null);
  const isLoaded = (name) => ObjectHasOwn(lazyExports, name);
  /** Evaluates js/lazy/<name>.js once and returns its exports. */
  function lazy(name) {
    if (ObjectHasOwn(lazyExports, name)) return lazyExports[name];
    const factory = evaluate(op_bootstrap_source(name), "queuexec:lazy/" + name + ".js");
    const exports = factory(lib, globalThis);
    lazyExports[name] = exports;
    return exports;
  }

  /** Console state shared with js/lazy/console.js. */
  const consoleState = { __proto__: null, groupIndent: "" };

  /**
   * What the lazily evaluated parts get: capabilities task code may hold without harm (this
   * crate's own ops, which only format, encode and parse, and the lazy loader). Never `core`.
   */
  const lib = ObjectFreeze({
    __proto__: null,
    lazy,
    isLoaded,
    now,
    randomBytes,
    consoleState,
    encode: (text) => coreEncode(text),
    byteLength: (text) => coreByteLength(text),
    consoleWrite: (level, text) => op_console_write(level, text),
    decodeUtf8: (bytes, fatal, stripBom) => op_encoding_decode_utf8(bytes, fatal, stripBom),
    urlParse: (href, hasBase, base) => op_url_parse(href, hasBase, base),
    urlSet: (href, part, value) => op_url_set(href, part, value),
  });

  function defineGlobal(name, value) {
    ObjectDefineProperty(globalThis, name, { __proto__: null, value, configurable: true, enumerable: false, writable: true });
  }

  // A global evaluated on first access, then an ordinary property.
  function lazyGlobal(name, load) {
    ObjectDefineProperty(globalThis, name, {
      __proto__: null,
      configurable: true,
      enumerable: false,
      get() {
        const value = load();
        defineGlobal(name, value);
        return value;
      },
      set(value) {
        defineGlobal(name, value);
      },
    });
  }

  // -------------------------------------------------- Error.prepareStackTrace

  // deno_core's stack-trace callback (both engines) looks up `globalThis.Error.prepareStackTrace`
  // and calls it with call sites whose getThis()/getFunction() give each frame's receiver and
  // function; on the QuickJS backend for every frame, the runtime's own included, and whenever
  // an error is created. So the global `Error` binding is fixed (non-writable), and its
  // `prepareStackTrace` is an accessor: a task's hook is stored here and what deno_core reads
  // is a wrapper handing the hook call sites of the task's own frames only, without receivers
  // or functions (as V8 does for strict-mode frames). Saving and restoring the property (as
  // packages such as `callsites` do) gives back the same hook.
  // deno_core's call sites share one prototype whose methods are read-only and
  // non-configurable: they are taken from it (uncurried) the first time a hook is called, so
  // startup pays nothing for this.
  let siteFileName, siteLine, siteColumn, siteFunctionName, siteMethodName, siteTypeName;
  let siteIsNative, siteIsConstructor, siteToString;
  let sitePrototype = null;
  function learnSites(raw) {
    const prototype = raw !== null && typeof raw === "object" ? ObjectGetPrototypeOf(raw) : null;
    if (prototype === null || prototype === sitePrototype) return;
    sitePrototype = prototype;
    const method = (name) => {
      const descriptor = ObjectGetOwnPropertyDescriptor(prototype, name);
      return descriptor !== undefined && typeof descriptor.value === "function"
        ? uncurryThis(descriptor.value)
        : () => undefined;
    };
    siteFileName = method("getFileName");
    siteLine = method("getLineNumber");
    siteColumn = method("getColumnNumber");
    siteFunctionName = method("getFunctionName");
    siteMethodName = method("getMethodName");
    siteTypeName = method("getTypeName");
    siteIsNative = method("isNative");
    siteIsConstructor = method("isConstructor");
    siteToString = method("toString");
  }
  const isRuntimeFile = (file) =>
    typeof file === "string" &&
    (StringPrototypeStartsWith(file, "queuexec:") || StringPrototypeStartsWith(file, "ext:"));
  function safeSite(raw) {
    const file = siteFileName(raw);
    const line = siteLine(raw);
    const column = siteColumn(raw);
    const functionName = siteFunctionName(raw);
    const methodName = siteMethodName(raw);
    const typeName = siteTypeName(raw);
    const native = siteIsNative(raw);
    const constructor = siteIsConstructor(raw);
    const text = siteToString(raw);
    return ObjectFreeze({
      getThis: () => undefined,
      getFunction: () => undefined,
      getFileName: () => file,
      getScriptNameOrSourceURL: () => file,
      getLineNumber: () => line,
      getColumnNumber: () => column,
      getFunctionName: () => functionName,
      getMethodName: () => methodName,
      getTypeName: () => typeName,
      isNative: () => native,
      isConstructor: () => constructor,
      isToplevel: () => false,
      isEval: () => false,
      isAsync: () => false,
      isPromiseAll: () => false,
      getEvalOrigin: () => undefined,
      getPromiseIndex: () => null,
      toString: () => text,
    });
  }
  function safeSites(sites) {
    const safe = [];
    const n = ArrayIsArray(sites) ? sites.length : 0;
    for (let i = 0; i < n; i++) {
      const raw = sites[i];
      learnSites(raw);
      if (sitePrototype !== null && !isRuntimeFile(siteFileName(raw))) ArrayPrototypePush(safe, safeSite(raw));
    }
    return safe;
  }
  let taskHook;
  const wrapperOf = new SafeWeakMap();
  const hookOf = new SafeWeakMap();
  function wrapperFor(hook) {
    let wrapper = wrapperOf.get(hook);
    if (wrapper === undefined) {
      wrapper = (error, sites) => ReflectApply(hook, Error, [error, safeSites(sites)]);
      wrapperOf.set(hook, wrapper);
      hookOf.set(wrapper, hook);
    }
    return wrapper;
  }
  ObjectDefineProperty(Error, "prepareStackTrace", {
    __proto__: null,
    configurable: false,
    enumerable: false,
    get: () => (typeof taskHook === "function" ? wrapperFor(taskHook) : taskHook),
    set: (hook) => {
      taskHook = typeof hook === "function" && hookOf.has(hook) ? hookOf.get(hook) : hook;
    },
  });
  ObjectDefineProperty(globalThis, "Error", { __proto__: null, value: Error, writable: false, enumerable: false, configurable: false });

  // --------------------------------------------------------------- console

  // Levels understood by op_console_write.
  const LEVEL = { __proto__: null, error: 0, warn: 1, info: 2, debug: 3 };
  const LEVEL_NAMES = ["error", "warn", "info", "debug"];

  // Plain strings go straight to the log; anything to format loads lazy/console.js.
  function write(level, args) {
    let plain = consoleState.groupIndent === "" &&
      !(args.length > 0 && typeof args[0] === "string" && StringPrototypeIncludes(args[0], "%"));
    for (let i = 0; plain && i < args.length; i++) plain = typeof args[i] === "string";
    if (plain) op_console_write(level, ArrayPrototypeJoin(args, " "));
    else ReflectApply(lazy("console").console[LEVEL_NAMES[level]], undefined, args);
  }
  const delegate = (method) => (...args) => ReflectApply(lazy("console").console[method], undefined, args);
  const console = {
    log: (...args) => write(LEVEL.info, args),
    info: (...args) => write(LEVEL.info, args),
    debug: (...args) => write(LEVEL.debug, args),
    warn: (...args) => write(LEVEL.warn, args),
    error: (...args) => write(LEVEL.error, args),
  };
  const DELEGATED = ["trace", "dir", "dirxml", "table", "assert", "count", "countReset", "time", "timeLog", "timeEnd", "group", "groupCollapsed", "groupEnd"];
  for (let i = 0; i < DELEGATED.length; i++) console[DELEGATED[i]] = delegate(DELEGATED[i]);
  defineGlobal("console", console);

  // ---------------------------------------------------------------- timers

  /** Per Timeout: its deno_core timer (kept here, out of task code's reach), id and ref state. */
  const timerState = new SafeWeakMap();
  const activeTimers = new SafeMap();
  let nextTimerId = 1;

  const stateOf = (timeout) => (timeout !== null && typeof timeout === "object" ? timerState.get(timeout) : undefined);

  /** What setTimeout/setInterval return: Node's Timeout (ref/unref/refresh, usable as a number). */
  class Timeout {
    ref() {
      const state = stateOf(this);
      if (state !== undefined && !state.refed) {
        state.refed = true;
        refTimer(state.timer);
      }
      return this;
    }
    unref() {
      const state = stateOf(this);
      if (state !== undefined && state.refed) {
        state.refed = false;
        unrefTimer(state.timer);
      }
      return this;
    }
    hasRef() {
      const state = stateOf(this);
      return state !== undefined && state.refed;
    }
    refresh() {
      const state = stateOf(this);
      if (state !== undefined && activeTimers.has(state.id)) refreshTimer(state.timer);
      return this;
    }
    close() {
      clearTimer(this);
      return this;
    }
    [SymbolToPrimitive]() {
      const state = stateOf(this);
      return state === undefined ? NaN : state.id;
    }
  }

  function startTimer(name, callback, delay, args, repeat) {
    if (typeof callback !== "function") {
      throw new TypeError(name + ": the callback must be a function (strings are not evaluated in a queuexec task)");
    }
    const id = nextTimerId++;
    const timeout = new Timeout();
    const fire = repeat
      ? () => {
        ReflectApply(callback, timeout, args);
      }
      : () => {
        activeTimers.delete(id);
        ReflectApply(callback, timeout, args);
      };
    const timer = createTimer(fire, delay, undefined, repeat, true, false);
    timerState.set(timeout, { __proto__: null, id, timer, refed: true });
    activeTimers.set(id, timeout);
    return timeout;
  }

  function clearTimer(handle) {
    if (handle === undefined || handle === null) return;
    let id;
    if (typeof handle === "object") {
      const state = stateOf(handle);
      if (state === undefined) return;
      id = state.id;
    } else {
      id = +handle;
    }
    const timeout = activeTimers.get(id);
    if (timeout === undefined) return;
    activeTimers.delete(id);
    cancelTimer(timerState.get(timeout).timer);
  }

  const timers = {
    setTimeout: (callback, delay, ...args) => startTimer("setTimeout", callback, delay, args, false),
    setInterval: (callback, delay, ...args) => startTimer("setInterval", callback, delay, args, true),
    setImmediate: (callback, ...args) => startTimer("setImmediate", callback, 0, args, false),
    clearTimeout: clearTimer,
    clearInterval: clearTimer,
    clearImmediate: clearTimer,
  };
  const TIMER_NAMES = ObjectKeys(timers);
  for (let i = 0; i < TIMER_NAMES.length; i++) defineGlobal(TIMER_NAMES[i], timers[TIMER_NAMES[i]]);

  // ---------------------------------------------- performance, crypto, clone

  const timeOrigin = DateNow() - op_perf_now();
  defineGlobal("performance", {
    now,
    timeOrigin,
    toJSON: () => ({ timeOrigin }),
  });

  const INTEGER_ARRAYS = {
    __proto__: null,
    Int8Array: true,
    Uint8Array: true,
    Uint8ClampedArray: true,
    Int16Array: true,
    Uint16Array: true,
    Int32Array: true,
    Uint32Array: true,
    BigInt64Array: true,
    BigUint64Array: true,
  };
  function getRandomValues(array) {
    const kind = ArrayBufferIsView(array) ? TypedArrayPrototypeGetSymbolToStringTag(array) : undefined;
    if (kind === undefined || INTEGER_ARRAYS[kind] !== true) {
      throw new TypeError("crypto.getRandomValues: the argument must be an integer typed array");
    }
    const byteLength = TypedArrayPrototypeGetByteLength(array);
    if (byteLength > 65536) {
      const e = new Error(`crypto.getRandomValues: ${byteLength} bytes requested, at most 65536 are allowed`);
      setOwn(e, "name", "QuotaExceededError", false);
      throw e;
    }
    op_crypto_fill_random(
      new Uint8Array(TypedArrayPrototypeGetBuffer(array), TypedArrayPrototypeGetByteOffset(array), byteLength),
    );
    return array;
  }
  function randomUUID() {
    const b = randomBytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = "";
    for (let i = 0; i < 16; i++) hex += StringPrototypePadStart(NumberPrototypeToString(b[i], 16), 2, "0");
    return StringPrototypeSlice(hex, 0, 8) + "-" + StringPrototypeSlice(hex, 8, 12) + "-" +
      StringPrototypeSlice(hex, 12, 16) + "-" + StringPrototypeSlice(hex, 16, 20) + "-" + StringPrototypeSlice(hex, 20);
  }
  defineGlobal("crypto", { getRandomValues, randomUUID });

  defineGlobal("structuredClone", function structuredClone(value) {
    if (arguments.length === 0) throw new TypeError("structuredClone: 1 argument required");
    let clone;
    let failure;
    try {
      clone = coreStructuredClone(value);
    } catch (e) {
      failure = e;
    }
    if (failure !== undefined) {
      const message = failure !== null && typeof failure === "object" ? ObjectGetOwnPropertyDescriptor(failure, "message") : undefined;
      const err = new Error("structuredClone: " + (message !== undefined ? String(message.value) : String(failure)));
      setOwn(err, "name", "DataCloneError", false);
      throw err;
    }
    return clone;
  });

  // ------------------------------------------------------- lazy globals

  defineGlobal("atob", function atob(data) {
    if (arguments.length === 0) throw new TypeError("atob: 1 argument required");
    return lazy("base64").atob(data);
  });
  defineGlobal("btoa", function btoa(data) {
    if (arguments.length === 0) throw new TypeError("btoa: 1 argument required");
    return lazy("base64").btoa(data);
  });
  lazyGlobal("TextEncoder", () => lazy("encoding").TextEncoder);
  lazyGlobal("TextDecoder", () => lazy("encoding").TextDecoder);
  lazyGlobal("URL", () => lazy("url").URL);
  lazyGlobal("URLSearchParams", () => lazy("url").URLSearchParams);
  lazyGlobal("Buffer", () => lazy("buffer").Buffer);

  // --------------------------------------------------------------- process

  const info = op_runtime_info();
  const startedAt = now();
  const listeners = new SafeMap();
  const hrtime = (previous) => {
    const t = now();
    let sec = MathFloor(t / 1000);
    let nsec = MathFloor((t % 1000) * 1e6);
    if (previous) {
      sec -= previous[0];
      nsec -= previous[1];
      if (nsec < 0) {
        sec -= 1;
        nsec += 1e9;
      }
    }
    return [sec, nsec];
  };
  hrtime.bigint = () => BigInt(MathFloor(now() * 1e6));
  const refuse = (what) => () => {
    throw new Error(`${what} is not allowed in a queuexec task: the worker does not grant process access`);
  };
  const stdio = (level) => ({
    isTTY: false,
    write(chunk) {
      let text = typeof chunk === "string" ? chunk : lazy("buffer").Buffer.from(chunk).toString();
      if (StringPrototypeEndsWith(text, "\n")) text = StringPrototypeSlice(text, 0, -1);
      write(level, [text]);
      return true;
    },
  });
  const listenersOf = (name) => {
    const list = listeners.get(name);
    return list === undefined ? [] : list;
  };
  const env = {};
  const envNames = ObjectKeys(info.env);
  for (let i = 0; i < envNames.length; i++) setOwn(env, envNames[i], info.env[envNames[i]]);
  const process = {
    title: "queuexec",
    version: "",
    versions: { queuexec: info.version },
    platform: info.platform,
    arch: info.arch,
    release: { name: "queuexec" },
    argv: ["queuexec", "/task/task.js"],
    execArgv: [],
    env,
    exitCode: undefined,
    pid: 0,
    ppid: 0,
    browser: false,
    stdout: stdio(LEVEL.info),
    stderr: stdio(LEVEL.error),
    cwd: () => "/task",
    chdir: refuse("process.chdir()"),
    exit: refuse("process.exit()"),
    abort: refuse("process.abort()"),
    kill: refuse("process.kill()"),
    dlopen: refuse("process.dlopen()"),
    binding: refuse("process.binding()"),
    umask: () => 0o22,
    uptime: () => (now() - startedAt) / 1000,
    hrtime,
    memoryUsage: () => ({ rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 }),
    cpuUsage: () => ({ user: 0, system: 0 }),
    nextTick: (callback, ...args) => {
      if (typeof callback !== "function") throw new TypeError('The "callback" argument must be of type function');
      queueMicrotask(() => {
        ReflectApply(callback, undefined, args);
      });
    },
    emitWarning: (warning) => console.warn(typeof warning === "string" ? "Warning: " + warning : String(warning)),
    // Enough of EventEmitter for packages that listen to process events (which never fire).
    on(name, listener) {
      let list = listeners.get(name);
      if (list === undefined) {
        list = [];
        listeners.set(name, list);
      }
      ArrayPrototypePush(list, listener);
      return process;
    },
    off(name, listener) {
      const list = listenersOf(name);
      const i = ArrayPrototypeIndexOf(list, listener);
      if (i >= 0) ArrayPrototypeSplice(list, i, 1);
      return process;
    },
    emit(name, ...args) {
      const list = ArrayPrototypeSlice(listenersOf(name));
      for (let i = 0; i < list.length; i++) ReflectApply(list[i], process, args);
      return list.length > 0;
    },
    listeners: (name) => ArrayPrototypeSlice(listenersOf(name)),
    listenerCount: (name) => listenersOf(name).length,
  };
  process.addListener = process.on;
  process.once = process.on;
  process.prependListener = process.on;
  process.removeListener = process.off;
  process.removeAllListeners = (name) => {
    if (name === undefined) listeners.clear();
    else listeners.delete(name);
    return process;
  };
  defineGlobal("process", process);
  defineGlobal("global", globalThis);

  // ------------------------------------------------------- built-in modules

  const node = (name) => () => lazy("node")[name];
  const builtins = {
    __proto__: null,
    assert: node("assert"),
    "assert/strict": node("assert"),
    buffer: () => {
      const buffer = lazy("buffer");
      return {
        Buffer: buffer.Buffer,
        SlowBuffer: buffer.SlowBuffer,
        kMaxLength: buffer.kMaxLength,
        constants: buffer.constants,
        atob: globalThis.atob,
        btoa: globalThis.btoa,
      };
    },
    console: () => console,
    crypto: node("crypto"),
    events: node("events"),
    path: node("path"),
    "path/posix": node("path"),
    perf_hooks: () => ({ performance: globalThis.performance }),
    process: () => process,
    querystring: node("querystring"),
    string_decoder: node("string_decoder"),
    timers: () => timers,
    "timers/promises": node("timers/promises"),
    url: () => ({ URL: lazy("url").URL, URLSearchParams: lazy("url").URLSearchParams }),
    util: node("util"),
    "util/types": node("util/types"),
    sys: node("util"),
  };
  const isBuiltin = (name) => ObjectHasOwn(builtins, name);

  /** A set of names as a null-prototype record (no prototype or iterator in the way). */
  function nameSet(names) {
    const set = ObjectCreate(null);
    for (let i = 0; i < names.length; i++) set[names[i]] = true;
    return ObjectFreeze(set);
  }

  // Node built-ins that would reach outside the sandbox: never served unless granted.
  const sandboxed = nameSet([
    "child_process", "cluster", "dgram", "diagnostics_channel", "dns", "dns/promises", "fs", "fs/promises", "http",
    "http2", "https", "inspector", "inspector/promises", "module", "net", "os", "readline", "readline/promises",
    "repl", "tls", "trace_events", "tty", "v8", "vm", "wasi", "worker_threads",
  ]);

  // Node built-ins not implemented here; a same-named package in the bundle is used instead.
  const unimplemented = nameSet([
    "async_hooks", "constants", "domain", "punycode", "stream", "stream/consumers", "stream/promises", "stream/web", "zlib",
  ]);

  // ---------------------------------------------------------------- require

  const moduleCache = ObjectCreate(null);
  const builtinCache = ObjectCreate(null);

  function dirname(filename) {
    const i = StringPrototypeLastIndexOf(filename, "/");
    return i <= 0 ? "/" : StringPrototypeSlice(filename, 0, i);
  }

  class Module {
    constructor(id, filename, parent) {
      setOwn(this, "id", id);
      setOwn(this, "filename", filename);
      setOwn(this, "path", dirname(filename));
      setOwn(this, "exports", {});
      setOwn(this, "loaded", false);
      setOwn(this, "children", []);
      setOwn(this, "parent", parent);
      setOwn(this, "paths", []);
      setOwn(this, "require", makeRequire(this));
    }
  }

  /** An error for task code, with a Node-style `code`. */
  function codedError(message, code) {
    const e = new Error(message);
    setOwn(e, "code", code);
    return e;
  }

  function notGranted(name, filename) {
    return codedError(
      `require('${name}') from ${filename}: this queuexec worker does not grant the '${name}' module to tasks ` +
        "(the sandbox has no file system, network, environment, child processes or dynamic code loading)",
      "ERR_ACCESS_DENIED",
    );
  }

  function notAvailable(name, filename) {
    return codedError(
      `require('${name}') from ${filename}: Node's '${name}' module is not available in the queuexec JavaScript ` +
        "runtime; add a pure-JavaScript package that provides it to the master's dependencies",
      "ERR_UNKNOWN_BUILTIN_MODULE",
    );
  }

  function requireBuiltin(name) {
    if (!ObjectHasOwn(builtinCache, name)) builtinCache[name] = builtins[name]();
    return builtinCache[name];
  }

  /** Where `specifier` required from `filename` is, or a MODULE_NOT_FOUND error. */
  function resolveFilename(specifier, filename) {
    const r = op_module_resolve(specifier, filename);
    if (ObjectHasOwn(r, "found")) return { __proto__: null, found: r.found };
    return { __proto__: null, missing: codedError(r.missing, "MODULE_NOT_FOUND") };
  }

  // `record` is the requiring module's own (internal) record: its filename and exported module
  // object as they were when its require() was made, whatever task code does to `module`.
  function requireFrom(specifier, record) {
    const from = record.filename;
    if (typeof specifier !== "string" || specifier === "") {
      throw new TypeError(`require() from ${from}: the module name must be a non-empty string`);
    }
    const prefixed = StringPrototypeStartsWith(specifier, "node:");
    const name = prefixed ? StringPrototypeSlice(specifier, 5) : specifier;
    if (isBuiltin(name)) return requireBuiltin(name);
    if (sandboxed[name] === true) throw notGranted(name, from);
    if (prefixed) throw notAvailable(name, from);
    const resolved = resolveFilename(specifier, from);
    if (resolved.missing !== undefined) {
      if (unimplemented[name] === true) throw notAvailable(name, from);
      throw resolved.missing;
    }
    const filename = resolved.found;
    const cached = moduleCache[filename];
    if (cached !== undefined) return cached.exports;
    const module = new Module(filename, filename, record.module);
    const children = record.module.children;
    if (ArrayIsArray(children)) ArrayPrototypePush(children, module);
    moduleCache[filename] = module;
    try {
      loadModule(module, filename);
    } catch (e) {
      delete moduleCache[filename];
      throw e;
    }
    setOwn(module, "loaded", true);
    return module.exports;
  }

  function loadModule(module, filename) {
    let source = op_module_read(filename);
    if (StringPrototypeCharCodeAt(source, 0) === 0xfeff) source = StringPrototypeSlice(source, 1);
    if (StringPrototypeEndsWith(filename, ".json")) {
      let parsed;
      try {
        parsed = JSONParse(source);
      } catch (e) {
        const message = e !== null && typeof e === "object" ? ObjectGetOwnPropertyDescriptor(e, "message") : undefined;
        throw new SyntaxError(`${filename}: ${message !== undefined ? String(message.value) : String(e)}`);
      }
      setOwn(module, "exports", parsed);
      return;
    }
    if (StringPrototypeStartsWith(source, "#!")) source = "//" + source;
    const wrapper = "(function (exports, require, module, __filename, __dirname) { " + source + "\n})";
    const fn = evaluate(wrapper, "file://" + filename);
    const exports = module.exports;
    ReflectApply(fn, exports, [exports, module.require, module, filename, dirname(filename)]);
  }

  function makeRequire(module) {
    const record = { __proto__: null, module, filename: module.filename };
    const require = (specifier) => requireFrom(specifier, record);
    setOwn(require, "resolve", (specifier) => {
      if (typeof specifier !== "string" || specifier === "") {
        throw new TypeError(`require.resolve() from ${record.filename}: the module name must be a non-empty string`);
      }
      const name = StringPrototypeStartsWith(specifier, "node:") ? StringPrototypeSlice(specifier, 5) : specifier;
      if (isBuiltin(name)) return specifier;
      const resolved = resolveFilename(specifier, record.filename);
      if (resolved.missing !== undefined) throw resolved.missing;
      return resolved.found;
    });
    setOwn(require.resolve, "paths", () => null);
    setOwn(require, "cache", moduleCache);
    setOwn(require, "extensions", ObjectCreate(null));
    ObjectDefineProperty(require, "main", { __proto__: null, get: () => mainModule, enumerable: true, configurable: true });
    return require;
  }

  // ------------------------------------------------------------- the task

  let mainModule = undefined;
  let task = null;

  function describe(value) {
    if (value === null) return "null";
    if (typeof value === "function") return "a function without run() on its prototype";
    if (typeof value === "object") return "an object without a run() method";
    return typeof value;
  }

  // Loads task.js (a virtual path), builds `new Task()` once, and keeps it for run().
  function load(entry) {
    const module = new Module(".", entry, null);
    mainModule = module;
    moduleCache[entry] = module;
    try {
      loadModule(module, entry);
    } catch (e) {
      delete moduleCache[entry];
      throw e;
    }
    setOwn(module, "loaded", true);
    const Task = module.exports;
    if (typeof Task === "function" && Task.prototype && typeof Task.prototype.run === "function") {
      task = new Task();
    } else if (Task !== null && typeof Task === "object" && typeof Task.run === "function") {
      task = Task;
    } else {
      throw new TypeError(
        `${entry} must export a class whose instances have run(job) (module.exports = Task), but it exported ${describe(Task)}`,
      );
    }
  }

  function toJson(result) {
    let text;
    let failure;
    try {
      text = JSONStringify(result);
    } catch (e) {
      failure = e;
    }
    if (failure !== undefined) {
      const message = failure !== null && typeof failure === "object" ? ObjectGetOwnPropertyDescriptor(failure, "message") : undefined;
      throw new TypeError(
        "the task's result cannot be sent to the master as JSON: " + (message !== undefined ? String(message.value) : String(failure)),
      );
    }
    return text === undefined ? "null" : text;
  }

  function parseData(data) {
    try {
      return JSONParse(data);
    } catch {
      return data;
    }
  }

  // Settles a task's promise (or thenable) into JSON text. `await` adopts it through the
  // engine's own PromiseResolve / PerformPromiseThen (no `then` or species lookup on a native
  // promise), and the promise this returns is resolved with a string, never with an object of
  // the runtime's.
  async function settle(result) {
    return toJson(await result);
  }

  // A call to the master (okanjo-conductor's lookups and messages) through the worker: the op
  // resolves with a string, "1" + JSON or "0" + the master's error text.
  async function callMaster(op, a, b, c) {
    const answer = await op_master_call(op, String(a), b === undefined || b === null ? "" : String(b), c);
    const text = StringPrototypeSlice(answer, 1);
    if (StringPrototypeStartsWith(answer, "0")) throw new Error(text);
    const value = JSONParse(text);
    return op === "lookup" && value === null ? undefined : value;
  }

  function jsonOrNull(value) {
    const text = JSONStringify(value);
    return text === undefined ? "null" : text;
  }

  // The second argument of task.run: the job's id and the master's lookups, messages and
  // stats, as in Node workers (`ctx.lookup`, `ctx.setLookup`, `ctx.request`, `ctx.metric`).
  function contextFor(id) {
    return ObjectFreeze({
      id,
      lookup: (name, key) => callMaster("lookup", name, key, "null"),
      setLookup: (name, key, value) => callMaster("setLookup", name, key, jsonOrNull(value)),
      request: (cmd, data) => callMaster("message", cmd, "", jsonOrNull(data)),
      metric: (name, delta = 1) => op_master_metric(String(name), +delta),
    });
  }

  // What the task receives (queue-xec's contract, the payload as pushed): `{id, data}`, the id as
  // the number it was pushed as (shape "numericId"), or the whole payload (shape "whole").
  function jobFor(id, data, shape) {
    if (shape === "whole") return parseData(data);
    return { id: shape === "numericId" ? +id : id, data: parseData(data) };
  }

  // Runs one job: `await task.run(job, ctx)`, returns the result as JSON text (or a promise of
  // it).
  function run(id, data, shape) {
    const result = task.run(jobFor(id, data, shape), contextFor(id));
    if (result !== null && (typeof result === "object" || typeof result === "function")) return settle(result);
    return toJson(result);
  }

  // Hide deno_core from task code. The QuickJS backend also defines V8's --expose-gc helper,
  // which V8 does not: remove it so both engines look alike.
  delete globalThis.Deno;
  delete globalThis.__bootstrap;
  delete globalThis.gc;

  return [load, run];
})(globalThis);
