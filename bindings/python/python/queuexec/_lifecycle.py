"""Masters and workers still open when the interpreter exits are closed, so a master's store is
flushed and its room file withdrawn even when a script forgot ``close()``."""

from __future__ import annotations

import atexit
import logging
import weakref
from typing import Any

_open: weakref.WeakSet[Any] = weakref.WeakSet()


def track(obj: Any) -> None:
    """Closes ``obj`` at exit unless it was closed before (``obj.close()``)."""
    _open.add(obj)


def untrack(obj: Any) -> None:
    """``obj`` was closed."""
    _open.discard(obj)


@atexit.register
def _close_all() -> None:
    for obj in list(_open):
        try:
            obj.close()
        except Exception:  # exiting anyway: report and go on
            logging.getLogger("queuexec").exception("closing %r at exit failed", obj)
