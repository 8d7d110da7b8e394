"""Jobs as tasks see them, results as masters hand them out, and the counts of each side."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Job", "JobResult", "MasterStats", "PushReceipt", "WorkerInfo", "WorkerStats"]


@dataclass(frozen=True)
class Job:
    """One job as a worker's task receives it.

    A task is called as ``task(job)``, as meteor-cluster's task map calls ``job => ...``:
    ``job.data`` is the pushed data, already decoded from JSON.
    """

    id: str
    """The job's id, as the master assigned or the pusher gave it."""
    data: Any
    """The job's data (what was pushed, decoded from JSON)."""
    type: str | None
    """The task type the job names, or ``None``."""
    attempt: int
    """Which attempt this is, from 1."""
    timeout: float | None
    """Seconds this run may take, or ``None`` for no limit."""


@dataclass(frozen=True)
class WorkerInfo:
    """The worker that ran a job: its peer id and the name its owner gave it."""

    id: str
    name: str


@dataclass(frozen=True)
class JobResult:
    """The end of one job: its result (``data``) or its final error (``error``)."""

    job_id: str
    """The job's id."""
    worker: WorkerInfo
    """Who ran the final attempt (empty id and name when no worker ran it)."""
    data: Any
    """The task's return value, decoded from JSON; ``None`` when the job failed."""
    error: str | None
    """The final attempt's error text, or ``None`` when the job succeeded."""
    attempts: int
    """How many attempts it took."""

    @property
    def ok(self) -> bool:
        """Whether the job succeeded."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """queue-xec's result shape: ``{"jobID", "worker": {"id", "name"}, "data" | "error"}``."""
        out: dict[str, Any] = {
            "jobID": self.job_id,
            "worker": {"id": self.worker.id, "name": self.worker.name},
        }
        if self.error is None:
            out["data"] = self.data
        else:
            out["error"] = self.error
        return out


class PushReceipt(str):
    """What :meth:`Master.push` returns: the job's id (this string itself, so code that takes
    the id as a ``str`` keeps working), with what the master did with a repeated id.

    ``repeated`` is true when a job with this id was pushed before and this one was queued again
    as a new job (the default, as in queue-xec: its result carries the same id). ``duplicate``
    is true when a job with this id was pushed before and, with ``Master(idempotent_ids=True)``,
    nothing was queued.
    """

    __slots__ = ("duplicate", "repeated")

    duplicate: bool
    repeated: bool

    def __new__(cls, job_id: str, duplicate: bool = False, repeated: bool = False) -> PushReceipt:
        receipt = super().__new__(cls, job_id)
        receipt.duplicate = duplicate
        receipt.repeated = repeated
        return receipt

    @property
    def id(self) -> str:
        """The job's id as a plain ``str``."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"PushReceipt({str.__repr__(self)}, duplicate={self.duplicate}, repeated={self.repeated})"


@dataclass(frozen=True)
class MasterStats:
    """Counts of a master's jobs and workers."""

    queued: int
    """Ready to run."""
    delayed: int
    """Waiting for their delay or retry backoff."""
    running: int
    """Leased to a worker."""
    done: int
    """Finished with a result since the master started."""
    dead: int
    """Failed for good since the master started."""
    retried: int
    """Failed attempts that were retried, since the master started."""
    workers: int
    """Workers connected now."""
    relayed_workers: int = 0
    """Worker connections that run through a relay now (the rest are direct)."""
    relayed_bytes: int = 0
    """Bytes of job traffic that went through relays since the start."""


@dataclass(frozen=True)
class WorkerStats:
    """Counts of a worker's jobs."""

    done: int
    """Jobs that finished with a result."""
    failed: int
    """Jobs that failed."""
    running: int
    """Jobs running now."""
    connected: bool
    """Whether the worker is connected to a master."""
    path: str | None = None
    """``"direct"`` or ``"relayed"`` while connected, else ``None``."""
    relayed_bytes: int = 0
    """Bytes of job traffic that went through relays since the start."""


to_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
"""Compact JSON text, as ``json.dumps(value, separators=(",", ":"), allow_nan=False)`` gives it,
with one encoder for every call (``json.dumps`` with options builds a new one per call)."""


class EncodedJob(NamedTuple):
    """One job as the master hands it to the native module: named fields (a tuple underneath, so
    crossing into Rust costs what a plain tuple does). Internal: push with :meth:`Master.push`
    or a :class:`~queuexec.JobSpec`."""

    id: str | None
    data_json: str
    """The job's data, already JSON text."""
    type: str | None
    priority: int
    retries: int | None
    timeout: float | None
    """Seconds."""
    delay: float | None
    """Seconds."""
    in_memory: bool
