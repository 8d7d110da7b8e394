//! The ops task code reaches through the runtime's JavaScript (`js/bootstrap.js`, `js/lazy/*.js`), grouped by domain in
//! one extension, and which of deno_core's own ops are switched off. None of them blocks:
//! module files are small local reads done while a module loads, exactly where Node's
//! `require` reads them.
//!
//! No op may panic across the engine boundary: an op is called from the engine through an
//! `extern "C"` callback, where a Rust panic aborts the whole worker process. So every op
//! here runs its body in [`guarded`], which turns a panic into a JavaScript exception (the
//! job's error) and flags the runtime to be rebuilt; deno_core's ops that could abort or reach
//! outside the sandbox (`op_panic`, `op_print`, resources, module loading, hooks, ...) are
//! disabled by [`disable_unsafe_ops`] (they throw "op is disabled" if ever reached).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use deno_core::{OpDecl, OpState, op2};
use deno_error::JsErrorBox;
use serde::Serialize;

use crate::modules::{ModuleFiles, Resolution};

/// What the bootstrap asks once per runtime: the values `process` exposes.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuntimeInfo {
    /// Environment variables the worker's owner granted, by name.
    pub(crate) env: BTreeMap<String, String>,
    /// The worker tasks call their master through.
    pub(crate) master: crate::config::MasterLink,
}

/// When this runtime started, for `performance.now()`.
pub(crate) struct TimeOrigin(pub(crate) Instant);

deno_core::extension!(
    queuexec_task,
    ops = [
        op_bootstrap_source,
        op_console_write,
        op_module_resolve,
        op_module_read,
        op_crypto_fill_random,
        op_perf_now,
        op_encoding_decode_utf8,
        op_url_parse,
        op_url_set,
        op_runtime_info,
        op_master_call,
        op_master_metric,
    ],
    options = { info: RuntimeInfo },
    middleware = disable_unsafe_ops,
    state = |state, options| {
        state.put(options.info);
        state.put(TimeOrigin(Instant::now()));
    },
);

/// deno_core's own ops that this runtime never uses and that would reach outside the sandbox
/// or take the worker down if task code ever got hold of them: `op_panic` aborts the process,
/// `op_print` writes to its stdout, the resource ops read and write resources, the import
/// and extension-script ops load code, the hook setters install callbacks deno_core calls
/// with its own state. Everything deno_core's JavaScript calls while running (timers,
/// microtasks, `op_eval_context`, structured clone, exception dispatch) stays.
pub(crate) const DISABLED_OPS: &[&str] = &[
    "op_abort_wasm_streaming",
    "op_add",
    "op_add_async",
    "op_add_main_module_handler",
    "op_cancel_read",
    "op_close",
    "op_compile_function",
    "op_error_async",
    "op_error_async_deferred",
    "op_import_sync",
    "op_import_sync_with_source",
    "op_is_terminal",
    "op_lazy_load_esm",
    "op_leak_tracing_enable",
    "op_leak_tracing_get",
    "op_leak_tracing_get_all",
    "op_load_ext_script",
    "op_memory_usage",
    "op_op_names",
    "op_panic",
    "op_pipe",
    "op_print",
    "op_read",
    "op_read_all",
    "op_read_sync",
    "op_resources",
    "op_set_format_exception_callback",
    "op_set_handled_promise_rejection_handler",
    "op_set_promise_hooks",
    "op_set_wasm_streaming_callback",
    "op_shutdown",
    "op_try_close",
    "op_void_async",
    "op_void_async_deferred",
    "op_void_sync",
    "op_wasm_streaming_feed",
    "op_wasm_streaming_set_url",
    "op_write",
    "op_write_all",
    "op_write_sync",
    "op_write_type_error",
];

/// The extension's op middleware (deno_core applies it to its own ops too): switches off
/// [`DISABLED_OPS`].
fn disable_unsafe_ops(op: OpDecl) -> OpDecl {
    if DISABLED_OPS.contains(&op.name) {
        op.disable()
    } else {
        op
    }
}

thread_local! {
    /// Set when an op on this thread panicked; the runtime is then rebuilt (see
    /// [`take_op_panicked`]). Runtimes live on one thread each, so per thread is per runtime.
    static OP_PANICKED: Cell<bool> = const { Cell::new(false) };
}

