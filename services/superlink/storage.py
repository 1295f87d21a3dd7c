"""Storage faults, named: what SQLite and the file system raise, as errors a caller can act on.

A SuperLink whose disk fills up, turns read-only or fails must not answer `INTERNAL` with
the cause only in its own log: `storage_fault` names the fault (`StorageFullError` ->
`RESOURCE_EXHAUSTED`, `StorageFaultError` -> `UNAVAILABLE`, each with a hint), callers
retry them with backoff, and the SuperLink recovers by itself when the fault passes.
`GuardedConnection` is a SQLite connection that raises those errors, retries a busy or
locked database before it gives up, and logs each outage of writes once when it begins
and once when it ends. `check_integrity` runs SQLite's `quick_check` at start-up within
a time budget, so a corrupt database is refused at once instead of failing requests later.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stamen.common.errors import (
    ConfigError,
    StamenError,
    StorageFaultError,
    StorageFullError,
    TransientError,
)

__all__ = [
    "BUSY_RETRIES",
    "INTEGRITY_CHECK_BUDGET",
    "GuardedConnection",
    "WriteOutage",
    "check_integrity",
    "storage_fault",
]

logger = logging.getLogger(__name__)

BUSY_RETRIES = 3
"""Times a statement that found the database busy or locked is tried again (each try
already waits the connection's lock timeout) before it fails as UNAVAILABLE."""

RECOVERY_QUIET = 5.0
"""Seconds without a failed write before a write that goes through ends a storage outage.
On a full disk some writes still fit (in pages the file has already), so writes fail and
succeed by turns: the outage is logged once, not as ending and beginning with each."""

INTEGRITY_CHECK_BUDGET = 10.0
"""Seconds `PRAGMA quick_check` may take at start-up; a larger file is checked for that
long and then served (SQLite still detects a bad page when it reads one)."""

_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_HINTS = {
    "read-only": "make it writable again; until then the SuperLink serves reads only",
    "failing (I/O error)": "check the disk; the SuperLink retries as requests come",
    "corrupt": "restore the database from a backup, or move it away to start afresh",
    "locked": "another process holds the database: stop it, or give this SuperLink its own",
}


def storage_fault(exc: BaseException, location: str) -> TransientError | None:
    """The named error for a storage failure at `location`; None when `exc` is not one
    (a bug, say, which stays an `INTERNAL` logged with its traceback)."""
    cause = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        if primary == sqlite3.SQLITE_FULL:
            return StorageFullError(location, cause)
        if primary == sqlite3.SQLITE_READONLY:
            return _fault("read-only", location, cause)
        if primary == sqlite3.SQLITE_IOERR:
            return _fault("failing (I/O error)", location, cause)
        if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return _fault("corrupt", location, cause)
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return _fault("locked", location, cause)
        return None
    if isinstance(exc, OSError):
        if exc.errno in _FULL:
            return StorageFullError(location, cause)
        if exc.errno in _READ_ONLY:
            return _fault("read-only", location, cause)
        if exc.errno == errno.EIO:
            return _fault("failing (I/O error)", location, cause)
    return None


def _fault(problem: str, location: str, cause: str) -> StorageFaultError:
    return StorageFaultError(problem, location, cause, _HINTS[problem])


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class WriteOutage:
    """Logs a storage location's write outage once when it begins and once when it ends
    (writes went through for RECOVERY_QUIET seconds)."""

    __slots__ = ("_failed_at", "_failing", "location")

    def __init__(self, location: str) -> None:
        self.location = location
        self._failing = False
        self._failed_at = 0.0  # monotonic time of the latest failed write

    def failed(self, named: StamenError) -> None:
        if not self._failing:
            logger.warning("%s", named)
        self._failing = True
        self._failed_at = time.monotonic()

    def succeeded(self) -> None:
        if self._failing and time.monotonic() - self._failed_at >= RECOVERY_QUIET:
            logger.info("SuperLink storage %s takes writes again", self.location)
            self._failing = False


class GuardedConnection:
    """A SQLite connection whose failures are named storage faults (see `storage_fault`)."""

    __slots__ = ("_db", "_outage", "location")

    def __init__(self, db: sqlite3.Connection, location: str) -> None:
        self._db = db
        self.location = location
        self._outage = WriteOutage(location)

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        for attempt in range(BUSY_RETRIES + 1):
            try:
                cursor = self._db.execute(sql, params)
            except sqlite3.Error as exc:
                if _is_busy(exc) and attempt < BUSY_RETRIES:
                    continue
                raise self._failed(exc, sql) from exc
            self._succeeded(sql)
            return cursor
        raise AssertionError("unreachable")  # pragma: no cover

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        rows = rows if isinstance(rows, Sequence) else list(rows)  # tried again when busy
        for attempt in range(BUSY_RETRIES + 1):
            try:
                cursor = self._db.executemany(sql, rows)
            except sqlite3.Error as exc:
                if _is_busy(exc) and attempt < BUSY_RETRIES:
                    continue
                raise self._failed(exc, sql) from exc
            self._succeeded(sql)
            return cursor
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._db.close()

    def _failed(self, exc: sqlite3.Error, sql: str) -> BaseException:
        named = storage_fault(exc, self.location)
        if named is None:
            return exc
        if _writes(sql):
            self._outage.failed(named)
        return named

    def _succeeded(self, sql: str) -> None:
        if _writes(sql):
            self._outage.succeeded()


def _writes(sql: str) -> bool:
    """Whether a statement writes (opening or abandoning a transaction does not)."""
    return not sql.lstrip()[:8].upper().startswith(("SELECT", "PRAGMA", "BEGIN", "ROLLBACK"))


def check_integrity(
    db: sqlite3.Connection, location: str, budget: float = INTEGRITY_CHECK_BUDGET
) -> None:
    """Refuse a corrupt database with ConfigError; a check that runs out of `budget`
    seconds is logged and skipped (the file is served; a bad page is still detected
    when read)."""
    deadline = time.monotonic() + budget
    db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError as exc:
        if time.monotonic() > deadline:
            logger.warning(
                "integrity check of %s skipped after %gs (a large file); serving it",
                location,
                budget,
            )
            return
        raise storage_fault(exc, location) or ConfigError(
            f"cannot read the SuperLink database {location}: {exc}"
        ) from None
    except sqlite3.DatabaseError as exc:
        raise _corrupt(location, str(exc)) from None
    finally:
        db.set_progress_handler(None, 0)
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise _corrupt(location, problems[0] + more)


def _corrupt(location: str, cause: str) -> ConfigError:
    return ConfigError(
        f"the SuperLink database {location} is corrupt ({cause}): {_HINTS['corrupt']}"
    )
