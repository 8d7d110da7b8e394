//! Keeping the master's assets installed on the worker. Jobs arrive tagged with the bundle hash
//! they need; when it is not the installed one, the jobs wait while the worker fetches the
//! manifest, asks for each missing or changed file (one at a time, in chunks), installs it
//! through the [`Workplace`](crate::assets::Workplace) (which enforces the worker-path rules),
//! unpacks the dependency bundle, tells the executor, and then runs the jobs that waited.

use std::collections::VecDeque;

use super::session::{Connection, Outbound};
use super::{Runner, WorkerEvent};
use crate::assets::{Manifest, ManifestEntry, Sha256};
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
}

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
            let _ = out.send(Outbound::Message(ToMaster::GetManifest));
        }
    }

    /// The assets changed on the master while we fetched them: start over.
    pub(super) fn restart(&mut self, out: &mpsc::UnboundedSender<Outbound>) {
        self.needed.clear();
        self.current = None;
        self.manifest = None;
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

    /// The bundle is installed (or could not be): tell the executor, then run what waited.
    async fn finish_sync(
        &mut self,
        sync: &mut AssetSync,
        manifest: Manifest,
        error: Option<String>,
        connection: &mut Connection,
    ) {
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
            failure = Some(format!("the task could not be loaded: {e}"));
        }
        let bundle = manifest.bundle_hash();
        match &failure {
            None => {
                tracing::info!(%bundle, fetched = sync.fetched, "assets installed");
                let _ = self.events.send(WorkerEvent::AssetsInstalled {
                    bundle: bundle.to_string(),
                    fetched: sync.fetched,
                });
                self.installed = Some(bundle);
            }
            Some(e) => {
                tracing::error!("assets could not be installed: {e}");
                // Not recorded as installed: the next jobs ask again, after the master fixes it.
                self.installed = None;
            }
        }
        sync.active = false;
        sync.needed.clear();
        sync.current = None;
        for jobs in std::mem::take(&mut sync.pending) {
            self.start_jobs(jobs, connection, failure.clone());
        }
    }
}
