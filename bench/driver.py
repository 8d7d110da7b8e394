"""Runs scripts/bench.sh's workloads S1-S6 on queuexec and its peers, prints the table, writes
bench/results.json and the S6 plot. Started by scripts/bench.sh (which installs the peers and
builds the release artifacts); run alone it expects them in place:

    bench/.venv/bin/python bench/driver.py [--quick] [--only S1,S3] [--out bench/results.json]

QUEUEXEC_BENCH_CLI names the release `queuexec` binary. Redis is started here, on a free
loopback port, with an append-only file (fsync every second) in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "bench" / "peers.js"

# Sizes of each workload: (quick, full).
SIZES = {
    "s1_jobs": (20_000, 100_000),
    "celery_jobs": (3_000, 10_000),
    "s2_samples": (500, 2_000),
    "s3_jobs": (100, 500),
    "s4_jobs": (200_000, 1_000_000),
    "s5_runs": (3, 7),
    "s6_jobs": (10_000, 40_000),
}

# The targets, as (scenario, what, comparison, bound), read by `targets()`.
TARGETS_DOC = """\
S1 queuexec-node >= 5x bullmq; queuexec-python >= 5x bullmq and >= 20x celery
S2 queuexec p50 <= 1.5x tcp-floor
S3 queuexec-node >= 4x bullmq and >= 30% of crypto-floor
S4 bytes per job <= 0.25x bullmq (Redis); enqueue >= 5x bullmq addBulk
S5 <= 50 ms"""


def log(*a: Any) -> None:
    print("[bench]", *a, file=sys.stderr, flush=True)


# ---- results: ratios, the table, the file ---------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def fmt_num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "not run"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.2f}{unit}"


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Each target of the issue with the measured ratio and whether it held (None: not measured)."""
    out: list[tuple[str, str, bool | None]] = []

    def check(name: str, value: float | None, ok: bool | None, shown: str) -> None:
        out.append((name, shown if value is not None else "not measured", ok if value is not None else None))

    s1, s2, s3, s4, s5 = (r.get(k, {}) for k in ("S1", "S2", "S3", "S4", "S5"))
    v = ratio(s1.get("queuexec-node"), s1.get("bullmq"))
    check("S1 Node workers >= 5x BullMQ", v, v is not None and v >= 5, fmt_ratio(v))
    v = ratio(s1.get("queuexec-python"), s1.get("bullmq"))
    check("S1 Python workers >= 5x BullMQ", v, v is not None and v >= 5, fmt_ratio(v))
    v = ratio(s1.get("queuexec-python"), s1.get("celery"))
    check("S1 Python workers >= 20x Celery", v, v is not None and v >= 20, fmt_ratio(v))
    floor = (s2.get("tcp-floor") or {}).get("p50")
    for who in ("queuexec-node", "queuexec-cli"):
        v = ratio((s2.get(who) or {}).get("p50"), floor)
        check(f"S2 {who} p50 <= 1.5x TCP floor", v, v is not None and v <= 1.5, fmt_ratio(v))
    v = ratio(s3.get("queuexec-node"), s3.get("bullmq"))
    check("S3 1 MiB payloads >= 4x BullMQ", v, v is not None and v >= 4, fmt_ratio(v))
    v = ratio(s3.get("queuexec-node"), s3.get("crypto-floor"))
    check("S3 >= 30% of the crypto floor", v, v is not None and v >= 0.30, "-" if v is None else f"{v * 100:.0f}%")
    qx4, bull4 = s4.get("queuexec-node") or {}, s4.get("bullmq") or {}
    v = ratio(qx4.get("bytes_per_job"), bull4.get("bytes_per_job"))
    check("S4 memory per job <= 0.25x Redis", v, v is not None and v <= 0.25, fmt_ratio(v))
    v = ratio(qx4.get("enqueue_per_s"), bull4.get("enqueue_per_s"))
    check("S4 enqueue >= 5x addBulk", v, v is not None and v >= 5, fmt_ratio(v))
    v = (s5.get("queuexec-cli") or {}).get("join_to_result_ms")
    check("S5 join -> first job <= 50 ms (CLI worker)", v, v is not None and v <= 50, fmt_num(v, " ms"))
    return out


