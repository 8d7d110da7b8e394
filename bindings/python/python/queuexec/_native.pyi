"""Type stubs of the extension module built from ``bindings/python/src`` (private API: use the
classes of the ``queuexec`` package)."""

from collections.abc import Callable
from typing import Any

from .events import MasterEvent, WorkerEvent
from .job import EncodedJob

__version__: str
__build_profile__: str
ERROR_CODES: list[str]

class Master:
    @staticmethod
    def start(
        *,
        token: str,
        transfer_token: str,
        store: str | None = None,
        listen: list[str] | None = None,
        room_dir: str | None = None,
        announce: bool = True,
        bootstrap: list[str] = ...,
        assets: list[tuple[str, str, str]] = ...,
        asset_base_dir: str | None = None,
        dependencies: list[str] = ...,
        retries: int | None = None,  # None: the core's default, 3
        lease_ttl: float | None = None,  # None: the core's default, 15.0 seconds
        retry_backoff: float | None = None,  # None: the core's default, 0.1 seconds
        max_workers: int | None = None,  # None: the core's default, 1024
        auto_ack: bool = True,
        watch_assets: bool | None = None,  # None: the core's default, True (polled every second)
        idempotent_ids: bool = False,
        stats_interval: float | None = None,  # None: the core's default, 5.0 seconds
        dashboard: str | None = None,
        dashboard_token: str | None = None,  # None: QUEUEXEC_DASHBOARD_TOKEN
        max_resident_jobs: int | None = None,  # None: the core's default, 10,000
    ) -> Master: ...
    @property
    def dashboard_url(self) -> str | None: ...
    @property
    def peer_id(self) -> str: ...
    @property
    def room_id(self) -> str: ...
    @property
    def listen_addrs(self) -> list[str]: ...
    @property
    def bundle_hash(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    # (id, duplicate, repeated)
    def push(self, job: EncodedJob) -> tuple[str, bool, bool]: ...
    def push_many(self, jobs: list[EncodedJob]) -> list[tuple[str, bool, bool]]: ...
    def next_events(self, timeout: float | None = None, max: int = 1024) -> list[MasterEvent] | None: ...
    def idle(self) -> bool: ...
    def stats(self) -> dict[str, int]: ...
    def ack(self, job_ids: list[str]) -> None: ...
    def cancel(self, job_id: str) -> int: ...
    def answer(self, call_id: int, ok: bool, value: str) -> bool: ...
    def send_message(self, worker: str | None, cmd: str, data: str) -> int: ...
    def abort(self) -> int: ...
    def stats_report(self) -> str | None: ...
    def reload_assets(self) -> bool: ...
    def close(self) -> None: ...

Dispatch = Callable[
    [str, str, str | None, int, float | None, Callable[[bool, str], None]],
    Callable[[], Any] | None,
]

class Worker:
    @staticmethod
    def start(
        *,
        token: str,
        transfer_token: str,
        dispatch: Dispatch,
        python_types: list[str],
        catch_all: bool,
        master: str | None = None,
        name: str | None = None,  # None: the core's default, "no_name"
        concurrency: int | None = None,  # None: the core's default, 1 (at least 1)
        prefetch: int | None = None,  # None: the core's default, 1
        workplace: str | Any | None = None,  # None: the core's default, "workplace"
        room_dir: str | None = None,
        default_timeout: float | None = None,
        run_task_js: bool = True,
        keep_events: bool = False,
        stats_interval: float | None = None,  # None: the core's default, 5.0 seconds
        exit_when_drained: bool = False,
        bootstrap: list[str] = ...,
    ) -> Worker: ...
    @property
    def peer_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def stats(self) -> dict[str, Any]: ...
    def call(self, op: str, a: str, b: str | None = None, c: str | None = None) -> tuple[bool, str]: ...
    def metric(self, name: str, delta: float) -> bool: ...
    def next_events(self, timeout: float | None = None, max: int = 1024) -> list[WorkerEvent] | None: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def close(self) -> None: ...

def resolve_tokens(
    token: str | None = None, transfer_token: str | None = None, env_file: str | None = None
) -> tuple[str, str]:
    """(token, transfer_token): each from its argument, else the environment variable (``token``,
    ``transferEncryptToken``), else ``env_file`` (default ``./.env``). Raises TokenError/ConfigError."""

def resolve_bootstrap(bootstrap: list[str] = ..., env_file: str | None = None) -> list[str]:
    """Relay multiaddrs: ``bootstrap`` when it names any, else ``QUEUEXEC_BOOTSTRAP`` (comma
    separated), else that key in ``env_file`` (default ``./.env``). Raises ConfigError."""

def check_tokens(token: str, transfer_token: str) -> None:
    """Raises TokenError unless the room token is non-blank and the transfer token has 32+ characters."""

def generate_token() -> str:
    """32 random letters and digits from the OS CSPRNG."""

def read_dotenv(path: str) -> list[tuple[str, str]] | None:
    """The (key, value) pairs of a .env file in file order; None when it does not exist."""

def env_file_has_tokens(path: str) -> bool:
    """Whether the .env file assigns ``token`` or ``transferEncryptToken``."""

def write_env_tokens(path: str, token: str, transfer_token: str) -> None:
    """Writes both tokens to the .env file (other lines kept, owner-only, symbolic links refused)."""

def asset_specs(task: str | None, files: list[str]) -> list[tuple[str, str, str]]:
    """(name, master_path, worker_path) for a task (shipped as task.js) plus files (same relative path)."""

def defaults() -> dict[str, Any]:
    """The core's defaults: retries=3, lease_ttl=15.0, retry_backoff=0.1, max_workers=1024,
    watch_assets=True, concurrency=1, name="no_name", prefetch=1, workplace="workplace",
    min_transfer_token_chars=32, generated_token_chars=32, task_entry="task.js"."""
