"""Fixtures shared by the queuexec tests: fresh tokens, a private room directory, a scratch
working directory, and helpers to start masters and workers that are always closed."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import queuexec


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test works in its own directory (no stray .env, workplace or store) with its own
    room directory, so masters of different tests never meet."""
    monkeypatch.chdir(tmp_path)
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    monkeypatch.setenv("QUEUEXEC_ROOM_DIR", str(rooms))
    monkeypatch.delenv("QUEUEXEC_MDNS", raising=False)
    for var in ("token", "transferEncryptToken"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def tokens() -> dict[str, str]:
    """A fresh room token and transfer token, as keyword arguments."""
    return {"token": secrets.token_hex(12), "transfer_encrypt_token": secrets.token_hex(16)}


@pytest.fixture
def open_master(tokens: dict[str, str]) -> Iterator[Callable[..., queuexec.Master]]:
    """Starts masters with the test's tokens and closes them after the test."""
    made: list[queuexec.Master] = []

    def make(**kwargs: Any) -> queuexec.Master:
        master = queuexec.Master(**{**tokens, **kwargs})
        made.append(master)
        return master

    yield make
    for master in made:
        master.close()


@pytest.fixture
def open_worker(tokens: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., queuexec.Worker]]:
    """Starts workers (in this process) with the test's tokens and closes them after the test."""
    made: list[queuexec.Worker] = []

    def make(**kwargs: Any) -> queuexec.Worker:
        kwargs.setdefault("workplace", str(tmp_path / f"workplace-{len(made)}"))
        worker = queuexec.Worker(**{**tokens, **kwargs})
        made.append(worker)
        return worker.start()

    yield make
    for worker in made:
        worker.close()
