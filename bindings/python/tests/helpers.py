"""Helpers for the queuexec tests (imported by the test modules)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import queuexec


def collect(master: queuexec.Master, count: int, timeout: float = 60.0) -> dict[str, queuexec.JobResult]:
    """Reads results until `count` distinct jobs have one; fails on a job seen twice."""
    results: dict[str, queuexec.JobResult] = {}
    for result in master.results(timeout=timeout):
        assert result.job_id not in results, f"job {result.job_id} had two results"
        results[result.job_id] = result
        if len(results) == count:
            break
    return results


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def python_process(script: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[str]:
    """Runs `script` in a new Python interpreter (same queuexec), stdout and stderr piped."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
