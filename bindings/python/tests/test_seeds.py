"""What users of the seed systems rely on (issue 12): cancel, pull-based producers. The master
runs in this process; its workers are separate Python processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import queuexec

from helpers import collect, wait_until

MakeMaster = Callable[..., queuexec.Master]
CANCELLED = "the job was cancelled (cancel() on the master)"

CANCEL_WORKER_SCRIPT = """
import asyncio, os, sys, queuexec
marks = sys.argv[3]
async def hang(job):
    open(os.path.join(marks, f"started-{job.id}"), "w").close()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        open(os.path.join(marks, f"cancelled-{job.id}"), "w").close()
        raise
def square(job):
    open(os.path.join(marks, f"started-{job.id}"), "w").close()
    return job.data * job.data
worker = queuexec.Worker(token=sys.argv[1], transfer_encrypt_token=sys.argv[2],
                         tasks={"hang": hang, "square": square}, concurrency=1, name="py_worker")
print("starting", flush=True)
worker.run()
"""


def worker_process(tokens: dict[str, str], script: str, *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, tokens["token"], tokens["transfer_encrypt_token"], *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


@pytest.mark.timeout(90)
def test_cancel_ends_running_delayed_and_queued_jobs(
    tokens: dict[str, str], open_master: MakeMaster, isolated: Path
) -> None:
    marks = isolated / "marks"
    marks.mkdir()
    master = open_master()
    proc = worker_process(tokens, CANCEL_WORKER_SCRIPT, str(marks), cwd=isolated)
    try:
        master.push(None, type="hang", id="hang")
        master.push(2, type="square", id="later", delay=60)
        wait_until(lambda: (marks / "started-hang").exists(), timeout=30, what="the hanging job to start")
        master.push(3, type="square", id="queued", priority=-1)
        assert master.cancel("hang") == 1
        # The async task got asyncio.CancelledError in the worker process.
        wait_until(lambda: (marks / "cancelled-hang").exists(), timeout=10, what="the task's cancellation")
        assert master.cancel("later") == 1
        assert master.cancel("later") == 0
        assert master.cancel("no such job") == 0
        master.push(4, type="square", id="after")
        results = collect(master, 4, timeout=30)
        assert results["hang"].error == CANCELLED
        assert results["later"].error == CANCELLED
        assert not (marks / "started-later").exists()
        assert results["queued"].data == 9 and results["queued"].worker.name == "py_worker"
        assert results["after"].data == 16
        stats = master.stats()
        assert (stats.dead, stats.done, stats.queued, stats.running, stats.delayed) == (2, 2, 0, 0, 0)
        with pytest.raises(TypeError, match="cancel takes a job id"):
            master.cancel("")  # type: ignore[arg-type]
    finally:
        stop(proc)


SQUARE_WORKER_SCRIPT = """
import sys, queuexec
def square(job, ctx):
    ctx.metric("pages", 2)
    return {"n": job.data, "square": job.data * job.data}
worker = queuexec.Worker(token=sys.argv[1], transfer_encrypt_token=sys.argv[2],
                         tasks={"square": square}, concurrency=2, name=sys.argv[3], stats_interval=0.1)
