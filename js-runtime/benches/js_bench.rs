//! Cold start and per-job overhead of the embedded JavaScript runtime.
//!
//! Run with `cargo bench -p queuexec-js`. Reports, in one run:
//! - bare `JsRuntime::new(RuntimeOptions::default())` (the engine's own floor),
//! - cold start: `TaskRuntime::new` + load task.js + first call (interleaved with the bare
//!   measurement so both see the same machine state),
//! - warm no-op call on the runtime's thread (`TaskRuntime::run`),
//! - warm no-op job through `JsExecutor::run` (channel to the slot thread and back),
//! - cold start of a whole `JsExecutor` (threads + runtime + load + first job).

use std::time::{Duration, Instant};

use deno_core::{JsRuntime, RuntimeOptions};
use queuexec_core::{Executor, JobInput};
use queuexec_js::{JsConfig, JsExecutor, TaskRuntime, TaskSource};

const COLD_SAMPLES: usize = 30;
const WARM_CALLS: usize = 20_000;

const NOOP_TASK: &str = "module.exports = class Task { run(job) { return null; } };\n";

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.2} us", d.as_secs_f64() * 1e6)
}

fn job(i: usize) -> JobInput {
    JobInput {
        id: i.to_string(),
        data: "null".into(),
        task_type: None,
        attempt: 1,
        timeout: None,
        shape: Default::default(),
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("task.js"), NOOP_TASK)?;
    let source = TaskSource::from_dir(dir.path(), None)?;
    let config = JsConfig::default();
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // Warm-up: the first runtime of a process also initializes the engine.
    drop(JsRuntime::new(RuntimeOptions::default()));
    {
        let _entered = local.enter();
        let mut rt = TaskRuntime::new(&config)?;
        rt.load(&source)?;
        local.block_on(rt.run("warm", "null"))?;
    }

    let mut bare = Vec::with_capacity(COLD_SAMPLES);
    let mut cold = Vec::with_capacity(COLD_SAMPLES);
    let (mut create, mut load, mut first) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..COLD_SAMPLES {
        let t = Instant::now();
        let runtime = JsRuntime::new(RuntimeOptions::default());
        bare.push(t.elapsed());
        drop(runtime);

        let _entered = local.enter();
        let t = Instant::now();
        let mut rt = TaskRuntime::new(&config)?;
        let created = t.elapsed();
        rt.load(&source)?;
        let loaded = t.elapsed();
        let result = local.block_on(rt.run("first", "null"))?;
        let done = t.elapsed();
        cold.push(done);
        create.push(created);
        load.push(loaded - created);
        first.push(done - loaded);
        assert_eq!(result, "null");
        drop(rt);
    }
    let bare_median = median(&mut bare);
    let cold_median = median(&mut cold);

    // Warm calls on the runtime's own thread.
    let warm_local = {
        let _entered = local.enter();
        let mut rt = TaskRuntime::new(&config)?;
        rt.load(&source)?;
        local.block_on(async {
            for i in 0..1000 {
                rt.run(&i.to_string(), "null").await?;
            }
            let t = Instant::now();
            for i in 0..WARM_CALLS {
                rt.run(&i.to_string(), "null").await?;
            }
            Ok::<_, anyhow::Error>(t.elapsed() / WARM_CALLS as u32)
        })?
    };

    // Warm jobs through the executor: the path a worker takes.
    let threaded = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (warm_executor, executor_cold) = threaded.block_on(async {
        let t = Instant::now();
        let executor = JsExecutor::new(JsConfig::default())?;
        executor.load(source.clone()).await?;
        executor.run(job(0)).await?;
        let executor_cold = t.elapsed();
        for i in 0..1000 {
            executor.run(job(i)).await?;
        }
        let t = Instant::now();
        for i in 0..WARM_CALLS {
            executor.run(job(i)).await?;
        }
        Ok::<_, anyhow::Error>((t.elapsed() / WARM_CALLS as u32, executor_cold))
    })?;

    println!(
        "queuexec-js benchmark (engine: {}, {} cold samples, {} warm calls)",
        queuexec_js::ENGINE,
        COLD_SAMPLES,
        WARM_CALLS
    );
    println!(
        "  bare JsRuntime::new                          median {}",
        ms(bare_median)
    );
    println!(
        "  cold start: TaskRuntime new + load + 1st call median {}  ({:.2}x bare)",
        ms(cold_median),
        cold_median.as_secs_f64() / bare_median.as_secs_f64()
    );
    println!(
        "    of which: new {} + load task.js {} + first call {} (medians)",
        ms(median(&mut create)),
        ms(median(&mut load)),
        ms(median(&mut first))
    );
    println!(
        "  warm no-op call, runtime thread (TaskRuntime) mean   {}",
        us(warm_local)
    );
    println!(
        "  warm no-op job, JsExecutor::run              mean   {}",
        us(warm_executor)
    );
    println!(
        "  JsExecutor cold start (threads+load+1st job)        {}",
        ms(executor_cold)
    );
    Ok(())
}
