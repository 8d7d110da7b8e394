"""Typed events from a real master and worker: every class of ``queuexec.events`` arrives, with
Node's kind names, and the stat names are the core's (the same as Node's)."""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import queuexec
from queuexec.events import (
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

from helpers import wait_until

MakeMaster = Callable[..., queuexec.Master]
MakeWorker = Callable[..., queuexec.Worker]

pytestmark = pytest.mark.timeout(120)


def _ok(job: queuexec.Job) -> object:
    return {"doubled": job.data * 2}


def _fail(job: queuexec.Job) -> object:
    raise ValueError(f"no good: {job.data}")


def _next_of(events: queue.Queue[WorkerEvent], kind: type, timeout: float = 30.0) -> WorkerEvent:
    """The next worker event of class ``kind`` (earlier ones of other kinds are skipped)."""
    while True:
        event = events.get(timeout=timeout)
        if isinstance(event, kind):
            return event


def test_a_master_hands_out_each_event_class_with_nodes_kind_names(
    open_master: MakeMaster, open_worker: MakeWorker
) -> None:
    master = open_master(watch_assets=False)
    ok_id = master.push(21, type="ok")
    failed_id = master.push(5, type="fail", retries=0)
    worker = open_worker(tasks={"ok": _ok, "fail": _fail}, run_task_js=False, name="event-worker")

    seen: list[MasterEvent] = []
    for event in master.events(timeout=30):
        seen.append(event)
        done = {e.result.job_id for e in seen if isinstance(e, ResultEvent)}
        if done == {ok_id, failed_id} and any(isinstance(e, Drained) for e in seen):
            break
    joined = [e for e in seen if isinstance(e, WorkerJoined)]
    assert [e.worker.name for e in joined] == ["event-worker"]
    assert joined[0].worker.id == worker.peer_id
    results = {e.result.job_id: e.result for e in seen if isinstance(e, ResultEvent)}
    assert results[ok_id].data == {"doubled": 42}
    assert results[ok_id].worker == queuexec.WorkerInfo(worker.peer_id or "", "event-worker")
    assert results[failed_id].error == "ValueError: no good: 5"
    # Built natively field by field, they are the dataclasses Python would build: equal, hashable,
    # with every field, and frozen.
    who = queuexec.WorkerInfo(worker.peer_id or "", "event-worker")
    assert results[ok_id] == queuexec.JobResult(ok_id, who, {"doubled": 42}, None, 1)
    assert results[failed_id] == queuexec.JobResult(failed_id, who, None, "ValueError: no good: 5", 1)
    assert hash(results[failed_id]) == hash(queuexec.JobResult(failed_id, who, None, "ValueError: no good: 5", 1))
    assert repr(results[failed_id].worker) == repr(who)
    assert results[ok_id].ok and not results[failed_id].ok
    assert [f.name for f in dataclasses.fields(results[ok_id])] == ["job_id", "worker", "data", "error", "attempts"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[ok_id].data = None  # type: ignore[misc]

    worker.close()
    left = next(e for e in master.events(timeout=30) if isinstance(e, WorkerLeft))
    assert left.worker == joined[0].worker

    kinds = {cls.kind for cls in (ResultEvent, WorkerJoined, WorkerLeft, Drained, WarningEvent, TaskLoadFailed)}
    assert kinds == {"result", "workerJoined", "workerLeft", "drained", "warning", "taskLoadFailed"}
    for event in seen:
        assert dataclasses.is_dataclass(event) and not isinstance(event, tuple)
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.kind = "changed"  # type: ignore[misc]


def test_a_master_that_cannot_bundle_its_dependencies_warns_through_a_warning_event(
    open_master: MakeMaster, open_worker: MakeWorker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No npm on PATH: the bundle for workers without Node cannot be built (no network used).
    empty = tmp_path / "no-npm"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("QUEUEXEC_CACHE_DIR", str(tmp_path / "cache"))
    task = tmp_path / "task.js"
    task.write_text("module.exports = class { async run(job) { return job.data; } };\n")
    got: queue.Queue[MasterEvent] = queue.Queue()
    # One package name as a string is a list of one.
    master = open_master(dependencies="left-pad", task=task, on_event=got.put, watch_assets=False)
    # Nothing is built at start: only a worker running task.js in the embedded runtime asks.
    with pytest.raises(queue.Empty):
        got.get(timeout=1)
    master.push(7)
    open_worker(tasks={"other": _ok})
    event = next(e for e in iter(lambda: got.get(timeout=30), None) if isinstance(e, WarningEvent))
    assert "npm was not found" in event.message and event.kind == "warning"
    # This task.js does not need the bundle: it loads without it and the job runs.
    result = next(e for e in iter(lambda: got.get(timeout=30), None) if isinstance(e, ResultEvent))
    assert result.result.ok and result.result.data == 7


def test_on_event_and_on_result_both_see_a_result_and_iterators_are_refused(
    open_master: MakeMaster, open_worker: MakeWorker
) -> None:
    events: queue.Queue[MasterEvent] = queue.Queue()
    results: queue.Queue[queuexec.JobResult] = queue.Queue()
    master = open_master(on_event=events.put, on_result=results.put, watch_assets=False)
    job_id = master.push(1, type="ok")
    open_worker(tasks={"ok": _ok}, run_task_js=False)
    assert results.get(timeout=30).job_id == job_id
    wait_until(lambda: any(isinstance(e, ResultEvent) for e in list(events.queue)), what="the ResultEvent")
    with pytest.raises(queuexec.ConfigError, match="events\\(\\)"):
        next(master.events(timeout=1))


def test_a_python_worker_emits_each_worker_event_class(
    open_master: MakeMaster, open_worker: MakeWorker, tmp_path: Path
) -> None:
    task = tmp_path / "task.js"
    task.write_text("module.exports = class { async run(job) { return job; } };\n")
    master = open_master(task=task, watch_assets=False)
    ok_id = master.push(2, type="ok")
    failed_id = master.push(3, type="fail", retries=0)
    events: queue.Queue[WorkerEvent] = queue.Queue()
    worker = open_worker(tasks={"ok": _ok, "fail": _fail}, run_task_js=False, on_event=events.put)

    connected = _next_of(events, Connected)
    assert isinstance(connected, Connected) and connected.master == master.peer_id
    # On loopback, no relay: the path is direct (Node's 'connected' carries the same field).
    assert connected.path == "direct"
    installed = _next_of(events, AssetsInstalled)
    assert isinstance(installed, AssetsInstalled)
    assert installed.bundle == master.bundle_hash and installed.fetched >= 1
    finished: dict[str, JobFinished] = {}
    while len(finished) < 2:
        event = _next_of(events, JobFinished)
        assert isinstance(event, JobFinished)
        finished[event.job_id] = event
    assert finished[ok_id].error is None
    assert finished[failed_id].error == "ValueError: no good: 3"

    master.close()
    disconnected = _next_of(events, Disconnected)
    assert isinstance(disconnected, Disconnected) and disconnected.reason

    assert {cls.kind for cls in (Connected, Disconnected, AssetsInstalled, JobFinished, ErrorEvent)} == {
        "connected",
        "disconnected",
        "assetsInstalled",
        "jobFinished",
        "error",
    }
    stats = worker.stats()
    assert (stats.done, stats.failed) == (1, 1)


@pytest.mark.parametrize(
    ("other", "error_class"),
    [
        ("room", queuexec.UnauthorizedError),
        ("transfer", queuexec.TokenMismatchError),
    ],
    ids=["another room token: UnauthorizedError", "another transfer token: TokenMismatchError"],
)
def test_a_refused_worker_emits_an_error_event_with_the_error_run_raises(
    open_master: MakeMaster, tokens: dict[str, str], other: str, error_class: type[queuexec.QueuexecError]
) -> None:
    master = open_master()
    events: queue.Queue[WorkerEvent] = queue.Queue()
    intruder = queuexec.Worker(
        token="another room" if other == "room" else tokens["token"],
        transfer_encrypt_token="x" * 32 if other == "transfer" else tokens["transfer_encrypt_token"],
        master=master.listen_addrs[0],
        tasks={},
        on_event=events.put,
    )
    with pytest.raises(error_class) as raised:
        intruder.run()
    event = _next_of(events, ErrorEvent)
    assert isinstance(event, ErrorEvent) and event.kind == "error"
    assert isinstance(event.error, error_class)
    assert str(event.error) == str(raised.value) and str(event.error)


def test_an_on_event_that_raises_does_not_stop_the_worker(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master(watch_assets=False)
    calls = threading.Event()

    def broken(event: WorkerEvent) -> None:
        calls.set()
        raise RuntimeError("listener bug")

    open_worker(tasks={"ok": _ok}, run_task_js=False, on_event=broken)
    job_id = master.push(4, type="ok")
    result = next(master.results(timeout=30))
    assert result.job_id == job_id and result.data == {"doubled": 8}
    assert calls.is_set()


def test_stat_names_are_the_cores_the_same_as_nodes(open_master: MakeMaster, open_worker: MakeWorker) -> None:
    master = open_master(watch_assets=False)
    assert [f.name for f in dataclasses.fields(master.stats())] == [
        "queued",
        "delayed",
        "running",
        "done",
        "dead",
        "retried",
        "workers",
        "relayed_workers",
        "relayed_bytes",
    ]
    worker = open_worker(tasks={}, run_task_js=False)
    assert [f.name for f in dataclasses.fields(worker.stats())] == [
        "done",
        "failed",
        "running",
        "connected",
        "path",
        "relayed_bytes",
    ]


def test_lists_given_one_string_take_it_as_one_item_or_refuse_it(open_master: MakeMaster) -> None:
    master = open_master(listen="/ip4/127.0.0.1/tcp/0", watch_assets=False)
    assert len(master.listen_addrs) == 1 and master.listen_addrs[0].startswith("/ip4/127.0.0.1/tcp/")
    with pytest.raises(queuexec.PayloadError, match="push_many takes a list of jobs"):
        master.push_many("abc")
    assert master.stats().queued == 0
