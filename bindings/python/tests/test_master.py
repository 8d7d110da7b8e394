"""A master on its own: pushing, counting, addresses, closing, and the errors a user meets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import queuexec

MakeMaster = Callable[..., queuexec.Master]


def test_push_returns_ids_and_counts_them(open_master: MakeMaster) -> None:
    master = open_master()
    assert master.push({"x": 1}, id="first") == "first"
    assert master.push({"x": 2}, id=7) == "7"
    generated = master.push([1, 2, 3])
    assert generated and generated not in ("first", "7")
    ids = master.push_many([{"n": n} for n in range(5)] + [queuexec.JobSpec({"n": 5}, id="six", priority=3)])
    assert len(ids) == 6 and ids[-1] == "six" and len(set(ids)) == 6
    assert master.push_many([]) == []
    stats = master.stats()
    assert (stats.queued, stats.running, stats.done, stats.workers) == (9, 0, 0, 0)


def test_delayed_jobs_are_counted_apart(open_master: MakeMaster) -> None:
    master = open_master()
    master.push("later", delay=60)
    master.push("now")
    stats = master.stats()
    assert (stats.queued, stats.delayed) == (1, 1)


def test_a_repeated_id_is_queued_again_and_its_receipt_and_a_warning_say_so(open_master: MakeMaster) -> None:
    master = open_master()
    first = master.push({"a": 1}, id="same")
    again = master.push({"a": 2}, id="same")
    assert isinstance(again, queuexec.PushReceipt) and isinstance(again, str)
    assert (first, first.repeated, first.duplicate) == ("same", False, False)
    assert (again, again.repeated, again.duplicate) == ("same", True, False)
    assert again.id == "same" and type(again.id) is str
    assert master.stats().queued == 2, "both jobs are queued, as in queue-xec"
    warning = next(e for e in master.events(timeout=5) if isinstance(e, queuexec.WarningEvent))
    assert "queued again" in warning.message and '"same"' in warning.message, warning.message


def test_with_idempotent_ids_a_known_id_is_not_queued_twice(open_master: MakeMaster) -> None:
    master = open_master(idempotent_ids=True)
    first, again = master.push_many([queuexec.JobSpec({"a": 1}, id="same"), queuexec.JobSpec({"a": 2}, id="same")])
    assert (first.duplicate, first.repeated) == (False, False)
    assert (again.duplicate, again.repeated) == (True, False)
    assert master.push({"a": 3}, id="same").duplicate
    assert master.stats().queued == 1


def test_data_that_is_not_json_is_refused_and_nothing_is_pushed(open_master: MakeMaster) -> None:
    master = open_master()
    with pytest.raises(queuexec.PayloadError, match="JSON") as caught:
        master.push_many([{"ok": 1}, {"bad": object()}])
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value.__cause__, TypeError)
    with pytest.raises(queuexec.PayloadError):
        master.push(float("nan"))
    assert master.stats().queued == 0


def test_bad_options_raise_config_errors(open_master: MakeMaster) -> None:
    master = open_master()
    with pytest.raises(queuexec.ConfigError):
        master.push(1, timeout=-1)
    with pytest.raises(queuexec.ConfigError):
        master.push(1, id="")
    with pytest.raises(queuexec.ConfigError, match="multiaddr"):
        open_master(listen=["not an address"])


def test_listen_addrs_are_loopback_and_name_the_peer(open_master: MakeMaster) -> None:
    master = open_master()
    addrs = master.listen_addrs
    assert addrs, "a master listens somewhere"
    for addr in addrs:
        assert addr.startswith("/ip4/127.0.0.1/") and addr.endswith("/p2p/" + master.peer_id)


def test_the_room_file_is_written_and_withdrawn(open_master: MakeMaster, isolated: Path) -> None:
    master = open_master()
    room_file = isolated / "rooms" / f"{master.room_id}.json"
    entry = json.loads(room_file.read_text())
    assert entry["peer_id"] == master.peer_id
    master.close()
    assert not room_file.exists()


def test_context_manager_closes_and_a_closed_master_says_so(tokens: dict) -> None:
    with queuexec.Master(**tokens) as master:
        master.push(1)
    assert master.closed
    with pytest.raises(queuexec.ClosedError) as caught:
        master.push(2)
    assert isinstance(caught.value, RuntimeError)
    master.close()  # idempotent
    assert list(master.results()) == []


def test_a_store_that_cannot_be_opened_raises_store_error_with_its_cause(tokens: dict, isolated: Path) -> None:
    # A missing directory fails on the store's lock file (FileError) or on SQLite (StoreError).
    with pytest.raises((queuexec.StoreError, queuexec.FileError)) as caught:
        queuexec.Master(**tokens, store=isolated / "no-such-dir" / "jobs.sqlite")
    error = caught.value
    assert "no-such-dir" in str(error)
    assert error.__cause__ is not None
    if isinstance(error, queuexec.FileError):
        assert isinstance(error.__cause__, FileNotFoundError) and "no-such-dir" in error.path

    not_a_db = isolated / "notes.sqlite"
    not_a_db.write_text("this is not a database\n" * 100)
    with pytest.raises(queuexec.StoreError, match="not a queuexec job store") as caught:
        queuexec.Master(**tokens, store=not_a_db)
    assert caught.value.location == str(not_a_db)


def test_results_time_out_when_nothing_comes(open_master: MakeMaster) -> None:
    master = open_master()
    master.push(1)
    with pytest.raises(TimeoutError):
        next(master.results(timeout=0.3))


def test_results_until_drained_ends_at_once_when_nothing_was_pushed(open_master: MakeMaster) -> None:
    master = open_master()
    assert list(master.results(until_drained=True)) == []


def test_results_and_on_result_exclude_each_other(open_master: MakeMaster) -> None:
    master = open_master(on_result=lambda r: None)
    with pytest.raises(queuexec.ConfigError, match="on_result"):
        next(master.results())


def test_a_stored_master_with_a_small_memory_window_keeps_every_job_and_their_order(
    tokens: dict, isolated: Path
) -> None:
    store = isolated / "jobs.db"
    with queuexec.Master(**tokens, store=store, max_resident_jobs=3, announce=False) as master:
        ids = [master.push({"n": n}, id=f"j{n}", priority=1 if n % 10 == 0 else 0).id for n in range(40)]
        assert master.stats().queued == 40
    # A restart reads back only the window; the rest still wait in the store.
    with queuexec.Master(**tokens, store=store, max_resident_jobs=3) as master:
        assert master.stats().queued == 40
        worker = queuexec.Worker(
            **tokens, default=lambda job: job.data["n"], concurrency=1, prefetch=0, workplace=str(isolated / "w")
        ).start()
        try:
            order: list[str] = []
            for result in master.results(timeout=60):
                assert result.ok, result
                order.append(result.job_id)
                if len(order) == 40:
                    break
        finally:
            worker.close()
    urgent = [f"j{n}" for n in range(0, 40, 10)]
    assert order[:4] == urgent and sorted(order) == sorted(ids)
    assert order[4:] == [i for i in ids if i not in urgent]


def test_max_resident_jobs_must_be_positive(tokens: dict, isolated: Path) -> None:
    with pytest.raises(queuexec.ConfigError, match="max_resident_jobs must be at least 1"):
        queuexec.Master(**tokens, store=isolated / "jobs.db", max_resident_jobs=0)
