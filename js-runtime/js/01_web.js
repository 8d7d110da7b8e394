// queuexec task runtime, part 1: the web-platform globals a task expects.
//
// Timers, queueMicrotask (deno_core's), TextEncoder/TextDecoder, atob/btoa, URL and
// URLSearchParams, structuredClone, crypto.getRandomValues/randomUUID, performance.now.
"use strict";

((globalThis) => {
  const q = globalThis.__queuexec;
  const core = q.core;
  const {
    op_perf_now,
    op_crypto_fill_random,
    op_encoding_decode_utf8,
    op_url_parse,
    op_url_set,
  } = core.ops;

  function defineGlobal(name, value) {
    Object.defineProperty(globalThis, name, {
      value,
      configurable: true,
      enumerable: false,
      writable: true,
    });
  }

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
      throw new TypeError(
        name + ": the callback must be a function (strings are not evaluated in a queuexec task)",
      );
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

  const setTimeout = (callback, delay, ...args) => startTimer("setTimeout", callback, delay, args, false);
  const setInterval = (callback, delay, ...args) => startTimer("setInterval", callback, delay, args, true);
  const setImmediate = (callback, ...args) => startTimer("setImmediate", callback, 0, args, false);

  defineGlobal("setTimeout", setTimeout);
  defineGlobal("setInterval", setInterval);
  defineGlobal("setImmediate", setImmediate);
  defineGlobal("clearTimeout", clearTimer);
  defineGlobal("clearInterval", clearTimer);
  defineGlobal("clearImmediate", clearTimer);
  q.timers = { setTimeout, setInterval, setImmediate, clearTimeout: clearTimer, clearInterval: clearTimer, clearImmediate: clearTimer };

  // ---------------------------------------------------------- performance

  const timeOrigin = Date.now() - op_perf_now();
  q.now = () => op_perf_now();
  const performance = {
    now: () => op_perf_now(),
    timeOrigin,
    toJSON() {
      return { timeOrigin };
    },
  };
  defineGlobal("performance", performance);

  // ------------------------------------------------------------- encoding

  const UTF8_LABELS = ["utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"];

  function toBytes(input) {
    if (input === undefined) return new Uint8Array(0);
    if (input instanceof Uint8Array) return input;
    if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    if (input instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && input instanceof SharedArrayBuffer)) {
      return new Uint8Array(input);
    }
    throw new TypeError("TextDecoder.decode: the input must be an ArrayBuffer or an ArrayBufferView");
  }

  // How many bytes at the end of `bytes` start a UTF-8 sequence that is not complete yet.
  function incompleteTail(bytes) {
    const n = bytes.length;
    for (let back = 1; back <= 3 && back <= n; back++) {
      const b = bytes[n - back];
      if ((b & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead
      const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
      return need > back ? back : 0;
    }
    return 0;
  }

  class TextDecoder {
    #fatal;
    #ignoreBOM;
    #pending = null;
    #bomSeen = false;
    constructor(label = "utf-8", options = {}) {
      const l = String(label).trim().toLowerCase();
      if (!UTF8_LABELS.includes(l)) {
        throw new RangeError(`TextDecoder: the encoding '${label}' is not supported (only utf-8 is)`);
      }
      this.#fatal = Boolean(options && options.fatal);
      this.#ignoreBOM = Boolean(options && options.ignoreBOM);
    }
    get encoding() {
      return "utf-8";
    }
    get fatal() {
      return this.#fatal;
    }
    get ignoreBOM() {
      return this.#ignoreBOM;
    }
    decode(input, options = {}) {
      let bytes = toBytes(input);
      const stream = Boolean(options && options.stream);
      if (this.#pending) {
        const joined = new Uint8Array(this.#pending.length + bytes.length);
        joined.set(this.#pending);
        joined.set(bytes, this.#pending.length);
        bytes = joined;
        this.#pending = null;
      }
      if (stream) {
        const tail = incompleteTail(bytes);
        if (tail > 0) {
          this.#pending = bytes.slice(bytes.length - tail);
          bytes = bytes.subarray(0, bytes.length - tail);
        }
      }
      // Strip the BOM only at the very start of a stream.
      const stripBom = !this.#ignoreBOM && !this.#bomSeen;
      if (bytes.length > 0) this.#bomSeen = true;
      let text;
      try {
        text = op_encoding_decode_utf8(bytes, this.#fatal, stripBom);
      } catch (e) {
        throw new TypeError("TextDecoder.decode: the data is not valid utf-8");
      }
      if (!stream) {
        this.#bomSeen = false;
        this.#pending = null;
      }
      return text;
    }
  }

  class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(input = "") {
      return core.encode(String(input));
    }
    encodeInto(source, destination) {
      const s = String(source);
      let read = 0;
      let written = 0;
      for (const ch of s) {
        const cp = ch.codePointAt(0);
        const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (written + size > destination.length) break;
        const bytes = core.encode(ch);
        destination.set(bytes, written);
        written += bytes.length;
        read += ch.length;
      }
      return { read, written };
    }
  }

  defineGlobal("TextEncoder", TextEncoder);
  defineGlobal("TextDecoder", TextDecoder);

  // ---------------------------------------------------------------- base64

  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const B64_INDEX = new Int16Array(128).fill(-1);
  for (let i = 0; i < B64.length; i++) B64_INDEX[B64.charCodeAt(i)] = i;
  B64_INDEX["-".charCodeAt(0)] = 62;
  B64_INDEX["_".charCodeAt(0)] = 63;

  function bytesToBase64(bytes, url) {
    const alphabet = url ? B64.slice(0, 62) + "-_" : B64;
    let out = "";
    let i = 0;
    for (; i + 2 < bytes.length; i += 3) {
      const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
      out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + alphabet[n & 63];
    }
    const rest = bytes.length - i;
    if (rest === 1) {
      const n = bytes[i] << 16;
      out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + (url ? "" : "==");
    } else if (rest === 2) {
      const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
      out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + (url ? "" : "=");
    }
    return out;
  }

  // Lenient like Node's Buffer.from(s, 'base64'): skips characters outside the alphabet.
  // Returns null when `strict` and the input is not valid forgiving-base64 (atob's rules).
  function base64ToBytes(s, strict) {
    let clean = "";
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 128 && B64_INDEX[c] >= 0) {
        if (strict && (c === 45 || c === 95)) return null;
        clean += s[i];
      } else if (strict && !(c === 61 || c === 32 || c === 9 || c === 10 || c === 12 || c === 13)) {
        return null;
      }
    }
    if (strict) {
      const stripped = s.replace(/[\t\n\f\r ]/g, "");
      const pad = stripped.length - stripped.replace(/=+$/, "").length;
      if (pad > 2 || stripped.slice(0, stripped.length - pad).includes("=")) return null;
      if ((clean.length + pad) % 4 !== 0 && pad > 0) return null;
      if (clean.length % 4 === 1) return null;
    }
    const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
    let o = 0;
    let acc = 0;
    let bits = 0;
    for (let i = 0; i < clean.length; i++) {
      acc = (acc << 6) | B64_INDEX[clean.charCodeAt(i)];
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out[o++] = (acc >> bits) & 0xff;
      }
    }
    return out.subarray(0, o);
  }

  function btoa(data) {
    if (arguments.length === 0) throw new TypeError("btoa: 1 argument required");
    const s = String(data);
    const bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c > 255) {
        const e = new Error("btoa: the string contains characters outside of the Latin1 range");
        e.name = "InvalidCharacterError";
        throw e;
      }
      bytes[i] = c;
    }
    return bytesToBase64(bytes, false);
  }

  function atob(data) {
    if (arguments.length === 0) throw new TypeError("atob: 1 argument required");
    const bytes = base64ToBytes(String(data), true);
    if (bytes === null) {
      const e = new Error("atob: the string to be decoded is not correctly encoded");
      e.name = "InvalidCharacterError";
      throw e;
    }
    let out = "";
    for (let i = 0; i < bytes.length; i++) out += String.fromCharCode(bytes[i]);
    return out;
  }

  defineGlobal("btoa", btoa);
  defineGlobal("atob", atob);
  q.base64 = { encode: bytesToBase64, decode: (s) => base64ToBytes(s, false) };

  // ---------------------------------------------------------------- crypto

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
    const b = new Uint8Array(16);
    op_crypto_fill_random(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = "";
    for (let i = 0; i < 16; i++) hex += b[i].toString(16).padStart(2, "0");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  const crypto = { getRandomValues, randomUUID };
  defineGlobal("crypto", crypto);
  q.randomBytes = (n) => {
    const b = new Uint8Array(n);
    for (let off = 0; off < n; off += 65536) op_crypto_fill_random(b.subarray(off, Math.min(n, off + 65536)));
    return b;
  };

  // -------------------------------------------------------- structuredClone

  function structuredClone(value) {
    if (arguments.length === 0) throw new TypeError("structuredClone: 1 argument required");
    try {
      return core.structuredClone(value);
    } catch (e) {
      const err = new Error("structuredClone: " + (e && e.message ? e.message : String(e)));
      err.name = "DataCloneError";
      throw err;
    }
  }
  defineGlobal("structuredClone", structuredClone);

  // ------------------------------------------------------ URLSearchParams

  const FORM_SAFE = /[A-Za-z0-9*\-._]/;

  function formEncode(s) {
    const bytes = core.encode(String(s));
    let out = "";
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      const ch = String.fromCharCode(b);
      if (b < 128 && FORM_SAFE.test(ch)) out += ch;
      else if (b === 0x20) out += "+";
      else out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
    }
    return out;
  }

  function formDecode(s) {
    const str = s.replace(/\+/g, " ");
    if (!str.includes("%")) return str;
    const chunks = [];
    let total = 0;
    let run = "";
    const flush = () => {
      if (run) {
        const b = core.encode(run);
        chunks.push(b);
        total += b.length;
        run = "";
      }
    };
    let i = 0;
    while (i < str.length) {
      if (str[i] === "%" && /^[0-9A-Fa-f]{2}$/.test(str.slice(i + 1, i + 3))) {
        flush();
        chunks.push([parseInt(str.slice(i + 1, i + 3), 16)]);
        total += 1;
        i += 3;
      } else {
        run += str[i];
        i++;
      }
    }
    flush();
    const bytes = new Uint8Array(total);
    let o = 0;
    for (const c of chunks) {
      bytes.set(c, o);
      o += c.length;
    }
    return op_encoding_decode_utf8(bytes, false, false);
  }

  const kList = Symbol("queuexec.searchParamsList");
  const kUrl = Symbol("queuexec.searchParamsUrl");

  class URLSearchParams {
    constructor(init = "") {
      this[kList] = [];
      this[kUrl] = null;
      if (init instanceof URLSearchParams) {
        this[kList] = init[kList].map(([k, v]) => [k, v]);
      } else if (typeof init === "object" && init !== null) {
        if (typeof init[Symbol.iterator] === "function") {
          for (const pair of init) {
            const p = [...pair];
            if (p.length !== 2) throw new TypeError("URLSearchParams: each pair must have exactly two items");
            this[kList].push([String(p[0]), String(p[1])]);
          }
        } else {
          for (const key of Object.keys(init)) this[kList].push([key, String(init[key])]);
        }
      } else {
        this.#parse(String(init));
      }
    }
    #parse(s) {
      this[kList] = [];
      if (s.startsWith("?")) s = s.slice(1);
      for (const part of s.split("&")) {
        if (part === "") continue;
        const eq = part.indexOf("=");
        const k = eq >= 0 ? part.slice(0, eq) : part;
        const v = eq >= 0 ? part.slice(eq + 1) : "";
        this[kList].push([formDecode(k), formDecode(v)]);
      }
    }
    #update() {
      const url = this[kUrl];
      if (url) url._setSearchFromParams(this.toString());
    }
    get size() {
      return this[kList].length;
    }
    append(name, value) {
      this[kList].push([String(name), String(value)]);
      this.#update();
    }
    delete(name, value) {
      const n = String(name);
      this[kList] = this[kList].filter(([k, v]) => !(k === n && (value === undefined || v === String(value))));
      this.#update();
    }
    get(name) {
      const n = String(name);
      const hit = this[kList].find(([k]) => k === n);
      return hit ? hit[1] : null;
    }
    getAll(name) {
      const n = String(name);
      return this[kList].filter(([k]) => k === n).map(([, v]) => v);
    }
    has(name, value) {
      const n = String(name);
      return this[kList].some(([k, v]) => k === n && (value === undefined || v === String(value)));
    }
    set(name, value) {
      const n = String(name);
      const v = String(value);
      const i = this[kList].findIndex(([k]) => k === n);
      if (i < 0) this[kList].push([n, v]);
      else {
        this[kList][i][1] = v;
        this[kList] = this[kList].filter(([k], j) => j <= i || k !== n);
      }
      this.#update();
    }
    sort() {
      this[kList] = this[kList]
        .map((pair, i) => [pair, i])
        .sort((a, b) => (a[0][0] < b[0][0] ? -1 : a[0][0] > b[0][0] ? 1 : a[1] - b[1]))
        .map(([pair]) => pair);
      this.#update();
    }
    forEach(callback, thisArg) {
      for (const [k, v] of this[kList]) callback.call(thisArg, v, k, this);
    }
    *entries() {
      for (const [k, v] of this[kList]) yield [k, v];
    }
    *keys() {
      for (const [k] of this[kList]) yield k;
    }
    *values() {
      for (const [, v] of this[kList]) yield v;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    toString() {
      return this[kList].map(([k, v]) => formEncode(k) + "=" + formEncode(v)).join("&");
    }
    _reparse(search) {
      this.#parse(search);
    }
  }

  // ------------------------------------------------------------------ URL

  // Order of the parts op_url_set understands; keep in sync with ops.rs (UrlPart).
  const PART = { href: 0, protocol: 1, username: 2, password: 3, host: 4, hostname: 5, port: 6, pathname: 7, search: 8, hash: 9 };

  class URL {
    #p;
    #params = null;
    constructor(url, base) {
      if (arguments.length === 0) throw new TypeError("URL: 1 argument required");
      const p = base === undefined ? op_url_parse(String(url), false, "") : op_url_parse(String(url), true, String(base));
      if (p === null) {
        throw new TypeError(`Invalid URL: '${url}'` + (base === undefined ? "" : ` with base '${base}'`));
      }
      this.#p = p;
    }
    static canParse(url, base) {
      return (base === undefined ? op_url_parse(String(url), false, "") : op_url_parse(String(url), true, String(base))) !== null;
    }
    static parse(url, base) {
      try {
        return new URL(url, base);
      } catch {
        return null;
      }
    }
    #set(part, value) {
      const p = op_url_set(this.#p.href, part, String(value));
      if (p === null) {
        if (part === PART.href) throw new TypeError(`Invalid URL: '${value}'`);
        return;
      }
      this.#p = p;
      if (this.#params && part !== PART.hash) this.#params._reparse(this.#p.search);
    }
    _setSearchFromParams(query) {
      const p = op_url_set(this.#p.href, PART.search, query);
      if (p !== null) this.#p = p;
    }
    get href() {
      return this.#p.href;
    }
    set href(v) {
      this.#set(PART.href, v);
    }
    get origin() {
      return this.#p.origin;
    }
    get protocol() {
      return this.#p.protocol;
    }
    set protocol(v) {
      this.#set(PART.protocol, v);
    }
    get username() {
      return this.#p.username;
    }
    set username(v) {
      this.#set(PART.username, v);
    }
    get password() {
      return this.#p.password;
    }
    set password(v) {
      this.#set(PART.password, v);
    }
    get host() {
      return this.#p.host;
    }
    set host(v) {
      this.#set(PART.host, v);
    }
    get hostname() {
      return this.#p.hostname;
    }
    set hostname(v) {
      this.#set(PART.hostname, v);
    }
    get port() {
      return this.#p.port;
    }
    set port(v) {
      this.#set(PART.port, v);
    }
    get pathname() {
      return this.#p.pathname;
    }
    set pathname(v) {
      this.#set(PART.pathname, v);
    }
    get search() {
      return this.#p.search;
    }
    set search(v) {
      this.#set(PART.search, v);
    }
    get hash() {
      return this.#p.hash;
    }
    set hash(v) {
      this.#set(PART.hash, v);
    }
    get searchParams() {
      if (this.#params === null) {
        this.#params = new URLSearchParams(this.#p.search);
        this.#params[kUrl] = this;
      }
      return this.#params;
    }
    toString() {
      return this.#p.href;
    }
    toJSON() {
      return this.#p.href;
    }
  }

  defineGlobal("URL", URL);
  defineGlobal("URLSearchParams", URLSearchParams);
})(globalThis);
