// queuexec task runtime, lazily loaded part: the pure-JavaScript Node built-ins (events, util, assert, path, querystring, string_decoder, crypto).
//
// Evaluated on first use (see bootstrap.js, `lazy`); the completion value is a function of
// `q`, the bootstrap's `lib` (harmless capabilities only: this crate's formatting, encoding and
// URL ops, the lazy loader; never deno_core's `core` or op table), returning this part's
// exports. Task code may reach anything here without gaining more than it already has.
"use strict";

(function (q, globalThis) {

  // ---------------------------------------------------------------- events

  class EventEmitter {
    constructor() {
      this._events = Object.create(null);
      this._maxListeners = undefined;
    }
    static get defaultMaxListeners() {
      return 10;
    }
    #list(name) {
      if (!this._events) this._events = Object.create(null);
      return this._events[name] || (this._events[name] = []);
    }
    on(name, listener) {
      if (typeof listener !== "function") throw new TypeError('The "listener" argument must be of type function');
      this.emit("newListener", name, listener.listener || listener);
      this.#list(name).push(listener);
      return this;
    }
    addListener(name, listener) {
      return this.on(name, listener);
    }
    prependListener(name, listener) {
      if (typeof listener !== "function") throw new TypeError('The "listener" argument must be of type function');
      this.#list(name).unshift(listener);
      return this;
    }
    once(name, listener) {
      if (typeof listener !== "function") throw new TypeError('The "listener" argument must be of type function');
      const wrapper = (...args) => {
        this.removeListener(name, wrapper);
        return listener.apply(this, args);
      };
      wrapper.listener = listener;
      return this.on(name, wrapper);
    }
    prependOnceListener(name, listener) {
      const wrapper = (...args) => {
        this.removeListener(name, wrapper);
        return listener.apply(this, args);
      };
      wrapper.listener = listener;
      return this.prependListener(name, wrapper);
    }
    off(name, listener) {
      return this.removeListener(name, listener);
    }
    removeListener(name, listener) {
      const list = this._events && this._events[name];
      if (!list) return this;
      const i = list.findIndex((l) => l === listener || l.listener === listener);
      if (i >= 0) {
        list.splice(i, 1);
        if (list.length === 0) delete this._events[name];
        if (this._events.removeListener) this.emit("removeListener", name, listener);
      }
      return this;
    }
    removeAllListeners(name) {
      if (!this._events) return this;
      if (name === undefined) this._events = Object.create(null);
      else delete this._events[name];
      return this;
    }
    emit(name, ...args) {
      const list = this._events && this._events[name];
      if (!list || list.length === 0) {
        if (name === "error") {
          const err = args[0] instanceof Error ? args[0] : new Error("Unhandled error. (" + q.lazy("console").inspect(args[0]) + ")");
          throw err;
        }
        return false;
      }
      for (const listener of list.slice()) listener.apply(this, args);
      return true;
    }
    listeners(name) {
      const list = (this._events && this._events[name]) || [];
      return list.map((l) => l.listener || l);
    }
    rawListeners(name) {
      return ((this._events && this._events[name]) || []).slice();
    }
    listenerCount(name) {
      return ((this._events && this._events[name]) || []).length;
    }
    eventNames() {
      return this._events ? Reflect.ownKeys(this._events) : [];
    }
    setMaxListeners(n) {
      this._maxListeners = n;
      return this;
    }
    getMaxListeners() {
      return this._maxListeners === undefined ? 10 : this._maxListeners;
    }
  }
  EventEmitter.EventEmitter = EventEmitter;
  EventEmitter.once = (emitter, name) =>
    new Promise((resolve, reject) => {
      const onError = (err) => {
        emitter.removeListener(name, onEvent);
        reject(err);
      };
      const onEvent = (...args) => {
        if (name !== "error") emitter.removeListener("error", onError);
        resolve(args);
      };
      emitter.once(name, onEvent);
      if (name !== "error") emitter.once("error", onError);
    });

  // ------------------------------------------------------------------ util

  function inherits(ctor, superCtor) {
    Object.defineProperty(ctor, "super_", { value: superCtor, writable: true, configurable: true });
    Object.setPrototypeOf(ctor.prototype, superCtor.prototype);
  }

  const kCustomPromisify = Symbol.for("nodejs.util.promisify.custom");
  function promisify(original) {
    if (typeof original !== "function") throw new TypeError('The "original" argument must be of type function');
    if (original[kCustomPromisify]) return original[kCustomPromisify];
    return function (...args) {
      return new Promise((resolve, reject) => {
        original.call(this, ...args, (err, ...values) => {
          if (err) reject(err);
          else resolve(values.length > 1 ? values : values[0]);
        });
      });
    };
  }
  promisify.custom = kCustomPromisify;

  function callbackify(original) {
    return function (...args) {
      const cb = args.pop();
      original.apply(this, args).then((v) => cb(null, v), (e) => cb(e || new Error(String(e))));
    };
  }

  function deprecate(fn, message) {
    let warned = false;
    return function (...args) {
      if (!warned) {
        warned = true;
        process.emitWarning("DeprecationWarning: " + message);
      }
      return new.target ? Reflect.construct(fn, args, new.target) : fn.apply(this, args);
    };
  }

  function isDeepStrictEqual(a, b) {
    return deepEqual(a, b, true, []);
  }

  function deepEqual(a, b, strict, seen) {
    if (strict ? Object.is(a, b) : a == b) return true;
    if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) {
      return !strict && a == b;
    }
    if (strict && Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
    if (seen.some(([x, y]) => x === a && y === b)) return true;
    seen.push([a, b]);
    try {
      if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
      if (a instanceof RegExp && b instanceof RegExp) return String(a) === String(b);
      if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
        if (a.length !== b.length) return false;
        for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
        return true;
      }
      if (a instanceof Map && b instanceof Map) {
        if (a.size !== b.size) return false;
        for (const [k, v] of a) if (!b.has(k) || !deepEqual(v, b.get(k), strict, seen)) return false;
        return true;
      }
      if (a instanceof Set && b instanceof Set) {
        if (a.size !== b.size) return false;
        for (const v of a) if (!b.has(v)) return false;
        return true;
      }
      if (Array.isArray(a) !== Array.isArray(b)) return false;
      const ka = Object.keys(a);
      const kb = Object.keys(b);
      if (ka.length !== kb.length) return false;
      for (const k of ka) {
        if (!Object.prototype.hasOwnProperty.call(b, k) || !deepEqual(a[k], b[k], strict, seen)) return false;
      }
      return true;
    } finally {
      seen.pop();
    }
  }

  const types = {
    isDate: (v) => v instanceof Date,
    isRegExp: (v) => v instanceof RegExp,
    isMap: (v) => v instanceof Map,
    isSet: (v) => v instanceof Set,
    isPromise: (v) => v instanceof Promise,
    isTypedArray: (v) => ArrayBuffer.isView(v) && !(v instanceof DataView),
    isUint8Array: (v) => v instanceof Uint8Array,
    isArrayBuffer: (v) => v instanceof ArrayBuffer,
    isAnyArrayBuffer: (v) => v instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && v instanceof SharedArrayBuffer),
    isArrayBufferView: (v) => ArrayBuffer.isView(v),
    isNativeError: (v) => v instanceof Error,
    isAsyncFunction: (v) => typeof v === "function" && v.constructor && v.constructor.name === "AsyncFunction",
    isGeneratorFunction: (v) => typeof v === "function" && v.constructor && /GeneratorFunction$/.test(v.constructor.name),
    isBoxedPrimitive: (v) => v instanceof Number || v instanceof String || v instanceof Boolean,
  };

  const util = {
    format: (...args) => q.lazy("console").format(...args),
    formatWithOptions: (_options, ...args) => q.lazy("console").format(...args),
    inspect: q.lazy("console").inspect,
    inherits,
    promisify,
    callbackify,
    deprecate,
    isDeepStrictEqual,
    types,
    isArray: Array.isArray,
    isBoolean: (v) => typeof v === "boolean",
    isNull: (v) => v === null,
    isNullOrUndefined: (v) => v === null || v === undefined,
    isNumber: (v) => typeof v === "number",
    isString: (v) => typeof v === "string",
    isSymbol: (v) => typeof v === "symbol",
    isUndefined: (v) => v === undefined,
    isRegExp: types.isRegExp,
    isObject: (v) => v !== null && typeof v === "object",
    isDate: types.isDate,
    isError: types.isNativeError,
    isFunction: (v) => typeof v === "function",
    isPrimitive: (v) => v === null || (typeof v !== "object" && typeof v !== "function"),
    TextEncoder: globalThis.TextEncoder,
    TextDecoder: globalThis.TextDecoder,
  };
  util.inspect.custom = Symbol.for("nodejs.util.inspect.custom");

  // ---------------------------------------------------------------- assert

  class AssertionError extends Error {
    constructor(options) {
      super(options.message);
      this.name = "AssertionError";
      this.code = "ERR_ASSERTION";
      this.actual = options.actual;
      this.expected = options.expected;
      this.operator = options.operator;
    }
  }
  function fail(message, actual, expected, operator, defaultMessage) {
    if (message instanceof Error) throw message;
    throw new AssertionError({ message: message || defaultMessage, actual, expected, operator });
  }
  function assert(value, message) {
    if (!value) fail(message, value, true, "==", "The expression evaluated to a falsy value");
  }
  Object.assign(assert, {
    AssertionError,
    ok: assert,
    fail: (message = "Failed") => fail(message, undefined, undefined, "fail"),
    equal: (a, b, m) => a == b || fail(m, a, b, "==", `${q.lazy("console").inspect(a)} == ${q.lazy("console").inspect(b)}`),
    notEqual: (a, b, m) => a != b || fail(m, a, b, "!=", `${q.lazy("console").inspect(a)} != ${q.lazy("console").inspect(b)}`),
    strictEqual: (a, b, m) => Object.is(a, b) || fail(m, a, b, "strictEqual", `Expected values to be strictly equal: ${q.lazy("console").inspect(a)} !== ${q.lazy("console").inspect(b)}`),
    notStrictEqual: (a, b, m) => !Object.is(a, b) || fail(m, a, b, "notStrictEqual", `Expected "actual" to be strictly unequal to: ${q.lazy("console").inspect(b)}`),
    deepEqual: (a, b, m) => deepEqual(a, b, false, []) || fail(m, a, b, "deepEqual", "Expected values to be loosely deep-equal"),
    deepStrictEqual: (a, b, m) => deepEqual(a, b, true, []) || fail(m, a, b, "deepStrictEqual", "Expected values to be strictly deep-equal"),
    notDeepStrictEqual: (a, b, m) => !deepEqual(a, b, true, []) || fail(m, a, b, "notDeepStrictEqual", "Expected values not to be strictly deep-equal"),
    throws: (fn, expected, m) => {
      try {
        fn();
      } catch (e) {
        if (typeof expected === "function" && expected.prototype !== undefined && !(e instanceof expected)) throw e;
        return;
      }
      fail(typeof expected === "string" ? expected : m, undefined, expected, "throws", "Missing expected exception.");
    },
    rejects: async (fnOrPromise, expected, m) => {
      try {
        await (typeof fnOrPromise === "function" ? fnOrPromise() : fnOrPromise);
      } catch {
        return;
      }
      fail(typeof expected === "string" ? expected : m, undefined, expected, "rejects", "Missing expected rejection.");
    },
    doesNotThrow: (fn) => fn(),
    match: (s, re, m) => re.test(s) || fail(m, s, re, "match", `The input did not match the regular expression ${re}`),
  });
  assert.strict = assert;

  // ------------------------------------------------------------------ path

  function normalizeArray(parts, allowAboveRoot) {
    const res = [];
    for (const p of parts) {
      if (!p || p === ".") continue;
      if (p === "..") {
        if (res.length && res[res.length - 1] !== "..") res.pop();
        else if (allowAboveRoot) res.push("..");
      } else res.push(p);
    }
    return res;
  }
  const path = {
    sep: "/",
    delimiter: ":",
    normalize(p) {
      const abs = p.startsWith("/");
      const trailing = p.endsWith("/");
      let out = normalizeArray(p.split("/"), !abs).join("/");
      if (!out && !abs) out = ".";
      if (out && trailing) out += "/";
      return (abs ? "/" : "") + out;
    },
    join(...parts) {
      const joined = parts.filter((p) => {
        if (typeof p !== "string") throw new TypeError('The "path" argument must be of type string');
        return p !== "";
      }).join("/");
      return joined ? path.normalize(joined) : ".";
    },
    resolve(...parts) {
      let resolved = "";
      for (let i = parts.length - 1; i >= -1 && !resolved.startsWith("/"); i--) {
        const p = i >= 0 ? parts[i] : process.cwd();
        if (!p) continue;
        resolved = p + "/" + resolved;
      }
      const out = normalizeArray(resolved.split("/"), false).join("/");
      return "/" + out;
    },
    isAbsolute: (p) => p.startsWith("/"),
    dirname(p) {
      if (!p) return ".";
      const trimmed = p.replace(/\/+$/, "") || "/";
      const i = trimmed.lastIndexOf("/");
      if (i < 0) return ".";
      if (i === 0) return "/";
      return trimmed.slice(0, i);
    },
    basename(p, ext) {
      let base = p.replace(/\/+$/, "");
      base = base.slice(base.lastIndexOf("/") + 1);
      if (ext && base.endsWith(ext) && base !== ext) base = base.slice(0, -ext.length);
      return base;
    },
    extname(p) {
      const base = path.basename(p);
      const i = base.lastIndexOf(".");
      return i <= 0 ? "" : base.slice(i);
    },
    relative(from, to) {
      const f = path.resolve(from).split("/").filter(Boolean);
      const t = path.resolve(to).split("/").filter(Boolean);
      let i = 0;
      while (i < f.length && i < t.length && f[i] === t[i]) i++;
      return [...Array(f.length - i).fill(".."), ...t.slice(i)].join("/");
    },
    parse(p) {
      const root = p.startsWith("/") ? "/" : "";
      const base = path.basename(p);
      const ext = path.extname(p);
      const dir = path.dirname(p);
      return { root, dir: dir === "." && !p.includes("/") ? "" : dir, base, ext, name: ext ? base.slice(0, -ext.length) : base };
    },
    format(o) {
      const dir = o.dir || o.root || "";
      const base = o.base || (o.name || "") + (o.ext || "");
      return dir ? (dir.endsWith("/") ? dir + base : dir + "/" + base) : base;
    },
    toNamespacedPath: (p) => p,
  };
  path.posix = path;

  // ---------------------------------------------------------- querystring

  const querystring = {
    parse(s, sep = "&", eq = "=") {
      const out = Object.create(null);
      if (typeof s !== "string" || s === "") return out;
      for (const part of s.split(sep)) {
        if (!part) continue;
        const i = part.indexOf(eq);
        const k = decode(i >= 0 ? part.slice(0, i) : part);
        const v = i >= 0 ? decode(part.slice(i + eq.length)) : "";
        if (k in out) out[k] = [].concat(out[k], v);
        else out[k] = v;
      }
      return out;
      function decode(x) {
        try {
          return decodeURIComponent(x.replace(/\+/g, " "));
        } catch {
          return x;
        }
      }
    },
    stringify(obj, sep = "&", eq = "=") {
      if (!obj || typeof obj !== "object") return "";
      const enc = (v) => encodeURIComponent(typeof v === "string" ? v : typeof v === "number" && isFinite(v) ? String(v) : typeof v === "boolean" ? String(v) : "");
      return Object.keys(obj)
        .map((k) => (Array.isArray(obj[k]) ? obj[k].map((v) => enc(k) + eq + enc(v)).join(sep) : enc(k) + eq + enc(obj[k])))
        .filter(Boolean)
        .join(sep);
    },
    escape: encodeURIComponent,
    unescape: decodeURIComponent,
  };
  querystring.decode = querystring.parse;
  querystring.encode = querystring.stringify;

  // -------------------------------------------------------- string_decoder

  class StringDecoder {
    constructor(encoding = "utf8") {
      this.encoding = String(encoding).toLowerCase().replace("-", "");
      this.decoder = this.encoding === "utf8" ? new globalThis.TextDecoder() : null;
    }
    write(buf) {
      if (this.decoder) return this.decoder.decode(buf, { stream: true });
      return q.lazy("buffer").Buffer.from(buf).toString(this.encoding);
    }
    end(buf) {
      let out = buf ? this.write(buf) : "";
      if (this.decoder) out += this.decoder.decode();
      return out;
    }
  }

  // ---------------------------------------------------------------- crypto

  function unavailable(module, name) {
    return () => {
      throw new Error(`${module}.${name}() is not available in the queuexec JavaScript runtime; bundle a pure-JavaScript package instead`);
    };
  }
  const cryptoModule = {
    randomBytes(size, callback) {
      const buf = q.lazy("buffer").Buffer.from(q.randomBytes(size));
      if (typeof callback === "function") {
        queueMicrotask(() => callback(null, buf));
        return undefined;
      }
      return buf;
    },
    randomFillSync(buf, offset = 0, size) {
      const view = new Uint8Array(buf.buffer || buf, (buf.byteOffset || 0) + offset, size === undefined ? (buf.byteLength - offset) : size);
      view.set(q.randomBytes(view.length));
      return buf;
    },
    randomInt(min, max) {
      if (max === undefined) {
        max = min;
        min = 0;
      }
      const range = max - min;
      if (!(range > 0) || range > 2 ** 48) throw new RangeError('The "max" argument must be greater than "min" and the range at most 2^48');
      const b = q.randomBytes(6);
      let n = 0;
      for (const x of b) n = n * 256 + x;
      return min + (n % range);
    },
    randomUUID: () => globalThis.crypto.randomUUID(),
    getRandomValues: (a) => globalThis.crypto.getRandomValues(a),
    webcrypto: globalThis.crypto,
    createHash: unavailable("crypto", "createHash"),
    createHmac: unavailable("crypto", "createHmac"),
    createCipheriv: unavailable("crypto", "createCipheriv"),
    createDecipheriv: unavailable("crypto", "createDecipheriv"),
    pbkdf2: unavailable("crypto", "pbkdf2"),
    pbkdf2Sync: unavailable("crypto", "pbkdf2Sync"),
  };

  const timersPromises = {
    setTimeout: (ms, value) => new Promise((resolve) => globalThis.setTimeout(() => resolve(value), ms)),
    setImmediate: (value) => new Promise((resolve) => globalThis.setImmediate(() => resolve(value))),
  };

  return {
    assert,
    crypto: cryptoModule,
    events: EventEmitter,
    path,
    querystring,
    string_decoder: { StringDecoder },
    "timers/promises": timersPromises,
    util,
    "util/types": types,
  };

})
