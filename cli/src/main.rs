//! The `queuexec` command-line tool: `setup`, `master`, `worker`, `relay`, `demo`, `bench`.

mod bench;
mod demo;
mod master_cmd;
mod pool;
mod relay_cmd;
mod seeds;
mod terminal;
mod tokens;
mod worker_cmd;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::field::MakeExt as _;

// Jobs are many small allocations across threads; glibc's allocator spent a fifth of the
// benchmark's time in malloc/free. mimalloc is well kept and made for this pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Spread jobs over other machines, peer to peer, encrypted end to end.
#[derive(Parser)]
#[command(name = "queuexec", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a fresh `token` and `transferEncryptToken` to .env (as queue-xec's --setup does).
    Setup {
        /// The env file to write.
        #[arg(long, value_name = "PATH")]
        env_file: Option<PathBuf>,
        /// Overwrite existing tokens without asking.
        #[arg(long)]
        force: bool,
    },
    /// Run a master: read jobs, hand them to workers, write their results.
    Master(master_cmd::MasterArgs),
    /// Run a worker: find the master, run its jobs.
    Worker(worker_cmd::WorkerArgs),
    /// Run a relay: the meeting point masters and workers behind NATs find each other through.
    Relay(relay_cmd::RelayArgs),
    /// One master and N local worker processes on loopback run M jobs.
    Demo(demo::DemoArgs),
    /// Measure no-op throughput and round-trip latency (1 master, N worker processes, loopback).
    Bench(bench::BenchArgs),
}

/// Token flags shared by master and worker.
#[derive(Args, Clone, Debug)]
pub(crate) struct TokenArgs {
    /// Room token (else env `token`, else .env); must not be empty.
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// Transfer token, at least 32 characters (else env `transferEncryptToken`, else .env).
    #[arg(long = "transfer-token")]
    pub(crate) transfer_token: Option<String>,
    /// The env file to read tokens from (default ./.env, which may be missing).
    #[arg(long, value_name = "PATH")]
    pub(crate) env_file: Option<PathBuf>,
}

impl TokenArgs {
    pub(crate) fn resolve(&self) -> Result<queuexec_core::config::Tokens> {
        tokens::resolve(
            self.token.as_deref(),
            self.transfer_token.as_deref(),
            self.env_file.as_deref(),
        )
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,queuexec=info,queuexec_core=info")
        });
    let ansi = terminal::colour_logs(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    // Log fields carry peer-supplied text (worker names, errors), also in the core's lines:
    // every field is written with its control characters escaped.
    let fields = tracing_subscriber::fmt::format::debug_fn(|out, field, value| {
        let text = format!("{value:?}");
        let text = terminal::escape_control(&text);
        if field.name() == "message" {
            write!(out, "{text}")
        } else {
            write!(out, "{}={text}", field.name())
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .fmt_fields(fields)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Worker(_) | Command::Demo(_)) {
        // The QuickJS backend would otherwise cache compiled task code under ~/.cache, outside
        // the workplace, growing with every task version a master ships.
        // SAFETY: no other thread exists yet; the runtime is built below.
        unsafe { std::env::set_var("V82JSC_NO_BC_CACHE", "1") };
    }
    init_logging();
    // One thread by default (`QUEUEXEC_THREADS`, see `queuexec_core::config::runtime_threads`):
    // the whole path of a job, this command's own loop included, runs with no cross-thread
    // wake-up. The relay always runs on one: it is light and bound by I/O, and one thread means
    // one allocator heap instead of one per thread (with 1,000 reservations: 50 MB on two
    // threads against 48 MB on one; see docs/relay.md).
    let threads = match queuexec_core::config::runtime_threads() {
        Ok(threads) => threads,
        Err(e) => {
            eprintln!("queuexec: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut builder = if threads == 1 || matches!(cli.command, Command::Relay(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("queuexec: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Setup { env_file, force } => tokens::setup(env_file, force),
            Command::Master(args) => master_cmd::run(args).await,
            Command::Worker(args) => worker_cmd::run(args).await,
            Command::Relay(args) => relay_cmd::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    // Worker child processes and executor threads must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queuexec: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
