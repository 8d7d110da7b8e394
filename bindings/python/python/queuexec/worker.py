"""The worker: finds the master, runs its jobs through Python functions, sends the results back."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from . import _lifecycle, _native
from ._tokens import PathLike, resolve_tokens
from .events import WorkerEvent
from .exceptions import ConfigError, MasterCallError
from .job import Job, WorkerStats, to_json

__all__ = ["BatchTask", "EventCallback", "Task", "TaskContext", "Worker", "batch"]

logger = logging.getLogger("queuexec")

Task = Callable[[Job], Any | Awaitable[Any]]
"""A task: called as ``task(job)`` with a :class:`~queuexec.Job`; returns the job's result (any
JSON-serialisable value). Plain functions and ``async def`` functions both work."""

EventCallback = Callable[[WorkerEvent], Any]
"""Called with each of a worker's events (:mod:`queuexec.events`), on a thread of its own."""

#: The longest one wait of ``run_async`` on its worker thread.
_ASYNC_SLICE = 1.0
#: The longest one wait of the thread that hands events to ``on_event``.
_EVENT_SLICE = 0.25


class Worker:
    """A worker: it finds the master holding the same tokens and runs the jobs it is handed.

    ``tasks`` maps task types to functions (as meteor-cluster's task map does): a job pushed with
    ``type="resize"`` runs ``tasks["resize"](job)``. ``default`` runs jobs whose type is not in
    ``tasks`` (and jobs with no type). A job no Python function handles runs the master's task.js
    in the embedded JavaScript runtime (sandboxed; started only when the master ships a task.js);
    with ``run_task_js=False`` it fails with an error naming the missing type.

    A function's return value is the job's result; an exception it raises becomes the job's error
    (``"ValueError: message"``), and the worker carries on. Plain functions run on a thread of
    their own (holding the GIL while they run Python code); ``async def`` functions run on the
    asyncio loop of :meth:`run_async`, or on a loop the worker owns with :meth:`run`/:meth:`start`.
    Up to ``concurrency`` jobs run at once. ``name``, ``concurrency``, ``prefetch`` and
    ``workplace`` left at ``None`` take the core's defaults, the same as the CLI's and Node's
    (:func:`queuexec.defaults`: one job at a time, the name ``no_name``, one job held ready).

    ``master`` is the master's multiaddr (``Master.listen_addrs``); without it the worker finds a
    master on this host through its room file. ``timeout`` (seconds) limits jobs that set none.

    ``on_event`` is called with each of the worker's events (:mod:`queuexec.events`:
    ``Connected``, ``Disconnected``, ``AssetsInstalled``, ``JobFinished``, ``ErrorEvent``; the
    ``kind`` names of Node's worker) on a thread of its own, in order. Without it the events
    are logged to the ``queuexec`` logger's Rust side (``QUEUEXEC_LOG=info``).
    """

    def __init__(
        self,
        token: str | None = None,
        transfer_encrypt_token: str | None = None,
        *,
        tasks: Mapping[str, Task] | None = None,
        default: Task | None = None,
        master: str | None = None,
        name: str | None = None,
        concurrency: int | None = None,
        prefetch: int | None = None,
        workplace: PathLike | None = None,
        timeout: float | None = None,
        run_task_js: bool = True,
        env_file: PathLike | None = None,
        room_dir: PathLike | None = None,
        on_event: EventCallback | None = None,
        stats_interval: float | None = None,
        exit_when_drained: bool = False,
        bootstrap: str | Sequence[str] | None = None,
    ) -> None:
        if on_event is not None and not callable(on_event):
            raise ConfigError(f"on_event must be a function, not {on_event!r}")
        self._token, self._transfer_token = resolve_tokens(token, transfer_encrypt_token, env_file)
        if isinstance(bootstrap, str):
            bootstrap = [bootstrap]
        self._bootstrap = _native.resolve_bootstrap(
            [str(b) for b in (bootstrap or [])], None if env_file is None else os.fspath(env_file)
        )
        task_map: dict[str, Task] = dict(tasks or {})
        for task_type, fn in task_map.items():
            if not isinstance(task_type, str) or not callable(fn):
                raise ConfigError(f"tasks must map task type names to functions; {task_type!r} maps to {fn!r}")
        if default is not None and not callable(default):
            raise ConfigError(f"default must be a function, not {default!r}")
        self._dispatcher = _Dispatcher(task_map, default)
        self._master = master
        # None: the core's default, applied by the native worker.
        self._name = name if name is not None else _native.defaults()["name"]
        self._concurrency = concurrency
        self._prefetch = prefetch
        self._workplace = None if workplace is None else os.fspath(workplace)
        self._timeout = timeout
        self._run_task_js = run_task_js
        self._room_dir = None if room_dir is None else os.fspath(room_dir)
        self._on_event = on_event
        self._stats_interval = stats_interval
        self._exit_when_drained = exit_when_drained
        self._event_thread: threading.Thread | None = None
        self._native: _native.Worker | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ calls to the master

    def lookup(self, name: str, key: str) -> Any:
        """The value under ``key`` in the master's lookup ``name`` (``None`` when absent).
        Blocks until the master answers."""
        return _call(self._started(), "lookup", name, key)

    def set_lookup(self, name: str, key: str, value: Any) -> None:
        """Sets ``key`` to ``value`` in the master's lookup ``name``."""
        _call(self._started(), "setLookup", name, key, value)

    def metric(self, name: str, delta: float = 1) -> bool:
        """Adds ``delta`` to this worker's custom metric ``name`` (reported to the master's
        ``stats``). False when refused (an empty or long name, a delta that is not finite)."""
        return self._started().metric(name, float(delta))

    def request(self, cmd: str, data: Any = None) -> Any:
        """Sends ``{"cmd", "data"}`` to the master's ``on_worker_message``; returns its answer
        (raises :class:`~queuexec.MasterCallError` with its error)."""
        return _call(self._started(), "message", cmd, None, data)

    # ------------------------------------------------------------------ running

    def start(self) -> Worker:
        """Starts working in the background and returns at once (see :meth:`run`)."""
        with self._lock:
            if self._native is not None:
                return self
            self._native = _native.Worker.start(
                token=self._token,
                transfer_token=self._transfer_token,
                dispatch=self._dispatcher,
                python_types=sorted(self._dispatcher.tasks),
                catch_all=self._dispatcher.default is not None,
                master=self._master,
                name=self._name,
                concurrency=self._concurrency,
                prefetch=self._prefetch,
                workplace=self._workplace,
                room_dir=self._room_dir,
                default_timeout=self._timeout,
                stats_interval=self._stats_interval,
                exit_when_drained=self._exit_when_drained,
                run_task_js=self._run_task_js,
                keep_events=self._on_event is not None,
                bootstrap=self._bootstrap,
            )
            self._dispatcher.native = self._native
            _lifecycle.track(self)
            if self._on_event is not None:
                self._event_thread = threading.Thread(
                    target=self._deliver_events,
                    args=(self._native, self._on_event),
                    name="queuexec-worker-events",
                    daemon=True,
                )
                self._event_thread.start()
        return self

    def run(self) -> None:
        """Works until :meth:`close` is called (from another thread or a task) or Ctrl-C, which
        closes the worker and raises ``KeyboardInterrupt``. Raises
        :class:`~queuexec.UnauthorizedError` if the master refuses this worker's room token, or
        :class:`~queuexec.TokenMismatchError` if the room token matches but the transfer token
        does not."""
        native = self.start()._started()
        try:
            native.wait(None)
        finally:
            self.close()

    async def run_async(self) -> None:
        """Works until :meth:`close` is called or the awaiting task is cancelled. ``async def``
        tasks run on the running event loop."""
        loop = asyncio.get_running_loop()
        self._dispatcher.use_loop(loop)
        native = (await loop.run_in_executor(None, self.start))._started()
        try:
            while not await loop.run_in_executor(None, native.wait, _ASYNC_SLICE):
                pass
        finally:
            self.close()

    def close(self) -> None:
        """Stops the worker. Jobs still running are abandoned: the master gives them to other
        workers. Idempotent."""
        with self._lock:
            native = self._native
        if native is not None:
            native.close()
        _lifecycle.untrack(self)
        self._dispatcher.close()
        thread = self._event_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def stats(self) -> WorkerStats:
        """Counts of jobs, and whether the worker is connected to a master."""
        native = self._native
        if native is None:
            return WorkerStats(done=0, failed=0, running=0, connected=False)
        return WorkerStats(**native.stats())

    @property
    def peer_id(self) -> str | None:
        """The worker's peer id (``None`` before it started)."""
        return None if self._native is None else self._native.peer_id

    @property
    def name(self) -> str:
        """The name the master reports for this worker."""
        return self._name

    def __repr__(self) -> str:
        return f"<queuexec.Worker {self._name!r} {self.peer_id or 'not started'}>"

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Worker:
        loop = asyncio.get_running_loop()
        self._dispatcher.use_loop(loop)
        return await loop.run_in_executor(None, self.start)

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _deliver_events(native: _native.Worker, on_event: EventCallback) -> None:
        """Hands the worker's events to ``on_event`` until the worker has stopped and every
        event was handed out."""
        while True:
            batch = native.next_events(_EVENT_SLICE)
            if batch is None:
                return
            for event in batch:
                try:
                    on_event(event)
                except Exception:
                    logger.exception("on_event raised for %s; the worker carries on", event.kind)

    def _started(self) -> _native.Worker:
        native = self._native
        assert native is not None, "start() sets it"
        return native


