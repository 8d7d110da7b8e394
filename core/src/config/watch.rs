//! The master's watch on its asset files: it polls each file's size, modification time (and
//! inode on Unix) every [`ASSET_WATCH_INTERVAL`](super::ASSET_WATCH_INTERVAL), and when one
//! changed asks the master to reload, which hashes the files and tells workers only if the
//! content really changed. Polling a handful of files costs next to nothing and behaves the same
//! on every file system (network mounts, containers, editors that save by renaming), which an
//! event-based watcher does not.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::error::Result;

/// How long a change is left to settle before the files are read (an editor may write in steps).
const SETTLE: Duration = Duration::from_millis(100);

/// What is looked at per file: `None` when it cannot be read.
type Fingerprint = Option<(u64, Option<SystemTime>, u64)>;

/// Watches `paths`; calls `reload` after they change. `reload` returns `None` once the master
/// is gone, which ends the watch. Reload errors are logged (the workers keep the last good
/// files) and not repeated until the files change again.
pub(crate) fn spawn<F, Fut>(
    paths: Vec<PathBuf>,
    interval: Duration,
    reload: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Option<Result<bool>>> + Send,
{
    // The first look is taken now, so a change right after this call is seen.
    let mut seen: Vec<Fingerprint> = paths
        .iter()
        .map(|path| fingerprint(std::fs::metadata(path).ok()))
        .collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if fingerprints(&paths).await == seen {
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            seen = fingerprints(&paths).await;
            match reload().await {
                None => return,
                Some(Ok(true)) => tracing::info!("asset files changed; workers fetch them"),
                Some(Ok(false)) => {}
                Some(Err(e)) => tracing::warn!(
                    "an asset file changed but the assets could not be reloaded: {e}; workers \
                     keep the previous files until it is fixed"
                ),
            }
        }
    })
}

async fn fingerprints(paths: &[PathBuf]) -> Vec<Fingerprint> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        out.push(fingerprint(tokio::fs::metadata(path).await.ok()));
    }
    out
}

fn fingerprint(meta: Option<std::fs::Metadata>) -> Fingerprint {
    meta.map(|meta| {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        (meta.len(), meta.modified().ok(), inode)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counting(calls: Arc<AtomicUsize>) -> impl Fn() -> std::future::Ready<Option<Result<bool>>> {
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Some(Ok(true)))
        }
    }

    #[tokio::test]
    async fn an_edited_file_is_reloaded_and_an_untouched_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("task.js");
        std::fs::write(&file, "module.exports = 1").expect("write");
        let calls = Arc::new(AtomicUsize::new(0));
        let watch = spawn(
            vec![file.clone()],
            Duration::from_millis(20),
            counting(calls.clone()),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing changed yet");
        std::fs::write(&file, "module.exports = 22").expect("edit");
        tokio::time::timeout(Duration::from_secs(10), async {
            while calls.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the edit is seen within 10 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one edit, one reload");
        watch.abort();
    }

    #[tokio::test]
    async fn a_deleted_file_is_reported_once_and_the_watch_ends_with_its_master() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("task.js");
        std::fs::write(&file, "x").expect("write");
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let watch = spawn(vec![file.clone()], Duration::from_millis(20), move || {
            // The master is gone at the first reload.
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(None)
        });
        std::fs::remove_file(&file).expect("remove");
        tokio::time::timeout(Duration::from_secs(10), watch)
            .await
            .expect("the watch ends when its master is gone")
            .expect("no panic");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
