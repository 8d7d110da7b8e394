//! A master with `watch_assets` reloads an edited asset file by itself (the same for the CLI,
//! Node and Python, which all leave the watching to the core); without it the bundle stays.

use std::time::Duration;

use queuexec_core::config::{TASK_ENTRY, asset_specs};
use queuexec_core::{Master, MasterConfig};

const TOKEN: &str = "asset-watch room";
const TRANSFER: &str = "asset-watch transfer token 0123456789";

async fn master_with_task(dir: &std::path::Path, watch: bool) -> Master {
    std::fs::write(dir.join(TASK_ENTRY), "module.exports = async () => 1;").expect("write task");
    let mut config = MasterConfig::new(TOKEN, TRANSFER);
    config.announce = false;
    config.mdns = Some(false);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    config.asset_base_dir = dir.to_path_buf();
    config.assets = asset_specs(Some(std::path::Path::new(TASK_ENTRY)), &[]).expect("specs");
    config.watch_assets = watch;
    let (master, _events) = tokio::time::timeout(Duration::from_secs(20), Master::start(config))
        .await
        .expect("started within 20 s")
        .expect("master starts");
    master
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_task_is_reloaded_by_the_watching_master() {
    let dir = tempfile::tempdir().expect("tempdir");
    let master = master_with_task(dir.path(), true).await;
    let before = master.bundle_hash();
    std::fs::write(
        dir.path().join(TASK_ENTRY),
        "module.exports = async () => 2; // edited",
    )
    .expect("edit");
    tokio::time::timeout(Duration::from_secs(15), async {
        while master.bundle_hash() == before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the edit is picked up within 15 s");
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_does_not_watch_keeps_its_bundle_until_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let master = master_with_task(dir.path(), false).await;
    let before = master.bundle_hash();
    std::fs::write(
        dir.path().join(TASK_ENTRY),
        "module.exports = async () => 3;",
    )
    .expect("edit");
    // Three watch intervals: a watching master would have reloaded by now.
    tokio::time::sleep(queuexec_core::config::ASSET_WATCH_INTERVAL * 3).await;
    assert_eq!(master.bundle_hash(), before);
    assert!(
        tokio::time::timeout(Duration::from_secs(10), master.reload_assets())
            .await
            .expect("reloaded within 10 s")
            .expect("reload")
    );
    assert_ne!(master.bundle_hash(), before);
    master.close().await.expect("close");
}