def table(r: dict[str, Any]) -> str:
    """The measured table (Markdown), ratios against the named peer."""
    rows: list[tuple[str, str, str, str]] = []
    s1 = r.get("S1", {})
    for who in ("queuexec-cli", "queuexec-node", "queuexec-python", "bullmq", "celery", "piscina"):
        if who in s1:
            vs = "celery" if who == "queuexec-python" else "bullmq"
            extra = f"{fmt_ratio(ratio(s1[who], s1.get('bullmq')))} BullMQ"
            if who == "queuexec-python":
                extra += f", {fmt_ratio(ratio(s1[who], s1.get(vs)))} Celery"
            rows.append(("S1 no-op jobs/s, 2 worker processes", who, fmt_num(s1[who]), extra))
    s2 = r.get("S2", {})
    floor = (s2.get("tcp-floor") or {}).get("p50")
    for who, v in s2.items():
        rows.append(
            (
                "S2 push -> result p50 / p99 (us)",
                who,
                f"{fmt_num(v.get('p50'))} / {fmt_num(v.get('p99'))}",
                f"p50 {fmt_ratio(ratio(v.get('p50'), floor))} TCP floor",
            )
        )
    s3 = r.get("S3", {})
    for who, v in s3.items():
        rows.append(
            (
                "S3 1 MiB payloads, MB/s",
                who,
                fmt_num(v),
                f"{fmt_ratio(ratio(v, s3.get('bullmq')))} BullMQ, "
                f"{100 * (ratio(v, s3.get('crypto-floor')) or 0):.0f}% of floor",
            )
        )
    s4 = r.get("S4", {})
    bull4 = s4.get("bullmq") or {}
    for who, v in s4.items():
        rows.append(
            (
                f"S4 {v.get('jobs', 0):,} durable queued jobs: enqueue/s, bytes/job",
                who,
                f"{fmt_num(v.get('enqueue_per_s'))} / {fmt_num(v.get('bytes_per_job'))}",
                f"{fmt_ratio(ratio(v.get('enqueue_per_s'), bull4.get('enqueue_per_s')))} enqueue, "
                f"{fmt_ratio(ratio(v.get('bytes_per_job'), bull4.get('bytes_per_job')))} memory",
            )
        )
    for who, v in r.get("S5", {}).items():
        rows.append(
            (
                "S5 join -> first job (ms)",
                who,
                fmt_num(v.get("join_to_result_ms")),
                f"process start -> first result {fmt_num(v.get('spawn_to_result_ms'))} ms",
            )
        )
    s6 = r.get("S6", {})
    for who, by_count in s6.items():
        if isinstance(by_count, dict):
            shown = ", ".join(f"{k}: {fmt_num(v)}" for k, v in sorted(by_count.items()))
            rows.append(("S6 jobs/s by worker processes", who, shown, f"plot {s6.get('plot', '-')}"))
    lines = ["| workload | system | measured | ratio |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines.append("")
    lines.append("| target | measured | held |")
    lines.append("| --- | --- | --- |")
    for name, shown, ok in targets(r):
        lines.append(f"| {name} | {shown} | {'-' if ok is None else ('yes' if ok else 'NO')} |")
    return "\n".join(lines)


def write_results(r: dict[str, Any], path: Path) -> None:
    """bench/results.json: {"S1": {...}, ..., "S6": {...}}, numbers only (no NaN)."""
    shaped = {k: r.get(k, {}) for k in ("S1", "S2", "S3", "S4", "S5", "S6")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(shaped, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def plot_s6(s6: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for who, by_count in s6.items():
        if not isinstance(by_count, dict):
            continue
        xs = sorted(int(k) for k in by_count)
        ax.plot(xs, [by_count[str(x)] for x in xs], marker="o", label=who)
    ax.set_xlabel("worker processes (2 cores)")
    ax.set_ylabel("no-op jobs/s")
    ax.set_yscale("log")
    ax.set_xticks([1, 2, 3, 4])
    ax.set_title("S6: throughput against worker count")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---- running things ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node(workload: str, *args: Any, timeout: float = 900) -> dict[str, Any]:
    cmd = ["node", str(PEERS), workload, *map(str, args)]
    log(" ".join(cmd[1:]))
    out = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=timeout, check=False, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{workload} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_bench(cli: str, workers: int, jobs: int, samples: int) -> dict[str, float]:
    cmd = [cli, "bench", "--workers", str(workers), "--jobs", str(jobs), "--samples", str(samples), "--store", "sqlite"]
    log(" ".join(cmd[1:]))
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=900, check=True, text=True)
    thr = re.search(r"([\d.]+) jobs/s", out.stdout)
    rtt = re.search(r"p50 (\d+) us, p90 (\d+) us, p99 (\d+) us", out.stdout)
    if not thr or not rtt:
        raise RuntimeError(f"unexpected output of queuexec bench: {out.stdout!r}")
    return {"perSecond": float(thr.group(1)), "p50": float(rtt.group(1)), "p99": float(rtt.group(3))}


class Redis:
    """A redis-server of this run: loopback, its own port and folder, AOF with fsync every second."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="qx-bench-redis-"))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--logfile",
                str(self.dir / "log"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start (see {self.dir / 'log'})")
            time.sleep(0.05)
        self.addr = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


PY_WORKER = """
import queuexec, sys
queuexec.Worker(tasks={"noop": lambda job: None}, concurrency=int(sys.argv[1]), name=sys.argv[2]).run()
"""


def python_s1(jobs: int, workers: int, concurrency: int = 64) -> float:
    """Jobs/s through a Python master (SQLite store) and `workers` Python worker processes, each
    running up to `concurrency` jobs at once (64, as the Node and BullMQ workers here)."""
    import queuexec

    scratch = Path(tempfile.mkdtemp(prefix="qx-bench-py-"))
    env = {
        **os.environ,
        "QUEUEXEC_ROOM_DIR": str(scratch / "rooms"),
        "QUEUEXEC_MDNS": "0",
        "token": secrets.token_hex(12),
        "transferEncryptToken": secrets.token_hex(16),
    }
    procs: list[subprocess.Popen[bytes]] = []
    saved = {k: os.environ.get(k) for k in ("QUEUEXEC_ROOM_DIR", "token", "transferEncryptToken")}
    os.environ.update({k: env[k] for k in saved})
    try:
        with queuexec.Master(store=scratch / "jobs.sqlite") as master:
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", PY_WORKER, str(concurrency), f"py-{i}"],
                    cwd=scratch,
                    env=env,
                    stderr=subprocess.DEVNULL,
                )
                for i in range(workers)
            ]
            deadline = time.monotonic() + 60
            while master.stats().workers < workers:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError("the Python workers did not join")
                time.sleep(0.02)
            master.push_many(queuexec.JobSpec(n, type="noop") for n in range(200))
            seen = 0
            for _ in master.results(timeout=60):
                seen += 1
                if seen == 200:
                    break
            started = time.perf_counter()
            for first in range(0, jobs, 5000):
                master.push_many(queuexec.JobSpec(n, type="noop") for n in range(first, min(first + 5000, jobs)))
            seen = 0
            for result in master.results(timeout=120):
                if not result.ok:
                    raise RuntimeError(f"job {result.job_id} failed: {result.error}")
                seen += 1
                if seen == jobs:
                    break
            return jobs / (time.perf_counter() - started)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(scratch, ignore_errors=True)


CELERY_APP = """
import os
from celery import Celery
app = Celery("qxbench", broker=os.environ["BROKER"], backend=os.environ["BACKEND"])
app.conf.update(worker_prefetch_multiplier=64, task_acks_late=False, result_expires=600)

@app.task
def noop(n):
    return None
"""


def celery_s1(redis: Redis, jobs: int) -> float:
    """Jobs/s through Celery, prefork pool of 2, Redis broker and result backend."""
    scratch = Path(tempfile.mkdtemp(prefix="qx-bench-celery-"))
    (scratch / "qxbench_app.py").write_text(CELERY_APP)
    env = {
        **os.environ,
        "BROKER": f"redis://{redis.addr}/1",
        "BACKEND": f"redis://{redis.addr}/2",
        "PYTHONPATH": str(scratch),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "qxbench_app",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "warning",
        ],
        cwd=scratch,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sys.path.insert(0, str(scratch))
    os.environ["BROKER"], os.environ["BACKEND"] = env["BROKER"], env["BACKEND"]
    try:
        import qxbench_app
        from celery import group

        deadline = time.monotonic() + 60
        while not qxbench_app.app.control.ping(timeout=0.5):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the Celery worker did not start")
        group(qxbench_app.noop.s(n) for n in range(100)).apply_async().get(timeout=60)
        started = time.perf_counter()
        group(qxbench_app.noop.s(n) for n in range(jobs)).apply_async().get(timeout=900)
        return jobs / (time.perf_counter() - started)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
        sys.path.remove(str(scratch))
        shutil.rmtree(scratch, ignore_errors=True)


def openssl_rate(algorithm: str) -> float:
    """Bytes/s of `openssl speed -evp ALGORITHM` on 1 MiB blocks, one core."""
    out = subprocess.run(
        ["openssl", "speed", "-evp", algorithm, "-bytes", "1048576", "-seconds", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    last = [line for line in out.splitlines() if line.strip()][-1]
    return float(last.split()[-1].rstrip("k")) * 1000


def crypto_floor() -> float:
    """MB/s of AES-256-CBC then HMAC-SHA256 over the same bytes, one core (openssl speed)."""
    aes, sha = openssl_rate("aes-256-cbc"), openssl_rate("sha256")
    return 1 / (1 / aes + 1 / sha) / 1e6


# ---- the scenarios ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer jobs and samples (a few minutes)")
    parser.add_argument("--only", default="S1,S2,S3,S4,S5,S6", help="scenarios to run, e.g. S1,S3")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    size = {k: v[0] if args.quick else v[1] for k, v in SIZES.items()}
    only = {s.strip().upper() for s in args.only.split(",")}
    import queuexec

    if queuexec._native.__build_profile__ != "release":
        raise SystemExit(
            f"bench: {queuexec._native.__file__} is a {queuexec._native.__build_profile__} build; "
            "scripts/bench.sh puts the release wheel in place (scripts/test.sh installs a debug one)"
        )
    cli = os.environ.get("QUEUEXEC_BENCH_CLI") or str(ROOT / "target" / "release" / "queuexec")
    os.environ["QUEUEXEC_BENCH_CLI"] = cli
    os.environ.setdefault("LOG_LEVEL", "warn")
    r: dict[str, Any] = {}
    if args.out.exists():
        try:  # scenarios not run this time keep their last figures
            r = json.loads(args.out.read_text())
        except ValueError:
            r = {}
    redis = Redis()
    rd = ("--redis", redis.addr)
    started = time.monotonic()
    try:
        if "S1" in only:
            n = size["s1_jobs"]
            s1: dict[str, Any] = {}
            s1["queuexec-cli"] = cli_bench(cli, 2, n, 50)["perSecond"]
            s1["queuexec-node"] = node("qx-s1", "--jobs", n, "--workers", 2)["perSecond"]
            s1["queuexec-python"] = python_s1(n, 2)
            s1["bullmq"] = node("bullmq-s1", "--jobs", n, "--workers", 2, *rd)["perSecond"]
            s1["celery"] = celery_s1(redis, size["celery_jobs"])
            s1["piscina"] = node("piscina-s1", "--jobs", n)["perSecond"]
            r["S1"] = s1
            write_results(r, args.out)
        if "S2" in only:
            k = size["s2_samples"]
            cli2 = cli_bench(cli, 1, 2000, k)
            s2 = {"queuexec-cli": {"p50": cli2["p50"], "p99": cli2["p99"]}}
            for who, workload, extra in (
                ("queuexec-node", "qx-s2", ()),
                ("bullmq", "bullmq-s2", rd),
                ("tcp-floor", "tcp-s2", ()),
            ):
                v = node(workload, "--samples", k, *extra)
                s2[who] = {"p50": v["p50"], "p99": v["p99"]}
            r["S2"] = s2
            write_results(r, args.out)
        if "S3" in only:
            n = size["s3_jobs"]
            r["S3"] = {
                "queuexec-node": node("qx-s3", "--jobs", n)["MBps"],
                "bullmq": node("bullmq-s3", "--jobs", n, *rd)["MBps"],
                "crypto-floor": crypto_floor(),
            }
            write_results(r, args.out)
        if "S4" in only:
            n = size["s4_jobs"]
            qx = node("qx-s4", "--jobs", n, timeout=1800)
            bull = node("bullmq-s4", "--jobs", n, *rd, timeout=1800)
            r["S4"] = {
                who: {"jobs": v["jobs"], "enqueue_per_s": v["perSecond"], "bytes_per_job": v["bytesPerJob"]}
                for who, v in (("queuexec-node", qx), ("bullmq", bull))
            }
            write_results(r, args.out)
        if "S5" in only:
            s5 = {}
            for kind in ("cli", "node"):
                v = node("qx-s5", "--kind", kind, "--runs", size["s5_runs"])
                s5[f"queuexec-{kind}"] = {
                    "join_to_result_ms": v["joinToResultMs"],
                    "spawn_to_result_ms": v["spawnToResultMs"],
                }
            r["S5"] = s5
            write_results(r, args.out)
        if "S6" in only:
            n = size["s6_jobs"]
            s6: dict[str, Any] = {"queuexec-cli": {}, "queuexec-node": {}, "bullmq": {}}
            for w in (1, 2, 3, 4):
                s6["queuexec-cli"][str(w)] = cli_bench(cli, w, n * 4, 10)["perSecond"]
                s6["queuexec-node"][str(w)] = node("qx-s1", "--jobs", n, "--workers", w)["perSecond"]
                s6["bullmq"][str(w)] = node("bullmq-s1", "--jobs", n, "--workers", w, *rd)["perSecond"]
            plot = args.out.parent / "s6.png"
            plot_s6(s6, plot)
            s6["plot"] = str(plot.relative_to(ROOT)) if plot.is_relative_to(ROOT) else str(plot)
            r["S6"] = s6
            write_results(r, args.out)
    finally:
        redis.stop()
    log(f"done in {time.monotonic() - started:.0f} s; {args.out}")
    print(table(r))
    print()
    print(
        f"(scripts/bench.sh{' --quick' if args.quick else ''}: one run; 2 worker processes unless said; "
        "SQLite store (WAL) for queuexec, Redis with appendfsync everysec for BullMQ and Celery)"
    )


if __name__ == "__main__":
    main()