print("starting", flush=True)
worker.run()
"""


@pytest.mark.timeout(120)
def test_get_tasks_and_handle_results_pull_in_batches_until_the_end(
    tokens: dict[str, str], open_master: MakeMaster, isolated: Path
) -> None:
    total, size = 600, 20
    produced = iter(range(total))
    asked: list[int] = []
    batches: list[list[queuexec.JobResult]] = []
    seen: list[str] = []
    lock = threading.Lock()
    outstanding: list[int] = []
    made = [0]

    def get_tasks(n: int) -> list[queuexec.JobSpec]:
        asked.append(n)
        tasks = [queuexec.JobSpec(i, type="square", id=f"t{i}") for _, i in zip(range(n), produced, strict=False)]
        made[0] += len(tasks)
        with lock:
            outstanding.append(made[0] - len(seen))
        return tasks

    def on_result(result: queuexec.JobResult) -> None:
        with lock:
            seen.append(result.job_id)

    master = open_master(get_tasks=get_tasks, handle_results=batches.append, batch_size=size, on_result=on_result)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SQUARE_WORKER_SCRIPT, tokens["token"], tokens["transfer_encrypt_token"], f"py_{i}"],
            cwd=isolated,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    try:
        assert master.wait_end(timeout=90), f"no end: {len(seen)} results of {total}"
        results = [r for batch in batches for r in batch]
        assert sorted(r.job_id for r in results) == sorted(f"t{i}" for i in range(total))
        assert all(r.data == {"n": int(r.job_id[1:]), "square": int(r.job_id[1:]) ** 2} for r in results)
        assert all(1 <= len(b) <= size for b in batches)
        assert all(len(b) == size for b in batches[:-1])
        assert set(asked) == {size}
        assert max(outstanding) <= 3 * size, f"at most three batches outstanding, saw {max(outstanding)}"
        assert {r.worker.name for r in results} == {"py_1", "py_2"}
        assert len(seen) == total  # on_result still sees each
    finally:
        for proc in procs:
            stop(proc)


def test_an_empty_producer_ends_at_once_and_bad_options_are_refused(open_master: MakeMaster) -> None:
    master = open_master(get_tasks=lambda n: [])
    assert master.wait_end(timeout=10)
    with pytest.raises(queuexec.ConfigError, match="handle_results needs get_tasks"):
        open_master(handle_results=print)
    with pytest.raises(queuexec.ConfigError, match="batch_size must be a whole number"):
        open_master(get_tasks=lambda n: [], batch_size=0)
    with pytest.raises(queuexec.ConfigError, match="wait_end needs get_tasks"):
        open_master().wait_end(0.1)
    with pytest.raises(queuexec.ConfigError, match="handle_results"):
        next(master.results(timeout=0.1))


LOOKUP_WORKER_SCRIPT = """
import os, sys, queuexec
def sync_task(job, ctx):
    # A plain function: the context's calls block and return the answer.
    fruit = ctx.lookup("fruits", job.data["fruit"])
    ctx.set_lookup("seen", str(job.data["n"]), {"pid": os.getpid(), "fruit": fruit})
    reply = ctx.request("double", {"n": job.data["n"]})
    try:
        ctx.request("explode", None)
        refused = None
    except queuexec.MasterCallError as e:
        refused = str(e)
    return {"fruit": fruit, "reply": reply, "refused": refused, "missing": ctx.lookup("fruits", "zzz")}
async def async_task(job, ctx):
    # An async function: the same calls are awaitables.
    fruit = await ctx.lookup("fruits", job.data["fruit"])
    await ctx.set_lookup("seen", str(job.data["n"]), {"pid": os.getpid(), "fruit": fruit})
    reply = await ctx.request("double", {"n": job.data["n"]})
    return {"fruit": fruit, "reply": reply, "refused": None, "missing": None}
def on_event(event):
    if event.kind == "message":
        print(f"message {event.cmd} {event.data}", flush=True)
    elif event.kind == "aborted":
        print("aborted", flush=True)
worker = queuexec.Worker(token=sys.argv[1], transfer_encrypt_token=sys.argv[2], name=sys.argv[3],
                         tasks={"sync": sync_task, "async": async_task}, concurrency=2, on_event=on_event)
