"""What only separate processes show: Ctrl-C, the GIL, a worker killed mid-run, a master killed
and restarted on its SQLite store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import queuexec

from helpers import collect, python_process, wait_until

MakeMaster = Callable[..., queuexec.Master]
MakeWorker = Callable[..., queuexec.Worker]


def read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The next line of the process's stdout (fails if it does not come)."""
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not lines:
        proc.kill()
        raise AssertionError(f"no output from the process within {timeout} s; stderr: {proc.communicate()[1]}")
    return lines[0].strip()


def interrupt_and_wait(proc: subprocess.Popen[str]) -> float:
    """Sends Ctrl-C and returns how long the process took to exit."""
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the process ignored Ctrl-C for 10 s") from None
    return time.monotonic() - started


def test_ctrl_c_stops_a_blocking_results_loop(tokens: dict[str, str], isolated: Path) -> None:
    proc = python_process(
        textwrap.dedent(
            f"""
            import signal
            # As in a terminal: a suite started in the background (`cmd &` in a script) hands its
            # children SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            import queuexec
            token, transfer = {tokens["token"]!r}, {tokens["transfer_encrypt_token"]!r}
            master = queuexec.Master(token=token, transfer_encrypt_token=transfer)
            try:
                # Inside the try: the test's Ctrl-C may land before the loop starts.
                print(master.room_id, flush=True)
                for result in master.results():
                    pass
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                master.close()
            """
        )
    )
    room_id = read_line(proc)
    assert (isolated / "rooms" / f"{room_id}.json").exists()
    took = interrupt_and_wait(proc)
    out, err = proc.communicate()
    assert "interrupted" in out, err
    assert took < 2.0, f"Ctrl-C took {took:.2f} s"
    assert not (isolated / "rooms" / f"{room_id}.json").exists(), "the master withdrew its room file"


def test_ctrl_c_stops_a_blocking_worker_run(tokens: dict[str, str], open_master: MakeMaster) -> None:
    master = open_master()
    proc = python_process(
        textwrap.dedent(
            f"""
            import signal
            signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (see above)
            import queuexec
            token, transfer = {tokens["token"]!r}, {tokens["transfer_encrypt_token"]!r}
            worker = queuexec.Worker(token=token, transfer_encrypt_token=transfer,
                                     tasks={{"id": lambda job: job.data}}, name="interruptible")
            print("starting", flush=True)
            worker.run()
            """
        )
    )
    read_line(proc)
    job_id = master.push("hello", type="id")
    assert collect(master, 1)[job_id].worker.name == "interruptible"
    took = interrupt_and_wait(proc)
    _, err = proc.communicate()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert took < 2.0, f"Ctrl-C took {took:.2f} s"
    wait_until(lambda: master.stats().workers == 0, what="the master to see the worker go")


def test_the_gil_is_released_while_waiting_for_results(open_master: MakeMaster) -> None:
    master = open_master()
    waited: list[float] = []

    def wait_for_results() -> None:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            next(master.results(timeout=1.0))
        waited.append(time.monotonic() - started)

    thread = threading.Thread(target=wait_for_results)
    count = 0
    thread.start()
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        count += 1
    thread.join()
    assert waited and waited[0] >= 0.9
    # Python code ran freely beside the wait: a held GIL would allow at most a few switches.
    assert count > 50_000, f"only {count} iterations ran while another thread waited"


MARKING_WORKER_SCRIPT = """
import os, sys, time, queuexec
marks, hang_after = sys.argv[4], int(sys.argv[5])
started = 0
def slow(job):
    # Records each job it STARTS (`<pid>-<job id>`); after `hang_after` of them it hangs mid-job.
    global started
    started += 1
    open(os.path.join(marks, f"{os.getpid()}-{job.id}"), "w").close()
    if started > hang_after:
        time.sleep(3600)
    time.sleep(0.02)
    return job.data
worker = queuexec.Worker(token=sys.argv[1], transfer_encrypt_token=sys.argv[2], tasks={"slow": slow},
                         concurrency=1, name=sys.argv[3])
print("starting", flush=True)
worker.run()
"""


