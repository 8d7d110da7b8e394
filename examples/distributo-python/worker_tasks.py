"""The worker side of the Python Distributo example: ``processTasks`` one word at a time."""

from __future__ import annotations

import time
from typing import Any


def syllables(job: Any) -> dict[str, Any]:
    word = job.data["word"]
    time.sleep(0.02)
    return {"word": word, "syllableData": {"vowels": sum(ch in "aeiou" for ch in word)}}


TASKS = {"syllables": syllables}
