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

from . import events
from ._native import __version__, defaults
from .events import (
    AssetsInstalled,
    Connected,
    Disconnected,
    Drained,
    ErrorEvent,
    JobFinished,
    MasterEvent,
    ResultEvent,
    TaskLoadFailed,
    WarningEvent,
    WorkerEvent,
    WorkerJoined,
    WorkerLeft,
)
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
    MasterCallError,
    NetworkError,
    PayloadError,
    ProtocolError,
    QueuexecError,
    StoreError,
    TokenError,
    TokenMismatchError,
    UnauthorizedError,
)
from .job import Job, JobResult, MasterStats, PushReceipt, WorkerInfo, WorkerStats
from .master import AssetFile, JobSpec, Master
from .worker import BatchTask, Task, TaskContext, Worker, batch

__all__ = [
    "defaults",
    "events",
    "AssetError",
    "AssetFile",
    "AssetHashError",
    "AssetPathError",
    "AssetsInstalled",
    "ClosedError",
    "ConfigError",
    "Connected",
    "DependencyError",
    "Disconnected",
    "Drained",
    "EnvelopeError",
    "ErrorEvent",
    "FileError",
    "IoError",
    "Job",
    "JobFinished",
    "JobResult",
    "JobSpec",
    "Master",
    "MasterCallError",
    "MasterEvent",
    "MasterStats",
    "NetworkError",
    "PayloadError",
    "ProtocolError",
    "PushReceipt",
    "QueuexecError",
    "ResultEvent",
    "StoreError",
    "Task",
    "TaskContext",
    "BatchTask",
    "batch",
    "TaskLoadFailed",
    "TokenError",
    "TokenMismatchError",
    "UnauthorizedError",
    "WarningEvent",
    "Worker",
    "WorkerEvent",
    "WorkerInfo",
    "WorkerJoined",
    "WorkerLeft",
    "WorkerStats",
    "__version__",
]
