// queuexec task runtime, lazily loaded part: URL and URLSearchParams.
//
// Evaluated on first use (see bootstrap.js, `lazy`); the completion value is a function of
// `q`, the bootstrap's `lib` (harmless capabilities only: this crate's formatting, encoding and
// URL ops, the lazy loader; never deno_core's `core` or op table), returning this part's
// exports. Task code may reach anything here without gaining more than it already has.
"use strict";

(function (q, globalThis) {
  const op_encoding_decode_utf8 = q.decodeUtf8;
  const op_url_parse = q.urlParse;
  const op_url_set = q.urlSet;

  // ------------------------------------------------------ URLSearchParams

  const FORM_SAFE = /[A-Za-z0-9*\-._]/;

  function formEncode(s) {
    const bytes = q.encode(String(s));
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
        const b = q.encode(run);
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

  return { URL, URLSearchParams };

})
