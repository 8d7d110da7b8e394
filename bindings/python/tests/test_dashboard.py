"""The dashboard started from Python (``dashboard=``): its JSON API and Prometheus metrics over
real HTTP on loopback, and its refusal of a non-loopback address without a token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

import queuexec

from helpers import collect, wait_until


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read().decode()
        return json.loads(body) if response.headers.get_content_type() == "application/json" else body


def fail(job: queuexec.Job) -> Any:
    raise ValueError(f"no good: {job.data}")


def test_the_dashboard_serves_counts_workers_jobs_and_metrics(open_master, open_worker) -> None:
    master = open_master(dashboard="127.0.0.1:0", retries=0)
    url = master.dashboard_url
    assert url is not None and url.startswith("http://127.0.0.1:") and url.endswith("/")
    open_worker(tasks={"id": lambda job: job.data, "fail": fail}, name="py-dash")
    ids = [master.push(i, type="id", id=f"d{i}").id for i in range(20)]
    bad = master.push("x", type="fail", id="bad").id
    collect(master, 21)

    def overview() -> dict[str, Any]:
        return get(url + "api/overview")["stats"]

    wait_until(lambda: overview()["done"] == 20 and overview()["dead"] == 1, what="the counts")
    workers = get(url + "api/workers")
    assert [w["name"] for w in workers] == ["py-dash"]
    assert (workers[0]["done"], workers[0]["failed"], workers[0]["path"]) == (20, 1, "direct")
    job = get(url + f"api/jobs/{ids[3]}")
    assert (job["status"], job["attempts"], job["worker"]["name"]) == ("done", 1, "py-dash")
    dead = get(url + f"api/jobs/{bad}")
    assert dead["status"] == "dead" and "no good" in dead["last_error"]
    metrics = get(url + "metrics")
    lines = metrics.splitlines()
    for sample in ("queuexec_jobs_done_total 20", "queuexec_jobs_dead_total 1", "queuexec_workers_connected 1"):
        assert sample in lines, metrics
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(url + "api/jobs/nope")
    assert missing.value.code == 404


def test_a_dashboard_beyond_loopback_needs_a_token(tokens: dict[str, str]) -> None:
    with pytest.raises(queuexec.ConfigError, match="token"):
        queuexec.Master(**tokens, dashboard="0.0.0.0:0")
