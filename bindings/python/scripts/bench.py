"""Throughput of the Python wheel, side by side with the CLI workers.

Measures, on loopback:
  1. ``Master.push`` calls per second from Python (in-memory and SQLite stores), and
     ``push_many`` jobs per second;
  2. end-to-end no-op jobs per second: a Python master, two Python worker processes whose task
     returns the job's data;
  3. the same run with two ``queuexec worker --builtin echo`` processes (the CLI) as workers.

Build both in release mode first for figures worth quoting:

    cargo build --release -p queuexec-cli
    (cd bindings/python && maturin develop --release)      # inside a virtualenv
    python bindings/python/scripts/bench.py --cli target/release/queuexec
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import queuexec

PY_WORKER = """
import queuexec
queuexec.Worker(tasks={"noop": lambda job: job.data}, concurrency=int(__import__("sys").argv[1]),
                name=__import__("sys").argv[2]).run()
"""


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f}/s  ({count} in {seconds:.2f} s)"


def bench_push(count: int, store: Path | None) -> float:
    with queuexec.Master(store=store, announce=False) as master:
        started = time.perf_counter()
        for n in range(count):
            master.push(n)
        return time.perf_counter() - started


def bench_push_many(count: int, batch: int, store: Path | None) -> float:
    with queuexec.Master(store=store, announce=False) as master:
        started = time.perf_counter()
        for first in range(0, count, batch):
            master.push_many(range(first, min(first + batch, count)))
        return time.perf_counter() - started


def end_to_end(jobs: int, start_worker: Callable[[int], subprocess.Popen[bytes]], workers: int) -> float:
    """Seconds from the first push to the last result, with `workers` worker processes."""
    procs: list[subprocess.Popen[bytes]] = []
    with queuexec.Master() as master:
        try:
            procs = [start_worker(i) for i in range(workers)]
            deadline = time.monotonic() + 60
            while master.stats().workers < workers:
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not join within 60 s")
                if any(p.poll() is not None for p in procs):
                    raise SystemExit("a worker process exited early")
                time.sleep(0.05)
            started = time.perf_counter()
            for first in range(0, jobs, 2000):
                master.push_many(queuexec.JobSpec(n, type="noop") for n in range(first, min(first + 2000, jobs)))
            seen = 0
            for result in master.results(timeout=120):
                if not result.ok:
                    raise SystemExit(f"job {result.job_id} failed: {result.error}")
                seen += 1
                if seen == jobs:
                    break
            return time.perf_counter() - started
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=20_000, help="push() calls to time")
    parser.add_argument("--jobs", type=int, default=20_000, help="no-op jobs per end-to-end run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    parser.add_argument("--cli", type=Path, help="the queuexec binary (default: target/release, target/debug, PATH)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="queuexec-bench-"))
    os.environ["QUEUEXEC_ROOM_DIR"] = str(scratch / "rooms")
    os.environ.setdefault("token", secrets.token_hex(12))
    os.environ.setdefault("transferEncryptToken", secrets.token_hex(16))
    os.chdir(scratch)
    profile = queuexec._native.__build_profile__
    print(f"queuexec {queuexec.__version__} ({profile} build), Python {sys.version.split()[0]}")

    print("push from Python, one job per call:")
    print(f"  memory store  push()        {rate(args.pushes, bench_push(args.pushes, None))}")
    sqlite_pushes = max(args.pushes // 4, 1)
    print(f"  SQLite store  push()        {rate(sqlite_pushes, bench_push(sqlite_pushes, scratch / 'p.sqlite'))}")
    many = args.pushes * 5
    print(f"  memory store  push_many(1000) {rate(many, bench_push_many(many, 1000, None))}")
    print(f"  SQLite store  push_many(1000) {rate(many, bench_push_many(many, 1000, scratch / 'm.sqlite'))}")

    def python_worker(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", PY_WORKER, str(args.concurrency), f"py-{i}"],
            cwd=scratch,
            stderr=subprocess.DEVNULL,
        )

    print(f"end to end, Python master, {args.workers} worker processes x concurrency {args.concurrency}, no-op jobs:")
    print(f"  Python workers              {rate(args.jobs, end_to_end(args.jobs, python_worker, args.workers))}")

    root = Path(__file__).resolve().parents[3]
    cli = args.cli
    for candidate in (root / "target/release/queuexec", root / "target/debug/queuexec"):
        if cli is None and candidate.exists():
            cli = candidate
    if cli is None and shutil.which("queuexec"):
        cli = Path(str(shutil.which("queuexec")))
    if cli is None:
        print("  CLI workers                 skipped: no queuexec binary (cargo build --release -p queuexec-cli)")
        return
    cli = cli.resolve()

    def cli_worker(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(cli), "worker", "--builtin", "echo", "--concurrency", str(args.concurrency), "--name", f"cli-{i}"],
            cwd=scratch,
            stderr=subprocess.DEVNULL,
        )

    print(f"  CLI workers ({cli.parent.name})    {rate(args.jobs, end_to_end(args.jobs, cli_worker, args.workers))}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