/// Whether an op on this thread panicked since the last call (and clears the flag).
pub(crate) fn take_op_panicked() -> bool {
    OP_PANICKED.with(|flag| flag.replace(false))
}

/// Runs an op's body; a panic becomes a JavaScript error naming the op, instead of unwinding
/// into the engine (which would abort the process). The runtime is flagged for a rebuild,
/// since the panic may have left its state half-updated.
pub(crate) fn guarded<T>(
    op: &'static str,
    body: impl FnOnce() -> Result<T, JsErrorBox>,
) -> Result<T, JsErrorBox> {
    match std::panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => {
            OP_PANICKED.with(|flag| flag.set(true));
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            tracing::error!(op, "an op of the JavaScript runtime panicked: {detail}");
            Err(JsErrorBox::generic(format!(
                "internal error in the queuexec JavaScript runtime ({op} panicked: {detail}); \
                 this job failed, the worker rebuilds the runtime and goes on. Please report it"
            )))
        }
    }
}

/// The parts of the bootstrap evaluated on first use (js/lazy/*.js), by name.
#[op2]
#[string]
fn op_bootstrap_source(#[string] name: &str) -> Result<&'static str, JsErrorBox> {
    guarded("op_bootstrap_source", || bootstrap_source(name))
}

fn bootstrap_source(name: &str) -> Result<&'static str, JsErrorBox> {
    Ok(match name {
        "base64" => include_str!("../js/lazy/base64.js"),
        "buffer" => include_str!("../js/lazy/buffer.js"),
        "console" => include_str!("../js/lazy/console.js"),
        "encoding" => include_str!("../js/lazy/encoding.js"),
        "node" => include_str!("../js/lazy/node.js"),
        "url" => include_str!("../js/lazy/url.js"),
        _ => {
            return Err(JsErrorBox::generic(format!(
                "no bootstrap part named {name}"
            )));
        }
    })
}

/// `console.*`: one line (or block) of task output to the worker's log, at a level
/// (0 error, 1 warn, 2 info, 3 debug).
#[op2(fast)]
fn op_console_write(#[smi] level: u32, #[string] text: &str) -> Result<(), JsErrorBox> {
    guarded("op_console_write", || {
        match level {
            0 => tracing::error!(target: "queuexec::task", "{text}"),
            1 => tracing::warn!(target: "queuexec::task", "{text}"),
            2 => tracing::info!(target: "queuexec::task", "{text}"),
            _ => tracing::debug!(target: "queuexec::task", "{text}"),
        }
        Ok(())
    })
}

/// `require()` resolution: `{found: "/task/..."}` or `{missing: "why"}`.
#[op2]
#[serde]
fn op_module_resolve(
    state: &mut OpState,
    #[string] specifier: &str,
    #[string] parent: &str,
) -> Result<Resolution, JsErrorBox> {
    guarded("op_module_resolve", || {
        Ok(match state.try_borrow::<ModuleFiles>() {
            Some(files) => files.resolve(specifier, parent),
            None => Resolution::Missing(format!(
                "Cannot find module '{specifier}' required by {parent}: no task is loaded"
            )),
        })
    })
}

/// The source of a module file `op_module_resolve` found.
#[op2]
#[string]
fn op_module_read(state: &mut OpState, #[string] filename: &str) -> Result<String, JsErrorBox> {
    guarded("op_module_read", || {
        let files = state.try_borrow::<ModuleFiles>().ok_or_else(|| {
            JsErrorBox::generic(format!("cannot read module {filename}: no task is loaded"))
        })?;
        files.read(filename).map_err(JsErrorBox::generic)
    })
}

/// `crypto.getRandomValues`: fills the buffer from the operating system's generator.
#[op2(fast)]
fn op_crypto_fill_random(#[buffer] buf: &mut [u8]) -> Result<(), JsErrorBox> {
    guarded("op_crypto_fill_random", || {
        getrandom::fill(buf)
            .map_err(|e| JsErrorBox::generic(format!("crypto.getRandomValues: {e}")))
    })
}

