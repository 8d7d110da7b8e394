"""Pull-based producing for :class:`queuexec.Master` (Distributo's ``getTasks`` /
``handleResults``): the master asks ``get_tasks(n)`` for more jobs whenever fewer than two
batches of produced jobs wait or run, so only a few batches are ever in memory; results of
produced jobs go to ``handle_results`` in batches; the end comes once every produced job has a
result and ``get_tasks`` returned nothing more.

Everything here runs on the master's callback thread: pushing and reading results on one thread
means a result is never read before its push's receipt, so each is matched to its job."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigError
from .job import JobResult

if TYPE_CHECKING:
    from .master import Master

logger = logging.getLogger("queuexec")

GetTasks = Callable[[int], Sequence[Any] | None]
HandleResults = Callable[[list[JobResult]], Any]

#: Jobs ``get_tasks`` is asked for at a time, and results per ``handle_results`` call.
DEFAULT_BATCH_SIZE = 100


class Producer:
    def __init__(self, get_tasks: Any, handle_results: Any, batch_size: Any) -> None:
        if not callable(get_tasks):
            raise ConfigError(f"get_tasks must be a function (n) -> list of jobs, got {type(get_tasks).__name__}")
        if handle_results is not None and not callable(handle_results):
            raise ConfigError(
                f"handle_results must be a function (results) -> None, got {type(handle_results).__name__}"
            )
        size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
        self.get_tasks: GetTasks = get_tasks
        self.handle_results: HandleResults | None = handle_results
        self.batch_size = size
        self.ids: Counter[str] = Counter()
        self.produced = 0
        self.finished = 0
        self.exhausted = False
        self.results: list[JobResult] = []
        self.ended = threading.Event()

    def produce(self, master: Master) -> None:
        """Asks for and pushes batches while fewer than two are outstanding."""
        while not self.exhausted and not master.closed and self.produced - self.finished < 2 * self.batch_size:
            try:
                tasks = self.get_tasks(self.batch_size)
            except Exception:
                logger.exception("get_tasks raised; no more jobs are asked for")
                self.exhausted = True
                break
            if tasks is None or (isinstance(tasks, Sequence) and not isinstance(tasks, (str, bytes)) and not tasks):
                self.exhausted = True
                break
            if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
                logger.error(
                    "get_tasks must return a list of jobs (an empty one when there is no more), got %s; "
                    "no more jobs are asked for",
                    type(tasks).__name__,
                )
                self.exhausted = True
                break
            try:
                receipts = master.push_many(list(tasks))
            except Exception:
                logger.exception("pushing what get_tasks returned failed; no more jobs are asked for")
                self.exhausted = True
                break
            for receipt in receipts:
                if not receipt.duplicate:
                    self.ids[str(receipt)] += 1
                    self.produced += 1

    def on_result(self, result: JobResult) -> None:
        """A result: counted and batched when it is a produced job's."""
        if self.ids[result.job_id] <= 0:
            self.ids.pop(result.job_id, None)
            return
        self.ids[result.job_id] -= 1
        if self.ids[result.job_id] == 0:
            del self.ids[result.job_id]
        self.finished += 1
        if self.handle_results is not None:
            self.results.append(result)
            if len(self.results) >= self.batch_size:
                self.hand_batch()

    def hand_batch(self) -> None:
        if not self.results or self.handle_results is None:
            return
        batch, self.results = self.results, []
        try:
            self.handle_results(batch)
        except Exception:
            logger.exception("handle_results raised; the master carries on")

    def check_end(self) -> None:
        if self.ended.is_set() or not self.exhausted or self.finished < self.produced:
            return
        self.hand_batch()
        logger.info("producer done: %d jobs", self.finished)
        self.ended.set()