class _Dispatcher:
    """Called by the native worker for every job a Python task handles (see ``src/worker.rs``):
    ``dispatch(id, data_json, task_type, attempt, timeout, done)``. Runs a plain function right
    away and reports through ``done(ok, text)``; schedules a coroutine on the loop and returns its
    cancel function."""

    def __init__(self, tasks: dict[str, Task], default: Task | None) -> None:
        self.tasks = tasks
        self.default = default
        self._is_async: dict[str | None, bool] = {}  # by task type: the function is fixed
        self._wants_ctx: dict[str | None, bool] = {}
        self.native: _native.Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run coroutines on ``loop`` (the loop of ``run_async``)."""
        with self._lock:
            self._loop = loop

    def close(self) -> None:
        with self._lock:
            thread, loop = self._own_thread, self._loop
            self._own_thread = None
            if thread is not None:
                self._loop = None
        if thread is not None and loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(_cancel_all_then_stop(), loop)
            except RuntimeError:  # the loop is already closed
                return
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def __call__(
        self,
        job_id: str,
        data_json: str,
        task_type: str | None,
        attempt: int,
        timeout: float | None,
        done: Callable[[bool, str], None],
    ) -> Callable[[], Any] | None:
        fn = self.tasks.get(task_type) if task_type is not None else None
        if fn is None:
            fn = self.default
        if fn is None:  # the native side only sends jobs some task handles
            done(False, f"this Python worker has no task for type {task_type!r}")
            return None
        try:
            job = Job(job_id, json.loads(data_json), task_type, attempt, timeout)
        except ValueError as e:
            done(False, f"the job's data is not JSON: {e}")
            return None
        is_async = self._is_async.get(task_type)
        if is_async is None:
            is_async = self._is_async[task_type] = inspect.iscoroutinefunction(fn)
        wants_ctx = self._wants_ctx.get(task_type)
        if wants_ctx is None:
            wants_ctx = self._wants_ctx[task_type] = _takes_two(fn)
        args: tuple[Any, ...] = (job, TaskContext(self.native, job, is_async)) if wants_ctx else (job,)
        if is_async:
            return self._schedule(_run_coroutine_fn(fn, args, done))
        try:
            value = fn(*args)
        except Exception as e:
            done(False, _error_text(e))
            return None
        if inspect.isawaitable(value):
            return self._schedule(_await_value(value, done))
        _finish(value, done)
        return None

    def _schedule(self, coro: Any) -> Callable[[], Any]:
        future = asyncio.run_coroutine_threadsafe(coro, self._running_loop())
        return future.cancel

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and not self._loop.is_closed():
                return self._loop
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_run_loop, args=(loop,), name="queuexec-tasks", daemon=True)
            thread.start()
            self._loop, self._own_thread = loop, thread
            return loop


async def _cancel_all_then_stop() -> None:
    """Ends the worker's own loop: its tasks are cancelled and awaited, then the loop stops."""
    me = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.get_running_loop().stop()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


