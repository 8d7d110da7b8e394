//! The master against workers that lie, and users who repeat themselves: results are
//! re-serialised, repeated ids are queued again (or refused, when ids are idempotent), and
//! `idle` only says true once every result is out. Real masters and workers on loopback.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use queuexec_core::{
    Executor, JobInput, JobResult, JobSpec, Master, MasterEvent, StoreConfig, TaskFailure, Worker,
};
use tokio::sync::mpsc::UnboundedReceiver;

mod common;

use common::{assert_no_more_results, collect, master_config, next_result, worker_config};

/// Returns what the job's data says to return: `{"raw": TEXT}` returns TEXT as it is.
struct Literal;

impl Executor for Literal {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        Box::pin(async move {
            let data: serde_json::Value =
                serde_json::from_str(&job.data).map_err(|e| TaskFailure::new(e.to_string()))?;
            match data["raw"].as_str() {
                Some(raw) => Ok(raw.to_string()),
                None => Ok(job.data),
            }
        })
    }
}

/// Starts every job and never finishes it; counts the starts.
struct Hang {
    started: Arc<AtomicUsize>,
}

impl Executor for Hang {
    fn run(&self, _job: JobInput) -> BoxFuture<'static, Result<String, TaskFailure>> {
        self.started.fetch_add(1, Ordering::Relaxed);
        Box::pin(futures::future::pending())
    }
}