/// `performance.now()`: milliseconds since this runtime started.
#[op2(fast)]
fn op_perf_now(state: &mut OpState) -> Result<f64, JsErrorBox> {
    guarded("op_perf_now", || {
        let origin = state.try_borrow::<TimeOrigin>().ok_or_else(|| {
            JsErrorBox::generic("performance.now(): the runtime has no time origin")
        })?;
        Ok(origin.0.elapsed().as_secs_f64() * 1000.0)
    })
}

/// `TextDecoder` for utf-8: lossy unless `fatal`; drops a leading BOM when `strip_bom`.
#[op2]
#[string]
fn op_encoding_decode_utf8(
    #[buffer] bytes: &[u8],
    fatal: bool,
    strip_bom: bool,
) -> Result<String, JsErrorBox> {
    guarded("op_encoding_decode_utf8", || {
        decode_utf8(bytes, fatal, strip_bom)
    })
}

fn decode_utf8(bytes: &[u8], fatal: bool, strip_bom: bool) -> Result<String, JsErrorBox> {
    let bytes = if strip_bom {
        bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes)
    } else {
        bytes
    };
    if fatal {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| JsErrorBox::type_error("the encoded data is not valid utf-8"))
    } else {
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// The parts of a URL as the WHATWG URL API exposes them.
#[derive(Debug, Serialize)]
struct UrlParts {
    href: String,
    origin: String,
    protocol: String,
    username: String,
    password: String,
    host: String,
    hostname: String,
    port: String,
    pathname: String,
    search: String,
    hash: String,
}

impl UrlParts {
    fn of(url: &url::Url) -> Self {
        use url::quirks;
        UrlParts {
            href: quirks::href(url).to_string(),
            origin: quirks::origin(url),
            protocol: quirks::protocol(url).to_string(),
            username: quirks::username(url).to_string(),
            password: quirks::password(url).to_string(),
            host: quirks::host(url).to_string(),
            hostname: quirks::hostname(url).to_string(),
            port: quirks::port(url).to_string(),
            pathname: quirks::pathname(url).to_string(),
            search: quirks::search(url).to_string(),
            hash: quirks::hash(url).to_string(),
        }
    }
}

/// `new URL(href, base?)`: the parts, or `null` when the URL is invalid.
#[op2]
#[serde]
fn op_url_parse(
    #[string] href: &str,
    has_base: bool,
    #[string] base: &str,
) -> Result<Option<UrlParts>, JsErrorBox> {
    guarded("op_url_parse", || Ok(url_parse(href, has_base, base)))
}

fn url_parse(href: &str, has_base: bool, base: &str) -> Option<UrlParts> {
    let parsed = if has_base {
        url::Url::parse(base).ok()?.join(href)
    } else {
        url::Url::parse(href)
    };
    parsed.ok().as_ref().map(UrlParts::of)
}

/// A URL setter; `part` follows `PART` in js/lazy/url.js. `null` when the new value is refused.
#[op2]
#[serde]
fn op_url_set(
    #[string] href: &str,
    #[smi] part: u32,
    #[string] value: &str,
) -> Result<Option<UrlParts>, JsErrorBox> {
    guarded("op_url_set", || Ok(url_set(href, part, value)))
}

fn url_set(href: &str, part: u32, value: &str) -> Option<UrlParts> {
    use url::quirks;
    let mut url = url::Url::parse(href).ok()?;
    let ok = match part {
        0 => quirks::set_href(&mut url, value).is_ok(),
        1 => quirks::set_protocol(&mut url, value).is_ok(),
        2 => quirks::set_username(&mut url, value).is_ok(),
        3 => quirks::set_password(&mut url, value).is_ok(),
        4 => quirks::set_host(&mut url, value).is_ok(),
        5 => quirks::set_hostname(&mut url, value).is_ok(),
        6 => quirks::set_port(&mut url, value).is_ok(),
        7 => {
            quirks::set_pathname(&mut url, value);
            true
        }
        8 => {
            quirks::set_search(&mut url, value);
            true
        }
        9 => {
            quirks::set_hash(&mut url, value);
            true
        }
        _ => false,
    };
    ok.then(|| UrlParts::of(&url))
}

/// What `process` exposes: platform, architecture, version, granted environment.
#[derive(Debug, Serialize)]
struct ProcessInfo {
    platform: &'static str,
    arch: &'static str,
    version: &'static str,
    env: BTreeMap<String, String>,
}

#[op2]
#[serde]
fn op_runtime_info(state: &mut OpState) -> Result<ProcessInfo, JsErrorBox> {
    guarded("op_runtime_info", || runtime_info(state))
}

fn runtime_info(state: &OpState) -> Result<ProcessInfo, JsErrorBox> {
    let platform = match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "x86" => "ia32",
        other => other,
    };
    let env = state
        .try_borrow::<RuntimeInfo>()
        .map(|info| info.env.clone())
        .unwrap_or_default();
    Ok(ProcessInfo {
        platform,
        arch,
        version: crate::VERSION,
        env,
    })
}

