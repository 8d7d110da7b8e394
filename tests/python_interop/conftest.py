"""Fixtures of the cross-language tests: a private room per test, fresh tokens, and processes of
the other front ends (the `queuexec` CLI, the npm packages) that are killed by PID afterwards.

Needs the CLI binary (``cargo build --workspace --bins``; ``QUEUEXEC_CLI`` names another) and the
npm workspace installed at the repository root (``npm install``, which builds the Node addon).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from interop_helpers import ROOT, Proc


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Tokens and a room directory of this test, set for this process and its children."""
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    values = {
        "token": "room" + secrets.token_hex(12),
        "transferEncryptToken": secrets.token_hex(24),
        "QUEUEXEC_ROOM_DIR": str(rooms),
        "QUEUEXEC_MDNS": "0",
        "QX_ROOT": str(ROOT),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.chdir(tmp_path)
    return dict(os.environ)


@pytest.fixture(scope="session")
def cli() -> Path:
    """The `queuexec` binary."""
    given = os.environ.get("QUEUEXEC_CLI")
    candidates = [Path(given)] if given else [ROOT / "target/debug/queuexec", ROOT / "target/release/queuexec"]
    for path in candidates:
        if path.is_file():
            return path
    pytest.fail(
        f"no queuexec CLI at {[str(c) for c in candidates]}: "
        "run `cargo build --workspace --bins` first, or set QUEUEXEC_CLI"
    )


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with the npm packages of bindings/node installed."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH")
    for package in ("queue-xec-master", "queue-xec-worker"):
        if not (ROOT / "node_modules" / package).exists():
            pytest.fail(f"{package} is not installed: run `npm install` at {ROOT}")
    return node


@pytest.fixture
def spawn(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Starts processes in their own directories under the test's; kills them (by PID) after."""
    started: list[Proc] = []

    def start(args: list[str], name: str, extra_env: dict[str, str] | None = None) -> Proc:
        cwd = tmp_path / name
        cwd.mkdir(exist_ok=True)
        proc = Proc(args, {**env, **(extra_env or {})}, cwd)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
