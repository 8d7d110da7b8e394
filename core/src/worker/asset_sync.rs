//! Keeping the master's assets installed on the worker. Jobs arrive tagged with the bundle hash
//! they need; when it is not the installed one, the jobs wait while the worker fetches the
//! manifest, asks for each missing or changed file (one at a time, in chunks), installs it
//! through the [`Workplace`](crate::assets::Workplace) (which enforces the worker-path rules),
//! fetches and unpacks the dependency bundle when the executor needs one (the master builds it
//! on the first request), tells the executor, and then runs the jobs that waited.
//!
//! When the assets cannot be installed or the task cannot load, the waiting jobs are given back
//! to the master unrun ([`ToMaster::TaskLoadFailed`]): they use no attempt, and the master gives
//! this worker no jobs of that bundle until its assets change (or a pause ends). Jobs of the
//! same bundle that were already on their way are given back as they arrive, for a short while.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::session::{Connection, Outbound};
use super::{Runner, WorkerEvent};
use crate::assets::{
    BundleHash, DEPENDENCY_BUNDLE_NAME, DEPENDENCY_BUNDLE_PATH, Manifest, ManifestEntry, Sha256,
};
use crate::error::{Error, Result};
use crate::protocol::{ToMaster, WireJob};
use tokio::sync::mpsc;

/// One asset synchronisation in progress: the jobs waiting for it and the files still to fetch.
#[derive(Default)]
pub(super) struct AssetSync {
    /// A synchronisation is under way (jobs wait for it).
    pub(super) active: bool,
    pending: VecDeque<Vec<WireJob>>,
    manifest: Option<Manifest>,
    needed: VecDeque<ManifestEntry>,
    /// The file being fetched, and what arrived of it so far.
    current: Option<(ManifestEntry, Vec<u8>)>,
    fetched: usize,
    /// The bundle hash of the manifest as the master sent it (before the dependency bundle's
    /// entry is added to it here).
    received: Option<BundleHash>,
    /// The dependency bundle was asked for in this synchronisation.
    bundle_asked: bool,
    /// The manifest waiting for the master's answer about the dependency bundle.
    awaiting_bundle: Option<Manifest>,
    /// Why the master could not provide the dependency bundle, in this synchronisation.
    bundle_error: Option<String>,
    /// The last bundle that could not be installed or loaded: when, and why.
    failed: Option<(BundleHash, Instant, String)>,
}

/// How long after a failed installation jobs of the same bundle are given back at once (those
/// the master sent before it heard of the failure) instead of trying again.
const FAILED_RECENTLY: Duration = Duration::from_secs(10);

impl AssetSync {
    /// Holds `jobs` until the assets are installed, asking for the manifest when no
    /// synchronisation is under way yet.
    pub(super) fn wait_for_assets(
        &mut self,
        jobs: Vec<WireJob>,
        out: &mpsc::UnboundedSender<Outbound>,
    ) {
        self.pending.push_back(jobs);
        if !self.active {
            self.active = true;
            self.bundle_asked = false;
            self.bundle_error = None;
            let _ = out.send(Outbound::Message(ToMaster::GetManifest));
        }
    }

    /// Jobs waiting for the assets.
    pub(super) fn waiting(&self) -> usize {
        self.pending.iter().map(Vec::len).sum()
    }

    /// Why the assets of `bundle` failed, if they did within [`FAILED_RECENTLY`].
    pub(super) fn failed_recently(&self, bundle: BundleHash) -> Option<String> {
        match &self.failed {
            Some((failed, at, reason)) if *failed == bundle && at.elapsed() < FAILED_RECENTLY => {
                Some(reason.clone())
            }
            _ => None,
        }
    }

    /// The assets changed on the master while we fetched them: start over.
    pub(super) fn restart(&mut self, out: &mpsc::UnboundedSender<Outbound>) {
        self.needed.clear();
        self.current = None;
        self.manifest = None;
        self.awaiting_bundle = None;
        self.bundle_asked = false;
        let _ = out.send(Outbound::Message(ToMaster::GetManifest));
    }

