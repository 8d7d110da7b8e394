"""The entry of a master's local worker process (see ``_local_pool.py``): a
:class:`queuexec.Worker` configured by the master through ``QUEUEXEC_LOCAL_WORKER`` (JSON). It
returns (exit code 0) when the master ran dry with ``exit_when_drained``, aborted, or on SIGTERM."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from typing import Any

from .worker import Worker


def _tasks(spec: str | None) -> Any:
    if not spec:
        return None
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise SystemExit(f"local_worker_tasks must be 'package.module:attribute', got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def main() -> None:
    config = json.loads(os.environ.pop("QUEUEXEC_LOCAL_WORKER", "{}"))
    tasks = _tasks(config.pop("tasks", None))
    worker = Worker(tasks=tasks, **config)
    signal.signal(signal.SIGTERM, lambda *_: worker.close())
    worker.run()


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()
