"""The exceptions queuexec raises.

Every one derives from :class:`QueuexecError`; where a builtin class says the same thing
(``ValueError`` for bad input, ``ConnectionError`` for the network, ``OSError`` for files), the
exception derives from it too, so ``except ValueError`` keeps working. The underlying error
(an ``OSError`` with its errno, SQLite's message, ...) is kept as ``__cause__``.

Each class has a ``code`` (``ERR_QUEUEXEC_*``), the same code and class name as in Node; the
table is in the README ("Errors").
"""

from __future__ import annotations

__all__ = [
    "AssetError",
    "AssetHashError",
    "AssetPathError",
    "ClosedError",
    "ConfigError",
    "DependencyError",
    "EnvelopeError",
    "FileError",
    "IoError",
    "MasterCallError",
    "NetworkError",
    "PayloadError",
    "ProtocolError",
    "QueuexecError",
    "StoreError",
    "TokenError",
    "TokenMismatchError",
    "UnauthorizedError",
]


class QueuexecError(Exception):
    """Base class of every queuexec error."""

    code: str = "ERR_QUEUEXEC"


class TokenError(QueuexecError, ValueError):
    """The room token or the transfer token is missing or unusable.

    Pass ``token=`` and ``transfer_encrypt_token=``, set the environment variables ``token`` and
    ``transferEncryptToken``, or put them in ``.env`` (``queuexec setup`` writes one).
    """

    code = "ERR_QUEUEXEC_TOKEN"


class ConfigError(QueuexecError, ValueError):
    """A setting is invalid (a listen address, a number of seconds, ...)."""

    code = "ERR_QUEUEXEC_CONFIG"


class PayloadError(QueuexecError, ValueError):
    """A job's data or a result is not what it must be (for example, not JSON-serialisable)."""

    code = "ERR_QUEUEXEC_PAYLOAD"


class StoreError(QueuexecError):
    """The job store (the SQLite file) failed. ``location`` names the file, or ``"memory"``."""

    code = "ERR_QUEUEXEC_STORE"

    location: str


class IoError(QueuexecError, OSError):
    """A file could not be read or written. ``path`` is the file, ``action`` what was done; the
    ``OSError`` with its errno is the ``__cause__``."""

    code = "ERR_QUEUEXEC_IO"
    action: str
    path: str


FileError = IoError
"""The former name of :class:`IoError`."""


class AssetError(QueuexecError):
    """Base of :class:`AssetPathError` and :class:`AssetHashError`: an asset was refused."""


class AssetPathError(AssetError):
    """An asset's worker path was refused (outside the workplace, through a link, ...):
    ``path`` as given and ``reason``."""

    code = "ERR_QUEUEXEC_ASSET_PATH"
    path: str
    reason: str


class AssetHashError(AssetError):
    """An asset's content is not what the manifest announced: ``name``, ``expected`` and
    ``actual`` (hex SHA-256)."""

    code = "ERR_QUEUEXEC_ASSET_HASH"
    name: str
    expected: str
    actual: str


class EnvelopeError(QueuexecError):
    """A message could not be opened: it was altered, truncated, or sealed with another
    transfer token."""

    code = "ERR_QUEUEXEC_ENVELOPE"


class NetworkError(QueuexecError, ConnectionError):
    """The network layer failed (listening, dialling, the transport)."""

    code = "ERR_QUEUEXEC_NETWORK"


class ProtocolError(QueuexecError):
    """A peer sent something outside the protocol."""

    code = "ERR_QUEUEXEC_PROTOCOL"


class UnauthorizedError(QueuexecError, PermissionError):
    """The peer could not prove it holds the room token (a worker with another token)."""

    code = "ERR_QUEUEXEC_UNAUTHORIZED"


class TokenMismatchError(QueuexecError, PermissionError):
    """Master and worker hold the same room token but different transfer tokens
    (``transferEncryptToken``): copy the master's ``.env`` to the worker."""

    code = "ERR_QUEUEXEC_TOKEN_MISMATCH"


class DependencyError(QueuexecError):
    """The dependency bundle for the task could not be built or installed."""

    code = "ERR_QUEUEXEC_DEPENDENCIES"


class ClosedError(QueuexecError, RuntimeError):
    """The master or worker was closed; the call cannot be served."""

    code = "ERR_QUEUEXEC_CLOSED"


class MasterCallError(QueuexecError):
    """A call to the master (``ctx.lookup``, ``ctx.set_lookup``, ``ctx.request``) failed on the
    master's side: its message is the master handler's error."""

    code = "ERR_QUEUEXEC_MASTER_CALL"
