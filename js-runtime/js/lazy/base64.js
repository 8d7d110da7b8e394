// queuexec task runtime, lazily loaded part: base64 (atob, btoa, and Buffer's base64).
//
// Evaluated on first use (see bootstrap.js, `lazy`); the completion value is a function of
// `q`, the bootstrap's `lib` (harmless capabilities only: this crate's formatting, encoding and
// URL ops, the lazy loader; never deno_core's `core` or op table), returning this part's
// exports. Task code may reach anything here without gaining more than it already has.
"use strict";

(function (q, globalThis) {

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

  return { atob, btoa, encode: bytesToBase64, decode: (s) => base64ToBytes(s, false) };

})
