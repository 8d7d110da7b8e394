//! One deno_core runtime holding one loaded task: [`TaskRuntime`].

use std::cell::Cell;
use std::rc::Rc;
use std::task::{Context, Poll};

use deno_core::error::{CoreError, CoreErrorKind};
use deno_core::{JsRuntime, PollEventLoopOptions, RuntimeOptions, v8};
use futures::FutureExt;
use queuexec_core::{PayloadShape, TaskFailure};

use crate::config::JsConfig;
use crate::error::JsError;
use crate::modules::ModuleFiles;
use crate::ops::{self, RuntimeInfo};
use crate::task::TaskSource;

/// The bootstrap script; its completion value is `[load, run]`. The rest of the runtime's
/// JavaScript (js/lazy/*.js) is evaluated on first use.
const BOOTSTRAP: &str = include_str!("../js/bootstrap.js");

/// Extra heap granted once the limit is reached, so the engine can unwind the terminated job.
#[cfg(feature = "v8")]
const HEAP_HEADROOM: usize = 32 * 1024 * 1024;

/// A JavaScript runtime with the queuexec sandbox and, once [`TaskRuntime::load`]ed, one
/// task: `new Task()` built once, `task.run(job)` called per job.
///
/// It lives on the thread that created it (deno_core runtimes are not `Send`) and its async
/// methods must be driven by a Tokio runtime on that thread. [`crate::JsExecutor`] runs one
/// per concurrency slot, each on its own thread, and adds timeouts and recovery; use this type
/// directly only to embed a single runtime in a thread of your own.
pub struct TaskRuntime {
    runtime: JsRuntime,
    load_fn: v8::Global<v8::Function>,
    run_fn: v8::Global<v8::Function>,
    heap_exhausted: Rc<Cell<bool>>,
    loaded: bool,
}

impl std::fmt::Debug for TaskRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRuntime")
            .field("loaded", &self.loaded)
            .finish_non_exhaustive()
    }
}

