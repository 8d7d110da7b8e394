//! The ops task code reaches through the runtime's JavaScript (`js/bootstrap.js`, `js/lazy/*.js`), grouped by domain in
//! one extension. None of them blocks: module files are small local reads done while a module
//! loads, exactly where Node's `require` reads them.

use std::collections::BTreeMap;
use std::time::Instant;

use deno_core::{OpState, op2};
use deno_error::JsErrorBox;
use serde::Serialize;

use crate::modules::{ModuleFiles, Resolution};

/// What the bootstrap asks once per runtime: the values `process` exposes.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuntimeInfo {
    /// Environment variables the worker's owner granted, by name.
    pub(crate) env: BTreeMap<String, String>,
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
    ],
    options = { info: RuntimeInfo },
    state = |state, options| {
        state.put(options.info);
        state.put(TimeOrigin(Instant::now()));
    },
);

/// The parts of the bootstrap evaluated on first use (js/lazy/*.js), by name.
#[op2]
#[string]
fn op_bootstrap_source(#[string] name: &str) -> Result<&'static str, JsErrorBox> {
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
fn op_console_write(#[smi] level: u32, #[string] text: &str) {
    match level {
        0 => tracing::error!(target: "queuexec::task", "{text}"),
        1 => tracing::warn!(target: "queuexec::task", "{text}"),
        2 => tracing::info!(target: "queuexec::task", "{text}"),
        _ => tracing::debug!(target: "queuexec::task", "{text}"),
    }
}

/// `require()` resolution: `{found: "/task/..."}` or `{missing: "why"}`.
#[op2]
#[serde]
fn op_module_resolve(
    state: &mut OpState,
    #[string] specifier: &str,
    #[string] parent: &str,
) -> Resolution {
    match state.try_borrow::<ModuleFiles>() {
        Some(files) => files.resolve(specifier, parent),
        None => Resolution::Missing(format!(
            "Cannot find module '{specifier}' required by {parent}: no task is loaded"
        )),
    }
}

/// The source of a module file `op_module_resolve` found.
#[op2]
#[string]
fn op_module_read(state: &mut OpState, #[string] filename: &str) -> Result<String, JsErrorBox> {
    let files = state.try_borrow::<ModuleFiles>().ok_or_else(|| {
        JsErrorBox::generic(format!("cannot read module {filename}: no task is loaded"))
    })?;
    files.read(filename).map_err(JsErrorBox::generic)
}

/// `crypto.getRandomValues`: fills the buffer from the operating system's generator.
#[op2(fast)]
fn op_crypto_fill_random(#[buffer] buf: &mut [u8]) -> Result<(), JsErrorBox> {
    getrandom::fill(buf).map_err(|e| JsErrorBox::generic(format!("crypto.getRandomValues: {e}")))
}

/// `performance.now()`: milliseconds since this runtime started.
#[op2(fast)]
fn op_perf_now(state: &mut OpState) -> f64 {
    state.borrow::<TimeOrigin>().0.elapsed().as_secs_f64() * 1000.0
}

/// `TextDecoder` for utf-8: lossy unless `fatal`; drops a leading BOM when `strip_bom`.
#[op2]
#[string]
fn op_encoding_decode_utf8(
    #[buffer] bytes: &[u8],
    fatal: bool,
    strip_bom: bool,
) -> Result<String, JsErrorBox> {
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
fn op_url_parse(#[string] href: &str, has_base: bool, #[string] base: &str) -> Option<UrlParts> {
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
fn op_url_set(#[string] href: &str, #[smi] part: u32, #[string] value: &str) -> Option<UrlParts> {
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
fn op_runtime_info(state: &mut OpState) -> ProcessInfo {
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
    ProcessInfo {
        platform,
        arch,
        version: crate::VERSION,
        env: state.borrow::<RuntimeInfo>().env.clone(),
    }
}
