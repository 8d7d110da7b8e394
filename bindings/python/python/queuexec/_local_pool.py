"""A master's local worker processes (okanjo-conductor's ``workerLimit``, meteor-cluster's pool
sized to the cores): ``Master(local_workers=N)`` starts N Python processes running a
:class:`queuexec.Worker` against this master, starts a new one when one crashes (a
:class:`~queuexec.events.WorkerExit` with ``type == "worker_crash"``, its worker id, exit code and
signal, to ``on_event`` and the ``queuexec`` logger), and stops them on ``close()``. With
``exit_when_drained=True`` they leave once the master has no more jobs and are not started again.

The workers' tasks come from ``local_worker_tasks="package.module:attribute"`` (a dict of task
type to function, importable in the child process); without it they run the master's task.js in
the embedded JavaScript runtime."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .events import WorkerExit
from .exceptions import ConfigError

logger = logging.getLogger("queuexec")

RESPAWN_FIRST = 0.1
RESPAWN_MAX = 5.0
STOP_GRACE = 5.0


def local_worker_count(option: Any) -> int:
    """N, or True for min(cores, 4)."""
    if option is None or option is False or option == 0:
        return 0
    if option is True:
        return min(os.cpu_count() or 1, 4)
    if isinstance(option, bool) or not isinstance(option, int) or not 0 <= option <= 256:
        raise ConfigError(
            f"local_workers must be a whole number from 0 to 256, or True (min(cores, 4)); got {option!r}"
        )
    return option


class LocalPool:
    def __init__(
        self,
        count: int,
        config: dict[str, Any],
        on_exit: Callable[[WorkerExit], None],
    ) -> None:
        self.count = count
        self.config = config
        self.on_exit = on_exit
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.next_id = 1
        self.closing = False
        self.respawn = RESPAWN_FIRST
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self, master_addr: str) -> None:
        self.config["master"] = master_addr
        for slot in range(self.count):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        with self.lock:
            if self.closing:
                return
            worker_id = self.next_id
            self.next_id += 1
            config = dict(self.config)
            config.setdefault("name", f"local_{slot + 1}")
            env = dict(os.environ)
            env["QUEUEXEC_LOCAL_WORKER"] = json.dumps(config)
            child = subprocess.Popen([sys.executable, "-m", "queuexec._local_worker"], env=env)
            self.children[worker_id] = child
        thread = threading.Thread(
            target=self._watch, args=(worker_id, slot, child), name=f"queuexec-local-{worker_id}", daemon=True
        )
        thread.start()
        self.threads.append(thread)

    def _watch(self, worker_id: int, slot: int, child: subprocess.Popen[bytes]) -> None:
        code = child.wait()
        with self.lock:
            self.children.pop(worker_id, None)
            closing = self.closing
        sig = signal.Signals(-code).name if code < 0 else None
        exit_code = None if code < 0 else code
        crashed = not closing and code != 0
        info = WorkerExit(worker_id, child.pid, exit_code, sig, "worker_crash" if crashed else None)
        if crashed:
            logger.error(
                "local worker %d (pid %d) crashed (%s); starting another",
                worker_id,
                child.pid,
                f"signal {sig}" if sig else f"exit code {exit_code}",
            )
        try:
            self.on_exit(info)
        except Exception:
            logger.exception("on_event raised for a local worker's exit")
        if crashed:
            delay = self.respawn
            self.respawn = min(self.respawn * 2, RESPAWN_MAX)
            time.sleep(delay)
            self._spawn(slot)

    def pids(self) -> dict[int, int]:
        with self.lock:
            return {worker_id: child.pid for worker_id, child in self.children.items()}

    def close(self) -> None:
        with self.lock:
            self.closing = True
            children = list(self.children.values())
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
