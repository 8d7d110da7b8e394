// queuexec task runtime, lazily loaded part: Node's Buffer.
//
// Evaluated on first use (see bootstrap.js, `lazy`); the completion value is a function of
// `q`, the bootstrap's `lib` (harmless capabilities only: this crate's formatting, encoding and
// URL ops, the lazy loader; never deno_core's `core` or op table), returning this part's
// exports. Task code may reach anything here without gaining more than it already has.
"use strict";

(function (q, globalThis) {
  const op_encoding_decode_utf8 = q.decodeUtf8;

  class FastBuffer extends Uint8Array {}

  const ENCODINGS = ["utf8", "utf-8", "hex", "base64", "base64url", "latin1", "binary", "ascii", "utf16le", "utf-16le", "ucs2", "ucs-2"];

  function normEncoding(enc) {
    if (enc === undefined || enc === null || enc === "") return "utf8";
    const e = String(enc).toLowerCase();
    switch (e) {
      case "utf8":
      case "utf-8":
        return "utf8";
      case "hex":
      case "base64":
      case "base64url":
      case "ascii":
        return e;
      case "latin1":
      case "binary":
        return "latin1";
      case "utf16le":
      case "utf-16le":
      case "ucs2":
      case "ucs-2":
        return "utf16le";
    }
    throw new TypeError(`Unknown encoding: ${enc}`);
  }

  function encodeString(string, encoding) {
    const s = String(string);
    switch (normEncoding(encoding)) {
      case "utf8":
        return q.encode(s);
      case "hex": {
        const n = s.length >>> 1;
        const out = new Uint8Array(n);
        let i = 0;
        for (; i < n; i++) {
          const byte = parseInt(s.substr(i * 2, 2), 16);
          if (Number.isNaN(byte)) break;
          out[i] = byte;
        }
        return out.subarray(0, i);
      }
      case "base64":
      case "base64url":
        return q.lazy("base64").decode(s);
      case "latin1":
      case "ascii": {
        const out = new Uint8Array(s.length);
        for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
        return out;
      }
      case "utf16le": {
        const out = new Uint8Array(s.length * 2);
        for (let i = 0; i < s.length; i++) {
          const c = s.charCodeAt(i);
          out[i * 2] = c & 0xff;
          out[i * 2 + 1] = c >>> 8;
        }
        return out;
      }
    }
  }

  function decodeBytes(bytes, encoding) {
    switch (normEncoding(encoding)) {
      case "utf8":
        return op_encoding_decode_utf8(bytes, false, false);
      case "hex": {
        let out = "";
        for (let i = 0; i < bytes.length; i++) out += bytes[i].toString(16).padStart(2, "0");
        return out;
      }
      case "base64":
        return q.lazy("base64").encode(bytes, false);
      case "base64url":
        return q.lazy("base64").encode(bytes, true);
      case "latin1": {
        let out = "";
        for (let i = 0; i < bytes.length; i += 4096) out += String.fromCharCode(...bytes.subarray(i, i + 4096));
        return out;
      }
      case "ascii": {
        let out = "";
        for (let i = 0; i < bytes.length; i++) out += String.fromCharCode(bytes[i] & 0x7f);
        return out;
      }
      case "utf16le": {
        let out = "";
        for (let i = 0; i + 1 < bytes.length; i += 2) out += String.fromCharCode(bytes[i] | (bytes[i + 1] << 8));
        return out;
      }
    }
  }

  function checkSize(size) {
    if (typeof size !== "number" || !(size >= 0) || size > 2 ** 32) {
      throw new RangeError(`The "size" argument must be a number between 0 and 4294967296. Received ${size}`);
    }
  }

  /** Node's Buffer: callable (deprecated) and constructible, like Node's. */
  function Buffer(arg, encodingOrOffset, length) {
    if (typeof arg === "number") return Buffer.alloc(arg);
    return Buffer.from(arg, encodingOrOffset, length);
  }
  Object.setPrototypeOf(Buffer, Uint8Array);
  Buffer.prototype = FastBuffer.prototype;
  Object.defineProperty(FastBuffer.prototype, "constructor", { value: Buffer, writable: true, configurable: true });
  Object.defineProperty(Buffer, Symbol.species, { get: () => FastBuffer, configurable: true });
  Buffer.poolSize = 8192;

  Buffer.from = function from(value, encodingOrOffset, length) {
    if (typeof value === "string") {
      const b = encodeString(value, encodingOrOffset);
      return new FastBuffer(b.buffer, b.byteOffset, b.byteLength);
    }
    if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && value instanceof SharedArrayBuffer)) {
      const offset = encodingOrOffset === undefined ? 0 : Number(encodingOrOffset);
      const len = length === undefined ? value.byteLength - offset : Number(length);
      return new FastBuffer(value, offset, len);
    }
    if (value instanceof Uint8Array) {
      const out = new FastBuffer(value.length);
      out.set(value);
      return out;
    }
    if (value instanceof DataView) {
      const out = new FastBuffer(value.byteLength);
      out.set(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
      return out;
    }
    if (value !== null && typeof value === "object") {
      if (value.type === "Buffer" && Array.isArray(value.data)) return Buffer.from(value.data);
      if (Array.isArray(value) || typeof value.length === "number") {
        const out = new FastBuffer(value.length >>> 0);
        for (let i = 0; i < out.length; i++) out[i] = value[i] & 0xff;
        return out;
      }
      if (typeof value.valueOf === "function") {
        const prim = value.valueOf();
        if (prim !== value && prim !== null && prim !== undefined) return Buffer.from(prim, encodingOrOffset, length);
      }
      if (typeof value[Symbol.toPrimitive] === "function") {
        return Buffer.from(value[Symbol.toPrimitive]("string"), encodingOrOffset, length);
      }
    }
    throw new TypeError(
      "The first argument must be of type string or an instance of Buffer, ArrayBuffer, or Array or an Array-like Object. Received " +
        (value === null ? "null" : typeof value),
    );
  };

  Buffer.alloc = function alloc(size, fill, encoding) {
    checkSize(size);
    const b = new FastBuffer(size);
    if (fill !== undefined && fill !== 0 && size > 0) b.fill(fill, 0, b.length, encoding);
    return b;
  };
  Buffer.allocUnsafe = function allocUnsafe(size) {
    checkSize(size);
    return new FastBuffer(size);
  };
  Buffer.allocUnsafeSlow = Buffer.allocUnsafe;
  Buffer.isBuffer = (b) => b instanceof FastBuffer;
  Buffer.isEncoding = (e) => typeof e === "string" && ENCODINGS.includes(e.toLowerCase());
  Buffer.byteLength = function byteLength(value, encoding) {
    if (typeof value !== "string") {
      if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value.byteLength;
      throw new TypeError('The "string" argument must be of type string or an instance of Buffer or ArrayBuffer');
    }
    const enc = normEncoding(encoding);
    if (enc === "utf8") return q.byteLength(value);
    return encodeString(value, enc).length;
  };
  Buffer.concat = function concat(list, totalLength) {
    if (!Array.isArray(list)) throw new TypeError('The "list" argument must be an instance of Array');
    const total = totalLength === undefined ? list.reduce((n, b) => n + b.length, 0) : totalLength;
    const out = Buffer.alloc(total);
    let pos = 0;
    for (const b of list) {
      if (!(b instanceof Uint8Array)) throw new TypeError('The "list" argument must contain only Buffer or Uint8Array instances');
      if (pos >= total) break;
      const n = Math.min(b.length, total - pos);
      out.set(n === b.length ? b : b.subarray(0, n), pos);
      pos += n;
    }
    return out;
  };
  Buffer.compare = function compare(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) {
      if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    }
    return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
  };

  const proto = FastBuffer.prototype;

  proto.toString = function toString(encoding, start = 0, end = this.length) {
    start = Math.max(0, start | 0);
    end = Math.min(this.length, end === undefined ? this.length : end | 0);
    if (end <= start) return "";
    return decodeBytes(this.subarray(start, end), encoding);
  };
  proto.toLocaleString = proto.toString;
  proto.toJSON = function toJSON() {
    return { type: "Buffer", data: Array.from(this) };
  };
  proto.equals = function equals(other) {
    if (!(other instanceof Uint8Array)) throw new TypeError('The "otherBuffer" argument must be an instance of Buffer or Uint8Array');
    return Buffer.compare(this, other) === 0;
  };
  proto.compare = function compare(target, tStart = 0, tEnd = target.length, sStart = 0, sEnd = this.length) {
    return Buffer.compare(this.subarray(sStart, sEnd), target.subarray(tStart, tEnd));
  };
  proto.copy = function copy(target, targetStart = 0, sourceStart = 0, sourceEnd = this.length) {
    const src = this.subarray(sourceStart, Math.min(sourceEnd, sourceStart + (target.length - targetStart)));
    target.set(src, targetStart);
    return src.length;
  };
  // Node's slice shares memory, like subarray.
  proto.slice = function slice(start, end) {
    return this.subarray(start, end);
  };
  proto.write = function write(string, offset, length, encoding) {
    if (typeof offset === "string") {
      encoding = offset;
      offset = 0;
      length = this.length;
    } else if (typeof length === "string") {
      encoding = length;
      length = this.length - (offset || 0);
    }
    offset = offset >>> 0;
    const bytes = encodeString(string, encoding);
    const n = Math.min(bytes.length, this.length - offset, length === undefined ? Infinity : length);
    this.set(bytes.subarray(0, n), offset);
    return n;
  };
  const nativeFill = Uint8Array.prototype.fill;
  proto.fill = function fill(value, offset = 0, end = this.length, encoding) {
    if (typeof offset === "string") {
      encoding = offset;
      offset = 0;
      end = this.length;
    } else if (typeof end === "string") {
      encoding = end;
      end = this.length;
    }
    if (typeof value === "number" || typeof value === "boolean") return nativeFill.call(this, Number(value) & 0xff, offset, end);
    const bytes = typeof value === "string" ? encodeString(value, encoding) : value;
    if (bytes.length === 0) return nativeFill.call(this, 0, offset, end);
    for (let i = offset, j = 0; i < end; i++, j = (j + 1) % bytes.length) this[i] = bytes[j];
    return this;
  };
  function needle(value, encoding) {
    if (typeof value === "number") return Uint8Array.of(value & 0xff);
    if (typeof value === "string") return encodeString(value, encoding);
    return value;
  }
  proto.indexOf = function indexOf(value, byteOffset = 0, encoding) {
    if (typeof byteOffset === "string") {
      encoding = byteOffset;
      byteOffset = 0;
    }
    const n = needle(value, encoding);
    let from = byteOffset < 0 ? Math.max(0, this.length + byteOffset) : byteOffset;
    if (n.length === 0) return Math.min(from, this.length);
    outer: for (let i = from; i <= this.length - n.length; i++) {
      for (let j = 0; j < n.length; j++) if (this[i + j] !== n[j]) continue outer;
      return i;
    }
    return -1;
  };
  proto.lastIndexOf = function lastIndexOf(value, byteOffset = this.length, encoding) {
    const n = needle(value, encoding);
    const start = Math.min(byteOffset < 0 ? this.length + byteOffset : byteOffset, this.length - n.length);
    outer: for (let i = start; i >= 0; i--) {
      for (let j = 0; j < n.length; j++) if (this[i + j] !== n[j]) continue outer;
      return i;
    }
    return -1;
  };
  proto.includes = function includes(value, byteOffset, encoding) {
    return this.indexOf(value, byteOffset, encoding) !== -1;
  };

  function view(buf) {
    return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  function checkOffset(buf, offset, size) {
    if (offset === undefined) offset = 0;
    if (typeof offset !== "number" || offset < 0 || offset + size > buf.length || offset % 1 !== 0) {
      throw new RangeError(`The value of "offset" is out of range. It must be >= 0 and <= ${buf.length - size}. Received ${offset}`);
    }
    return offset;
  }
  const ACCESSORS = [
    ["UInt8", "Uint8", 1],
    ["Int8", "Int8", 1],
    ["UInt16", "Uint16", 2],
    ["Int16", "Int16", 2],
    ["UInt32", "Uint32", 4],
    ["Int32", "Int32", 4],
    ["Float", "Float32", 4],
    ["Double", "Float64", 8],
    ["BigUInt64", "BigUint64", 8],
    ["BigInt64", "BigInt64", 8],
  ];
  for (const [name, dv, size] of ACCESSORS) {
    const endians = size === 1 ? [""] : ["LE", "BE"];
    for (const endian of endians) {
      const little = endian === "LE";
      const get = DataView.prototype["get" + dv];
      const set = DataView.prototype["set" + dv];
      const read = function (offset) {
        offset = checkOffset(this, offset, size);
        return get.call(view(this), offset, little);
      };
      const write = function (value, offset) {
        offset = checkOffset(this, offset, size);
        set.call(view(this), offset, value, little);
        return offset + size;
      };
      proto["read" + name + endian] = read;
      proto["write" + name + endian] = write;
      if (name.startsWith("UInt") || name.startsWith("BigUInt")) {
        const alias = name.replace("UInt", "Uint");
        proto["read" + alias + endian] = read;
        proto["write" + alias + endian] = write;
      }
    }
  }
  proto.readUIntBE = function (offset, byteLength) {
    offset = checkOffset(this, offset, byteLength);
    let v = 0;
    for (let i = 0; i < byteLength; i++) v = v * 256 + this[offset + i];
    return v;
  };
  proto.readUIntLE = function (offset, byteLength) {
    offset = checkOffset(this, offset, byteLength);
    let v = 0;
    for (let i = byteLength - 1; i >= 0; i--) v = v * 256 + this[offset + i];
    return v;
  };
  proto.readUintBE = proto.readUIntBE;
  proto.readUintLE = proto.readUIntLE;
  proto.swap16 = function swap16() {
    if (this.length % 2 !== 0) throw new RangeError("Buffer size must be a multiple of 16-bits");
    for (let i = 0; i < this.length; i += 2) {
      const t = this[i];
      this[i] = this[i + 1];
      this[i + 1] = t;
    }
    return this;
  };

  return {
    Buffer,
    SlowBuffer: Buffer,
    kMaxLength: 2 ** 32,
    constants: { MAX_LENGTH: 2 ** 32, MAX_STRING_LENGTH: 2 ** 29 - 24 },
    atob: (s) => q.lazy("base64").atob(s),
    btoa: (s) => q.lazy("base64").btoa(s),
  };

})
