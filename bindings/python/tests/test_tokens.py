"""Where a master's and a worker's tokens come from, and what a user sees when they are wrong."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import queuexec


def room_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_no_token_anywhere_raises_token_error() -> None:
    with pytest.raises(queuexec.TokenError) as caught:
        queuexec.Master()
    assert isinstance(caught.value, ValueError)
    assert "token" in str(caught.value) and "queuexec setup" in str(caught.value)


def test_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch, tokens: dict[str, str]) -> None:
    monkeypatch.setenv("token", tokens["token"])
    monkeypatch.setenv("transferEncryptToken", tokens["transfer_encrypt_token"])
    with queuexec.Master() as master:
        assert master.room_id == room_id(tokens["token"])


def test_tokens_from_dotenv_in_the_current_directory(isolated: Path, tokens: dict[str, str]) -> None:
    (isolated / ".env").write_text(
        "# written by queuexec setup\n"
        f"token={tokens['token']}\n"
        f'export transferEncryptToken="{tokens["transfer_encrypt_token"]}"\n'
    )
    with queuexec.Master() as master:
        assert master.room_id == room_id(tokens["token"])


def test_argument_beats_environment_beats_dotenv(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, tokens: dict[str, str]
) -> None:
    (isolated / ".env").write_text("token=from-the-file\ntransferEncryptToken=" + "f" * 32 + "\n")
    monkeypatch.setenv("token", "from-the-environment")
    with queuexec.Master() as master:
        assert master.room_id == room_id("from-the-environment")
    with queuexec.Master(token="from-the-argument") as master:
        assert master.room_id == room_id("from-the-argument")


def test_explicit_env_file(isolated: Path, tokens: dict[str, str]) -> None:
    env = isolated / "secrets" / "queuexec.env"
    env.parent.mkdir()
    env.write_text(f"token={tokens['token']}\ntransferEncryptToken={tokens['transfer_encrypt_token']}\n")
    with queuexec.Master(env_file=env) as master:
        assert master.room_id == room_id(tokens["token"])
    with pytest.raises(queuexec.ConfigError, match="does not exist"):
        queuexec.Master(env_file=isolated / "missing.env")


def test_short_transfer_token_is_refused_by_the_core(tokens: dict[str, str]) -> None:
    with pytest.raises(queuexec.TokenError, match="at least 32"):
        queuexec.Master(token=tokens["token"], transfer_encrypt_token="too-short")
    with pytest.raises(queuexec.TokenError, match="at least 32"):
        queuexec.Worker(token=tokens["token"], transfer_encrypt_token="too-short", tasks={}).start()