    /// Asks for the next needed file, unless one is being fetched.
    fn request_next_file(&mut self, out: &mpsc::UnboundedSender<Outbound>) {
        if self.current.is_some() {
            return;
        }
        if let Some(entry) = self.needed.pop_front() {
            let sha256: Sha256 = entry.sha256;
            self.current = Some((entry, Vec::new()));
            let _ = out.send(Outbound::Message(ToMaster::GetFile { sha256 }));
        }
    }
}

impl Runner {
    /// The master's manifest arrived: work out which files are needed and ask for the first.
    pub(super) async fn on_manifest(
        &mut self,
        sync: &mut AssetSync,
        manifest: Manifest,
        connection: &mut Connection,
    ) -> Result<()> {
        if !sync.active {
            return Ok(());
        }
        sync.received = Some(manifest.bundle_hash());
        let needed = {
            let workplace = self.workplace.clone();
            let m = manifest.clone();
            tokio::task::spawn_blocking(move || workplace.needed(&m))
                .await
                .map_err(|e| Error::config_from("checking assets stopped", e))?
        };
        match needed {
            Ok(needed) => {
                sync.fetched = needed.len();
                sync.needed = needed.into();
                sync.manifest = Some(manifest);
                sync.request_next_file(&connection.out);
            }
            Err(e) => {
                self.finish_sync(sync, manifest, Some(e.to_string()), connection)
                    .await
            }
        }
        if sync.active
            && sync.needed.is_empty()
            && sync.current.is_none()
            && let Some(manifest) = sync.manifest.take()
        {
            self.finish_sync(sync, manifest, None, connection).await;
        }
        Ok(())
    }

    /// A piece of the file being fetched arrived; the last piece installs it.
    pub(super) async fn on_file_chunk(
        &mut self,
        sync: &mut AssetSync,
        sha256: Sha256,
        offset: u64,
        data: Vec<u8>,
        last: bool,
        connection: &mut Connection,
    ) -> Result<()> {
        let Some((entry, buffer)) = sync.current.as_mut() else {
            return Ok(());
        };
        if entry.sha256 != sha256 || offset != buffer.len() as u64 {
            return Err(Error::protocol("the master sent a file chunk out of order"));
        }
        if buffer.len() as u64 + data.len() as u64 > entry.size {
            return Err(Error::protocol(format!(
                "the master sent more bytes of {} than announced",
                entry.name
            )));
        }
        buffer.extend_from_slice(&data);
        if !last {
            return Ok(());
        }
        let Some((entry, buffer)) = sync.current.take() else {
            return Ok(());
        };
        let workplace = self.workplace.clone();
        let installed =
            tokio::task::spawn_blocking(move || workplace.install(&entry, &buffer).map(|_| ()))
                .await
                .map_err(|e| Error::config_from("installing assets stopped", e))?;
        if let Err(e) = installed {
            let manifest = sync.manifest.take().unwrap_or_default();
            self.finish_sync(sync, manifest, Some(e.to_string()), connection)
                .await;
            return Ok(());
        }
        sync.request_next_file(&connection.out);
        if sync.current.is_none()
            && let Some(manifest) = sync.manifest.take()
        {
            self.finish_sync(sync, manifest, None, connection).await;
        }
        Ok(())
    }

    /// The master answered about the dependency bundle: fetch it (unless it is unpacked here
    /// already), or give the jobs back with the master's error.
    pub(super) async fn on_dependency_bundle(
        &mut self,
        sync: &mut AssetSync,
        entry: Option<ManifestEntry>,
        error: Option<String>,
        connection: &mut Connection,
    ) -> Result<()> {
        let Some(mut manifest) = sync.awaiting_bundle.take() else {
            return Ok(());
        };
        let entry = match (entry, error) {
            (Some(entry), _) => entry,
            (None, error) => {
                // The task may not need its dependencies to load (or, on a Python worker, only
                // task.js may): load it without them, and say why if it cannot.
                sync.bundle_error = Some(error.unwrap_or_else(|| "no reason given".into()));
                self.finish_sync(sync, manifest, None, connection).await;
                return Ok(());
            }
        };
        if entry.name != DEPENDENCY_BUNDLE_NAME || entry.worker_path != DEPENDENCY_BUNDLE_PATH {
            return Err(Error::protocol(format!(
                "the master announced a dependency bundle named {:?} at {:?}; it is always {DEPENDENCY_BUNDLE_NAME:?} at {DEPENDENCY_BUNDLE_PATH:?}",
                entry.name, entry.worker_path
            )));
        }
        manifest.dependency_bundle = Some(entry.clone());
        let unpacked = crate::deps::dependency_bundle_dir(self.workplace.root(), &manifest)
            .is_some_and(|dir| dir.is_dir());
        if unpacked {
            self.finish_sync(sync, manifest, None, connection).await;
        } else {
            sync.fetched += 1;
            sync.needed.push_back(entry);
            sync.manifest = Some(manifest);
            sync.request_next_file(&connection.out);
        }
        Ok(())
    }