/// A task's call to its master through the worker (`ctx.lookup`, `ctx.setLookup`,
/// `ctx.request`): `op` is `lookup` (a name, b key), `setLookup` (a name, b key, c JSON value)
/// or `message` (a cmd, c JSON data). Resolves with a string, `1` then the JSON answer or `0`
/// then the master's error text (a string, so resolving the task's promise looks nothing up on
/// an object); rejects when this worker has no master connected. Never blocks the runtime: it
/// awaits the master's answer.
#[op2]
#[string]
async fn op_master_call(
    state: std::rc::Rc<std::cell::RefCell<OpState>>,
    #[string] op: String,
    #[string] a: String,
    #[string] b: String,
    #[string] c: String,
) -> Result<String, JsErrorBox> {
    let prepared = guarded("op_master_call", || {
        let worker = state
            .borrow()
            .try_borrow::<RuntimeInfo>()
            .and_then(|info| info.master.worker())
            .ok_or_else(|| {
                JsErrorBox::generic("this worker has no master to ask (it is not connected)")
            })?;
        let request = queuexec_core::WorkerRequest::from_op(&op, a, Some(b), Some(c))
            .map_err(|e| JsErrorBox::generic(e.to_string()))?;
        Ok((worker, request))
    })?;
    let (worker, request) = prepared;
    match worker.call(request).await {
        Ok(Ok(json)) => Ok(format!("1{json}")),
        Ok(Err(error)) => Ok(format!("0{error}")),
        Err(e) => Err(JsErrorBox::generic(e.to_string())),
    }
}

/// `ctx.metric(name, delta)`: adds to the worker's custom counter, reported in the master's
/// stats. False when refused (no worker, an empty or long name, a delta that is not finite).
#[op2(fast)]
fn op_master_metric(
    state: &mut OpState,
    #[string] name: &str,
    delta: f64,
) -> Result<bool, JsErrorBox> {
    guarded("op_master_metric", || {
        Ok(state
            .try_borrow::<RuntimeInfo>()
            .and_then(|info| info.master.worker())
            .is_some_and(|worker| worker.metric(name, delta)))
    })
}

/// Fault injection for this crate's unit tests only (never compiled into a product build): an
/// op that panics, reachable by task code as `__queuexecTestFaults.panic()`, and some of
/// deno_core's disabled ops as `__queuexecTestFaults.denoOps`.
#[cfg(test)]
pub(crate) mod test_faults {
    use deno_core::op2;
    use deno_error::JsErrorBox;

    use super::guarded;

    deno_core::extension!(queuexec_test_faults, ops = [op_test_panic]);

    /// Evaluated before the bootstrap in unit tests: puts the fault op where tasks find it.
    /// Also hands out the disabled deno_core ops, to check they stay disabled.
    pub(crate) const EXPOSE: &str = "Object.defineProperty(globalThis, '__queuexecTestFaults', { value: Object.freeze({ panic: Deno.core.ops.op_test_panic, denoOps: Object.freeze({ op_panic: Deno.core.ops.op_panic, op_print: Deno.core.ops.op_print, op_resources: Deno.core.ops.op_resources, op_load_ext_script: Deno.core.ops.op_load_ext_script }) }) });";

    #[op2(fast)]
    fn op_test_panic() -> Result<(), JsErrorBox> {
        guarded("op_test_panic", || -> Result<(), JsErrorBox> {
            panic!("a test op panicked on purpose")
        })
    }
}