worker.run()  # returns when the master aborts
print("stopped", flush=True)
"""


@pytest.mark.timeout(120)
def test_lookups_messages_and_abort_across_processes(
    tokens: dict[str, str], open_master: MakeMaster, isolated: Path
) -> None:
    asked: list[tuple[str, dict[str, object]]] = []

    def on_worker_message(worker_id: str, msg: dict[str, object]) -> object:
        asked.append((worker_id, msg))
        if msg["cmd"] == "double":
            return {"twice": msg["data"]["n"] * 2}  # type: ignore[index]
        raise ValueError(f"no such command {msg['cmd']}")

    results: list[queuexec.JobResult] = []
    master = open_master(
        lookups={"fruits": {"a": "apple", "b": "banana"}},
        on_worker_message=on_worker_message,
        on_result=results.append,
    )
    assert master.get_lookup_value("fruits", "a") == "apple"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOOKUP_WORKER_SCRIPT, tokens["token"], tokens["transfer_encrypt_token"], f"py_{i}"],
            cwd=isolated,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    try:
        wait_until(lambda: master.stats().workers == 2, timeout=30, what="two workers")
        n_jobs = 24
        master.push_many(
            [
                queuexec.JobSpec(
                    {"n": n, "fruit": "a" if n % 2 else "b"}, type="async" if n % 3 == 0 else "sync", id=f"j{n}"
                )
                for n in range(n_jobs)
            ]
        )
        wait_until(lambda: len(results) >= n_jobs, timeout=60, what=f"{n_jobs} results")
        for r in results:
            assert r.ok, r.error
            n = int(r.job_id[1:])
            assert r.data["fruit"] == ("apple" if n % 2 else "banana")
            assert r.data["reply"] == {"twice": 2 * n}
            assert r.data["missing"] is None
            if n % 3:
                assert "no such command explode" in r.data["refused"]
        assert len(master.lookups["seen"]) == n_jobs
        assert len({v["pid"] for v in master.lookups["seen"].values()}) == 2
        assert {r.worker.name for r in results} == {"py_1", "py_2"}
        one = next(r.worker.id for r in results if r.worker.name == "py_1")
        assert master.send_message_to_worker(one, "only", {"x": 1})
        assert not master.send_message_to_worker("12D3KooWnobody", "only", None)
        assert master.broadcast("all", [1, 2]) == 2
        assert master.abort() == 2
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
            outs.append(out)
        assert "message only {'x': 1}" in outs[0] and "message only" not in outs[1]
        assert all("message all [1, 2]" in out and "aborted" in out and "stopped" in out for out in outs)
    finally:
        for proc in procs:
            stop(proc)


@pytest.mark.timeout(90)
def test_stats_reports_aggregate_the_workers_counters(
    tokens: dict[str, str], open_master: MakeMaster, isolated: Path
) -> None:
    reports: list[dict] = []

    def on_event(event: object) -> None:
        if isinstance(event, queuexec.events.StatsEvent):
            reports.append(event.report)

    results: list[queuexec.JobResult] = []
    master = open_master(stats_interval=0.2, on_event=on_event, on_result=results.append)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SQUARE_WORKER_SCRIPT, tokens["token"], tokens["transfer_encrypt_token"], f"py_{i}"],
            cwd=isolated,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    try:
        wait_until(lambda: master.stats().workers == 2, timeout=30, what="two workers")
        n_jobs = 30
        master.push_many([queuexec.JobSpec(n, type="square") for n in range(n_jobs)])
        wait_until(lambda: len(results) >= n_jobs, timeout=60, what="the results")
        wait_until(
            lambda: any(r["agg"]["last"].get("jobsDone") == n_jobs for r in reports), timeout=20, what="a full report"
        )
        full = next(r for r in reports if r["agg"]["last"]["jobsDone"] == n_jobs)
        assert full["agg"]["last"]["pages"] == 2 * n_jobs
        assert full["agg"]["last"]["jobsFailed"] == 0
        assert len(full["raw"]) == 2
        assert {line["name"] for line in full["raw"].values()} == {"py_1", "py_2"}
        assert all(line["timeSpan"] > 0 for line in full["raw"].values())
        assert sum(r["agg"]["diff"]["jobsDone"] for r in reports) == reports[-1]["agg"]["last"]["jobsDone"]
    finally:
        for proc in procs:
            stop(proc)


LOCAL_TASKS = """
import os, signal, time
def square(job):
    marker = os.path.join(os.environ["QX_MARK_DIR"], f"crashed-{job.id}")
    if job.data == 5 and not os.path.exists(marker):
        # The first worker to get job 5 dies holding it: the pool starts another.
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.02)
    return {"n": job.data, "square": job.data * job.data, "pid": os.getpid()}
