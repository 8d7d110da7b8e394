"""Distributo's README example in Python on queuexec: the master pulls words in batches of 5
(``get_tasks``), two local worker processes process them and leave when no work is left, and
the master handles the results batch by batch (``handle_results``).

    python examples/distributo-python/master.py
"""

from __future__ import annotations

import os
import sys
import tempfile

import queuexec

WORDS = ["apple", "banana", "cherry", "damson", "elderberry", "fig", "grape", "honeydew", "kiwi", "lemon",
         "mango", "nectarine", "orange", "papaya", "quince", "raspberry"]
handed = False


def get_my_tasks(n: int) -> list[queuexec.JobSpec]:
    """Handed out once; an empty list means there is no more."""
    global handed
    if handed:
        return []
    handed = True
    return [queuexec.JobSpec({"word": word}, type="syllables", id=word) for word in WORDS]


received = 0


def handle_my_results(results: list[queuexec.JobResult]) -> None:
    global received
    received += len(results)
    print("Results received:", len(results), flush=True)
    for r in results:
        print(f"  {r.data['word']}: {r.data['syllableData']['vowels']} vowels (worker {r.worker.name})", flush=True)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    os.chdir(here)  # the local workers import worker_tasks from here
    with queuexec.Master(
        batch_size=5,
        get_tasks=get_my_tasks,
        handle_results=handle_my_results,
        local_workers=2,
        local_worker_tasks="worker_tasks:TASKS",
        exit_when_drained=True,
        # Where the workers install what the master ships (a folder of their own).
        worker_options={"workplace": tempfile.mkdtemp(prefix="distributo-workers-")},
    ) as distributor:
        if not distributor.wait_end(timeout=120):
            sys.exit("the work did not end within 120 s")
        print(f"All {received} results handled", flush=True)


if __name__ == "__main__":
    main()
