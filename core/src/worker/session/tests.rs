//! A hostile master against a real worker on loopback: it pushes more jobs than the worker
//! granted credits for, and the worker cuts it off.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{AsyncReadExt, StreamExt};
use libp2p::Multiaddr;

use crate::assets::BundleHash;
use crate::crypto::{RoomKey, TransferKey};
use crate::net::{self, NetConfig, NetEvent};
use crate::protocol::{
    self, Direction, MasterHandshake, SealedReader, SealedWriter, ToMaster, ToWorker, WireJob,
};
use crate::{Executor, JobInput, TaskFailure, Worker, WorkerConfig, WorkerEvent};

const TOKEN: &str = "room-token-for-hostile-master-tests";
const TRANSFER: &str = "transfer-token-0123456789abcdefghij";

/// Never finishes a job, so no result hands a credit back.
struct Stall;

impl Executor for Stall {
    fn run(&self, _job: JobInput) -> BoxFuture<'static, std::result::Result<String, TaskFailure>> {
        Box::pin(futures::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_sends_more_jobs_than_the_credits_granted_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
    let (master, mut master_events) =
        net::spawn(NetConfig::for_tests(vec![listen])).expect("the fake master's network");
    let addr = match tokio::time::timeout(Duration::from_secs(5), master_events.recv()).await {
        Ok(Some(NetEvent::ListenAddr(a))) => {
            a.with(libp2p::multiaddr::Protocol::P2p(master.peer_id()))
        }
        other => panic!("the fake master did not listen: {other:?}"),
    };
    let mut incoming = master
        .control()
        .accept(protocol::JOB_PROTOCOL)
        .expect("accept job streams");

    let mut config = WorkerConfig::new(TOKEN, TRANSFER);
    config.master = Some(addr.to_string());
    config.mdns = Some(false);
    config.room_dir = Some(dir.path().to_path_buf());
    config.workplace = dir.path().join("workplace");
    config.concurrency = 2;
    config.prefetch = 1;
    let (worker, mut events) = Worker::start(config, Arc::new(Stall))
        .await
        .expect("worker");

    let hostile = async {
        let (peer, mut stream) = incoming
            .next()
            .await
            .expect("the worker opens a job stream");
        let room = RoomKey::from_token(TOKEN)?;
        let key = TransferKey::from_token(TRANSFER)?;
        MasterHandshake {
            room: &room,
            key: &key,
            master: &master.peer_id().to_string(),
            worker: &peer.to_string(),
            lease_ttl_ms: 60_000,
        }
        .run(&mut stream)
        .await?;
        let (reader, writer) = stream.split();
        let mut reader = SealedReader::new(key.clone(), Direction::ToMaster, reader);
        let granted = match reader.next::<ToMaster>().await? {
            Some(ToMaster::Credits(n)) => n,
            other => panic!("the worker's first message is its credits: {other:?}"),
        };
        // The worker holds no bundle, so it asks for the manifest; the jobs wait meanwhile and
        // still count against the credits.
        let key_for_jobs = key.clone();
        let job = |n: u32| WireJob {
            id: format!("job-{n}"),
            attempt: 1,
            task_type: None,
            payload: key_for_jobs
                .seal(&protocol::payload_context(&format!("job-{n}")), b"1")
                .into(),
            timeout_ms: None,
        };
        let mut writer = SealedWriter::new(key, Direction::ToWorker, writer);
        writer
            .send(&ToWorker::Jobs {
                bundle: BundleHash([0; 32]),
                jobs: (0..granted + 5).map(job).collect(),
            })
            .await?;
        writer.flush().await?;
        // The worker must close the stream: read until it ends.
        while reader.next::<ToMaster>().await.is_ok_and(|m| m.is_some()) {}
        Ok::<u32, crate::Error>(granted)
    };
    let granted = tokio::time::timeout(Duration::from_secs(20), hostile)
        .await
        .expect("the worker cuts the hostile master off within 20 s")
        .expect("the hostile master's side runs");
    assert_eq!(granted, 3, "concurrency 2 + prefetch 1");

    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(WorkerEvent::Disconnected { reason })) => break reason,
            Ok(Some(_)) => {}
            other => panic!("no disconnection reported: {other:?}"),
        }
    };
    assert!(
        reason.contains("credits"),
        "the reason names the credits: {reason}"
    );
    worker.close().await;
    master.shutdown().await;
}
