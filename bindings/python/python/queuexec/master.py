"""The master: pushes jobs, hands them to workers, collects their results."""

from __future__ import annotations

import asyncio
import inspect
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
from ._local_pool import LocalPool, local_worker_count
from ._producer import Producer
from ._tokens import PathLike, resolve_tokens
from .events import (
    Drained,
    MasterEvent,
    ResultEvent,
    TaskLoadFailed,
    WarningEvent,
    WorkerCall,
    WorkerExit,
    WorkerJoined,
    WorkerLeft,
)
from .exceptions import ConfigError, PayloadError
from .job import EncodedJob, JobResult, MasterStats, PushReceipt, to_json

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
    With a ``store``, at most ``max_resident_jobs`` ready jobs (default 10,000) are kept in memory;
    the rest wait only in the store and are read back, highest priority then push order, as the
    ones in memory run low.
    A pushed job whose ``id`` the master already has is queued again as a new job, as in
    queue-xec (its receipt says ``repeated``); with ``idempotent_ids=True`` ids are idempotency
    keys instead, and such a job is not queued again (its receipt says ``duplicate``). Either
    way a :class:`~queuexec.events.WarningEvent` says so and the ``queuexec`` logger warns.
    ``dashboard`` serves the dashboard (live web page, JSON API under ``/api/``, Prometheus
    ``/metrics``) on an address such as ``"127.0.0.1:9090"`` or a port (loopback); an address that
    is not loopback needs ``dashboard_token`` (at least 16 characters; default: the environment
    variable ``QUEUEXEC_DASHBOARD_TOKEN``). See the README's Dashboard section.

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
        get_tasks: Callable[[int], Sequence[Any] | None] | None = None,
        handle_results: Callable[[list[JobResult]], Any] | None = None,
        batch_size: int | None = None,
        lookups: dict[str, Any] | None = None,
        on_worker_message: Callable[[str, dict[str, Any]], Any] | None = None,
        stats_interval: float | None = None,
        local_workers: int | bool | None = None,
        local_worker_tasks: str | None = None,
        exit_when_drained: bool = False,
        worker_options: Mapping[str, Any] | None = None,
        dashboard: str | int | None = None,
        dashboard_token: str | None = None,
        bootstrap: str | Sequence[str] | None = None,
        max_resident_jobs: int | None = None,
    ) -> None:
        local = local_worker_count(local_workers)
        if on_worker_message is not None and not callable(on_worker_message):
            raise ConfigError(f"on_worker_message must be a function (worker_id, msg), not {on_worker_message!r}")
        if get_tasks is None and handle_results is not None:
            raise ConfigError("handle_results needs get_tasks: it receives the results of the jobs get_tasks produced")
        producer = None if get_tasks is None else Producer(get_tasks, handle_results, batch_size)
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
            stats_interval=stats_interval,
            dashboard=None if dashboard is None else str(dashboard),
            dashboard_token=dashboard_token,
            bootstrap=relays,
            max_resident_jobs=max_resident_jobs,
        )
        self._pending: deque[MasterEvent] = deque()
        self._on_result = on_result
        self._on_event = on_event
        self._drained = False
        self._callback_thread: threading.Thread | None = None
        self._producer = producer
        #: okanjo-conductor's lookups: dicts (or any mapping) by name, read and written by
        #: workers (``ctx.lookup`` / ``ctx.set_lookup``) through this master.
        self.lookups: dict[str, Any] = {} if lookups is None else lookups
        #: Answers workers' messages (``ctx.request`` / ``Worker.request``): called as
        #: ``on_worker_message(worker_id, {"cmd", "data"})``; its return value is the reply.
        self.on_worker_message = on_worker_message
        _lifecycle.track(self)
        self._pool: LocalPool | None = None
        if local:
            config: dict[str, Any] = {
                "token": room_token,
                "transfer_encrypt_token": transfer_token,
                "exit_when_drained": exit_when_drained,
                "tasks": local_worker_tasks,
                **dict(worker_options or {}),
            }
            self._pool = LocalPool(local, config, self._local_worker_exited)
            self._pool.start(self._native.listen_addrs[0])
        if on_result is not None or on_event is not None or producer is not None:
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
    def dashboard_url(self) -> str | None:
        """The dashboard's URL (``http://IP:PORT/``) when started with ``dashboard=``, else None."""
        return self._native.dashboard_url

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

    def cancel(self, job_id: str) -> int:
        """Cancels the job with this id: queued, delayed or running. A running ``async def`` task
        is cancelled on its worker (``asyncio.CancelledError``), a task.js one sees its
        ``signal`` abort, a ``--exec`` command is killed. Each cancelled job's result is the
        error ``the job was cancelled (cancel() on the master)``. Returns how many jobs were
        cancelled (0: none with this id was waiting or running)."""
        if not isinstance(job_id, str) or not job_id:
            raise TypeError(f"cancel takes a job id (a non-empty str), got {job_id!r}")
        return self._native.cancel(job_id)

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
        if getattr(self, "_pool", None) is not None:
            self._pool.close()  # type: ignore[union-attr]
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

    # ------------------------------------------------------------------ lookups and messages

    def get_lookup_value(self, name: str, key: str) -> Any:
        """The value under ``key`` in lookup ``name``, or ``None``."""
        lookup = self.lookups.get(name)
        if lookup is None:
            return None
        return lookup.get(key)

    def set_lookup_value(self, name: str, key: str, value: Any) -> None:
        """Sets ``key`` to ``value`` in lookup ``name`` (a new dict when there is none)."""
        self.lookups.setdefault(name, {})[key] = value

    def send_message_to_worker(self, worker_id: str, cmd: str, data: Any = None) -> bool:
        """Sends ``{"cmd", "data"}`` to the worker with this peer id; False when it is not
        connected."""
        return self._native.send_message(worker_id, cmd, _json_text(data, "the message data")) > 0

    def broadcast(self, cmd: str, data: Any = None) -> int:
        """Sends ``{"cmd", "data"}`` to every worker; returns how many got it."""
        return self._native.send_message(None, cmd, _json_text(data, "the message data"))

    def stats_report(self) -> dict[str, Any] | None:
        """The workers' aggregated statistics now (the :class:`~queuexec.events.StatsEvent`
        shape), or ``None`` when no worker reported since the last report."""
        text = self._native.stats_report()
        return None if text is None else json.loads(text)

    def abort(self) -> int:
        """Stops every worker: each is told to leave, and this master hands out no more jobs;
        jobs they had not finished stay queued (and in the store). Returns how many were told."""
        return self._native.abort()

    def _answer_call(self, call: WorkerCall) -> None:
        try:
            if call.op == "lookup":
                value = self.get_lookup_value(call.name or "", call.key or "")
            elif call.op == "setLookup":
                self.set_lookup_value(call.name or "", call.key or "", json.loads(call.value or "null"))
                value = None
            elif call.op == "message":
                handler = self.on_worker_message
                if handler is None:
                    raise ConfigError(f"the master has no on_worker_message handler for the message {call.cmd!r}")
                value = handler(call.worker.id, {"cmd": call.cmd, "data": json.loads(call.data or "null")})
                if inspect.isawaitable(value):
                    value = asyncio.run(_awaited(value))
            else:
                raise ConfigError(f"this master does not know the call {call.op!r}")
            answer = (True, _json_text(value, "the answer"))
        except Exception as e:
            answer = (False, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        self._native.answer(call.call_id, *answer)

    def local_worker_pids(self) -> dict[int, int]:
        """The pids of the running local worker processes (``local_workers``), by worker id."""
        return {} if self._pool is None else self._pool.pids()

    def _local_worker_exited(self, info: WorkerExit) -> None:
        if self._on_event is not None:
            self._on_event(info)

    def wait_end(self, timeout: float | None = None) -> bool:
        """With ``get_tasks``: waits until every produced job has its result (handed to
        ``handle_results``) and ``get_tasks`` returned nothing more. Returns False when
        ``timeout`` (seconds) passed first."""
        if self._producer is None:
            raise ConfigError("wait_end needs get_tasks: the end is when the producer has no more jobs")
        return self._producer.ended.wait(timeout)

    def _refuse_if_callback(self, what: str) -> None:
        if self._producer is not None and self._on_result is None and self._on_event is None:
            raise ConfigError(
                f"this master hands its results to handle_results (get_tasks); {what} would take them from it"
            )
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
        if isinstance(event, WorkerCall):
            self._answer_call(event)
            return None
        if isinstance(event, Drained):
            self._drained = True
        elif isinstance(event, WorkerJoined):
            logger.info("worker %s (%s) joined", event.worker.name, event.worker.id)
        elif isinstance(event, WorkerLeft):
            logger.info("worker %s (%s) left", event.worker.name, event.worker.id)
        elif isinstance(event, WarningEvent):
            logger.warning("%s", event.message)
        elif isinstance(event, TaskLoadFailed):
            logger.warning(
                "worker %s (%s) cannot load the task: %s; it takes no jobs until the assets change",
                event.worker.name,
                event.worker.id,
                event.reason,
            )
        return None

    def _check_drained(self) -> bool:
        """Whether nothing is left to run; then every result is already in the event stream."""
        return self._native.idle()

    def _deliver_to_callback(self) -> None:
        on_result, on_event, producer = self._on_result, self._on_event, self._producer
        while True:
            if producer is not None:
                producer.produce(self)
                producer.check_end()
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
                if result is not None and producer is not None:
                    producer.on_result(result)


def _encode_job(spec: JobSpec, index: int) -> EncodedJob:
    try:
        data_json = to_json(spec.data)
    except (TypeError, ValueError) as e:
        raise PayloadError(f"job {index}: its data must be JSON-serialisable ({e}); nothing was pushed") from e
    job_id = None if spec.id is None else str(spec.id)
    if spec.retries is not None and spec.retries < 0:
        raise ConfigError(f"job {index}: retries must be 0 or more, not {spec.retries}")
    return EncodedJob(
        job_id, data_json, spec.type, spec.priority, spec.retries, spec.timeout, spec.delay, spec.in_memory
    )


def _json_text(value: Any, what: str) -> str:
    try:
        return to_json(value)
    except (TypeError, ValueError) as e:
        raise PayloadError(f"{what} must be JSON-serialisable ({e})") from e


async def _awaited(value: Any) -> Any:
    return await value


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
        for name, master_path, worker_path in _native.asset_specs(None if task is None else os.fspath(task), paths)
    ]
    return specs + mappings
