"""A Python master and Python workers in one process: tasks by type, plain and async functions,
errors, retries, and every result exactly once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import queuexec

from helpers import collect, wait_until

MakeMaster = Callable[..., queuexec.Master]
MakeWorker = Callable[..., queuexec.Worker]


def double(job: queuexec.Job) -> dict[str, Any]:
    return {"doubled": job.data["x"] * 2, "id": job.id, "type": job.type}


async def slow_square(job: queuexec.Job) -> int:
    await asyncio.sleep(0.01)
    return int(job.data["x"]) ** 2


def broken(job: queuexec.Job) -> None:
    raise ValueError(f"cannot handle {job.data!r}")


def test_tasks_are_chosen_by_type_and_results_come_back(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master()
    open_worker(tasks={"double": double, "square": slow_square, "broken": broken}, name="py-1")
    a = master.push({"x": 21}, type="double")
    b = master.push({"x": 12}, type="square")
    c = master.push("oops", type="broken", retries=0)
    d = master.push({"x": 1}, type="unknown", retries=0)
    results = collect(master, 4)

    assert results[a].ok and results[a].data == {"doubled": 42, "id": a, "type": "double"}
    assert results[a].worker.name == "py-1" and results[a].worker.id
    assert results[b].data == 144
    assert not results[c].ok and results[c].data is None
    assert results[c].error == "ValueError: cannot handle 'oops'"
    assert 'no task for type "unknown"' in (results[d].error or "")
    assert results[c].to_dict() == {
        "jobID": c,
        "worker": {"id": results[c].worker.id, "name": "py-1"},
        "error": "ValueError: cannot handle 'oops'",
    }
    assert results[a].to_dict()["data"] == {"doubled": 42, "id": a, "type": "double"}


def test_a_worker_carries_on_after_a_task_raises(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master()

    def flaky(job: queuexec.Job) -> int:
        if job.data % 2:
            raise RuntimeError("odd")
        return int(job.data)

    worker = open_worker(tasks={"flaky": flaky}, concurrency=1)
    ids = master.push_many([queuexec.JobSpec(n, type="flaky", retries=0) for n in range(20)])
    results = collect(master, 20)
    assert sorted(results) == sorted(ids)
    errors = [r for r in results.values() if not r.ok]
    assert len(errors) == 10 and all(r.error == "RuntimeError: odd" for r in errors)
    assert sorted(r.data for r in results.values() if r.ok) == list(range(0, 20, 2))
    wait_until(lambda: worker.stats().done + worker.stats().failed == 20, what="worker counts")
    assert (worker.stats().done, worker.stats().failed) == (10, 10)


def test_a_failed_attempt_is_retried(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master()
    attempts: list[int] = []

    def second_time_lucky(job: queuexec.Job) -> int:
        attempts.append(job.attempt)
        if job.attempt == 1:
            raise ConnectionError("try again")
        return job.attempt

    open_worker(tasks={"t": second_time_lucky})
    job_id = master.push(None, type="t", retries=2)
    result = collect(master, 1)[job_id]
    assert result.ok and result.data == 2 and result.attempts == 2
    assert attempts == [1, 2]


def test_default_task_takes_untyped_and_unknown_jobs(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master()
    open_worker(tasks={"double": double}, default=lambda job: ["default", job.type, job.data])
    untyped = master.push("plain")
    other = master.push(5, type="other")
    typed = master.push({"x": 2}, type="double")
    results = collect(master, 3)
    assert results[untyped].data == ["default", None, "plain"]
    assert results[other].data == ["default", "other", 5]
    assert results[typed].data["doubled"] == 4


def test_a_result_that_is_not_json_is_an_error(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master()
    open_worker(tasks={"t": lambda job: {1, 2}})
    job_id = master.push(0, type="t", retries=0)
    result = collect(master, 1)[job_id]
    assert not result.ok and "not JSON-serialisable" in (result.error or "")


def test_500_jobs_two_workers_every_result_once(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master()
    open_worker(tasks={"double": double}, name="w1", concurrency=4)
    open_worker(tasks={"double": double}, name="w2", concurrency=4)
    ids = master.push_many([queuexec.JobSpec({"x": n}, type="double") for n in range(500)])
    results = collect(master, 500)
    assert sorted(results) == sorted(ids)
    assert all(r.ok and r.data["doubled"] == 2 * r.data["doubled"] // 2 for r in results.values())
    by_id = {r.job_id: r.data["doubled"] for r in results.values()}
    assert [by_id[i] for i in ids] == [2 * n for n in range(500)]
    assert {r.worker.name for r in results.values()} == {"w1", "w2"}, "both workers got work"
    stats = master.stats()
    assert (stats.done, stats.queued, stats.running, stats.workers) == (500, 0, 0, 2)


def test_tasks_that_block_run_side_by_side_up_to_the_concurrency(
    open_master: MakeMaster, open_worker: MakeWorker
) -> None:
    # A worker serves its queue on one thread while jobs keep finishing; a job that blocks (here
    # in time.sleep, which lets the GIL go) leaves the queued ones to another thread, up to
    # `concurrency` at once.
    lock = threading.Lock()
    running = 0
    most = 0

    def blocking(job: queuexec.Job) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.4)
        with lock:
            running -= 1
        return int(job.data)

    master = open_master()
    open_worker(tasks={"block": blocking}, concurrency=4, prefetch=4)
    started = time.monotonic()
    ids = master.push_many([queuexec.JobSpec(n, type="block") for n in range(8)])
    results = collect(master, 8)
    elapsed = time.monotonic() - started
    assert sorted(results) == sorted(ids)
    assert sorted(r.data for r in results.values()) == list(range(8))
    assert most == 4, f"at most {most} blocking tasks ran at once, with concurrency 4"
    assert elapsed < 8 * 0.4, f"8 jobs of 0.4 s took {elapsed:.2f} s: they ran one after another"


def test_results_until_drained_yields_everything_then_ends(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master()
    open_worker(tasks={"double": double}, concurrency=2)
    ids = master.push_many([queuexec.JobSpec({"x": n}, type="double") for n in range(50)])
    seen = [r.job_id for r in master.results(until_drained=True)]
    assert sorted(seen) == sorted(ids)


def test_on_result_receives_every_result(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    received: list[queuexec.JobResult] = []
    lock = threading.Lock()

    def on_result(result: queuexec.JobResult) -> None:
        with lock:
            received.append(result)
        if result.data == 0:
            raise RuntimeError("a callback that raises does not stop the others")

    master = open_master(on_result=on_result)
    open_worker(tasks={"id": lambda job: job.data})
    master.push_many([queuexec.JobSpec(n, type="id") for n in range(30)])
    wait_until(lambda: len(received) == 30, what="30 callbacks")
    assert sorted(r.data for r in received) == list(range(30))


def test_priorities_run_higher_first(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master()
    master.push_many(
        [queuexec.JobSpec(n, type="id", priority=0) for n in range(5)]
        + [queuexec.JobSpec(100 + n, type="id", priority=9) for n in range(5)]
    )
    order: list[int] = []
    # One job at a time and none held ahead, so the run order is the master's lease order.
    open_worker(tasks={"id": lambda job: order.append(job.data)}, concurrency=1, prefetch=0)
    collect(master, 10)
    assert order == [100, 101, 102, 103, 104, 0, 1, 2, 3, 4], "higher priority first, then push order"


def test_a_slow_task_past_its_timeout_fails(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master()

    async def sleepy(job: queuexec.Job) -> str:
        await asyncio.sleep(30)
        return "too late"

    open_worker(tasks={"sleepy": sleepy})
    started = time.monotonic()
    job_id = master.push(None, type="sleepy", timeout=0.3, retries=0)
    result = collect(master, 1)[job_id]
    assert not result.ok
    assert time.monotonic() - started < 10


def test_worker_with_another_transfer_token_is_refused(open_master: MakeMaster, tokens: dict[str, str]) -> None:
    master = open_master()
    intruder = queuexec.Worker(
        token=tokens["token"],
        transfer_encrypt_token="x" * 32,
        master=master.listen_addrs[0],
        tasks={},
    )
    with pytest.raises(queuexec.TokenMismatchError) as caught:
        intruder.run()
    assert caught.value.code == "ERR_QUEUEXEC_TOKEN_MISMATCH"
    assert isinstance(caught.value, PermissionError)


def test_a_task_can_push_follow_up_jobs_to_a_master_in_the_same_process(
    open_master: MakeMaster, open_worker: MakeWorker
) -> None:
    master = open_master()

    def halve(job: queuexec.Job) -> int:
        if job.data > 1:
            master.push(job.data // 2, type="halve")  # from the worker's task thread
        return int(job.data)

    async def halve_async(job: queuexec.Job) -> int:
        if job.data > 1:
            master.push(job.data // 2, type="halve_async")  # from the worker's event loop
        return int(job.data)

    open_worker(tasks={"halve": halve, "halve_async": halve_async})
    master.push(8, type="halve")
    master.push(16, type="halve_async")
    results = collect(master, 9)
    assert sorted(r.data for r in results.values()) == [1, 1, 2, 2, 4, 4, 8, 8, 16]
