"""Where tokens come from: the argument, else the environment, else a ``.env`` file.

The rule, the ``.env`` parser and the messages are the core's (``queuexec_core::config``), the
same for the CLI and the npm packages; this module only adapts the types. The variable names
are queue-xec's (``token``, ``transferEncryptToken``), so the ``.env`` that ``queuexec setup``
(or ``npx queue-xec-master --setup``) wrote works unchanged.
"""

from __future__ import annotations

import os
from typing import Union

from . import _native

PathLike = Union[str, "os.PathLike[str]"]


def resolve_tokens(
    token: str | None,
    transfer_token: str | None,
    env_file: PathLike | None,
) -> tuple[str, str]:
    """Each token from its argument, else the environment, else ``env_file`` (default ``./.env``,
    which may be missing; a named file must exist). Raises :class:`~queuexec.TokenError` when a
    token is missing or invalid, :class:`~queuexec.ConfigError` for a bad ``.env``."""
    return _native.resolve_tokens(token, transfer_token, None if env_file is None else os.fspath(env_file))
