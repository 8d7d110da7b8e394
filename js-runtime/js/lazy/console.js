// queuexec task runtime, lazily loaded part: util.inspect, util.format and console.
//
// Evaluated on first use (see bootstrap.js, `lazy`); the completion value is a function of
// `q`, the bootstrap's `lib` (harmless capabilities only: this crate's formatting, encoding and
// URL ops, the lazy loader; never deno_core's `core` or op table), returning this part's
// exports. Task code may reach anything here without gaining more than it already has.
"use strict";

(function (q, globalThis) {
  const op_console_write = q.consoleWrite;
  const LEVEL = { error: 0, warn: 1, info: 2, debug: 3 };

  const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
  const MAX_ITEMS = 100;

  function quote(s) {
    return "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n") + "'";
  }

  function constructorName(obj) {
    try {
      const proto = Object.getPrototypeOf(obj);
      if (proto === null) return "[Object: null prototype]";
      const ctor = proto.constructor;
      return typeof ctor === "function" ? ctor.name : "";
    } catch {
      return "";
    }
  }

  function formatKey(key) {
    if (typeof key === "symbol") return "[" + key.toString() + "]";
    return IDENT.test(key) ? key : quote(key);
  }

  function inspectValue(value, opts, depth, seen) {
    switch (typeof value) {
      case "string":
        return depth === 0 && opts.topLevelRaw ? value : quote(value);
      case "number":
        return Object.is(value, -0) ? "-0" : String(value);
      case "bigint":
        return String(value) + "n";
      case "boolean":
      case "undefined":
        return String(value);
      case "symbol":
        return value.toString();
      case "function": {
        const src = Function.prototype.toString.call(value);
        if (src.startsWith("class")) return "[class " + (value.name || "(anonymous)") + "]";
        return "[Function: " + (value.name || "(anonymous)") + "]";
      }
    }
    if (value === null) return "null";
    if (seen.includes(value)) return "[Circular]";
    if (value instanceof Error) {
      const stack = typeof value.stack === "string" && value.stack.length > 0 ? value.stack : "";
      const head = String(value.name) + ": " + String(value.message);
      return stack.includes(String(value.message)) ? stack : stack ? head + "\n" + stack : head;
    }
    if (value instanceof Date) {
      return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
    }
    if (value instanceof RegExp) return value.toString();
    if (value instanceof Promise) return "Promise { <unknown> }";
    if (q.isLoaded("buffer") && value instanceof q.lazy("buffer").Buffer) {
      const hex = [];
      const n = Math.min(value.length, 50);
      for (let i = 0; i < n; i++) hex.push(value[i].toString(16).padStart(2, "0"));
      return "<Buffer" + (n ? " " + hex.join(" ") : "") + (value.length > n ? " ... " + (value.length - n) + " more bytes" : "") + ">";
    }
    if (depth > opts.depth) {
      return Array.isArray(value) ? "[Array]" : "[" + (constructorName(value) || "Object") + "]";
    }
    seen.push(value);
    try {
      let parts = [];
      let prefix = "";
      let open = "{";
      let close = "}";
      if (Array.isArray(value) || ArrayBuffer.isView(value)) {
        const isArray = Array.isArray(value);
        const name = constructorName(value);
        prefix = isArray ? (name === "Array" ? "" : name + "(" + value.length + ") ") : name + "(" + value.length + ") ";
        open = "[";
        close = "]";
        const n = Math.min(value.length, MAX_ITEMS);
        for (let i = 0; i < n; i++) {
          parts.push(i in value ? inspectValue(value[i], opts, depth + 1, seen) : "<empty>");
        }
        if (value.length > n) parts.push("... " + (value.length - n) + " more items");
        if (isArray) {
          for (const key of Object.keys(value)) {
            if (!/^\d+$/.test(key)) parts.push(formatKey(key) + ": " + inspectValue(value[key], opts, depth + 1, seen));
          }
        }
      } else if (value instanceof Map) {
        prefix = "Map(" + value.size + ") ";
        for (const [k, v] of value) {
          if (parts.length >= MAX_ITEMS) break;
          parts.push(inspectValue(k, opts, depth + 1, seen) + " => " + inspectValue(v, opts, depth + 1, seen));
        }
      } else if (value instanceof Set) {
        prefix = "Set(" + value.size + ") ";
        for (const v of value) {
          if (parts.length >= MAX_ITEMS) break;
          parts.push(inspectValue(v, opts, depth + 1, seen));
        }
      } else if (value instanceof ArrayBuffer) {
        prefix = "ArrayBuffer ";
        parts.push("byteLength: " + value.byteLength);
      } else {
        const name = constructorName(value);
        if (name !== "Object") prefix = (name || "Object") + " ";
        const keys = Object.keys(value);
        for (const key of keys) {
          if (parts.length >= MAX_ITEMS) {
            parts.push("... " + (keys.length - MAX_ITEMS) + " more properties");
            break;
          }
          let v;
          try {
            v = value[key];
          } catch (e) {
            v = "[Getter threw " + String(e) + "]";
          }
          parts.push(formatKey(key) + ": " + inspectValue(v, opts, depth + 1, seen));
        }
        for (const sym of Object.getOwnPropertySymbols(value)) {
          const desc = Object.getOwnPropertyDescriptor(value, sym);
          if (desc && desc.enumerable) parts.push(formatKey(sym) + ": " + inspectValue(value[sym], opts, depth + 1, seen));
        }
      }
      if (parts.length === 0) return prefix + open + close;
      const oneLine = prefix + open + " " + parts.join(", ") + " " + close;
      if (oneLine.length <= 72 && !oneLine.includes("\n")) return oneLine;
      const indent = "  ".repeat(depth + 1);
      return prefix + open + "\n" + indent + parts.join(",\n" + indent) + "\n" + "  ".repeat(depth) + close;
    } finally {
      seen.pop();
    }
  }

  /** Node-like `util.inspect` (a subset: depth, no colors). */
  function inspect(value, options) {
    const depth = options && typeof options.depth === "number" ? options.depth : options && options.depth === null ? Infinity : 2;
    return inspectValue(value, { depth, topLevelRaw: false }, 0, []);
  }

  /** Node-like `util.format`: %s %d %i %f %j %o %O %c %%, the rest joined by spaces. */
  function format(...args) {
    let out = "";
    let rest = 0;
    if (typeof args[0] === "string") {
      const fmt = args[0];
      let a = 1;
      let i = 0;
      while (i < fmt.length) {
        const c = fmt[i];
        if (c === "%" && i + 1 < fmt.length) {
          const f = fmt[i + 1];
          if (f === "%") {
            out += "%";
            i += 2;
            continue;
          }
          if ("sdifjoOc".includes(f)) {
            if (a >= args.length) {
              out += "%" + f;
              i += 2;
              continue;
            }
            const v = args[a++];
            switch (f) {
              case "s":
                out += typeof v === "string" ? v : typeof v === "bigint" ? v + "n" : typeof v === "object" && v !== null ? inspect(v, { depth: 1 }) : String(v);
                break;
              case "d":
              case "i": {
                if (typeof v === "bigint") out += v + "n";
                else {
                  const n = Number(v);
                  out += String(f === "i" ? Math.trunc(n) : n);
                }
                break;
              }
              case "f":
                out += String(parseFloat(v));
                break;
              case "j":
                try {
                  out += JSON.stringify(v);
                } catch {
                  out += "[Circular]";
                }
                break;
              case "o":
              case "O":
                out += inspect(v, { depth: f === "o" ? 4 : 2 });
                break;
              case "c":
                break;
            }
            i += 2;
            continue;
          }
        }
        out += c;
        i++;
      }
      rest = a;
    }
    for (let k = rest; k < args.length; k++) {
      const v = args[k];
      if (out.length > 0 || k > 0) out += " ";
      out += typeof v === "string" ? v : inspect(v);
    }
    return out;
  }

  function write(level, args) {
    let text = format(...args);
    const indent = q.consoleState.groupIndent;
    if (indent) text = indent + text.split("\n").join("\n" + indent);
    op_console_write(level, text);
  }

  const counts = new Map();
  const timers = new Map();
  const console = {
    log: (...args) => write(LEVEL.info, args),
    info: (...args) => write(LEVEL.info, args),
    debug: (...args) => write(LEVEL.debug, args),
    warn: (...args) => write(LEVEL.warn, args),
    error: (...args) => write(LEVEL.error, args),
    trace: (...args) => {
      const err = new Error(format(...args));
      err.name = "Trace";
      write(LEVEL.debug, [err.stack || String(err)]);
    },
    dir: (value, options) => write(LEVEL.info, [inspect(value, options)]),
    dirxml: (...args) => write(LEVEL.info, args),
    table: (data) => write(LEVEL.info, [data]),
    assert: (condition, ...args) => {
      if (!condition) write(LEVEL.error, ["Assertion failed" + (args.length ? ":" : ""), ...args]);
    },
    count: (label = "default") => {
      const n = (counts.get(label) || 0) + 1;
      counts.set(label, n);
      write(LEVEL.info, [label + ": " + n]);
    },
    countReset: (label = "default") => counts.delete(label),
    time: (label = "default") => timers.set(label, q.now()),
    timeLog: (label = "default", ...args) => {
      if (timers.has(label)) write(LEVEL.info, [label + ": " + (q.now() - timers.get(label)).toFixed(3) + "ms", ...args]);
    },
    timeEnd: (label = "default") => {
      if (timers.has(label)) {
        write(LEVEL.info, [label + ": " + (q.now() - timers.get(label)).toFixed(3) + "ms"]);
        timers.delete(label);
      }
    },
    group: (...args) => {
      if (args.length) write(LEVEL.info, args);
      q.consoleState.groupIndent += "  ";
    },
    groupCollapsed: (...args) => console.group(...args),
    groupEnd: () => {
      q.consoleState.groupIndent = q.consoleState.groupIndent.slice(2);
    },
  };

  return { inspect, format, console };

})
