//! `queuexec demo`: one master and N local worker processes on loopback run M jobs.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use queuexec_core::config::{TASK_ENTRY, asset_specs};
use queuexec_core::{JobSpec, Master, MasterConfig, MasterEvent};
use tokio::process::Child;

use crate::terminal::escape_control;

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Worker processes to start.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Jobs to run.
    #[arg(long, default_value_t = 200)]
    jobs: usize,
    /// Random points each job throws at the unit square.
    #[arg(long, default_value_t = 100_000)]
    samples: u64,
}

/// Starts `count` worker processes of this binary, dialing `master`, with the given extra args.
pub(crate) fn spawn_workers(
    count: usize,
    master: &str,
    token: &str,
    transfer: &str,
    extra: &[&str],
) -> Result<Vec<Child>> {
    let exe = std::env::current_exe().context("finding the queuexec binary")?;
    (0..count)
        .map(|i| {
            tokio::process::Command::new(&exe)
                .arg("worker")
                .arg("--master")
                .arg(master)
                .arg("--name")
                .arg(format!("demo-worker-{}", i + 1))
                .args(extra)
                // Tokens travel in the environment, not the command line others can read.
                .env("token", token)
                .env("transferEncryptToken", transfer)
                .env(
                    "LOG_LEVEL",
                    std::env::var("LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
                )
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker process")
        })
        .collect()
}

pub(crate) async fn stop_workers(workers: Vec<Child>) {
    for mut child in workers {
        let _ = child.kill().await;
    }
}

pub(crate) async fn run(args: DemoArgs) -> Result<()> {
    if args.workers == 0 || args.jobs == 0 {
        bail!("--workers and --jobs must be at least 1");
    }
    let queuexec_core::config::Tokens {
        token,
        transfer_token: transfer,
    } = queuexec_core::config::generate_tokens();
    // The master ships a real task.js (a Monte Carlo estimate of pi); the workers have never
    // seen it and run it in their embedded JavaScript runtime.
    let task_dir = tempfile::tempdir().context("creating a temporary folder")?;
    std::fs::write(
        task_dir.path().join(TASK_ENTRY),
        queuexec_js::demo::MONTE_CARLO_PI,
    )
    .context("writing task.js")?;
    let mut config = MasterConfig::new(&token, &transfer);
    config.announce = false;
    config.asset_base_dir = task_dir.path().to_path_buf();
    config.assets = asset_specs(Some(Path::new(TASK_ENTRY)), &[])?;
    let (master, mut events) = Master::start(config).await?;
    let addr = crate::master_cmd::best_addr(&master.listen_addrs())
        .context("the master has no address")?;
    eprintln!("demo: master {} on {addr}", master.peer_id());
    let workplace = tempfile::tempdir().context("creating a temporary workplace")?;
    let workplace_arg = workplace.path().to_string_lossy().into_owned();
    let workers = spawn_workers(
        args.workers,
        &addr,
        &token,
        &transfer,
        &["--workplace", &workplace_arg, "--concurrency", "1"],
    )?;

    let started = Instant::now();
    let jobs = (0..args.jobs)
        .map(|_| JobSpec::new(format!("{{\"samples\":{}}}", args.samples)))
        .collect();
    master.push_many(jobs).await?;

    let (mut inside, mut samples, mut results, mut failed) = (0u64, 0u64, 0usize, 0usize);
    let mut per_worker = std::collections::BTreeMap::<String, usize>::new();
    while results < args.jobs {
        match events.recv().await {
            Some(MasterEvent::Result(r)) => {
                results += 1;
                *per_worker.entry(r.worker.name.clone()).or_default() += 1;
                match &r.outcome {
                    Ok(json) => {
                        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
                        inside += v["inside"].as_u64().unwrap_or(0);
                        samples += v["samples"].as_u64().unwrap_or(0);
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!(
                            "demo: job {} failed: {}",
                            escape_control(&r.job_id),
                            escape_control(e)
                        );
                    }
                }
            }
            Some(_) => {}
            None => bail!("the master stopped before every job had a result"),
        }
    }
    let elapsed = started.elapsed();
    stop_workers(workers).await;
    master.close().await?;
    for (name, count) in &per_worker {
        eprintln!("demo: {} ran {count} jobs", escape_control(name));
    }
    if samples > 0 {
        println!(
            "demo: pi is about {:.5} from {samples} random points",
            4.0 * inside as f64 / samples as f64
        );
    }
    if failed > 0 {
        bail!("{failed} of {} jobs failed", args.jobs);
    }
    println!(
        "demo: {} jobs, {} workers, {:.0} jobs/s",
        args.jobs,
        args.workers,
        args.jobs as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