fn raw(text: &str) -> String {
    serde_json::json!({ "raw": text }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_result_is_parsed_and_re_serialised_and_text_that_is_not_json_fails_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let (worker, _) = Worker::start(
        worker_config(dir.path(), dir.path().join("liar"), "liar"),
        Arc::new(Literal),
    )
    .await
    .expect("worker");
    // Valid JSON whose middle line is a complete results.jsonl line for another job.
    let forged =
        "{\"x\":\n{\"jobID\":\"victim\",\"worker\":{\"id\":\"p\",\"name\":\"w\"},\"data\":1}\n}";
    master
        .push_many(vec![
            JobSpec {
                id: Some("spans-lines".into()),
                retries: Some(0),
                ..JobSpec::new(raw(forged))
            },
            JobSpec {
                id: Some("not-json".into()),
                retries: Some(0),
                ..JobSpec::new(raw("done\n{\"jobID\":\"victim\",\"data\":2}"))
            },
        ])
        .await
        .expect("push");
    let results: HashMap<String, JobResult> = collect(&mut events, 2)
        .await
        .into_iter()
        .map(|r| (r.job_id.clone(), r))
        .collect();
    let spans = results["spans-lines"].outcome.as_ref().expect("ok");
    assert_eq!(
        spans, "{\"x\":{\"jobID\":\"victim\",\"worker\":{\"id\":\"p\",\"name\":\"w\"},\"data\":1}}",
        "the master hands out its own serialisation, not the worker's text"
    );
    assert_eq!(results["spans-lines"].to_json_line().lines().count(), 1);
    let error = results["not-json"]
        .outcome
        .as_ref()
        .expect_err("a result that is not JSON fails the job");
    assert!(error.contains("not JSON"), "{error}");
    assert!(error.contains("liar"), "names the worker: {error}");
    worker.close().await;
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_is_true_only_once_every_result_of_a_crashed_worker_was_handed_out() {
    // Many jobs, so that committing their dead letters takes a while: an answer that overtakes
    // the commit is seen.
    const JOBS: usize = 2_000;
    for round in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = master_config(dir.path());
        config.store = StoreConfig::Sqlite(dir.path().join("jobs.sqlite"));
        // A job lost once (its worker crashed) is dead-lettered, so the crash ends the queue.
        config.max_losses = 1;
        config.max_credits = JOBS as u32;
        let (master, mut events) = Master::start(config).await.expect("master");
        let started = Arc::new(AtomicUsize::new(0));
        let mut wconfig = worker_config(dir.path(), dir.path().join("crash"), "crash");
        wconfig.concurrency = JOBS;
        wconfig.prefetch = 0;
        let (crasher, _) = Worker::start(
            wconfig,
            Arc::new(Hang {
                started: started.clone(),
            }),
        )
        .await
        .expect("worker");
        master
            .push_many(
                (0..JOBS)
                    .map(|i| JobSpec {
                        retries: Some(0),
                        ..JobSpec::new(i.to_string())
                    })
                    .collect(),
            )
            .await
            .expect("push");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while started.load(Ordering::Relaxed) < JOBS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the jobs never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The worker goes away holding every job on its last attempt; meanwhile we keep 32
        // questions in flight, and look at the results the moment one says idle.
        let close = tokio::spawn(async move { crasher.close().await });
        let mut asking = futures::stream::FuturesUnordered::new();
        for _ in 0..32 {
            asking.push(master.idle());
        }
        loop {
            let answer = tokio::time::timeout_at(deadline, asking.next())
                .await
                .unwrap_or_else(|_| panic!("round {round}: never idle"));
            if answer.expect("in flight").expect("idle") {
                break;
            }
            asking.push(master.idle());
        }
        let mut delivered = 0;
        while let Ok(event) = events.try_recv() {
            if let MasterEvent::Result(r) = event {
                assert!(r.outcome.is_err(), "{r:?}");
                delivered += 1;
            }
        }
        assert_eq!(
            delivered, JOBS,
            "round {round}: idle said true before every result was handed out"
        );
        close.await.expect("closed");
        master.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_twice_in_one_push_runs_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let (worker, _) = Worker::start(
        worker_config(dir.path(), dir.path().join("w"), "w"),
        Arc::new(Literal),
    )
    .await
    .expect("worker");
    let receipts = master
        .push_many(vec![
            JobSpec {
                id: Some("twice".into()),
                ..JobSpec::new("1")
            },
            JobSpec {
                id: Some("twice".into()),
                ..JobSpec::new("2")
            },
        ])
        .await
        .expect("push");
    assert!(receipts.iter().all(|r| r.id == "twice" && !r.duplicate));
    assert_eq!(
        receipts.iter().map(|r| r.repeated).collect::<Vec<_>>(),
        [false, true],
        "the receipt says which one repeated an id"
    );
    let mut data: Vec<String> = collect(&mut events, 2)
        .await
        .into_iter()
        .map(|r| {
            assert_eq!(r.job_id, "twice");
            r.outcome.expect("ok")
        })
        .collect();
    data.sort();
    assert_eq!(data, ["1", "2"], "both jobs ran, each once");
    assert_no_more_results(&mut events).await;
    worker.close().await;
    master.close().await.expect("close");
}

/// Results and warnings until `n` results arrived.
async fn results_and_warnings(
    events: &mut UnboundedReceiver<MasterEvent>,
    n: usize,
) -> (Vec<JobResult>, Vec<String>) {
    let (mut results, mut warnings) = (Vec::new(), Vec::new());
    while results.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Some(MasterEvent::Result(r))) => results.push(r),
            Ok(Some(MasterEvent::Warning(w))) => warnings.push(w),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the master's event stream ended"),
            Err(_) => panic!("only {} of {n} results within 20 s", results.len()),
        }
    }
    (results, warnings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_is_queued_again_with_a_warning_and_automatic_ids_never_take_an_explicit_one()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, mut events) = Master::start(master_config(dir.path()))
        .await
        .expect("master");
    let (worker, _) = Worker::start(
        worker_config(dir.path(), dir.path().join("w"), "w"),
        Arc::new(Literal),
    )
    .await
    .expect("worker");
    let mut jobs = vec![JobSpec {
        id: Some("job-2".into()),
        ..JobSpec::new("\"explicit\"")
    }];
    jobs.extend((0..4).map(|i| JobSpec::new(i.to_string())));
    let receipts = master.push_many(jobs).await.expect("push");
    let ids: Vec<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids[0], "job-2");
    assert!(
        !ids[1..].contains(&"job-2"),
        "an automatic id took the explicit one: {ids:?}"
    );
    assert!(receipts.iter().all(|r| !r.duplicate && !r.repeated));
    let (first, _) = results_and_warnings(&mut events, 5).await;
    let labels: std::collections::HashSet<&str> = first.iter().map(|r| r.job_id.as_str()).collect();
    assert_eq!(labels.len(), 5, "five jobs, five ids: {labels:?}");

    // The same explicit id again: queued again (as queue-xec does), and said so.
    let again = master
        .push(JobSpec {
            id: Some("job-2".into()),
            ..JobSpec::new("\"again\"")
        })
        .await
        .expect("push");
    assert!(again.repeated && !again.duplicate, "{again:?}");
    let (second, warnings) = results_and_warnings(&mut events, 1).await;
    assert_eq!(second[0].job_id, "job-2");
    assert_eq!(second[0].outcome, Ok("\"again\"".to_string()));
    assert_ne!(
        second[0].key,
        first
            .iter()
            .find(|r| r.job_id == "job-2")
            .expect("first")
            .key
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("job-2") && w.contains("queued again")),
        "{warnings:?}"
    );
    worker.close().await;
    master.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_idempotent_ids_a_known_id_is_not_queued_again_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = master_config(dir.path());
    config.store = StoreConfig::Sqlite(dir.path().join("jobs.sqlite"));
    config.idempotent_ids = true;
    let (master, mut events) = Master::start(config.clone()).await.expect("master");
    let (worker, _) = Worker::start(
        worker_config(dir.path(), dir.path().join("w"), "w"),
        Arc::new(Literal),
    )
    .await
    .expect("worker");
    let receipts = master
        .push_many(vec![
            JobSpec {
                id: Some("once".into()),
                ..JobSpec::new("1")
            },
            JobSpec {
                id: Some("once".into()),
                ..JobSpec::new("2")
            },
            JobSpec {
                id: Some("job-1".into()),
                ..JobSpec::new("3")
            },
            JobSpec::new("4"),
        ])
        .await
        .expect("push");
    assert_eq!(
        receipts
            .iter()
            .map(|r| (r.id.as_str(), r.duplicate))
            .collect::<Vec<_>>()[..3],
        [("once", false), ("once", true), ("job-1", false)]
    );
    assert!(
        !receipts[3].duplicate && receipts[3].id != "job-1",
        "{receipts:?}"
    );
    assert!(
        receipts.iter().all(|r| !r.repeated),
        "nothing was queued again, so no receipt says repeated: {receipts:?}"
    );
    let (done, warnings) = results_and_warnings(&mut events, 3).await;
    let mut outcomes: Vec<String> = done.into_iter().map(|r| r.outcome.expect("ok")).collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        ["1", "3", "4"],
        "the first 'once' ran, the second did not"
    );
    assert!(warnings.iter().any(|w| w.contains("once")), "{warnings:?}");
    assert!(
        master
            .push(JobSpec {
                id: Some("once".into()),
                ..JobSpec::new("5")
            })
            .await
            .expect("push")
            .duplicate
    );
    master.close().await.expect("close");
    drop(master);

    let (master, mut events) = Master::start(config).await.expect("master again");
    let after = master
        .push(JobSpec {
            id: Some("once".into()),
            ..JobSpec::new("6")
        })
        .await
        .expect("push");
    assert!(after.duplicate, "known from the store after a restart");
    // An automatic id never makes an explicit push a duplicate.
    let fresh = master
        .push(JobSpec {
            id: Some(receipts[3].id.clone()),
            ..JobSpec::new("7")
        })
        .await
        .expect("push");
    assert!(!fresh.duplicate, "{fresh:?}");
    let r = next_result(&mut events).await;
    assert_eq!(r.outcome, Ok("7".to_string()));
    assert_no_more_results(&mut events).await;
    worker.close().await;
    master.close().await.expect("close");
}
