"""What only separate processes show: Ctrl-C, the GIL, a worker killed mid-run, a master killed
and restarted on its SQLite store."""

from __future__ import annotations

import json
import signal
import subprocess
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
            import queuexec
            token, transfer = {tokens["token"]!r}, {tokens["transfer_encrypt_token"]!r}
            master = queuexec.Master(token=token, transfer_encrypt_token=transfer)
            print(master.room_id, flush=True)
            try:
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


WORKER_SCRIPT = """
import sys, time, queuexec
def slow(job):
    time.sleep(0.02)
    return job.data
worker = queuexec.Worker(token=sys.argv[1], transfer_encrypt_token=sys.argv[2], tasks={"slow": slow},
                         concurrency=4, name=sys.argv[3])
print("starting", flush=True)
worker.run()
"""


def worker_process(tokens: dict[str, str], name: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [__import__("sys").executable, "-c", WORKER_SCRIPT, tokens["token"], tokens["transfer_encrypt_token"], name],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_worker_killed_mid_run_loses_nothing(
    tokens: dict[str, str], open_master: MakeMaster, open_worker: MakeWorker, isolated: Path
) -> None:
    master = open_master(lease_ttl=1.0)
    ids = master.push_many([queuexec.JobSpec(n, type="slow") for n in range(200)])
    doomed = worker_process(tokens, "doomed", isolated)
    try:
        read_line(doomed)
        results: dict[str, queuexec.JobResult] = {}
        for result in master.results(timeout=30):
            assert result.job_id not in results
            results[result.job_id] = result
            if len(results) == 40:
                break
        doomed.kill()  # SIGKILL: no goodbye, its leased jobs are mid-run
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.communicate()

    def slow(job: queuexec.Job) -> int:
        return int(job.data)

    open_worker(tasks={"slow": slow}, name="survivor", concurrency=4)
    for result in master.results(timeout=30):
        assert result.job_id not in results, f"job {result.job_id} had two results"
        results[result.job_id] = result
        if len(results) == len(ids):
            break
    assert sorted(results) == sorted(ids)
    assert all(r.ok for r in results.values())
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
