// queuexec task runtime, lazily loaded part: TextEncoder and TextDecoder.
//
// Evaluated on first use (see bootstrap.js, `lazy`); the completion value is a function of
// `q`, the bootstrap's `lib` (harmless capabilities only: this crate's formatting, encoding and
// URL ops, the lazy loader; never deno_core's `core` or op table), returning this part's
// exports. Task code may reach anything here without gaining more than it already has.
"use strict";

(function (q, globalThis) {
  const op_encoding_decode_utf8 = q.decodeUtf8;

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
      return q.encode(String(input));
    }
    encodeInto(source, destination) {
      const s = String(source);
      let read = 0;
      let written = 0;
      for (const ch of s) {
        const cp = ch.codePointAt(0);
        const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (written + size > destination.length) break;
        const bytes = q.encode(ch);
        destination.set(bytes, written);
        written += bytes.length;
        read += ch.length;
      }
      return { read, written };
    }
  }

  return { TextEncoder, TextDecoder };

})
