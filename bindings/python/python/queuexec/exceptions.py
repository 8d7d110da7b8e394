"""The exceptions queuexec raises.

Every one derives from :class:`QueuexecError`; where a builtin class says the same thing
(``ValueError`` for bad input, ``ConnectionError`` for the network, ``OSError`` for files), the
exception derives from it too, so ``except ValueError`` keeps working. The underlying error
(an ``OSError`` with its errno, SQLite's message, ...) is kept as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "AssetError",
    "ClosedError",
    "ConfigError",
    "DependencyError",
    "EnvelopeError",
    "FileError",
    "NetworkError",
    "PayloadError",
    "ProtocolError",
    "QueuexecError",
    "StoreError",
    "TokenError",
    "UnauthorizedError",
]


class QueuexecError(Exception):
    """Base class of every queuexec error."""


class TokenError(QueuexecError, ValueError):
    """The room token or the transfer token is missing or unusable.

    Pass ``token=`` and ``transfer_encrypt_token=``, set the environment variables ``token`` and
    ``transferEncryptToken``, or put them in ``.env`` (``queuexec setup`` writes one).
    """


class ConfigError(QueuexecError, ValueError):
    """A setting is invalid (a listen address, a number of seconds, ...)."""


class PayloadError(QueuexecError, ValueError):
    """A job's data or a result is not what it must be (for example, not JSON-serialisable)."""


class StoreError(QueuexecError):
    """The job store (the SQLite file) failed. ``location`` names the file, or ``"memory"``."""

    location: str


class FileError(QueuexecError, OSError):
    """A file could not be read or written. ``path`` is the file, ``action`` what was done; the
    ``OSError`` with its errno is the ``__cause__``."""

    action: str
    path: str


class AssetError(QueuexecError):
    """An asset was refused: a path outside the workplace (``path``, ``reason``), or content
    whose SHA-256 is not the announced one (``name``, ``expected``, ``actual``)."""


class EnvelopeError(QueuexecError):
    """A message could not be opened: it was altered, truncated, or sealed with another
    transfer token."""


class NetworkError(QueuexecError, ConnectionError):
    """The network layer failed (listening, dialling, the transport)."""


class ProtocolError(QueuexecError):
    """A peer sent something outside the protocol."""


class UnauthorizedError(QueuexecError, PermissionError):
    """The peer could not prove it holds the room token (a worker with another token)."""


class DependencyError(QueuexecError):
    """The dependency bundle for the task could not be built or installed."""


class ClosedError(QueuexecError, RuntimeError):
    """The master or worker was closed; the call cannot be served."""
