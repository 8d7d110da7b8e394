//! `queuexec bench`: no-op throughput and round-trip latency, one master in this process and
//! worker processes on loopback, encryption on (it always is).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use queuexec_core::{JobSpec, Master, MasterConfig, MasterEvent, StoreConfig};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::demo::{spawn_workers, stop_workers};

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// No-op jobs for the throughput run.
    #[arg(long, default_value_t = 200_000)]
    jobs: usize,
    /// Round trips for the latency run.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Where the master keeps jobs.
    #[arg(long, value_enum, default_value_t = BenchStore::Memory)]
    store: BenchStore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchStore {
    Memory,
    Sqlite,
}

async fn wait_results(events: &mut UnboundedReceiver<MasterEvent>, mut count: usize) -> Result<()> {
    while count > 0 {
        match events.recv().await {
            Some(MasterEvent::Result(r)) => {
                if let Err(e) = r.outcome {
                    bail!("job {} failed: {e}", r.job_id);
                }
                count -= 1;
            }
            Some(_) => {}
            None => bail!("the master stopped"),
        }
    }
    Ok(())
}

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    let queuexec_core::config::Tokens {
        token,
        transfer_token: transfer,
    } = queuexec_core::config::generate_tokens();
    let mut config = MasterConfig::new(&token, &transfer);
    config.announce = false;
    // The bench's own workers ask for 64 + 4096 jobs at once; let the master grant them.
    config.max_credits = 8_192;
    let dir = tempfile::tempdir()?;
    if args.store == BenchStore::Sqlite {
        config.store = StoreConfig::Sqlite(dir.path().join("bench.sqlite"));
    }
    let (master, mut events) = Master::start(config).await?;
    let addr = crate::master_cmd::best_addr(&master.listen_addrs()).context("no master address")?;
    let workers = spawn_workers(
        args.workers,
        &addr,
        &token,
        &transfer,
        &[
            "--builtin",
            "echo",
            "--concurrency",
            "64",
            "--prefetch",
            "4096",
        ],
    )?;
    // Wait for the workers to join.
    let mut joined = 0;
    while joined < args.workers {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Some(MasterEvent::WorkerJoined(_))) => joined += 1,
            Ok(Some(_)) => {}
            _ => bail!("the workers did not join within 20 s"),
        }
    }

    // Warm-up: connections, allocators, caches.
    master
        .push_many((0..2_000).map(|i| JobSpec::new(i.to_string())).collect())
        .await?;
    wait_results(&mut events, 2_000).await?;

    let started = Instant::now();
    let pusher = {
        let master = master.clone();
        let jobs = args.jobs;
        tokio::spawn(async move {
            let mut pushed = 0;
            while pushed < jobs {
                let n = (jobs - pushed).min(10_000);
                master
                    .push_many(
                        (pushed..pushed + n)
                            .map(|i| JobSpec::new(i.to_string()))
                            .collect(),
                    )
                    .await?;
                pushed += n;
            }
            Ok::<(), queuexec_core::Error>(())
        })
    };
    wait_results(&mut events, args.jobs).await?;
    let elapsed = started.elapsed();
    pusher.await??;
    let store = format!("{:?}", args.store).to_lowercase();
    println!(
        "bench: throughput {} no-op jobs, {} worker processes, {:.0} jobs/s (store: {store})",
        args.jobs,
        args.workers,
        args.jobs as f64 / elapsed.as_secs_f64()
    );

    let mut rtts = Vec::with_capacity(args.samples);
    for i in 0..args.samples {
        let t = Instant::now();
        master.push(JobSpec::new(i.to_string())).await?;
        wait_results(&mut events, 1).await?;
        rtts.push(t.elapsed());
        // Each job finds the worker idle, as in the other round-trip benchmarks (bench/peers.js,
        // the raw TCP floor among them): an idle thread takes longer to wake than a busy one.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    rtts.sort();
    let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)].as_micros();
    println!(
        "bench: round trip p50 {} us, p90 {} us, p99 {} us ({} samples, push to result, 1 ms apart, store: {store})",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        rtts.len()
    );
    stop_workers(workers).await;
    master.close().await?;
    Ok(())
}
