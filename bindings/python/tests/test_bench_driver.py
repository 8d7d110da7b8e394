"""scripts/bench.sh's result writing (bench/driver.py): the shape of bench/results.json, the
ratios in the printed table and the verdict on each target. The benchmark itself is too long
for the test suite; this runs none of it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

DRIVER = Path(__file__).resolve().parents[3] / "bench" / "driver.py"


@pytest.fixture(scope="module")
def driver() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_driver", DRIVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MEASURED = {
    "S1": {
        "queuexec-cli": 90000.0,
        "queuexec-node": 35000.0,
        "queuexec-python": 20000.0,
        "bullmq": 5000.0,
        "celery": 700.0,
        "piscina": 100000.0,
    },
    "S2": {
        "queuexec-cli": {"p50": 150.0, "p99": 400.0},
        "queuexec-node": {"p50": 200.0, "p99": 500.0},
        "bullmq": {"p50": 1500.0, "p99": 3000.0},
        "tcp-floor": {"p50": 100.0, "p99": 200.0},
    },
    "S3": {"queuexec-node": 300.0, "bullmq": 60.0, "crypto-floor": 1300.0},
    "S4": {
        "queuexec-node": {"jobs": 1000000, "enqueue_per_s": 200000.0, "bytes_per_job": 50.0},
        "bullmq": {"jobs": 1000000, "enqueue_per_s": 30000.0, "bytes_per_job": 250.0},
    },
    "S5": {"queuexec-cli": {"join_to_result_ms": 12.0, "spawn_to_result_ms": 40.0}},
    "S6": {"queuexec-cli": {"1": 50000.0, "2": 90000.0}, "plot": "bench/s6.png"},
}


def test_results_file_has_the_issue_shape(driver: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "bench" / "results.json"
    driver.write_results({**MEASURED, "extra": 1}, out)
    written = json.loads(out.read_text())
    assert list(written) == ["S1", "S2", "S3", "S4", "S5", "S6"]
    assert written["S1"]["queuexec-node"] == 35000.0 and written["S2"]["tcp-floor"]["p50"] == 100.0
    # Scenarios not run are present, empty.
    driver.write_results({"S1": MEASURED["S1"]}, out)
    assert json.loads(out.read_text())["S4"] == {}


def test_nan_is_refused_not_written(driver: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        driver.write_results({"S1": {"bullmq": float("nan")}}, tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_table_shows_ratios_and_target_verdicts(driver: ModuleType) -> None:
    text = driver.table(MEASURED)
    assert "| S1 no-op jobs/s, 2 worker processes | queuexec-node | 35,000 | 7.00x BullMQ |" in text
    assert "4.00x BullMQ, 28.57x Celery" in text
    verdicts = {name: ok for name, _, ok in driver.targets(MEASURED)}
    assert verdicts["S1 Node workers >= 5x BullMQ"] is True
    assert verdicts["S1 Python workers >= 5x BullMQ"] is False  # 4x
    assert verdicts["S2 queuexec-node p50 <= 1.5x TCP floor"] is False  # 2x
    assert verdicts["S3 >= 30% of the crypto floor"] is False  # 23 %
    assert verdicts["S4 memory per job <= 0.25x Redis"] is True
    assert verdicts["S5 join -> first job <= 50 ms (CLI worker)"] is True
    assert "| S3 >= 30% of the crypto floor | 23% | NO |" in text


def test_unmeasured_targets_say_so(driver: ModuleType) -> None:
    verdicts = {name: (shown, ok) for name, shown, ok in driver.targets({"S1": {"bullmq": 1.0}})}
    assert verdicts["S1 Node workers >= 5x BullMQ"] == ("not measured", None)
