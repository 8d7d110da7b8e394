"""Where tokens come from: the argument, else the environment, else a ``.env`` file.

The variable names are queue-xec's (``token``, ``transferEncryptToken``), so the ``.env`` that
``queuexec setup`` (or queue-xec's ``cli.js --setup``) wrote works unchanged, as it does for the
CLI and the npm packages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from .exceptions import ConfigError, TokenError

TOKEN_VAR = "token"
TRANSFER_VAR = "transferEncryptToken"

PathLike = Union[str, "os.PathLike[str]"]


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` pairs of a dotenv file (``export``, quotes and ``#`` comments allowed)."""
    values: dict[str, str] = {}
    text = path.read_text(encoding="utf-8")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key = key.strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            # An unquoted value ends at a comment.
            hash_at = value.find(" #")
            if hash_at >= 0:
                value = value[:hash_at].rstrip()
        values[key] = value
    return values


def resolve_tokens(
    token: str | None,
    transfer_token: str | None,
    env_file: PathLike | None,
) -> tuple[str, str]:
    """Each token from its argument, else the environment, else ``env_file`` (default ``./.env``)."""
    if env_file is None:
        path = Path(".env")
        file_values = read_env_file(path) if path.is_file() else {}
    else:
        path = Path(env_file)
        if not path.is_file():
            raise ConfigError(f"env_file {str(path)!r} does not exist; give the path of a .env file, or None")
        file_values = read_env_file(path)

    def pick(given: str | None, var: str) -> str | None:
        for candidate in (given, os.environ.get(var), file_values.get(var)):
            if candidate is not None and candidate.strip():
                return candidate
        return None

    room = pick(token, TOKEN_VAR)
    if room is None:
        raise TokenError(
            f"no room token: pass token=..., set the environment variable {TOKEN_VAR!r}, "
            f"or put it in {str(path)!r} (run `queuexec setup` to create one)"
        )
    transfer = pick(transfer_token, TRANSFER_VAR)
    if transfer is None:
        raise TokenError(
            f"no transfer token: pass transfer_encrypt_token=..., set {TRANSFER_VAR!r}, "
            f"or put it in {str(path)!r} (run `queuexec setup` to create one)"
        )
    return room, transfer
