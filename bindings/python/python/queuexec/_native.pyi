"""Type stubs of the extension module built from ``bindings/python/src`` (private API: use the
classes of the ``queuexec`` package)."""

from collections.abc import Callable
from typing import Any

__version__: str
__build_profile__: str

# (id, data_json, task_type, priority, retries, timeout_s, delay_s, in_memory)
JobTuple = tuple[str | None, str, str | None, int, int | None, float | None, float | None, bool]
# ("result", job_id, worker_id, worker_name, ok, text, attempts)
# | ("worker_joined" | "worker_left", id, name) | ("drained",) | ("warning", message)
EventTuple = tuple[Any, ...]

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
        assets: list[tuple[str, str, str]] = ...,
        asset_base_dir: str | None = None,
        dependencies: list[str] = ...,
        retries: int = 3,
        lease_ttl: float = 15.0,
        retry_backoff: float = 0.1,
        max_workers: int = 1024,
        auto_ack: bool = True,
    ) -> Master: ...
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
    def push(self, job: JobTuple) -> tuple[str, bool]: ...
    def push_many(self, jobs: list[JobTuple]) -> list[tuple[str, bool]]: ...
    def next_events(self, timeout: float | None = None, max: int = 1024) -> list[EventTuple] | None: ...
    def idle(self) -> bool: ...
    def stats(self) -> dict[str, int]: ...
    def ack(self, job_ids: list[str]) -> None: ...
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
        name: str = "no_name",
        concurrency: int = 1,
        prefetch: int | None = None,
        workplace: str | Any = "workplace",
        room_dir: str | None = None,
        default_timeout: float | None = None,
        run_task_js: bool = True,
    ) -> Worker: ...
    @property
    def peer_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def stats(self) -> dict[str, Any]: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def close(self) -> None: ...
