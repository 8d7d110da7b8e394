// queuexec task runtime, part 4: CommonJS `require`, loading task.js, and running jobs.
//
// Module files are resolved and read by ops (ops.rs, modules.rs) with Node's rules, confined
// to the files the master shipped (`/task/...`) and the dependency bundle
// (`/deps/node_modules/...`); those virtual paths are what tasks see as __filename.
// This script's completion value is `[load, run]`, which the runtime keeps; it then removes
// every trace of deno_core and of the bootstrap from the global object.
"use strict";

((globalThis) => {
  const q = globalThis.__queuexec;
  const core = q.core;
  const { op_module_resolve, op_module_read } = core.ops;
  const { builtins, sandboxed, unimplemented } = q.nodeModules;

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

  // ------------------------------------------------------------ the task

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
    let instance;
    if (typeof Task === "function" && Task.prototype && typeof Task.prototype.run === "function") {
      instance = new Task();
    } else if (Task !== null && typeof Task === "object" && typeof Task.run === "function") {
      instance = Task;
    } else {
      throw new TypeError(
        `${entry} must export a class whose instances have run(job) (module.exports = Task), but it exported ${describe(Task)}`,
      );
    }
    task = instance;
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

  // Hide deno_core and the bootstrap from task code.
  delete globalThis.__queuexec;
  delete globalThis.Deno;
  delete globalThis.__bootstrap;
  // The QuickJS backend exposes V8's --expose-gc helper; V8 does not. Keep the engines alike.
  delete globalThis.gc;

  return [load, run];
})(globalThis);