async def _run_coroutine_fn(fn: Callable[..., Any], args: tuple[Any, ...], done: Callable[[bool, str], None]) -> None:
    try:
        value = await fn(*args)
    except asyncio.CancelledError:
        done(False, "the task was cancelled (its timeout passed, the master cancelled it, or the worker stopped)")
        raise
    except Exception as e:
        done(False, _error_text(e))
        return
    _finish(value, done)


async def _await_value(awaitable: Awaitable[Any], done: Callable[[bool, str], None]) -> None:
    try:
        value = await awaitable
    except asyncio.CancelledError:
        done(False, "the task was cancelled (its timeout passed, the master cancelled it, or the worker stopped)")
        raise
    except Exception as e:
        done(False, _error_text(e))
        return
    _finish(value, done)


def _finish(value: Any, done: Callable[[bool, str], None]) -> None:
    try:
        text = to_json(value)
    except (TypeError, ValueError) as e:
        done(False, f"the task's result is not JSON-serialisable: {e}")
        return
    done(True, text)


class BatchTask:
    """A batch task (Distributo's ``processTasks``): ``fn(jobs) -> results`` gets the jobs that
    start together (up to the worker's ``concurrency``, gathered for ``window`` seconds) as a
    list and returns one result per job, in order. Made with :func:`batch`."""

    def __init__(self, fn: Callable[[list[Job]], list[Any]], window: float) -> None:
        self.fn = fn
        self.window = window
        self._lock = threading.Condition()
        self._waiting: list[tuple[Job, list[Any]]] = []
        self._leader = False

    def __call__(self, job: Job) -> Any:
        slot: list[Any] = []  # filled with ("ok", value) or ("error", exception)
        with self._lock:
            self._waiting.append((job, slot))
            lead = not self._leader
            if lead:
                self._leader = True
        if lead:
            time.sleep(self.window)
            with self._lock:
                batch, self._waiting = self._waiting, []
                self._leader = False
            self._run(batch)
        with self._lock:
            while not slot:
                self._lock.wait()
        kind, value = slot[0]
        if kind == "error":
            raise value
        return value

    def _run(self, batch: list[tuple[Job, list[Any]]]) -> None:
        try:
            results = list(self.fn([job for job, _ in batch]))
            if len(results) != len(batch):
                raise ValueError(f"a batch task must return one result per job ({len(batch)}), got {len(results)}")
            outcomes: list[tuple[str, Any]] = [("ok", r) for r in results]
        except Exception as e:
            outcomes = [("error", e)] * len(batch)
        with self._lock:
            for (_, slot), outcome in zip(batch, outcomes, strict=True):
                slot.append(outcome)
            self._lock.notify_all()


