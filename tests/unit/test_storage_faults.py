"""Storage faults are named, the SuperLink keeps serving what it can, and recovers.

Real SQLite faults: a full disk is SQLite's own SQLITE_FULL (a `max_page_count` below the
file's needs), a read-only one SQLITE_READONLY (`query_only`), a corrupt file bytes
overwritten on disk. I/O errors and busy locks are classified from the codes SQLite gives.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stamen.codec import encode_message
from stamen.common.errors import (
    ConfigError,
    StorageFaultError,
    StorageFullError,
    TransientError,
)
from stamen.common.message import Message, MessageType
from stamen.common.records import ConfigRecord, RecordDict
from stamen.common.run import RunStatus
from stamen.superlink import SqliteLinkState, StoredMessage
from stamen.superlink.objectstore import FileObjectStore
from stamen.superlink.storage import BUSY_RETRIES, GuardedConnection, storage_fault
from stamen.superlink.superlink import open_superlink
from stamen.transport.memory import MemoryFleet, MemoryServerAppIo


def sqlite_error(code: int, text: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(text)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    ("raised", "named", "words"),
    [
        (sqlite_error(sqlite3.SQLITE_FULL, "database or disk is full"), StorageFullError, "full"),
        (OSError(errno.ENOSPC, "No space left on device"), StorageFullError, "full"),
        (sqlite_error(sqlite3.SQLITE_READONLY, "readonly"), StorageFaultError, "read-only"),
        (OSError(errno.EROFS, "Read-only file system"), StorageFaultError, "read-only"),
        (sqlite_error(sqlite3.SQLITE_IOERR_WRITE, "disk I/O error"), StorageFaultError, "I/O"),
        (OSError(errno.EIO, "Input/output error"), StorageFaultError, "I/O"),
        (sqlite_error(sqlite3.SQLITE_BUSY, "database is locked"), StorageFaultError, "locked"),
    ],
)
def test_storage_failures_become_named_transient_errors(
    raised: BaseException, named: type[TransientError], words: str
) -> None:
    error = storage_fault(raised, "/data/state.db")
    assert type(error) is named
    assert isinstance(error, TransientError)  # clients retry it
    assert str(error).startswith(f"SuperLink storage is {words}" if words != "I/O" else "Super")
    assert words in str(error)
    assert "/data/state.db" in str(error)


def test_other_failures_are_not_storage_faults() -> None:
    assert storage_fault(sqlite3.ProgrammingError("bad SQL"), "db") is None
    assert storage_fault(sqlite_error(sqlite3.SQLITE_ERROR, "no such table"), "db") is None
    assert storage_fault(ConnectionResetError(errno.ECONNRESET, "reset"), "db") is None
    assert storage_fault(KeyError("x"), "db") is None


def instruction(run_id: int, size: int) -> StoredMessage:
    message = Message(
        RecordDict({"config": ConfigRecord({"blob": b"x" * size})}),
        dst_node_id=1,
        message_type=MessageType.TRAIN,
    )
    message.metadata.run_id = run_id
    envelope, _ = encode_message(message)
    return StoredMessage(envelope, expires_at=1e12)


def test_a_full_database_says_so_keeps_serving_reads_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stamen.superlink.storage.RECOVERY_QUIET", 0.0)
    caplog.set_level(logging.INFO, logger="stamen.superlink.storage")
    state = SqliteLinkState(tmp_path / "state.db")
    try:
        state.add_messages([instruction(1, 100)])
        (pages,) = state._db.execute("PRAGMA page_count").fetchone()
        state._db.execute(f"PRAGMA max_page_count={pages + 2}")
        caught = None
        for _ in range(50):
            try:
                state.add_messages([instruction(1, 20_000)])
            except StorageFullError as exc:
                caught = exc
                break
        assert caught is not None
        assert str(caught).startswith("SuperLink storage is full")
        assert "free space" in str(caught)
        assert len(state.message_ids_of_run(1)) >= 1  # reads go on
        with pytest.raises(StorageFullError):  # and writes fail the same way, logged once
            state.add_messages([instruction(1, 20_000)])
        state._db.execute("PRAGMA max_page_count=1000000")  # space returns
        state.add_messages([instruction(1, 20_000)])
    finally:
        state.close()
    logged = [r.getMessage() for r in caplog.records]
    assert len([m for m in logged if m.startswith("SuperLink storage is full")]) == 1
    assert any("takes writes again" in m for m in logged)


def test_writes_that_fail_and_succeed_by_turns_are_one_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk, writes that fit in pages the file has go through between failures:
    until writes go through for RECOVERY_QUIET seconds, the outage goes on."""
    monkeypatch.setattr("stamen.superlink.storage.RECOVERY_QUIET", 1e9)
    caplog.set_level(logging.INFO, logger="stamen.superlink.storage")
    state = SqliteLinkState(tmp_path / "state.db")
    try:
        state.add_messages([instruction(1, 100)])
        (pages,) = state._db.execute("PRAGMA page_count").fetchone()
        for _ in range(3):
            state._db.execute(f"PRAGMA max_page_count={pages}")
            with pytest.raises(StorageFullError):
                state.add_messages([instruction(1, 20_000)])
            state._db.execute("PRAGMA max_page_count=1000000")
            state.add_messages([instruction(1, 100)])
            (pages,) = state._db.execute("PRAGMA page_count").fetchone()
    finally:
        state.close()
    logged = [r.getMessage() for r in caplog.records]
    assert len([m for m in logged if m.startswith("SuperLink storage is full")]) == 1
    assert not any("takes writes again" in m for m in logged)


