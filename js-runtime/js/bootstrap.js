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
"use strict";

((globalThis) => {
  const core = globalThis.Deno.core;
  const {
    op_bootstrap_source,
    op_console_write,
    op_crypto_fill_random,
    op_module_read,
    op_module_resolve,
    op_perf_now,
    op_runtime_info,
  } = core.ops;

  // ------------------------------------------------------------ internals

  const lazyExports = Object.create(null);
  /** The runtime's internals, shared with the lazily loaded parts (never with task code). */
  const q = {
    core,
    groupIndent: "",
    now: () => op_perf_now(),
    randomBytes(n) {
      const b = new Uint8Array(n);
      for (let off = 0; off < n; off += 65536) op_crypto_fill_random(b.subarray(off, Math.min(n, off + 65536)));
      return b;
    },
    isLoaded: (name) => name in lazyExports,
    lazy(name) {
      const loaded = lazyExports[name];
      if (loaded !== undefined) return loaded;
      const [factory, error] = core.evalContext(op_bootstrap_source(name), `queuexec:lazy/${name}.js`);
      if (error) throw error.thrown;
      return (lazyExports[name] = factory(q, globalThis));
    },
  };

  function defineGlobal(name, value) {
    Object.defineProperty(globalThis, name, { value, configurable: true, enumerable: false, writable: true });
  }

  // A global evaluated on first access, then an ordinary property.
  function lazyGlobal(name, load) {
    Object.defineProperty(globalThis, name, {
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

  // --------------------------------------------------------------- console

  // Levels understood by op_console_write.
  const LEVEL = { error: 0, warn: 1, info: 2, debug: 3 };

  // Plain strings go straight to the log; anything to format loads lazy/console.js.
  function write(level, args) {
    let plain = q.groupIndent === "" && !(args.length > 0 && typeof args[0] === "string" && args[0].includes("%"));
    for (let i = 0; plain && i < args.length; i++) plain = typeof args[i] === "string";
    if (plain) op_console_write(level, args.join(" "));
    else q.lazy("console").console[["error", "warn", "info", "debug"][level]](...args);
  }
  const delegate = (method) => (...args) => q.lazy("console").console[method](...args);
  const console = {
    log: (...args) => write(LEVEL.info, args),
    info: (...args) => write(LEVEL.info, args),
    debug: (...args) => write(LEVEL.debug, args),
    warn: (...args) => write(LEVEL.warn, args),
    error: (...args) => write(LEVEL.error, args),
  };
  for (const method of ["trace", "dir", "dirxml", "table", "assert", "count", "countReset", "time", "timeLog", "timeEnd", "group", "groupCollapsed", "groupEnd"]) {
    console[method] = delegate(method);
  }
  defineGlobal("console", console);

  // ---------------------------------------------------------------- timers

  const kTimer = Symbol("queuexec.timer");
  const kId = Symbol("queuexec.timerId");
  const kRef = Symbol("queuexec.timerRef");
  const activeTimers = new Map();
  let nextTimerId = 1;

  /** What setTimeout/setInterval return: Node's Timeout (ref/unref/refresh, usable as a number). */
  class Timeout {
    ref() {
      if (!this[kRef]) {
        this[kRef] = true;
        core.refTimer(this[kTimer]);
      }
      return this;
    }
    unref() {
      if (this[kRef]) {
        this[kRef] = false;
        core.unrefTimer(this[kTimer]);
      }
      return this;
    }
    hasRef() {
      return this[kRef];
    }
    refresh() {
      if (activeTimers.has(this[kId])) core.refreshTimer(this[kTimer]);
      return this;
    }
    close() {
      clearTimer(this);
      return this;
    }
    [Symbol.toPrimitive]() {
      return this[kId];
    }
  }

  function startTimer(name, callback, delay, args, repeat) {
    if (typeof callback !== "function") {
      throw new TypeError(name + ": the callback must be a function (strings are not evaluated in a queuexec task)");
    }
    const id = nextTimerId++;
    const timeout = new Timeout();
    timeout[kId] = id;
    timeout[kRef] = true;
    const fire = repeat
      ? () => callback(...args)
      : () => {
        activeTimers.delete(id);
        callback(...args);
      };
    timeout[kTimer] = core.createTimer(fire, delay, undefined, repeat, true, false);
    activeTimers.set(id, timeout);
    return timeout;
  }

  function clearTimer(handle) {
    if (handle === undefined || handle === null) return;
    const id = typeof handle === "object" ? handle[kId] : Number(handle);
    const timeout = activeTimers.get(id);
    if (timeout === undefined) return;
    activeTimers.delete(id);
    core.cancelTimer(timeout[kTimer]);
  }

  const timers = {
    setTimeout: (callback, delay, ...args) => startTimer("setTimeout", callback, delay, args, false),
    setInterval: (callback, delay, ...args) => startTimer("setInterval", callback, delay, args, true),
    setImmediate: (callback, ...args) => startTimer("setImmediate", callback, 0, args, false),
    clearTimeout: clearTimer,
    clearInterval: clearTimer,
    clearImmediate: clearTimer,
  };
  for (const [name, fn] of Object.entries(timers)) defineGlobal(name, fn);

  // ---------------------------------------------- performance, crypto, clone

  const timeOrigin = Date.now() - op_perf_now();
  defineGlobal("performance", {
    now: () => op_perf_now(),
    timeOrigin,
    toJSON: () => ({ timeOrigin }),
  });

  function getRandomValues(array) {
    if (!ArrayBuffer.isView(array) || array instanceof DataView || array instanceof Float32Array || array instanceof Float64Array) {
      throw new TypeError("crypto.getRandomValues: the argument must be an integer typed array");
    }
    if (array.byteLength > 65536) {
      const e = new Error(`crypto.getRandomValues: ${array.byteLength} bytes requested, at most 65536 are allowed`);
      e.name = "QuotaExceededError";
      throw e;
    }
    op_crypto_fill_random(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
    return array;
  }
  function randomUUID() {
    const b = q.randomBytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = "";
    for (let i = 0; i < 16; i++) hex += b[i].toString(16).padStart(2, "0");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }
  defineGlobal("crypto", { getRandomValues, randomUUID });

  defineGlobal("structuredClone", function structuredClone(value) {
    if (arguments.length === 0) throw new TypeError("structuredClone: 1 argument required");
    try {
      return core.structuredClone(value);
    } catch (e) {
      const err = new Error("structuredClone: " + (e && e.message ? e.message : String(e)));
      err.name = "DataCloneError";
      throw err;
    }
  });

  // ------------------------------------------------------- lazy globals

  defineGlobal("atob", function atob(data) {
    if (arguments.length === 0) throw new TypeError("atob: 1 argument required");
    return q.lazy("base64").atob(data);
  });
  defineGlobal("btoa", function btoa(data) {
    if (arguments.length === 0) throw new TypeError("btoa: 1 argument required");
    return q.lazy("base64").btoa(data);
  });
  lazyGlobal("TextEncoder", () => q.lazy("encoding").TextEncoder);
  lazyGlobal("TextDecoder", () => q.lazy("encoding").TextDecoder);
  lazyGlobal("URL", () => q.lazy("url").URL);
  lazyGlobal("URLSearchParams", () => q.lazy("url").URLSearchParams);
  lazyGlobal("Buffer", () => q.lazy("buffer").Buffer);

  // --------------------------------------------------------------- process

  const info = op_runtime_info();
  const startedAt = q.now();
  const listeners = new Map();
  const hrtime = (previous) => {
    const now = q.now();
    let sec = Math.floor(now / 1000);
    let nsec = Math.floor((now % 1000) * 1e6);
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
  hrtime.bigint = () => BigInt(Math.floor(q.now() * 1e6));
  const refuse = (what) => () => {
    throw new Error(`${what} is not allowed in a queuexec task: the worker does not grant process access`);
  };
  const stdio = (level) => ({
    isTTY: false,
    write(chunk) {
      const text = typeof chunk === "string" ? chunk : globalThis.Buffer.from(chunk).toString();
      write(level, [text.replace(/\n$/, "")]);
      return true;
    },
  });
  const process = {
    title: "queuexec",
    version: "",
    versions: { queuexec: info.version },
    platform: info.platform,
    arch: info.arch,
    release: { name: "queuexec" },
    argv: ["queuexec", "/task/task.js"],
    execArgv: [],
    env: Object.assign({}, info.env),
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
    uptime: () => (q.now() - startedAt) / 1000,
    hrtime,
    memoryUsage: () => ({ rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 }),
    cpuUsage: () => ({ user: 0, system: 0 }),
    nextTick: (callback, ...args) => {
      if (typeof callback !== "function") throw new TypeError('The "callback" argument must be of type function');
      queueMicrotask(() => callback(...args));
    },
    emitWarning: (warning) => console.warn(typeof warning === "string" ? "Warning: " + warning : String(warning)),
    // Enough of EventEmitter for packages that listen to process events (which never fire).
    on(name, listener) {
      if (!listeners.has(name)) listeners.set(name, []);
      listeners.get(name).push(listener);
      return process;
    },
    off(name, listener) {
      const list = listeners.get(name) || [];
      const i = list.indexOf(listener);
      if (i >= 0) list.splice(i, 1);
      return process;
    },
    emit(name, ...args) {
      const list = (listeners.get(name) || []).slice();
      for (const listener of list) listener.apply(process, args);
      return list.length > 0;
    },
    listeners: (name) => (listeners.get(name) || []).slice(),
    listenerCount: (name) => (listeners.get(name) || []).length,
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

  const node = (name) => () => q.lazy("node")[name];
  const builtins = {
    assert: node("assert"),
    "assert/strict": node("assert"),
    buffer: () => {
      const { Buffer, SlowBuffer, kMaxLength, constants } = q.lazy("buffer");
      return { Buffer, SlowBuffer, kMaxLength, constants, atob: globalThis.atob, btoa: globalThis.btoa };
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
    url: () => ({ URL: globalThis.URL, URLSearchParams: globalThis.URLSearchParams }),
    util: node("util"),
    "util/types": node("util/types"),
    sys: node("util"),
  };

  // Node built-ins that would reach outside the sandbox: never served unless granted.
  const sandboxed = [
    "child_process", "cluster", "dgram", "diagnostics_channel", "dns", "dns/promises", "fs", "fs/promises", "http",
    "http2", "https", "inspector", "inspector/promises", "module", "net", "os", "readline", "readline/promises",
    "repl", "tls", "trace_events", "tty", "v8", "vm", "wasi", "worker_threads",
  ];

  // Node built-ins not implemented here; a same-named package in the bundle is used instead.
  const unimplemented = [
    "async_hooks", "constants", "domain", "punycode", "stream", "stream/consumers", "stream/promises", "stream/web", "zlib",
  ];

  // ---------------------------------------------------------------- require

  const moduleCache = Object.create(null);
  const builtinCache = Object.create(null);

  function dirname(filename) {
    const i = filename.lastIndexOf("/");
    return i <= 0 ? "/" : filename.slice(0, i);
  }

  class Module {
    constructor(id, filename, parent) {
      this.id = id;
      this.filename = filename;
      this.path = dirname(filename);
      this.exports = {};
      this.loaded = false;
      this.children = [];
      this.parent = parent;
      this.paths = [];
      this.require = makeRequire(this);
    }
  }

  function notGranted(name, parent) {
    const e = new Error(
      `require('${name}') from ${parent.filename}: this queuexec worker does not grant the '${name}' module to tasks ` +
        "(the sandbox has no file system, network, environment, child processes or dynamic code loading)",
    );
    e.code = "ERR_ACCESS_DENIED";
    return e;
  }

  function notAvailable(name, parent) {
    const e = new Error(
      `require('${name}') from ${parent.filename}: Node's '${name}' module is not available in the queuexec JavaScript ` +
        "runtime; add a pure-JavaScript package that provides it to the master's dependencies",
    );
    e.code = "ERR_UNKNOWN_BUILTIN_MODULE";
    return e;
  }

  function requireBuiltin(name) {
    if (!(name in builtinCache)) builtinCache[name] = builtins[name]();
    return builtinCache[name];
  }

  function resolveFilename(specifier, parent) {
    const r = op_module_resolve(specifier, parent.filename);
    if (r.missing !== undefined) {
      const e = new Error(r.missing);
      e.code = "MODULE_NOT_FOUND";
      throw e;
    }
    return r.found;
  }

  function requireFrom(specifier, parent) {
    if (typeof specifier !== "string" || specifier === "") {
      throw new TypeError(`require() from ${parent.filename}: the module name must be a non-empty string`);
    }
    const prefixed = specifier.startsWith("node:");
    const name = prefixed ? specifier.slice(5) : specifier;
    if (name in builtins) return requireBuiltin(name);
    if (sandboxed.includes(name)) throw notGranted(name, parent);
    if (prefixed) throw notAvailable(name, parent);
    let filename;
    try {
      filename = resolveFilename(specifier, parent);
    } catch (e) {
      if (unimplemented.includes(name) && e.code === "MODULE_NOT_FOUND") throw notAvailable(name, parent);
      throw e;
    }
    const cached = moduleCache[filename];
    if (cached !== undefined) return cached.exports;
    const module = new Module(filename, filename, parent);
    parent.children.push(module);
    moduleCache[filename] = module;
    try {
      loadModule(module);
    } catch (e) {
      delete moduleCache[filename];
      throw e;
    }
    module.loaded = true;
    return module.exports;
  }

  function loadModule(module) {
    const filename = module.filename;
    let source = op_module_read(filename);
    if (source.charCodeAt(0) === 0xfeff) source = source.slice(1);
    if (filename.endsWith(".json")) {
      try {
        module.exports = JSON.parse(source);
      } catch (e) {
        throw new SyntaxError(`${filename}: ${e.message}`);
      }
      return;
    }
    if (source.startsWith("#!")) source = "//" + source;
    const wrapper = "(function (exports, require, module, __filename, __dirname) { " + source + "\n})";
    const [fn, err] = core.evalContext(wrapper, "file://" + filename);
    if (err) throw err.thrown;
    fn.call(module.exports, module.exports, module.require, module, filename, module.path);
  }

  function makeRequire(module) {
    const require = (specifier) => requireFrom(specifier, module);
    require.resolve = (specifier) => {
      const name = specifier.startsWith("node:") ? specifier.slice(5) : specifier;
      if (name in builtins) return specifier;
      return resolveFilename(specifier, module);
    };
    require.resolve.paths = () => null;
    require.cache = moduleCache;
    require.extensions = Object.create(null);
    Object.defineProperty(require, "main", { get: () => mainModule, enumerable: true });
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
      loadModule(module);
    } catch (e) {
      delete moduleCache[entry];
      throw e;
    }
    module.loaded = true;
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
    try {
      text = JSON.stringify(result);
    } catch (e) {
      throw new TypeError("the task's result cannot be sent to the master as JSON: " + (e && e.message ? e.message : String(e)));
    }
    return text === undefined ? "null" : text;
  }

  function parseData(data) {
    try {
      return JSON.parse(data);
    } catch {
      return data;
    }
  }

  // Runs one job: `await task.run({id, data})`, returns the result as JSON text.
  function run(id, data) {
    const result = task.run({ id, data: parseData(data) });
    if (result !== null && typeof result === "object" && typeof result.then === "function") {
      return Promise.resolve(result).then(toJson);
    }
    return toJson(result);
  }

  // Hide deno_core from task code. The QuickJS backend also defines V8's --expose-gc helper,
  // which V8 does not: remove it so both engines look alike.
  delete globalThis.Deno;
  delete globalThis.__bootstrap;
  delete globalThis.gc;

  return [load, run];
})(globalThis);