TASKS = {"square": square}
"""


@pytest.mark.timeout(120)
def test_local_workers_restart_a_crashed_one_and_leave_when_drained(
    open_master: MakeMaster, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated / "seedtasks.py").write_text(LOCAL_TASKS)
    marks = isolated / "marks"
    marks.mkdir()
    monkeypatch.setenv("QX_MARK_DIR", str(marks))
    exits: list[queuexec.events.WorkerExit] = []
    results: list[queuexec.JobResult] = []

    def on_event(event: object) -> None:
        if isinstance(event, queuexec.events.WorkerExit):
            exits.append(event)

    master = open_master(
        local_workers=2,
        local_worker_tasks="seedtasks:TASKS",
        exit_when_drained=True,
        worker_options={"concurrency": 1},
        on_event=on_event,
        on_result=results.append,
    )
    n_jobs = 30
    master.push_many([queuexec.JobSpec(n, type="square", id=str(n)) for n in range(n_jobs)])
    wait_until(lambda: len(results) >= n_jobs, timeout=90, what="every result")
    assert sorted(int(r.job_id) for r in results) == list(range(n_jobs))
    assert all(r.ok and r.data["square"] == r.data["n"] ** 2 for r in results)
    pids = {r.data["pid"] for r in results}
    assert len(pids) >= 2 and os.getpid() not in pids
    crashed_pid = int((marks / "crashed-5").read_text())
    wait_until(lambda: any(e.type == "worker_crash" for e in exits), timeout=10, what="the crash report")
    crash = next(e for e in exits if e.type == "worker_crash")
    assert (crash.pid, crash.signal, crash.code) == (crashed_pid, "SIGKILL", None)
    wait_until(lambda: sum(e.code == 0 for e in exits) == 2, timeout=30, what="the local workers to leave")
    assert master.local_worker_pids() == {}


@pytest.mark.timeout(150)
def test_the_python_distributo_example_prints_its_documented_output(tokens: dict[str, str], isolated: Path) -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "distributo-python" / "master.py"
    env = dict(os.environ)
    env["token"] = tokens["token"]
    env["transferEncryptToken"] = tokens["transfer_encrypt_token"]
    out = subprocess.run([sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=140)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line]
    received = [line for line in lines if line.startswith("Results received:")]
    assert received and all(line == "Results received: 5" for line in received[:-1]), received
    words = [line.strip() for line in lines if line.startswith("  ")]
    assert len(words) == 16
    assert "banana: 3 vowels" in " ".join(words)
    assert {w.rsplit("worker ", 1)[1].rstrip(")") for w in words} == {"local_1", "local_2"}
    assert lines[-1] == "All 16 results handled"


BATCH_WORKER_SCRIPT = """
import os, sys, queuexec
def words(jobs):
    # Distributo's processTasks: a list of jobs in, one result per job out.
    return [{"word": job.data, "upper": job.data.upper(), "batch": len(jobs), "pid": os.getpid()} for job in jobs]
worker = queuexec.Worker(token=sys.argv[1], transfer_encrypt_token=sys.argv[2], name=sys.argv[3],
                         tasks={"words": queuexec.batch(words, window=0.02)}, concurrency=4, prefetch=4)
worker.run()
"""


@pytest.mark.timeout(90)
def test_batch_tasks_get_the_jobs_that_start_together_in_one_call(
    tokens: dict[str, str], open_master: MakeMaster, isolated: Path
) -> None:
    master = open_master()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BATCH_WORKER_SCRIPT, tokens["token"], tokens["transfer_encrypt_token"], f"py_{i}"],
            cwd=isolated,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    try:
        wait_until(lambda: master.stats().workers == 2, timeout=30, what="two workers")
        words = [f"w{i}" for i in range(40)]
        master.push_many([queuexec.JobSpec(w, type="words", id=w) for w in words])
        results = collect(master, len(words), timeout=60)
        assert all(results[w].data["upper"] == w.upper() for w in words)
        sizes = [r.data["batch"] for r in results.values()]
        assert max(sizes) > 1 and max(sizes) <= 4, sizes
        assert {r.worker.name for r in results.values()} == {"py_1", "py_2"}
    finally:
        for proc in procs:
            stop(proc)
    with pytest.raises(queuexec.ConfigError, match="batch takes a function"):
        queuexec.batch(42)  # type: ignore[arg-type]
