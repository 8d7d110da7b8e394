"""A worker with one plain and one ``async def`` task, mapped by task type.

python worker_example.py          # Ctrl-C to stop
"""

from __future__ import annotations

import asyncio
from typing import Any

import queuexec


def double(job: queuexec.Job) -> dict[str, Any]:
    """A plain function: runs on a thread of its own."""
    return {"x": job.data["x"], "doubled": job.data["x"] * 2}


async def fetch(job: queuexec.Job) -> str:
    """An ``async def`` function: runs on the worker's event loop."""
    await asyncio.sleep(0.1)
    if job.attempt < 2:
        raise ConnectionError(f"{job.data['url']} did not answer")  # becomes the job's error; retried
    return f"fetched {job.data['url']} on attempt {job.attempt}"


def main() -> None:
    worker = queuexec.Worker(tasks={"double": double, "fetch": fetch}, name="example-worker", concurrency=4)
    try:
        worker.run()
    except KeyboardInterrupt:
        print(f"stopped; {worker.stats()}")


if __name__ == "__main__":
    main()
