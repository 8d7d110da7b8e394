"""asyncio: results as an async iterator, workers as awaitables, async tasks on the caller's loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import queuexec

from helpers import collect, wait_until

MakeMaster = Callable[..., queuexec.Master]
MakeWorker = Callable[..., queuexec.Worker]


def test_results_async_and_run_async_on_one_loop(open_master: MakeMaster, tokens: dict[str, str]) -> None:
    master = open_master()
    task_threads: set[int] = set()

    async def triple(job: queuexec.Job) -> int:
        task_threads.add(threading.get_ident())
        await asyncio.sleep(0)
        return int(job.data) * 3

    async def main() -> list[queuexec.JobResult]:
        worker = queuexec.Worker(**tokens, tasks={"triple": triple}, concurrency=4, workplace="wp")
        running = asyncio.create_task(worker.run_async())
        ids = master.push_many([queuexec.JobSpec(n, type="triple") for n in range(40)])
        got: list[queuexec.JobResult] = []
        async for result in master.results_async(timeout=30):
            got.append(result)
            if len(got) == len(ids):
                break
        worker.close()
        await asyncio.wait_for(running, 10)
        return got

    loop_thread: list[int] = []

    async def wrapper() -> list[queuexec.JobResult]:
        loop_thread.append(threading.get_ident())
        return await main()

    results = asyncio.run(wrapper())
    assert sorted(r.data for r in results) == [3 * n for n in range(40)]
    assert task_threads == set(loop_thread), "async tasks ran on the caller's event loop"


def test_cancelling_run_async_closes_the_worker(open_master: MakeMaster, tokens: dict[str, str]) -> None:
    master = open_master()

    async def main() -> queuexec.Worker:
        worker = queuexec.Worker(**tokens, tasks={"id": lambda job: job.data}, workplace="wp")
        running = asyncio.create_task(worker.run_async())
        master.push(1, type="id")
        async for _ in master.results_async(timeout=30):
            break
        running.cancel()
        try:
            await running
        except asyncio.CancelledError:
            pass
        return worker

    worker = asyncio.run(main())
    assert worker.stats().connected is False
    wait_until(lambda: master.stats().workers == 0, what="the master to see the worker leave")


def test_an_abandoned_async_wait_loses_no_result(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master()

    async def first_wait_times_out() -> None:
        # Waits that give up (a timeout with nothing there yet) must leave results for the next reader.
        try:
            await asyncio.wait_for(master.results_async().__anext__(), 0.2)
        except asyncio.TimeoutError:
            pass

    asyncio.run(first_wait_times_out())
    open_worker(tasks={"id": lambda job: job.data})
    ids = master.push_many([queuexec.JobSpec(n, type="id") for n in range(20)])
    results = collect(master, 20, timeout=30)
    assert sorted(results) == sorted(ids)


def test_async_context_managers(tokens: dict[str, str]) -> None:
    async def main() -> list[int]:
        async with (
            queuexec.Master(**tokens) as master,
            queuexec.Worker(**tokens, tasks={"neg": lambda job: -job.data}, workplace="wp"),
        ):
            master.push_many([queuexec.JobSpec(n, type="neg") for n in range(5)])
            return sorted([r.data async for r in master.results_async(until_drained=True, timeout=30)])

    assert asyncio.run(main()) == [-4, -3, -2, -1, 0]
