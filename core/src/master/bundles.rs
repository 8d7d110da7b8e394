//! The dependency bundle, built when a worker first asks for it.
//!
//! Only workers that cannot install npm dependencies themselves (the embedded runtime of the
//! CLI, of Python, of a sandboxed Node worker) ask for it ([`ToMaster::GetDependencyBundle`]);
//! Node workers install as queue-xec's did and never do. So the master never runs npm at start
//! and never ships the bundle to a worker that does not use it. One build serves every request
//! made while it runs; a built bundle is cached on disk by its dependency list
//! ([`crate::deps::build_dependency_bundle`]), so a restarted master with the same list does not
//! run npm again. A failed build is answered with its error to every worker that asked, reported
//! once to the master's user (a warning event), and tried again for requests made
//! [`RETRY_FAILED_AFTER`] later.
//!
//! [`ToMaster::GetDependencyBundle`]: crate::protocol::ToMaster::GetDependencyBundle

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::mpsc;

use super::engine::EngineCommand;
use super::lock;
use crate::assets::{DEPENDENCY_BUNDLE_NAME, DEPENDENCY_BUNDLE_PATH, ManifestEntry, Sha256};

/// How long a failed build's error is the answer before a request builds again.
pub(super) const RETRY_FAILED_AFTER: Duration = Duration::from_secs(30);

/// A built bundle: its manifest entry and its bytes.
pub(super) type Built = Arc<(ManifestEntry, Bytes)>;

/// One build, shared by every request made while it runs.
type Build = Shared<BoxFuture<'static, Result<Built, String>>>;

struct Current {
    dependencies: Vec<String>,
    build: Build,
    started: Instant,
}

/// The master's dependency bundle, built on first request.
pub(super) struct DependencyBundles {
    current: Mutex<Option<Current>>,
    engine: mpsc::UnboundedSender<EngineCommand>,
}

impl DependencyBundles {
    pub(super) fn new(engine: mpsc::UnboundedSender<EngineCommand>) -> Self {
        DependencyBundles {
            current: Mutex::new(None),
            engine,
        }
    }

    /// The bundle of `dependencies`: the build under way or done, or a new one (when none was
    /// started for this list, or the last one failed more than [`RETRY_FAILED_AFTER`] ago).
    pub(super) fn get(&self, dependencies: &[String]) -> BoxFuture<'static, Result<Built, String>> {
        let mut current = lock(&self.current);
        let reuse = current.as_ref().is_some_and(|c| {
            c.dependencies == dependencies
                && match c.build.peek() {
                    Some(Err(_)) => c.started.elapsed() < RETRY_FAILED_AFTER,
                    _ => true,
                }
        });
        if !reuse {
            let build = start_build(dependencies.to_vec(), self.engine.clone());
            *current = Some(Current {
                dependencies: dependencies.to_vec(),
                build,
                started: Instant::now(),
            });
        }
        let build = current.as_ref().map(|c| c.build.clone());
        drop(current);
        match build {
            Some(build) => build.boxed(),
            None => Box::pin(futures::future::ready(Err(
                "the dependency bundle could not be started".to_string(),
            ))),
        }
    }

    /// The bundle's bytes, when `sha256` is the built bundle's.
    pub(super) fn content(&self, sha256: &Sha256) -> Option<Bytes> {
        let current = lock(&self.current);
        match current.as_ref()?.build.peek()? {
            Ok(built) if built.0.sha256 == *sha256 => Some(built.1.clone()),
            _ => None,
        }
    }
}

/// Starts building in a blocking thread (npm runs there); the build runs to its end even when
/// the worker that asked leaves, so its outcome is cached and reported once.
fn start_build(dependencies: Vec<String>, engine: mpsc::UnboundedSender<EngineCommand>) -> Build {
    let build = async move {
        tracing::info!(
            dependencies = %dependencies.join(" "),
            "a worker asked for the dependency bundle: building it"
        );
        let list = dependencies.join(" ");
        let outcome =
            tokio::task::spawn_blocking(move || crate::deps::build_dependency_bundle(&dependencies))
                .await;
        let built = match outcome {
            Ok(Ok(bytes)) => {
                let entry = ManifestEntry {
                    name: DEPENDENCY_BUNDLE_NAME.to_owned(),
                    worker_path: DEPENDENCY_BUNDLE_PATH.to_owned(),
                    sha256: Sha256::of(&bytes),
                    size: bytes.len() as u64,
                };
                tracing::info!(bytes = entry.size, "the dependency bundle is ready");
                return Ok(Arc::new((entry, bytes)));
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("the bundle builder stopped: {e}"),
        };
        let warning = format!(
            "the dependency bundle ({list}) could not be built: {built}; workers that run task.js in \
             the embedded runtime (CLI, Python, sandboxed Node) cannot run tasks that require \
             these dependencies (Node workers install them themselves)"
        );
        tracing::warn!("{warning}");
        let _ = engine.send(EngineCommand::Warning(warning.clone()));
        Err(warning)
    }
    .boxed()
    .shared();
    tokio::spawn(build.clone());
    build
}