    /// The files are installed (or could not be): fetch the dependency bundle if the executor
    /// needs it, tell the executor, then run what waited; or, on failure, give it back.
    async fn finish_sync(
        &mut self,
        sync: &mut AssetSync,
        manifest: Manifest,
        error: Option<String>,
        connection: &mut Connection,
    ) {
        if error.is_none()
            && !sync.bundle_asked
            && manifest.dependency_bundle.is_none()
            && !manifest.dependencies.is_empty()
            && self.executor.wants_dependency_bundle()
        {
            // Built by the master on the first request: the jobs wait for the answer.
            sync.bundle_asked = true;
            sync.awaiting_bundle = Some(manifest);
            let _ = connection
                .out
                .send(Outbound::Message(ToMaster::GetDependencyBundle));
            return;
        }
        let mut failure = error;
        if failure.is_none()
            && let Some(entry) = manifest.dependency_bundle.clone()
        {
            let workplace = self.workplace.clone();
            match tokio::task::spawn_blocking(move || {
                crate::deps::unpack_dependency_bundle(&workplace, &entry)
            })
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failure = Some(e.to_string()),
                Err(e) => failure = Some(format!("unpacking dependencies stopped: {e}")),
            }
        }
        if failure.is_none()
            && let Err(e) = self
                .executor
                .assets_changed(self.workplace.root(), &manifest)
                .await
        {
            failure = Some(match sync.bundle_error.take() {
                Some(bundle_error) => format!(
                    "the master could not provide the dependency bundle ({bundle_error}), and the task could not be loaded without it: {e}"
                ),
                None => format!("the task could not be loaded: {e}"),
            });
        }
        // What the master's jobs are tagged with: the manifest as it sent it.
        let bundle = sync.received.unwrap_or_else(|| manifest.bundle_hash());
        sync.active = false;
        sync.needed.clear();
        sync.current = None;
        sync.awaiting_bundle = None;
        let pending = std::mem::take(&mut sync.pending);
        match failure {
            None => {
                tracing::info!(%bundle, fetched = sync.fetched, "assets installed");
                let _ = self.events.send(WorkerEvent::AssetsInstalled {
                    bundle: bundle.to_string(),
                    fetched: sync.fetched,
                });
                self.installed = Some(bundle);
                sync.failed = None;
                for jobs in pending {
                    self.start_jobs(jobs, connection, None);
                }
            }
            Some(reason) => {
                tracing::error!(
                    "assets could not be installed: {reason}; this worker takes no jobs until the master's assets change"
                );
                // Not recorded as installed: the next jobs ask again, after the master fixes it.
                self.installed = None;
                sync.failed = Some((bundle, Instant::now(), reason.clone()));
                give_back(
                    pending.into_iter().flatten().collect(),
                    bundle,
                    reason,
                    connection,
                );
            }
        }
        connection
            .waiting
            .store(sync.waiting() as u64, Ordering::Relaxed);
    }
}

/// Gives `jobs` back to the master unrun (they use no attempt there) and takes back the credits
/// they used.
pub(super) fn give_back(
    jobs: Vec<WireJob>,
    bundle: BundleHash,
    reason: String,
    connection: &Connection,
) {
    connection
        .credits
        .fetch_add(jobs.len() as i64, Ordering::Relaxed);
    let jobs = jobs.into_iter().map(|job| (job.id, job.attempt)).collect();
    let _ = connection
        .out
        .send(Outbound::Message(ToMaster::TaskLoadFailed {
            bundle,
            reason,
            jobs,
        }));
}
