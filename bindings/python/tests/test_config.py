"""The core's shared rules as the Python package sees them: the shared ``.env`` fixture every
front end reads the same way, the defaults, one string where a list is expected."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import queuexec
from queuexec import _native

FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "shared.env"
EXPECTED = json.loads(FIXTURE.with_name("shared.env.json").read_text())


def test_the_shared_env_fixture_resolves_to_the_values_every_front_end_reads() -> None:
    assert _native.resolve_tokens(None, None, str(FIXTURE)) == (EXPECTED["token"], EXPECTED["transferEncryptToken"])
    assert dict(_native.read_dotenv(str(FIXTURE)) or []) == EXPECTED


@pytest.mark.timeout(60)
def test_a_python_worker_beside_the_shared_env_runs_the_jobs_of_a_master_given_the_expected_tokens(
    isolated: Path,
) -> None:
    shutil.copyfile(FIXTURE, isolated / ".env")
    with queuexec.Master(EXPECTED["token"], EXPECTED["transferEncryptToken"]) as master:
        # The worker has only ./.env to go by: it runs the job only if it read the same tokens.
        worker = queuexec.Worker(tasks={"echo": lambda job: job.data}, workplace=str(isolated / "wp")).start()
        try:
            job_id = master.push("hello", type="echo")
            result = next(master.results(timeout=30))
        finally:
            worker.close()
    assert result.job_id == job_id and result.ok and result.data == "hello"


def test_an_invalid_env_file_is_refused_naming_its_line(isolated: Path) -> None:
    (isolated / ".env").write_text("A=1\nnot an assignment\n")
    with pytest.raises(queuexec.ConfigError, match="line 2"):
        queuexec.Master()


def test_defaults_are_the_cores_and_the_same_as_nodes() -> None:
    d = queuexec.defaults()
    assert (d["concurrency"], d["name"], d["prefetch"]) == (1, "no_name", 1)
    assert (d["retries"], d["lease_ttl"], d["max_workers"], d["watch_assets"]) == (3, 15.0, 1024, True)
    worker = queuexec.Worker("room", "t" * 32, tasks={})
    assert worker.name == "no_name"


def test_one_listen_address_given_as_a_string_is_a_list_of_one(tokens: dict[str, str]) -> None:
    with queuexec.Master(**tokens, listen="/ip4/127.0.0.1/tcp/0") as master:
        addrs = master.listen_addrs
    assert len(addrs) == 1 and addrs[0].startswith("/ip4/127.0.0.1/tcp/"), addrs


def test_one_asset_and_one_dependency_given_as_strings(isolated: Path, tokens: dict[str, str]) -> None:
    (isolated / "helper.js").write_text("module.exports = 1;")
    with queuexec.Master(**tokens, assets="helper.js", watch_assets=False) as master:
        assert master.bundle_hash
    with pytest.raises(queuexec.ConfigError, match="relative to the current directory"):
        queuexec.Master(**tokens, assets=str(isolated / "helper.js"))


@pytest.mark.timeout(60)
def test_a_thread_count_that_is_not_a_number_fails_the_master_naming_the_variable(
    isolated: Path, tokens: dict[str, str]
) -> None:
    # The runtime is made once per process, when the first master or worker starts.
    script = (
        "import queuexec, sys\n"
        "try:\n"
        "    queuexec.Master(sys.argv[1], sys.argv[2]).close()\n"
        "except queuexec.QueuexecError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, tokens["token"], tokens["transfer_encrypt_token"]],
        env={**os.environ, "QUEUEXEC_THREADS": "0"},
        cwd=isolated,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert 'QUEUEXEC_THREADS="0" is not a thread count' in out.stdout, out.stdout + out.stderr
