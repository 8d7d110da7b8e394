"""The master: pushes jobs, hands them to workers, collects their results."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    Union,
)

from . import _lifecycle, _native
from ._tokens import PathLike, resolve_tokens
from .events import Drained, MasterEvent, ResultEvent, WarningEvent, WorkerJoined, WorkerLeft
from .exceptions import ConfigError, PayloadError
from .job import EncodedJob, JobResult, MasterStats, PushReceipt

__all__ = ["AssetFile", "JobSpec", "Master"]

logger = logging.getLogger("queuexec")

#: How long a blocking reader waits between checks of ``until_drained`` when nothing arrives.
_IDLE_CHECK = 0.25
#: The longest one wait of an async reader on its worker thread (bounded so that the loop's
#: executor can shut down).
_ASYNC_SLICE = 1.0


@dataclass(frozen=True)
class JobSpec:
    """A job with its own options, for :meth:`Master.push_many`.

    ``timeout`` and ``delay`` are in seconds.
    """

    data: Any
    type: str | None = None
    id: str | int | None = None
    priority: int = 0
    retries: int | None = None
    timeout: float | None = None
    delay: float | None = None
    in_memory: bool = False


AssetFile = Union[str, "os.PathLike[str]", Mapping[str, str]]
"""A file shipped to workers: a path (relative to the current directory, installed at the same
relative path in the worker's workplace) or queue-xec's ``{"name", "masterPath", "workerPath"}``."""

ResultCallback = Callable[[JobResult], Any]
EventCallback = Callable[[MasterEvent], Any]


class Master:
    """A master: jobs pushed here are kept (durably with ``store=``), handed to workers that hold
    the same tokens, and their results come back as :class:`~queuexec.JobResult`.

    Tokens come from the arguments, else the environment variables ``token`` and
    ``transferEncryptToken``, else ``.env`` (``env_file``). ``store`` is a SQLite file that keeps
    jobs across restarts (``None``: memory only). Results are read with :meth:`results`,
    :meth:`results_async`, or handed to ``on_result`` on a background thread; use one of them.
    Every event (:mod:`queuexec.events`: results, workers joining and leaving, drained,
    warnings) is read with :meth:`events`, or handed to ``on_event`` on that same background
    thread (before ``on_result`` for a result).
    ``listen`` defaults to loopback (workers on this host find the master with no address); listen
    on ``/ip4/0.0.0.0/tcp/PORT`` to serve other machines. ``task`` is the task.js that Node, CLI
    and embedded-runtime workers run; ``assets`` are further files shipped with it and
    ``dependencies`` the npm packages it requires. Where a list is expected, one string is a list
    of one. The master watches ``task`` and ``assets`` and reloads them when they change (workers
    fetch the new files before their next job); ``watch_assets=False`` turns that off.
    ``retries``, ``lease_ttl`` (seconds), ``max_workers`` and ``watch_assets`` left at ``None``
    take the core's defaults, the same as the CLI's and Node's (:func:`queuexec.defaults`).
    A pushed job whose ``id`` the master already has is queued again as a new job, as in
    queue-xec (its receipt says ``repeated``); with ``idempotent_ids=True`` ids are idempotency
    keys instead, and such a job is not queued again (its receipt says ``duplicate``). Either
    way a :class:`~queuexec.events.WarningEvent` says so and the ``queuexec`` logger warns.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        token: str | None = None,
        transfer_encrypt_token: str | None = None,
        *,
        store: PathLike | None = None,
        listen: str | Sequence[str] | None = None,
        task: PathLike | None = None,
        assets: AssetFile | Sequence[AssetFile] | None = None,
        dependencies: str | Sequence[str] | None = None,
        on_result: ResultCallback | None = None,
        on_event: EventCallback | None = None,
        retries: int | None = None,
        lease_ttl: float | None = None,
        auto_ack: bool = True,
        env_file: PathLike | None = None,
        room_dir: PathLike | None = None,
        announce: bool = True,
        max_workers: int | None = None,
        watch_assets: bool | None = None,
        idempotent_ids: bool = False,
        bootstrap: str | Sequence[str] | None = None,
    ) -> None:
        room_token, transfer_token = resolve_tokens(token, transfer_encrypt_token, env_file)
        relays = _native.resolve_bootstrap(
            [str(b) for b in _as_list(bootstrap)], None if env_file is None else os.fspath(env_file)
        )
        # None leaves a setting to the core's default (see queuexec.defaults()).
        self._native = _native.Master.start(
            token=room_token,
            transfer_token=transfer_token,
            store=None if store is None else os.fspath(store),
            listen=None if listen is None else _as_list(listen),
            room_dir=None if room_dir is None else os.fspath(room_dir),
            announce=announce,
            assets=_asset_specs(task, _as_list(assets)),
            dependencies=[str(d) for d in _as_list(dependencies)],
            retries=retries,
            lease_ttl=lease_ttl,
            max_workers=max_workers,
            auto_ack=auto_ack,
            watch_assets=watch_assets,
            idempotent_ids=idempotent_ids,
            bootstrap=relays,
        )
        self._pending: deque[MasterEvent] = deque()
        self._on_result = on_result
        self._on_event = on_event
        self._drained = False
        self._callback_thread: threading.Thread | None = None
        _lifecycle.track(self)
        if on_result is not None or on_event is not None:
            self._callback_thread = threading.Thread(
                target=self._deliver_to_callback, name="queuexec-on-result", daemon=True
            )
            self._callback_thread.start()

    # ------------------------------------------------------------------ identity

    @property
    def peer_id(self) -> str:
        """The master's peer id."""
        return self._native.peer_id

    @property
    def room_id(self) -> str:
        """The room id (SHA-256 of the token, hex)."""
        return self._native.room_id

    @property
    def listen_addrs(self) -> list[str]:
        """Multiaddrs workers can dial (``Worker(master=...)``), each ending in ``/p2p/<peer id>``."""
        return self._native.listen_addrs

    @property
    def bundle_hash(self) -> str:
        """The hash of the asset bundle (task.js and friends) workers install."""
        return self._native.bundle_hash

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native.closed

    def __repr__(self) -> str:
        native = getattr(self, "_native", None)  # None when __init__ failed
        if native is None:
            return "<queuexec.Master not started>"
        return f"<queuexec.Master {native.peer_id} {'closed' if native.closed else 'open'}>"

    # ------------------------------------------------------------------ pushing

    def push(
        self,
        data: Any,
        *,
        type: str | None = None,
        id: str | int | None = None,
        priority: int = 0,
        retries: int | None = None,
        timeout: float | None = None,
        delay: float | None = None,
        in_memory: bool = False,
    ) -> PushReceipt:
        """Pushes one job and returns its id once it is accepted (durable, with a store), as a
        :class:`~queuexec.PushReceipt` (a ``str``) that also says whether the id was repeated.

        ``data`` is any JSON-serialisable value; the task receives it as ``job.data``. ``type``
        names the task that runs it. Higher ``priority`` runs first. ``retries`` (default: the
        master's) is how often a failed or lost run is tried again; ``timeout`` limits one run and
        ``delay`` holds the job back, both in seconds. A job whose ``id`` the master already has is
        queued again (``repeated``), or with ``idempotent_ids=True`` not queued (``duplicate``).
        """
        spec = JobSpec(data, type, id, priority, retries, timeout, delay, in_memory)
        return PushReceipt(*self._native.push(_encode_job(spec, 1)))

    def push_many(self, items: Iterable[Any]) -> list[PushReceipt]:
        """Pushes jobs in one group and returns their ids (as :class:`~queuexec.PushReceipt`)
        once all are accepted; either all are queued or none is. Each item is a job's data, or a
        :class:`JobSpec` with its own options."""
        if isinstance(items, (str, bytes, Mapping, JobSpec)):
            # A str would be pushed one character per job: refuse it, as a mapping or one spec.
            raise PayloadError(
                f"push_many takes a list of jobs, not one {type(items).__name__}; "
                "call push() for one job, or wrap it in a list"
            )
        jobs = [
            _encode_job(item if isinstance(item, JobSpec) else JobSpec(item), index + 1)
            for index, item in enumerate(items)
        ]
        if not jobs:
            return []
        return [PushReceipt(*receipt) for receipt in self._native.push_many(jobs)]

    # ------------------------------------------------------------------ results

    def results(self, timeout: float | None = None, *, until_drained: bool = False) -> Iterator[JobResult]:
        """Yields results as they arrive, blocking in between (with the GIL released; Ctrl-C
        stops it). Ends when the master is closed, or with ``until_drained=True`` once no job is
        queued, delayed or running and every result was yielded. Raises ``TimeoutError`` when no
        result comes for ``timeout`` seconds."""
        self._refuse_if_callback("results()")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self._pop_result()
            if result is not None:
                yield result
                deadline = None if timeout is None else time.monotonic() + timeout
                continue
            if until_drained and self._check_drained():
                if not self._fill(0.0):
                    return
                if self._pending:
                    continue
                return
            wait: float | None = None
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise TimeoutError(f"no result within {timeout} s")
            if until_drained:
                wait = _IDLE_CHECK if wait is None else min(wait, _IDLE_CHECK)
            if not self._fill(wait):
                return

    async def results_async(
        self, timeout: float | None = None, *, until_drained: bool = False
    ) -> AsyncIterator[JobResult]:
        """Like :meth:`results`, as an async iterator: ``async for r in master.results_async()``.
        Waiting happens on a worker thread in short slices, so the event loop is never blocked
        and a cancelled iteration loses no result (it stays queued for the next reader)."""
        self._refuse_if_callback("results_async()")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            result = self._pop_result()
            if result is not None:
                yield result
                deadline = None if timeout is None else loop.time() + timeout
                continue
            if until_drained and await loop.run_in_executor(None, self._check_drained):
                if not await loop.run_in_executor(None, self._fill, 0.0):
                    return
                if self._pending:
                    continue
                return
            wait = _ASYNC_SLICE
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"no result within {timeout} s")
                wait = min(wait, left)
            if until_drained:
                wait = min(wait, _IDLE_CHECK)
            if not await loop.run_in_executor(None, self._fill, wait):
                return

    def events(self, timeout: float | None = None) -> Iterator[MasterEvent]:
        """Yields every event as it happens (:mod:`queuexec.events`), results among them as
        :class:`~queuexec.events.ResultEvent`, blocking in between with the GIL released. Ends
        when the master is closed; raises ``TimeoutError`` when nothing happens for ``timeout``
        seconds. Shares one queue with :meth:`results`: an event is handed to one reader."""
        self._refuse_if_callback("events()")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._pending:
                event = self._pending.popleft()
                if isinstance(event, Drained):
                    self._drained = True
                yield event
                deadline = None if timeout is None else time.monotonic() + timeout
                continue
            wait: float | None = None
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise TimeoutError(f"no event within {timeout} s")
            if not self._fill(wait):
                return

    def ack(self, *results: JobResult | str) -> None:
        """Marks results as handled, so a master restarted on the same store does not hand them
        out again. Needed only with ``auto_ack=False``."""
        ids = [r.job_id if isinstance(r, JobResult) else r for r in results]
        if ids:
            self._native.ack(ids)

    def stats(self) -> MasterStats:
        """Counts of jobs and workers now."""
        return MasterStats(**self._native.stats())

    def idle(self) -> bool:
        """Whether no job is queued, delayed or running."""
        return self._native.idle()

    def reload_assets(self) -> bool:
        """Reads the asset files again; workers fetch a changed bundle before their next job.
        Returns whether it changed."""
        return self._native.reload_assets()

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stops serving: workers are disconnected, the store is flushed and closed. Jobs that
        were running are queued again when a master starts on the same store. Idempotent."""
        self._native.close()
        _lifecycle.untrack(self)
        thread = self._callback_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def __enter__(self) -> Master:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Master:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # ------------------------------------------------------------------ internals

    def _refuse_if_callback(self, what: str) -> None:
        if self._on_result is not None or self._on_event is not None:
            given = "on_result" if self._on_result is not None else "on_event"
            raise ConfigError(f"this master hands its events to {given}; {what} would take them from it")

    def _fill(self, wait: float | None) -> bool:
        """Moves the next events into the queue, waiting up to ``wait`` s. False once closed.

        Events go straight into the queue (not back to the caller), so a reader that gave up
        meanwhile (an async iterator cancelled while this ran on a thread) loses nothing."""
        batch = self._native.next_events(wait)
        if batch is None:
            return False
        if not batch and self._native.closed:
            return False
        self._pending.extend(batch)
        return True

    def _pop_result(self) -> JobResult | None:
        while self._pending:
            result = self._handle(self._pending.popleft())
            if result is not None:
                return result
        return None

    def _handle(self, event: MasterEvent) -> JobResult | None:
        """The result an event carries; the other kinds are logged (and ``drained`` noted)."""
        if isinstance(event, ResultEvent):
            return event.result
        if isinstance(event, Drained):
            self._drained = True
        elif isinstance(event, WorkerJoined):
            logger.info("worker %s (%s) joined", event.worker.name, event.worker.id)
        elif isinstance(event, WorkerLeft):
            logger.info("worker %s (%s) left", event.worker.name, event.worker.id)
        elif isinstance(event, WarningEvent):
            logger.warning("%s", event.message)
        return None

    def _check_drained(self) -> bool:
        """Whether nothing is left to run; then every result is already in the event stream."""
        return self._native.idle()

    def _deliver_to_callback(self) -> None:
        on_result, on_event = self._on_result, self._on_event
        while True:
            batch = self._native.next_events(_IDLE_CHECK)
            if batch is None or (not batch and self._native.closed):
                return
            for event in batch:
                if on_event is not None:
                    try:
                        on_event(event)
                    except Exception:
                        logger.exception("on_event raised for %s; the master carries on", event.kind)
                result = self._handle(event)
                if result is not None and on_result is not None:
                    try:
                        on_result(result)
                    except Exception:
                        logger.exception("on_result raised for job %s; the master carries on", result.job_id)


def _encode_job(spec: JobSpec, index: int) -> EncodedJob:
    try:
        data_json = json.dumps(spec.data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise PayloadError(f"job {index}: its data must be JSON-serialisable ({e}); nothing was pushed") from e
    job_id = None if spec.id is None else str(spec.id)
    if spec.retries is not None and spec.retries < 0:
        raise ConfigError(f"job {index}: retries must be 0 or more, not {spec.retries}")
    return EncodedJob(
        id=job_id,
        data_json=data_json,
        type=spec.type,
        priority=spec.priority,
        retries=spec.retries,
        timeout=spec.timeout,
        delay=spec.delay,
        in_memory=spec.in_memory,
    )


def _as_list(value: Any) -> list[Any]:
    """``None`` as an empty list, one string (or path, or mapping) as a list of one, any other
    iterable as a list."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, os.PathLike, Mapping)):
        return [value]
    return list(value)


def _asset_specs(task: PathLike | None, assets: Sequence[AssetFile]) -> list[tuple[str, str, str]]:
    """The task plus the asset files: paths through the core's rule (task as task.js, files at
    the same relative path), queue-xec's mappings as they are given."""
    mappings: list[tuple[str, str, str]] = []
    paths: list[str] = []
    for item in assets:
        if isinstance(item, Mapping):
            master_path = item.get("masterPath", item.get("master_path"))
            if master_path is None:
                raise ConfigError(f"asset {dict(item)!r} has no masterPath")
            worker_path = item.get("workerPath", item.get("worker_path", Path(master_path).name))
            name = item.get("name", Path(master_path).name)
            mappings.append((name, master_path, worker_path))
        else:
            paths.append(os.fspath(item))
    specs = [
        (name, os.fspath(master_path), worker_path)
        for name, master_path, worker_path in _native.asset_specs(
            None if task is None else os.fspath(task), paths
        )
    ]
    return specs + mappings
