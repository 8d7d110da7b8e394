"""What happens on a master or a worker, as typed events.

The native module builds these objects itself, a batch at a time with the GIL held once per
batch (``src/events.rs``). Each class's ``kind`` is the name Node's ``queue-xec-master`` and
``queue-xec-worker`` emit the same event under, so code and logs read alike in both languages.

A master hands out :data:`MasterEvent`\\ s (``Master(on_event=...)``, :meth:`Master.events`), a
worker :data:`WorkerEvent`\\ s (``Worker(on_event=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

from .exceptions import QueuexecError
from .job import JobResult, WorkerInfo

__all__ = [
    "Aborted",
    "JobCancelled",
    "MasterMessage",
    "StatsEvent",
    "WorkerExit",
    "WorkerCall",
    "AssetsInstalled",
    "Connected",
    "Disconnected",
    "Drained",
    "ErrorEvent",
    "JobFinished",
    "MasterEvent",
    "ResultEvent",
    "TaskLoadFailed",
    "WarningEvent",
    "WorkerEvent",
    "WorkerJoined",
    "WorkerLeft",
]


# ---------------------------------------------------------------------------- master events


@dataclass(frozen=True)
class ResultEvent:
    """A job ended: its result, or its final error (``result.error``)."""

    kind: ClassVar[Literal["result"]] = "result"
    result: JobResult


@dataclass(frozen=True)
class WorkerJoined:
    """A worker proved it holds the token and joined."""

    kind: ClassVar[Literal["workerJoined"]] = "workerJoined"
    worker: WorkerInfo


@dataclass(frozen=True)
class WorkerLeft:
    """A worker's connection ended (its running jobs go back to the queue)."""

    kind: ClassVar[Literal["workerLeft"]] = "workerLeft"
    worker: WorkerInfo


@dataclass(frozen=True)
class Drained:
    """Nothing is queued, delayed or running any more."""

    kind: ClassVar[Literal["drained"]] = "drained"


@dataclass(frozen=True)
class WarningEvent:
    """Something the user should know that did not stop the master (Node: ``'warning'``)."""

    kind: ClassVar[Literal["warning"]] = "warning"
    message: str


@dataclass(frozen=True)
class WorkerCall:
    """A worker asks the master (Node: ``'call'``): ``op`` is ``"lookup"`` (``name``, ``key``),
    ``"setLookup"`` (``name``, ``key``, ``value``) or ``"message"`` (``cmd``, ``data``). The
    master answers it itself from ``lookups`` and ``on_worker_message`` while its events are
    read."""

    kind: ClassVar[Literal["call"]] = "call"
    call_id: int
    worker: WorkerInfo
    op: str
    name: str | None
    key: str | None
    value: str | None
    """The value to set, as JSON text."""
    cmd: str | None
    data: str | None
    """The message's data, as JSON text."""


@dataclass(frozen=True)
class StatsEvent:
    """The workers' aggregated statistics (Node: ``'stats'``), in okanjo-conductor's shape:
    ``{"raw": {worker_id: {"name", "last", "diff", "timeSpan"}}, "agg": {"last", "diff"},
    "avgTimeSpan"}``; counters are ``jobsDone``, ``jobsFailed``, ``busyMs`` and the tasks'
    ``ctx.metric`` names."""

    kind: ClassVar[Literal["stats"]] = "stats"
    report: dict[str, Any]


@dataclass(frozen=True)
class WorkerExit:
    """A local worker process (``Master(local_workers=N)``) exited (Node: ``'workerExit'``).
    ``type`` is ``"worker_crash"`` when it crashed (it is started again), else ``None``."""

    kind: ClassVar[Literal["worker_exit"]] = "worker_exit"
    worker_id: int
    pid: int
    code: int | None
    signal: str | None
    type: str | None = None


@dataclass(frozen=True)
class TaskLoadFailed:
    """A worker could not install or load the task (a missing dependency, a syntax error, a
    dependency bundle the master could not build). The jobs it held went back to the queue
    without using attempts; it takes no jobs until the assets change (Node: an ``'error'``
    event, a ``TaskLoadError``)."""

    kind: ClassVar[Literal["taskLoadFailed"]] = "taskLoadFailed"
    worker: WorkerInfo
    reason: str


MasterEvent: TypeAlias = (
    ResultEvent
    | WorkerJoined
    | WorkerLeft
    | Drained
    | WarningEvent
    | WorkerCall
    | StatsEvent
    | WorkerExit
    | TaskLoadFailed
)
"""Any event of a master."""


# ---------------------------------------------------------------------------- worker events


@dataclass(frozen=True)
class Connected:
    """The worker joined a master."""

    kind: ClassVar[Literal["connected"]] = "connected"
    master: str
    """The master's peer id."""
    path: Literal["direct", "relayed"] = "direct"
    """How the worker reaches the master: ``"direct"`` (possibly hole-punched through NATs) or
    ``"relayed"`` (through a relay circuit, when hole punching failed), as Node's
    ``'connected'`` event's ``path``."""


@dataclass(frozen=True)
class Disconnected:
    """The worker lost the master; it looks for it again."""

    kind: ClassVar[Literal["disconnected"]] = "disconnected"
    reason: str


@dataclass(frozen=True)
class AssetsInstalled:
    """The master's asset bundle (task.js and friends) was installed."""

    kind: ClassVar[Literal["assetsInstalled"]] = "assetsInstalled"
    bundle: str
    """The bundle hash."""
    fetched: int
    """How many files had to be fetched."""


@dataclass(frozen=True)
class JobFinished:
    """A job ended on this worker."""

    kind: ClassVar[Literal["jobFinished"]] = "jobFinished"
    job_id: str
    error: str | None
    """The job's error, or ``None`` when it succeeded."""


@dataclass(frozen=True)
class ErrorEvent:
    """The worker failed in a way its owner must act on (Node: ``'error'``): the master refused
    its tokens (:class:`~queuexec.UnauthorizedError` for another room token,
    :class:`~queuexec.TokenMismatchError` for another transfer token; the worker has stopped)."""

    kind: ClassVar[Literal["error"]] = "error"
    error: QueuexecError


@dataclass(frozen=True)
class MasterMessage:
    """A message from the master (``send_message_to_worker`` or ``broadcast``; Node:
    ``'message'``)."""

    kind: ClassVar[Literal["message"]] = "message"
    cmd: str
    data: Any
    """The message's data, decoded from JSON."""


@dataclass(frozen=True)
class Aborted:
    """The master aborted: this worker stopped (Node: ``'aborted'``)."""

    kind: ClassVar[Literal["aborted"]] = "aborted"


@dataclass(frozen=True)
class JobCancelled:
    """The master cancelled a job this worker was running (Node: ``'jobCancelled'``)."""

    kind: ClassVar[Literal["jobCancelled"]] = "jobCancelled"
    job_id: str


WorkerEvent: TypeAlias = (
    Connected | Disconnected | AssetsInstalled | JobFinished | ErrorEvent | MasterMessage | Aborted | JobCancelled
)
"""Any event of a worker."""
