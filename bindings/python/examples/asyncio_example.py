"""Master and worker in one asyncio program: ``run_async`` and ``results_async``."""

from __future__ import annotations

import asyncio

import queuexec


async def square(job: queuexec.Job) -> int:
    await asyncio.sleep(0)
    return int(job.data) ** 2


async def main() -> list[int]:
    async with queuexec.Master() as master:
        worker = queuexec.Worker(tasks={"square": square}, concurrency=8)
        running = asyncio.create_task(worker.run_async())
        master.push_many([queuexec.JobSpec(n, type="square") for n in range(100)])
        squares = sorted([r.data async for r in master.results_async(until_drained=True) if r.ok])
        worker.close()
        await running
        return squares


if __name__ == "__main__":
    print(asyncio.run(main()))
