//! The core `Executor` of a Node worker: jobs run in JavaScript, on the JS thread. Jobs cross in
//! batches that the JS side pulls (see [`crate::delivery`]); loading new assets goes through a
//! thread-safe function whose promise the core awaits on its runtime.
//!
//! The JS side (`lib/task-host.js`) never throws across the boundary: it answers every call with
//! a [`JsTaskOutcome`], so a task that throws or rejects becomes a job error and the worker goes
//! on.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use napi::Status;
use napi::bindgen_prelude::Promise;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;
use queuexec_core::Manifest;
use queuexec_core::{Executor, JobInput, TaskFailure};

use crate::delivery::JobQueue;
use crate::job::JsTaskOutcome;

/// `(assets) => Promise<TaskOutcome>`, called when the master's assets were installed.
pub(crate) type AssetsChangedFn =
    ThreadsafeFunction<JsAssetsInfo, Promise<JsTaskOutcome>, JsAssetsInfo, Status, false>;

/// A file of the master's asset bundle, as installed on this worker.
#[napi(object, js_name = "AssetFile")]
pub struct JsAssetFile {
    /// The asset's name (`task.js` is the entry point).
    pub name: String,
    /// Where it was written, relative to the workplace.
    pub worker_path: String,
}

/// What the worker installed: where, which files, and which npm packages the task needs.
#[napi(object, js_name = "AssetsInfo")]
pub struct JsAssetsInfo {
    /// The workplace root (absolute).
    pub workplace: String,
    /// The files of the bundle.
    pub files: Vec<JsAssetFile>,
    /// npm packages the task requires.
    pub dependencies: Vec<String>,
    /// The bundle hash.
    pub bundle: String,
    /// The worker path of the task's entry (task.js, as the core picks it), if the master
    /// shipped one.
    pub task_entry: Option<String>,
}

/// Runs jobs by calling into JavaScript.
pub(crate) struct NodeExecutor {
    jobs: Arc<JobQueue>,
    assets_changed: Arc<AssetsChangedFn>,
}

impl NodeExecutor {
    pub(crate) fn new(jobs: Arc<JobQueue>, assets_changed: AssetsChangedFn) -> NodeExecutor {
        NodeExecutor {
            jobs,
            assets_changed: Arc::new(assets_changed),
        }
    }
}

impl Executor for NodeExecutor {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        self.jobs.run(job)
    }

    fn assets_changed(
        &self,
        workplace: &Path,
        manifest: &Manifest,
    ) -> BoxFuture<'static, Result<(), TaskFailure>> {
        let assets_changed = self.assets_changed.clone();
        let info = assets_info(workplace, manifest);
        Box::pin(async move {
            let promise = assets_changed.call_async_catch(info).await.map_err(|e| {
                TaskFailure::new(format!("the task loader could not be called: {}", e.reason))
            })?;
            let outcome = promise.await.map_err(|e| TaskFailure::new(e.reason))?;
            Result::<String, TaskFailure>::from(outcome).map(|_| ())
        })
    }
}

fn assets_info(workplace: &Path, manifest: &Manifest) -> JsAssetsInfo {
    JsAssetsInfo {
        workplace: workplace.to_string_lossy().into_owned(),
        files: manifest
            .files
            .iter()
            .map(|f| JsAssetFile {
                name: f.name.clone(),
                worker_path: f.worker_path.to_string(),
            })
            .collect(),
        dependencies: manifest.dependencies.clone(),
        bundle: manifest.bundle_hash().to_string(),
        task_entry: queuexec_core::config::task_entry(&manifest.files)
            .map(|f| f.worker_path.to_string()),
    }
}