def test_a_read_only_database_is_unavailable_not_internal(tmp_path: Path) -> None:
    state = SqliteLinkState(tmp_path / "state.db")
    try:
        state._db.execute("PRAGMA query_only=1")
        with pytest.raises(StorageFaultError, match="read-only") as caught:
            state.add_messages([instruction(1, 10)])
        assert caught.value.status.name == "UNAVAILABLE"
        state._db.execute("PRAGMA query_only=0")
        state.add_messages([instruction(1, 10)])
    finally:
        state.close()


class Flaky:
    """A connection whose first `busy` statements find the database locked."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.tries = 0

    def execute(self, sql: str, params: object = ()) -> str:
        self.tries += 1
        if self.busy > 0:
            self.busy -= 1
            raise sqlite_error(sqlite3.SQLITE_BUSY, "database is locked")
        return "cursor"


def test_a_busy_database_is_retried_before_it_is_reported() -> None:
    flaky = Flaky(busy=BUSY_RETRIES)
    assert GuardedConnection(flaky, "db").execute("SELECT 1") == "cursor"  # type: ignore[arg-type]
    assert flaky.tries == BUSY_RETRIES + 1
    stuck = Flaky(busy=BUSY_RETRIES + 1)
    with pytest.raises(StorageFaultError, match="locked"):
        GuardedConnection(stuck, "db").execute("SELECT 1")  # type: ignore[arg-type]


def test_a_corrupt_database_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state = SqliteLinkState(path)
    for _ in range(20):
        state.add_messages([instruction(1, 3000)])
    state.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    data[3 * 4096 : 6 * 4096] = b"\xa5" * (3 * 4096)  # pages 4-6: b-tree pages, now garbage
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"is corrupt .*restore the database from a backup"):
        SqliteLinkState(path)
    with pytest.raises(ConfigError, match="corrupt"):
        open_superlink(str(path))


async def test_a_full_object_store_is_resource_exhausted_logged_once_per_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stamen.superlink.storage")
    monkeypatch.setattr("stamen.superlink.storage.RECOVERY_QUIET", 0.0)
    store = FileObjectStore(tmp_path / "objects")
    data = b"abc"

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    with monkeypatch.context() as full:
        full.setattr("stamen.superlink.objectstore.tempfile.NamedTemporaryFile", no_space)
        for _ in range(2):
            with pytest.raises(StorageFullError, match="SuperLink storage is full") as caught:
                await store.put(hashlib.sha256(data).hexdigest(), len(data), chunks())
            assert caught.value.status.name == "RESOURCE_EXHAUSTED"
    assert await store.put(hashlib.sha256(data).hexdigest(), len(data), chunks())
    logged = [r.getMessage() for r in caplog.records]
    assert len([m for m in logged if m.startswith("SuperLink storage is full")]) == 1
    assert f"SuperLink storage {tmp_path / 'objects'} takes writes again" in logged


async def test_fleet_callers_get_the_named_fault_and_heartbeats_go_on(tmp_path: Path) -> None:
    async with open_superlink(str(tmp_path / "state.db")) as core:
        fleet, io = MemoryFleet(core.fleet), MemoryServerAppIo(core.serverappio)
        run_id = await io.create_run("server:app", "client:app", {})
        await io.update_run_status(run_id, RunStatus.RUNNING)
        node = await fleet.register_node({})
        core.state._db.execute("PRAGMA query_only=1")  # type: ignore[attr-defined]
        await fleet.heartbeat(node.node_id)  # a sign of life still counts
        assert (await fleet.get_run(node.node_id, run_id)).run_id == run_id  # reads go on
        with pytest.raises(TransientError, match="SuperLink storage is read-only"):
            await fleet.register_node({})
        core.state._db.execute("PRAGMA query_only=0")  # type: ignore[attr-defined]
        await fleet.register_node({})
