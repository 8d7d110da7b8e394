"""Helpers of the cross-language tests (imported by the test modules and the fixtures)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


class Proc:
    """A child process whose stdout lines are collected (JSON lines parsed) as they come."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[Any] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            try:
                item: Any = json.loads(line)
            except ValueError:
                item = line.rstrip("\n")
            with self._changed:
                self.lines.append(item)
                self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr.append(line)

    def wait_for(self, check: Callable[[list[Any]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not check(self.lines)):
                    if self.popen.poll() is not None:
                        time.sleep(0.2)  # let the readers catch up with what it wrote last
                    raise AssertionError(
                        f"{what}: not seen within {timeout} s from {self.args[:3]} "
                        f"(exit {self.popen.poll()}); stderr:\n{''.join(self.stderr)[-3000:]}"
                    )
                self._changed.wait(min(left, 0.2))

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