@pytest.mark.timeout(120)
def test_a_worker_killed_while_it_holds_a_lease_mid_job_loses_nothing(
    tokens: dict[str, str], open_master: MakeMaster, open_worker: MakeWorker, isolated: Path
) -> None:
    marks = isolated / "marks"
    marks.mkdir()
    master = open_master(lease_ttl=1.0)
    ids = master.push_many([queuexec.JobSpec(n, type="slow") for n in range(200)])
    # "doomed" finishes 5 jobs, then hangs inside the 6th: it is killed holding that job's lease.
    doomed = subprocess.Popen(
        [sys.executable, "-c", MARKING_WORKER_SCRIPT, tokens["token"], tokens["transfer_encrypt_token"], "doomed"]
        + [str(marks), "5"],
        cwd=isolated,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def started_by_doomed() -> list[str]:
        prefix = f"{doomed.pid}-"
        return [p.name[len(prefix) :] for p in marks.iterdir() if p.name.startswith(prefix)]

    try:
        read_line(doomed)
        deadline = time.monotonic() + 60
        while len(started_by_doomed()) < 6:
            assert doomed.poll() is None, f"doomed exited early: {doomed.communicate()[1]}"
            assert time.monotonic() < deadline, f"doomed started only {started_by_doomed()} within 60 s"
            time.sleep(0.02)
        doomed.kill()  # SIGKILL: no goodbye, the job it is inside of is leased to it
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.communicate()

    def slow(job: queuexec.Job) -> int:
        return int(job.data)

    open_worker(tasks={"slow": slow}, name="survivor", concurrency=4)
    results = collect(master, len(ids), timeout=60)  # fails on a job with two results
    assert sorted(results) == sorted(ids)
    assert all(r.ok for r in results.values())
    started = started_by_doomed()
    assert set(started) <= set(ids)
    # Each job doomed started has its one result from doomed (the 5 it finished) or, when it was
    # mid-job at the kill, from survivor; at least the job it hung in is of the second kind.
    taken_over = [job_id for job_id in started if results[job_id].worker.name != "doomed"]
    assert taken_over, f"a job doomed held when killed was done by another worker: {started}"
    for job_id in taken_over:
        assert results[job_id].worker.name == "survivor", f"job {job_id} was leased by doomed"
    assert sum(r.worker.name == "doomed" for r in results.values()) <= 5, "doomed finished nothing after it hung"
    assert {r.worker.name for r in results.values()} == {"doomed", "survivor"}


MASTER_SCRIPT = """
import json, os, sys, queuexec
store, out, token, transfer = sys.argv[1:5]
seen = set()
if os.path.exists(out):
    seen = {json.loads(line)["jobID"] for line in open(out) if line.strip()}
master = queuexec.Master(token=token, transfer_encrypt_token=transfer, store=store, auto_ack=False, lease_ttl=1.0,
                         idempotent_ids=True)
# Same ids on every start: with idempotent ids, jobs already in the store are not queued again.
master.push_many([queuexec.JobSpec(n, type="slow", id=f"job-{n}") for n in range(150)])
print("pushed", flush=True)
with open(out, "a") as sink:
    for result in master.results(until_drained=True):
        if result.job_id not in seen:
            seen.add(result.job_id)
            sink.write(json.dumps(result.to_dict()) + "\\n")
            sink.flush()
            os.fsync(sink.fileno())
        master.ack(result)
master.close()
print("drained", flush=True)
"""


def test_a_master_killed_and_restarted_on_its_store_carries_on(
    tokens: dict[str, str], open_worker: MakeWorker, isolated: Path
) -> None:
    store, out = isolated / "jobs.sqlite", isolated / "results.jsonl"
    args = [str(store), str(out), tokens["token"], tokens["transfer_encrypt_token"]]

    def start_master() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [__import__("sys").executable, "-c", MASTER_SCRIPT, *args],
            cwd=isolated,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def slow(job: queuexec.Job) -> int:
        time.sleep(0.01)
        return int(job.data)

    first = start_master()
    try:
        assert read_line(first) == "pushed"
        open_worker(tasks={"slow": slow}, concurrency=2)
        wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= 30, what="30 results")
        first.kill()  # SIGKILL mid-run: jobs are leased, results in flight
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    written_before = len(out.read_text().splitlines())
    assert written_before < 150, "the master was killed before the end"

    second = start_master()
    try:
        assert read_line(second) == "pushed"
        assert read_line(second, timeout=60) == "drained"
    finally:
        if second.poll() is None:
            second.kill()
        _, err = second.communicate()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [line["jobID"] for line in lines]
    assert len(ids) == len(set(ids)) == 150, err
    assert sorted(line["data"] for line in lines) == list(range(150))