impl TaskRuntime {
    /// A fresh runtime with the sandbox's globals and no task.
    pub fn new(config: &JsConfig) -> Result<TaskRuntime, JsError> {
        let env = config
            .grants
            .env
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| (name.clone(), value)))
            .collect();
        let create_params = v8::CreateParams::default().heap_limits(0, config.heap_limit_bytes);
        #[allow(unused_mut, reason = "unit tests add their fault-injection ops")]
        let mut extensions = vec![ops::queuexec_task::init(RuntimeInfo {
            env,
            master: config.master.clone(),
        })];
        #[cfg(test)]
        extensions.push(ops::test_faults::queuexec_test_faults::init());
        let mut runtime = JsRuntime::try_new(RuntimeOptions {
            extensions,
            create_params: Some(create_params),
            ..Default::default()
        })
        .map_err(|e| JsError::Engine(e.to_string()))?;

        // Out of heap: the script is terminated and the owner of this runtime, seeing
        // `heap_exhausted()`, discards it. V8 aborts the process at its limit unless a
        // near-heap-limit callback intervenes, so on V8 one does: flag, terminate, headroom to
        // unwind. The QuickJS backend terminates by itself at the limit, and registering the
        // callback there would make it measure the whole heap at every interrupt check (see
        // README "Known engine issues"), so it is left out.
        let heap_exhausted = Rc::new(Cell::new(false));
        #[cfg(feature = "v8")]
        {
            let flag = heap_exhausted.clone();
            let isolate = runtime.v8_isolate().thread_safe_handle();
            runtime.add_near_heap_limit_callback(move |current, _initial| {
                flag.set(true);
                isolate.terminate_execution();
                current.saturating_add(HEAP_HEADROOM)
            });
        }

        #[cfg(test)]
        runtime
            .execute_script("queuexec:test-faults.js", ops::test_faults::EXPOSE)
            .map_err(|e| JsError::Engine(format!("the test fault ops: {e}")))?;
        let value = runtime
            .execute_script("queuexec:bootstrap.js", BOOTSTRAP)
            .map_err(|e| JsError::Engine(format!("the runtime's bootstrap failed: {e}")))?;
        let (load_fn, run_fn) = {
            deno_core::scope!(scope, runtime);
            let value = v8::Local::new(scope, value);
            let array = v8::Local::<v8::Array>::try_from(value)
                .map_err(|_| JsError::Engine("the bootstrap did not return [load, run]".into()))?;
            let get = |scope: &mut v8::PinScope,
                       index: u32|
             -> Result<v8::Global<v8::Function>, JsError> {
                let f = array
                    .get_index(scope, index)
                    .and_then(|v| v8::Local::<v8::Function>::try_from(v).ok())
                    .ok_or_else(|| {
                        JsError::Engine("the bootstrap did not return [load, run]".into())
                    })?;
                Ok(v8::Global::new(scope, f))
            };
            (get(scope, 0)?, get(scope, 1)?)
        };
        Ok(TaskRuntime {
            runtime,
            load_fn,
            run_fn,
            heap_exhausted,
            loaded: false,
        })
    }

    /// Loads the task: evaluates its entry file (task.js) and builds `new Task()`.
    ///
    /// A runtime loads one task once; build a new runtime for another task.
    pub fn load(&mut self, task: &TaskSource) -> Result<(), JsError> {
        if self.loaded {
            return Err(JsError::Load(
                "this runtime already holds a task; create a new runtime".into(),
            ));
        }
        let files =
            ModuleFiles::new(task.root(), task.node_modules()).map_err(|source| JsError::Io {
                action: "opening the task files",
                path: task.root().to_path_buf(),
                source,
            })?;
        let entry = files.virtual_path_of(task.entry()).ok_or_else(|| {
            JsError::TaskNotFound(format!(
                "{} is not a file inside the task directory {}",
                task.entry().display(),
                task.root().display()
            ))
        })?;
        self.runtime.op_state().borrow_mut().put(files);
        self.loaded = true;

        let call = {
            deno_core::scope!(scope, self.runtime);
            let Some(arg) = v8::String::new(scope, &entry) else {
                return Err(JsError::Load(format!(
                    "cannot pass the path {entry} to the engine"
                )));
            };
            let arg = v8::Global::new(scope, v8::Local::<v8::Value>::from(arg));
            JsRuntime::scoped_call_with_args(scope, &self.load_fn, &[arg])
        };
        // `load` is synchronous, so its result is ready at once.
        match call.now_or_never() {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(JsError::Load(js_error_message(&e))),
            None => {
                return Err(JsError::Load(
                    "loading task.js did not finish synchronously".into(),
                ));
            }
        }
        // Run the microtasks the top-level code queued, so their errors count as load errors.
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        if let Poll::Ready(Err(e)) = self
            .runtime
            .poll_event_loop(&mut cx, PollEventLoopOptions::default())
        {
            return Err(JsError::Load(core_error_message(&e)));
        }
        Ok(())
    }

    /// Whether a task is loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Runs one job of the shape [`PayloadShape::Job`] (see [`run_shaped`](Self::run_shaped)).
    pub async fn run(&mut self, id: &str, data: &str) -> Result<String, TaskFailure> {
        self.run_shaped(id, data, PayloadShape::Job).await
    }

    /// Runs one job: `await task.run({id, data})`, with `data` parsed from its JSON text (the id
    /// as a number for [`PayloadShape::NumericId`], the parsed data alone for
    /// [`PayloadShape::Whole`]: queue-xec's contract, the payload as pushed), and returns the
    /// result as JSON text. The message of the failure is what the master receives.
    pub async fn run_shaped(
        &mut self,
        id: &str,
        data: &str,
        shape: PayloadShape,
    ) -> Result<String, TaskFailure> {
        if !self.loaded {
            return Err(TaskFailure::new("no task.js is loaded on this worker"));
        }
        let call = {
            deno_core::scope!(scope, self.runtime);
            let (Some(id), Some(data), Some(shape)) = (
                v8::String::new(scope, id),
                v8::String::new(scope, data),
                v8::String::new(scope, shape.as_str()),
            ) else {
                return Err(TaskFailure::new(
                    "the job's id or data is too large for the JavaScript engine",
                ));
            };
            let args = [
                v8::Global::new(scope, v8::Local::<v8::Value>::from(id)),
                v8::Global::new(scope, v8::Local::<v8::Value>::from(data)),
                v8::Global::new(scope, v8::Local::<v8::Value>::from(shape)),
            ];
            JsRuntime::scoped_call_with_args(scope, &self.run_fn, &args)
        };
        // Unit tests' fault injection: a Rust panic in the middle of a job, outside any op.
        #[cfg(test)]
        if data == "\"panic-in-slot\"" {
            panic!("a test panic in the slot while running a job");
        }
        let value = self
            .runtime
            .with_event_loop_promise(call, PollEventLoopOptions::default())
            .await
            .map_err(|e| TaskFailure::new(core_error_message(&e)))?;
        deno_core::scope!(scope, self.runtime);
        let value = v8::Local::new(scope, value);
        Ok(value.to_rust_string_lossy(scope))
    }

    /// Whether one of the runtime's ops panicked since the last call (the panic became a
    /// JavaScript error); the runtime should then be discarded, since the op may have left
    /// its state half-updated.
    pub fn op_panicked(&mut self) -> bool {
        ops::take_op_panicked()
    }

    /// Whether the heap limit was reached; the runtime must then be discarded.
    ///
    /// Nothing but the heap limit terminates a runtime that nobody else holds a handle to, so
    /// a terminated runtime counts as out of heap (that is how the QuickJS backend reports it).
    pub fn heap_exhausted(&mut self) -> bool {
        self.heap_exhausted.get() || self.runtime.v8_isolate().is_execution_terminating()
    }

    /// A handle another thread can use to stop the running script.
    pub(crate) fn isolate_handle(&mut self) -> v8::IsolateHandle {
        self.runtime.v8_isolate().thread_safe_handle()
    }
}

/// What the master reads when a job throws: the stack when there is one, else the message,
/// without deno_core's "Uncaught" prefix.
fn js_error_message(error: &deno_core::error::JsError) -> String {
    let text = error.to_string();
    let text = text
        .strip_prefix("Uncaught (in promise) ")
        .or_else(|| text.strip_prefix("Uncaught "))
        .unwrap_or(&text);
    // Frames of the runtime's own scripts say nothing to the task's author.
    text.lines()
        .filter(|line| {
            let frame = line.trim_start();
            !(frame.starts_with("at ")
                && (frame.contains("queuexec:") || frame.contains("ext:core/")))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn core_error_message(error: &CoreError) -> String {
    match error.as_kind() {
        CoreErrorKind::Js(js) => js_error_message(js),
        CoreErrorKind::PendingPromiseResolution => {
            "the task's promise never settled: task.run() returned a promise that nothing will resolve".to_string()
        }
        _ => error.to_string(),
    }
}
