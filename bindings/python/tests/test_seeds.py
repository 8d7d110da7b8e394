"""What users of the seed systems rely on (issue 12): cancel, pull-based producers. The master
runs in this process; its workers are separate Python processes."""

from __future__ import annotations

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
def square(job):
    return {"n": job.data, "square": job.data * job.data}
worker = queuexec.Worker(token=sys.argv[1], transfer_encrypt_token=sys.argv[2],
                         tasks={"square": square}, concurrency=2, name=sys.argv[3])
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
        tasks = [queuexec.JobSpec(i, type="square", id=f"t{i}") for _, i in zip(range(n), produced)]
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
