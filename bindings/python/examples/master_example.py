"""A master that pushes jobs of two task types and prints their results.

Run it beside ``worker_example.py`` (same directory, same ``.env``, or the same ``token`` and
``transferEncryptToken`` in the environment)::

    queuexec setup            # writes .env with fresh tokens
    python master_example.py
"""

from __future__ import annotations

import queuexec


def main() -> None:
    # store= keeps jobs in SQLite: restart this script and it carries on where it stopped.
    with queuexec.Master(store="jobs.sqlite") as master:
        ids = master.push_many([queuexec.JobSpec({"x": n}, type="double", id=f"double-{n}") for n in range(10)])
        ids.append(master.push({"url": "https://example.invalid"}, type="fetch", retries=1, timeout=30))
        print(f"pushed {len(ids)} jobs; waiting for workers on {master.listen_addrs[0]}")
        totals: dict[str, int] = {"ok": 0, "failed": 0}
        for result in master.results(until_drained=True):
            if result.ok:
                totals["ok"] += 1
                print(f"{result.job_id} -> {result.data} (by {result.worker.name})")
            else:
                totals["failed"] += 1
                print(f"{result.job_id} failed after {result.attempts} attempts: {result.error}")
        stats: queuexec.MasterStats = master.stats()
        print(f"done: {totals}; master counts: {stats}")


if __name__ == "__main__":
    main()
