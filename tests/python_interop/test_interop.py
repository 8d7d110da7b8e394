"""Python masters and workers with the CLI and the npm packages, on loopback: the wire format is
the core's, so any front end serves any other."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import queuexec

from interop_helpers import FIXTURES, Proc

Spawn = Callable[..., Proc]


def cli_worker(spawn: Spawn, cli: Path, name: str, command: str = "cat", concurrency: int = 4) -> Proc:
    """`queuexec worker --exec COMMAND`: the job's data on stdin, its result on stdout."""
    return spawn(
        [str(cli), "worker", "--exec", command, "--concurrency", str(concurrency), "--name", name],
        name,
    )


def node_worker(spawn: Spawn, node: str, name: str) -> Proc:
    proc = spawn([node, str(FIXTURES / "node_worker.js")], name, {"QX_NAME": name})
    proc.wait_for(lambda lines: {"ready": True} in lines, 30, f"{name} ready")
    return proc


def wait_for_workers(master: queuexec.Master, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while master.stats().workers < count:
        assert time.monotonic() < deadline, f"{count} workers did not join within {timeout} s"
        time.sleep(0.05)


def collect(master: queuexec.Master, count: int, timeout: float = 90) -> dict[str, queuexec.JobResult]:
    results: dict[str, queuexec.JobResult] = {}
    for result in master.results(timeout=timeout):
        assert result.job_id not in results, f"job {result.job_id} had two results"
        results[result.job_id] = result
        if len(results) == count:
            break
    return results


def test_python_master_serves_a_cli_worker_and_a_node_worker(
    env: dict[str, str], spawn: Spawn, cli: Path, node: str
) -> None:
    with queuexec.Master(task=FIXTURES / "task.js") as master:
        cli_worker(spawn, cli, "cli-1")
        node_worker(spawn, node, "node-1")
        wait_for_workers(master, 2)
        ids = master.push_many([{"n": n} for n in range(500)])
        n_of = {job_id: n for n, job_id in enumerate(ids)}
        results = collect(master, 500)

    assert sorted(results) == sorted(ids)
    by_worker: dict[str, int] = {}
    for job_id, result in results.items():
        assert result.ok, result.error
        assert result.data["n"] == n_of[job_id], "each result belongs to its job"
        by_worker[result.worker.name] = by_worker.get(result.worker.name, 0) + 1
        if result.worker.name == "node-1":
            assert result.data == {"n": n_of[job_id], "square": n_of[job_id] ** 2, "by": "task.js"}
        else:
            assert result.data == {"n": n_of[job_id]}, "the CLI's `cat` echoes the job's data"
    assert set(by_worker) == {"cli-1", "node-1"}, f"both workers got work: {by_worker}"


def test_node_master_serves_python_workers(env: dict[str, str], spawn: Spawn, node: str, tmp_path: Path) -> None:
    def square(job: queuexec.Job) -> dict[str, Any]:
        # A queue-xec payload {id, data: JSON.stringify({n})} arrives as job.id and job.data, the
        # JSON text the Node master was given, as queue-xec's task.js receives it.
        n = json.loads(job.data)["n"]
        assert job.type == "square" and job.id == str(n)
        return {"square": n * n, "by": "python"}

    master = spawn([node, str(FIXTURES / "node_master.js")], "node-master", {"QX_JOBS": "500", "QX_TYPE": "square"})
    master.wait_for(lambda lines: {"ready": True} in lines, 30, "node master ready")
    workers = [
        queuexec.Worker(tasks={"square": square}, name=f"py-{i}", concurrency=4, workplace=tmp_path / f"wp{i}").start()
        for i in range(2)
    ]
    try:
        master.wait_for(lambda lines: {"closed": True} in lines, 90, "500 results on the Node master")
    finally:
        for worker in workers:
            worker.close()
    results = [line["result"] for line in master.lines if isinstance(line, dict) and "result" in line]
    assert sorted(r["jobID"] for r in results) == list(range(500)), "every job once, ids as Node pushed them"
    for r in results:
        assert "error" not in r, r
        assert r["data"] == {"square": r["jobID"] ** 2, "by": "python"}
    assert {r["worker"]["name"] for r in results} == {"py-0", "py-1"}


# Records each job it STARTS as the file $QX_MARKS/<job id>; from the 6th on it hangs mid-job (and
# writes its pid into the file, so the test can end the orphaned command).
MARKING_COMMAND = (
    'n=$(ls "$QX_MARKS" | wc -l); '
    'if [ "$n" -ge 5 ]; then echo $$ > "$QX_MARKS/$QUEUEXEC_JOB_ID"; exec sleep 120; fi; '
    ': > "$QX_MARKS/$QUEUEXEC_JOB_ID"; sleep 0.02; cat'
)


def test_a_cli_worker_killed_while_it_holds_a_lease_mid_job_loses_nothing(
    env: dict[str, str], spawn: Spawn, cli: Path, node: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    try:
        with queuexec.Master(task=FIXTURES / "task.js", lease_ttl=1.0) as master:
            doomed = spawn(
                [str(cli), "worker", "--exec", MARKING_COMMAND, "--concurrency", "1", "--name", "doomed"],
                "doomed",
                {"QX_MARKS": str(marks)},
            )
            wait_for_workers(master, 1)
            ids = master.push_many([{"n": n} for n in range(200)])
            deadline = time.monotonic() + 60
            while len(list(marks.iterdir())) < 6:
                assert doomed.popen.poll() is None, f"doomed exited early: {''.join(doomed.stderr)[-2000:]}"
                assert time.monotonic() < deadline, f"doomed started only {len(list(marks.iterdir()))} jobs in 60 s"
                time.sleep(0.02)
            doomed.popen.kill()  # SIGKILL: the job it hangs in is leased to it
            doomed.popen.wait(10)
            node_worker(spawn, node, "survivor")
            results = collect(master, len(ids), timeout=90)  # fails on a job with two results
    finally:
        for mark in marks.iterdir():  # the hung command outlives its worker: end it by its pid
            if pid := mark.read_text().strip():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    assert sorted(results) == sorted(ids)
    assert all(r.ok for r in results.values())
    started = [mark.name for mark in marks.iterdir()]
    assert set(started) <= set(ids)
    # Each job doomed started has its one result from doomed (the 5 it finished) or, when it was
    # mid-job at the kill, from survivor; at least the job it hung in is of the second kind.
    taken_over = [job_id for job_id in started if results[job_id].worker.name != "doomed"]
    assert taken_over, f"a job doomed held when killed was done by another worker: {started}"
    for job_id in taken_over:
        assert results[job_id].worker.name == "survivor", f"job {job_id} was leased by doomed"
        assert results[job_id].data["by"] == "task.js"
    assert sum(r.worker.name == "doomed" for r in results.values()) <= 5, "doomed finished nothing after it hung"
    assert {r.worker.name for r in results.values()} == {"doomed", "survivor"}


MASTER_SCRIPT = """
import json, os, sys, queuexec
store, out = sys.argv[1:3]
seen = set()
if os.path.exists(out):
    seen = {json.loads(line)["jobID"] for line in open(out) if line.strip()}
master = queuexec.Master(store=store, auto_ack=False, lease_ttl=1.0)
master.push_many([queuexec.JobSpec({"n": n}, id=f"job-{n}") for n in range(300)])
print("pushed", flush=True)
with open(out, "a") as sink:
    for result in master.results(until_drained=True):
        if result.job_id not in seen:
            seen.add(result.job_id)
            sink.write(json.dumps(result.to_dict()) + "\\n")
            sink.flush()
        master.ack(result)
master.close()
print("drained", flush=True)
"""


def test_a_python_master_restarted_on_its_store_carries_on_with_a_cli_worker(
    env: dict[str, str], spawn: Spawn, cli: Path, tmp_path: Path
) -> None:
    store, out = tmp_path / "jobs.sqlite", tmp_path / "results.jsonl"
    cli_worker(spawn, cli, "steady", command="sleep 0.01; cat", concurrency=2)

    first = spawn([sys.executable, "-c", MASTER_SCRIPT, str(store), str(out)], "master-1")
    first.wait_for(lambda lines: "pushed" in lines, 30, "first master pushed")
    deadline = time.monotonic() + 60
    while not (out.exists() and len(out.read_text().splitlines()) >= 40):
        assert time.monotonic() < deadline and first.popen.poll() is None, "40 results before the kill"
        time.sleep(0.02)
    first.popen.kill()  # SIGKILL: leases held, results in flight
    first.popen.wait(10)
    assert len(out.read_text().splitlines()) < 300

    second = spawn([sys.executable, "-c", MASTER_SCRIPT, str(store), str(out)], "master-2")
    second.wait_for(lambda lines: "drained" in lines, 90, "the restarted master drained")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["jobID"] for line in lines) == sorted(f"job-{n}" for n in range(300))
    assert all(line["data"] == {"n": int(line["jobID"][4:])} for line in lines)
    assert {line["worker"]["name"] for line in lines} == {"steady"}
    assert second.popen.wait(10) == 0


def test_a_cli_worker_whose_task_cannot_load_is_named_to_a_python_master_and_costs_no_attempt(
    env: dict[str, str], spawn: Spawn, cli: Path, tmp_path: Path
) -> None:
    task = tmp_path / "task.js"
    task.write_text(
        "require('qx-never-announced');\nclass Task { async run(job) { return 1; } }\nmodule.exports = Task;\n"
    )
    with queuexec.Master(task=task, watch_assets=False) as master:
        ids = [master.push({"n": n}, retries=0).id for n in range(5)]
        # No --exec: task.js runs in the embedded runtime.
        spawn([str(cli), "worker", "--name", "cli-broken"], "cli-broken")
        failed = next(e for e in master.events(timeout=30) if isinstance(e, queuexec.TaskLoadFailed))
        assert failed.kind == "taskLoadFailed"
        assert failed.worker.name == "cli-broken"
        assert "qx-never-announced" in failed.reason
        time.sleep(0.5)
        stats = master.stats()
        assert (stats.queued, stats.running, stats.retried, stats.done, stats.dead) == (5, 0, 0, 0, 0), stats
        assert stats.workers == 1, "the worker stayed connected"

        task.write_text("class Task { async run(job) { return { n: job.data.n + 1 }; } }\nmodule.exports = Task;\n")
        assert master.reload_assets()
        results = collect(master, 5, timeout=60)
    assert sorted(results) == sorted(ids)
    for result in results.values():
        assert result.ok, result.error
        assert result.worker.name == "cli-broken"