def batch(fn: Callable[[list[Job]], list[Any]], *, window: float = 0.005) -> BatchTask:
    """Makes ``fn(jobs) -> results`` a task (Distributo's ``processTasks``): the jobs that start
    together on a worker go to one call. Use it in ``tasks``: ``{"words": queuexec.batch(fn)}``;
    the worker's ``concurrency`` bounds a batch."""
    if not callable(fn):
        raise ConfigError(f"batch takes a function (jobs) -> results, not {fn!r}")
    return BatchTask(fn, window)


class TaskContext:
    """A task's second argument (``def task(job, ctx)``): the master's lookups and messages.

    In an ``async def`` task each method returns an awaitable (the wait runs off the loop); in a
    plain function it blocks and returns the answer."""

    def __init__(self, native: _native.Worker | None, job: Job, is_async: bool) -> None:
        self._native = native
        self._async = is_async
        self.id = job.id
        self.attempt = job.attempt

    def lookup(self, name: str, key: str) -> Any:
        """The value under ``key`` in the master's lookup ``name`` (``None`` when absent)."""
        return self._ask("lookup", name, key)

    def set_lookup(self, name: str, key: str, value: Any) -> Any:
        """Sets ``key`` to ``value`` in the master's lookup ``name``."""
        return self._ask("setLookup", name, key, value)

    def request(self, cmd: str, data: Any = None) -> Any:
        """Sends ``{"cmd", "data"}`` to the master's ``on_worker_message``; its answer."""
        return self._ask("message", cmd, None, data)

    def metric(self, name: str, delta: float = 1) -> bool:
        """Adds ``delta`` to this worker's custom metric ``name`` (in the master's stats)."""
        if self._native is None:
            return False
        return self._native.metric(name, float(delta))

    def _ask(self, op: str, a: str, b: str | None = None, c: Any = None) -> Any:
        native = self._native
        if native is None:
            raise ConfigError("the worker has not started: no master to ask")
        if not self._async:
            return _call(native, op, a, b, c)
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, _call, native, op, a, b, c)


def _call(native: _native.Worker, op: str, a: str, b: str | None = None, c: Any = None) -> Any:
    data = None if op == "lookup" else to_json(c)
    ok, value = native.call(op, str(a), None if b is None else str(b), data)
    if not ok:
        raise MasterCallError(value)
    return json.loads(value)


def _takes_two(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes a second positional argument (the task context)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _error_text(e: BaseException) -> str:
    message = str(e)
    return f"{type(e).__name__}: {message}" if message else type(e).__name__
