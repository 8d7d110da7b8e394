"""queuexec: a master hands encrypted jobs to workers, peer to peer, and collects their results.

>>> import queuexec
>>> with queuexec.Master(store="jobs.sqlite") as master:          # doctest: +SKIP
...     master.push({"x": 1}, type="double")
...     for result in master.results(until_drained=True):
...         print(result.job_id, result.data)

A worker, in another process or on another machine with the same tokens::

    def double(job):
        return job.data["x"] * 2

    queuexec.Worker(tasks={"double": double}).run()

Python masters serve Node and CLI workers, and Python workers serve Node and CLI masters: the
wire format is the Rust core's.
"""

from __future__ import annotations

from ._native import __version__, defaults
from .exceptions import (
    AssetError,
    AssetHashError,
    AssetPathError,
    ClosedError,
    ConfigError,
    DependencyError,
    EnvelopeError,
    FileError,
    IoError,
    NetworkError,
    PayloadError,
    ProtocolError,
    QueuexecError,
    StoreError,
    TokenError,
    TokenMismatchError,
    UnauthorizedError,
)
from .job import Job, JobResult, MasterStats, WorkerInfo, WorkerStats
from .master import AssetFile, JobSpec, Master
from .worker import Task, Worker

__all__ = [
    "defaults",
    "AssetError",
    "AssetFile",
    "AssetHashError",
    "AssetPathError",
    "ClosedError",
    "ConfigError",
    "DependencyError",
    "EnvelopeError",
    "FileError",
    "IoError",
    "Job",
    "JobResult",
    "JobSpec",
    "Master",
    "MasterStats",
    "NetworkError",
    "PayloadError",
    "ProtocolError",
    "QueuexecError",
    "StoreError",
    "Task",
    "TokenError",
    "TokenMismatchError",
    "UnauthorizedError",
    "Worker",
    "WorkerInfo",
    "WorkerStats",
    "__version__",
]
