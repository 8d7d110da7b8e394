"""One folder, one .env, three front ends: a Node master (queue-xec-master), a CLI worker
(`queuexec worker`) and a Python worker (queuexec.Worker) started there with no tokens but the
ones in tests/fixtures/shared.env (quoted values, `export`, comments, CRLF line ends) join the
same room and run its jobs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import queuexec

from interop_helpers import FIXTURES, ROOT, Proc

SHARED_ENV = ROOT / "tests" / "fixtures" / "shared.env"


@pytest.mark.timeout(150)
def test_a_node_master_a_cli_worker_and_a_python_worker_share_one_dotenv(
    env: dict[str, str], cli: Path, node: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path  # the env fixture made it this process's working directory
    shutil.copyfile(SHARED_ENV, folder / ".env")
    assert b"\r\n" in (folder / ".env").read_bytes(), "the fixture keeps its CRLF line ends"
    # Tokens come from ./.env only: none in this process's environment nor in the children's.
    for var in ("token", "transferEncryptToken"):
        monkeypatch.delenv(var)
    child_env = {k: v for k, v in env.items() if k not in ("token", "transferEncryptToken")}

    def square(job: queuexec.Job) -> dict[str, Any]:
        n = json.loads(job.data)["n"]
        return {"square": n * n, "by": "python"}

    started: list[Proc] = []
    worker: queuexec.Worker | None = None
    try:
        master = Proc(
            [node, str(FIXTURES / "node_master.js")],
            {**child_env, "QX_JOBS": "200", "QX_WORKERS": "2", "QX_TYPE": "square"},
            folder,
        )
        started.append(master)
        master.wait_for(lambda lines: {"ready": True} in lines, 30, "the Node master ready")
        started.append(
            Proc(
                [str(cli), "worker", "--exec", "sleep 0.01; cat", "--concurrency", "2", "--name", "cli"],
                child_env,
                folder,
            )
        )
        worker = queuexec.Worker(
            tasks={"square": square}, name="python", concurrency=2, workplace=folder / "py-workplace"
        ).start()
        master.wait_for(lambda lines: {"closed": True} in lines, 120, "200 results on the Node master")
    finally:
        if worker is not None:
            worker.close()
        for proc in started:
            proc.kill()

    joined = [line["joined"]["name"] for line in master.lines if isinstance(line, dict) and "joined" in line]
    assert sorted(joined) == ["cli", "python"], f"both workers joined the Node master's room: {joined}"
    results = [line["result"] for line in master.lines if isinstance(line, dict) and "result" in line]
    # Compared as text: a result that reaches the Node master before its push() has resolved
    # still carries the core's string id (a race of queue-xec-master's id map, not of the .env).
    ids = sorted(int(str(r["jobID"])) for r in results)
    assert ids == list(range(200)), "every job exactly once"
    assert all("error" not in r for r in results), [r for r in results if "error" in r][:3]
    by_worker = {r["worker"]["name"] for r in results}
    assert by_worker == {"cli", "python"}, f"results came from both workers: {by_worker}"
    for r in results:
        if r["worker"]["name"] == "python":
            assert r["data"] == {"square": int(str(r["jobID"])) ** 2, "by": "python"}
