"""Jobs no Python task handles run the master's task.js in the embedded JavaScript runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import queuexec

from helpers import collect

MakeMaster = Callable[..., queuexec.Master]
MakeWorker = Callable[..., queuexec.Worker]

# The embedded runtime's contract: task.run({id, data}) with data decoded from JSON.
TASK_JS = """
class Task {
  async run(job) {
    return { square: job.data.n * job.data.n, id: job.id, by: 'task.js' };
  }
}
module.exports = Task;
"""


def python_double(job: queuexec.Job) -> dict[str, object]:
    return {"double": job.data["n"] * 2, "by": "python"}


def test_untyped_and_unknown_jobs_run_task_js_beside_python_tasks(
    open_master: MakeMaster, open_worker: MakeWorker, isolated: Path
) -> None:
    (isolated / "task.js").write_text(TASK_JS)
    master = open_master(task="task.js")
    open_worker(tasks={"double": python_double}, concurrency=2)
    by_python = master.push_many([queuexec.JobSpec({"n": n}, type="double") for n in range(10)])
    untyped = master.push_many([{"n": n} for n in range(10)])
    other_type = master.push({"n": 7}, type="not-in-python")
    results = collect(master, 21)
    for n, job_id in enumerate(by_python):
        assert results[job_id].data == {"double": 2 * n, "by": "python"}
    for n, job_id in enumerate(untyped):
        assert results[job_id].data == {"square": n * n, "id": job_id, "by": "task.js"}, results[job_id].error
    assert results[other_type].data == {"square": 49, "id": other_type, "by": "task.js"}


def test_without_the_runtime_a_job_with_no_python_task_fails_saying_so(
    open_master: MakeMaster, open_worker: MakeWorker, isolated: Path
) -> None:
    (isolated / "task.js").write_text(TASK_JS)
    master = open_master(task="task.js")
    open_worker(tasks={"double": python_double}, run_task_js=False)
    job_id = master.push({"n": 1}, type="other", retries=0)
    error = collect(master, 1)[job_id].error or ""
    assert 'no task for type "other"' in error and "run_task_js=False" in error


def test_a_master_without_task_js_fails_only_the_jobs_that_needed_it(
    open_master: MakeMaster, open_worker: MakeWorker
) -> None:
    master = open_master()
    open_worker(tasks={"double": python_double})
    untyped = master.push({"n": 1}, retries=0)
    typed = master.push({"n": 1}, type="double")
    results = collect(master, 2)
    assert results[typed].data == {"double": 2, "by": "python"}
    error = results[untyped].error or ""
    assert "no default task" in error and "shipped no task.js" in error


def test_a_task_js_that_does_not_load_leaves_python_tasks_working(
    open_master: MakeMaster, open_worker: MakeWorker, isolated: Path
) -> None:
    (isolated / "task.js").write_text("this is not JavaScript (\n")
    master = open_master(task="task.js")
    open_worker(tasks={"double": python_double})
    typed = master.push({"n": 4}, type="double")
    untyped = master.push({"n": 4}, retries=0)
    results = collect(master, 2)
    assert results[typed].data == {"double": 8, "by": "python"}
    assert "task.js" in (results[untyped].error or "") and "could not be loaded" in (results[untyped].error or "")
