"""SqliteLinkState: LinkState in one SQLite file, so a SuperLink restart loses nothing.

One connection, used from the event loop thread; WAL journal with synchronous=NORMAL,
so a commit costs no fsync yet survives a killed process. Every method that changes
state commits before it returns (autocommit, or one transaction for a batch), which is
what lets a handler acknowledge a request only once it is durable.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from stamen.codec.envelope import Envelope
from stamen.common.errors import (
    ConfigError,
    InvalidMessageError,
    NodeNotFoundError,
    RunNotFoundError,
)
from stamen.common.message import Metadata
from stamen.common.node import Node
from stamen.common.run import Run, RunStatus

from .linkstate import ObjectRef, StoredMessage
from .storage import INTEGRITY_CHECK_BUDGET, GuardedConnection, check_integrity

__all__ = ["SqliteLinkState"]

logger = logging.getLogger(__name__)

_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    node_id INTEGER PRIMARY KEY,
    node_config TEXT NOT NULL,
    online INTEGER NOT NULL,
    last_heartbeat REAL NOT NULL,
    registered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL UNIQUE,
    server_app TEXT NOT NULL,
    client_app TEXT NOT NULL,
    run_config TEXT NOT NULL,
    status TEXT NOT NULL,
    sub_status TEXT NOT NULL,
    details TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    bundle TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    run_id INTEGER NOT NULL,
    src_node_id INTEGER NOT NULL,
    dst_node_id INTEGER NOT NULL,
    reply_to TEXT NOT NULL,
    group_id TEXT NOT NULL,
    message_type TEXT NOT NULL,
    ttl REAL NOT NULL,
    created_at REAL NOT NULL,
    payload BLOB NOT NULL,
    object_ids TEXT NOT NULL,
    expires_at REAL NOT NULL,
    delivered INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_reply_to ON messages (reply_to) WHERE reply_to != '';
CREATE INDEX IF NOT EXISTS messages_dst ON messages (dst_node_id) WHERE reply_to = '';
CREATE INDEX IF NOT EXISTS messages_run ON messages (run_id);
CREATE INDEX IF NOT EXISTS messages_expiry ON messages (expires_at);
CREATE TABLE IF NOT EXISTS object_refs (
    object_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (object_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS object_refs_seq ON object_refs (seq);
"""

_MESSAGE_COLUMNS = (
    "message_id, run_id, src_node_id, dst_node_id, reply_to, group_id, message_type, ttl, "
    "created_at, payload, object_ids, expires_at, delivered"
)
_RUN_COLUMNS = (
    "run_id, server_app, client_app, run_config, status, sub_status, details, created_at, "
    "started_at, finished_at, bundle"
)
_BATCH = 500  # ids per IN (...) list, well under SQLite's bound on parameters


def _batches(ids: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in ids:
        batch.append(item)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _marks(count: int) -> str:
    return ",".join("?" * count)


def _message_row(message: StoredMessage) -> tuple[Any, ...]:
    md = message.envelope.metadata
    return (
        md.message_id,
        md.run_id,
        md.src_node_id,
        md.dst_node_id,
        md.reply_to_message_id,
        md.group_id,
        md.message_type,
        md.ttl,
        md.created_at,
        message.envelope.payload,
        json.dumps(list(message.envelope.object_ids)),
        message.expires_at,
        int(message.delivered),
    )


def _message_from_row(row: Sequence[Any]) -> StoredMessage:
    metadata = Metadata(
        message_id=row[0],
        run_id=row[1],
        src_node_id=row[2],
        dst_node_id=row[3],
        reply_to_message_id=row[4],
        group_id=row[5],
        message_type=row[6],
        ttl=row[7],
        created_at=row[8],
    )
    envelope = Envelope(metadata, bytes(row[9]), tuple(json.loads(row[10])))
    return StoredMessage(envelope, expires_at=row[11], delivered=bool(row[12]))


def _node_from_row(row: Sequence[Any]) -> Node:
    return Node(
        node_id=row[0],
        node_config=json.loads(row[1]),
        online=bool(row[2]),
        last_heartbeat=row[3],
        registered_at=row[4],
    )


def _run_row(run: Run) -> tuple[Any, ...]:
    return (
        run.run_id,
        run.server_app,
        run.client_app,
        json.dumps(run.run_config),
        run.status,
        run.sub_status,
        run.details,
        run.created_at,
        run.started_at,
        run.finished_at,
        run.bundle,
    )


def _run_from_row(row: Sequence[Any]) -> Run:
    return Run(
        run_id=row[0],
        server_app=row[1],
        client_app=row[2],
        run_config=json.loads(row[3]),
        status=RunStatus(row[4]),
        sub_status=row[5],
        details=row[6],
        created_at=row[7],
        started_at=row[8],
        finished_at=row[9],
        bundle=row[10],
    )


class SqliteLinkState:
    """LinkState in the SQLite database at `database` (a path, or ":memory:").

    The database is locked for this process alone: a second SuperLink on the same file
    fails to open (a StorageFaultError, "locked") after waiting `lock_timeout` seconds,
    instead of two processes routing the same messages. A corrupt file is refused at
    start (ConfigError; the check takes at most `integrity_budget` seconds), and storage
    faults while serving are named errors (`stamen.superlink.storage`).
    """

    def __init__(
        self,
        database: str | os.PathLike[str],
        *,
        lock_timeout: float = 1.0,
        integrity_budget: float = INTEGRITY_CHECK_BUDGET,
    ) -> None:
        connection = sqlite3.connect(database, isolation_level=None, timeout=lock_timeout)
        self._db = GuardedConnection(connection, os.fspath(database))
        try:
            check_integrity(connection, os.fspath(database), integrity_budget)
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version not in (0, _SCHEMA_VERSION):
                raise ConfigError(
                    f"database {os.fspath(database)!r} has schema version {version}; "
                    f"this SuperLink reads version {_SCHEMA_VERSION}"
                )
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
                if "bundle" not in columns:  # a database from before app bundles
                    self._db.execute("ALTER TABLE runs ADD COLUMN bundle TEXT NOT NULL DEFAULT ''")
                # An instruction marked delivered but never answered may have been lost
                # on its way when the SuperLink stopped: deliver it again. A node that
                # did get it answers it once (the agent skips instructions it answered).
                redelivered = self._db.execute(
                    "UPDATE messages SET delivered = 0 WHERE reply_to = '' AND delivered = 1"
                    " AND message_id NOT IN (SELECT reply_to FROM messages WHERE reply_to != '')"
                ).rowcount
            if redelivered:
                logger.info("%d unanswered instructions will be delivered again", redelivered)
        except BaseException:
            self._db.close()
            raise

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (disk full)
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- nodes -------------------------------------------------------------------------
    def add_node(self, node: Node) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?)",
            (
                node.node_id,
                json.dumps(node.node_config),
                int(node.online),
                node.last_heartbeat,
                node.registered_at,
            ),
        )

    def get_node(self, node_id: int) -> Node:
        row = self._db.execute("SELECT * FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
        if row is None:
            raise NodeNotFoundError(node_id)
        return _node_from_row(row)

    def list_nodes(self) -> list[Node]:
        rows = self._db.execute("SELECT * FROM nodes ORDER BY registered_at, node_id")
        return [_node_from_row(row) for row in rows]

    def update_node(self, node: Node) -> None:
        cursor = self._db.execute(
            "UPDATE nodes SET node_config = ?, online = ?, last_heartbeat = ?, registered_at = ?"
            " WHERE node_id = ?",
            (
                json.dumps(node.node_config),
                int(node.online),
                node.last_heartbeat,
                node.registered_at,
                node.node_id,
            ),
        )
        if cursor.rowcount == 0:
            raise NodeNotFoundError(node.node_id)

    def remove_node(self, node_id: int) -> None:
        cursor = self._db.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))
        if cursor.rowcount == 0:
            raise NodeNotFoundError(node_id)

    # --- runs --------------------------------------------------------------------------
    def add_run(self, run: Run) -> None:
        self._db.execute(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({_marks(11)})", _run_row(run))

    def get_run(self, run_id: int) -> Run:
        row = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise RunNotFoundError(run_id)
        return _run_from_row(row)

    def list_runs(self) -> list[Run]:
        rows = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY seq")
        return [_run_from_row(row) for row in rows]

    def update_run(self, run: Run) -> None:
        row = _run_row(run)
        cursor = self._db.execute(
            "UPDATE runs SET server_app = ?, client_app = ?, run_config = ?, status = ?,"
            " sub_status = ?, details = ?, created_at = ?, started_at = ?, finished_at = ?,"
            " bundle = ? WHERE run_id = ?",
            (*row[1:], row[0]),
        )
        if cursor.rowcount == 0:
            raise RunNotFoundError(run.run_id)

    # --- messages ----------------------------------------------------------------------
    def add_messages(self, messages: Sequence[StoredMessage]) -> None:
        # References name messages by their integer `seq` (assigned here, in order): an
        # index on increasing integers costs a fraction of one on random message ids.
        try:
            with self._transaction():
                (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()
                numbered = list(enumerate(messages, start=last + 1))
                self._db.executemany(
                    f"INSERT INTO messages (seq, {_MESSAGE_COLUMNS}) VALUES ({_marks(14)})",
                    [(seq, *_message_row(message)) for seq, message in numbered],
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO object_refs VALUES (?, ?)",
                    [
                        (object_id, seq)
                        for seq, message in numbered
                        for object_id in message.envelope.object_ids
                    ],
                )
        except sqlite3.IntegrityError:
            raise InvalidMessageError(
                "a message id is taken, or an instruction already has a reply"
            ) from None

    def _select_messages(self, where: str, params: Sequence[Any]) -> list[StoredMessage]:
        rows = self._db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY seq", params
        )
        return [_message_from_row(row) for row in rows]

    def find_messages(self, message_ids: Iterable[str]) -> dict[str, StoredMessage]:
        found = {}
        for batch in _batches(message_ids):
            for message in self._select_messages(f"message_id IN ({_marks(len(batch))})", batch):
                found[message.message_id] = message
        return found

    def find_replies(self, instruction_ids: Iterable[str]) -> dict[str, StoredMessage]:
        found = {}
        for batch in _batches(instruction_ids):
            where = f"reply_to != '' AND reply_to IN ({_marks(len(batch))})"
            for message in self._select_messages(where, batch):
                found[message.reply_to] = message
        return found

    def instructions_for_node(self, node_id: int) -> list[StoredMessage]:
        return self._select_messages("reply_to = '' AND dst_node_id = ?", (node_id,))

    def message_ids_of_run(self, run_id: int) -> list[str]:
        rows = self._db.execute(
            "SELECT message_id FROM messages WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        return [row[0] for row in rows]

    def undelivered_messages(self) -> list[StoredMessage]:
        return self._select_messages("delivered = 0", ())

    def expired_messages(self, now: float) -> list[StoredMessage]:
        return self._select_messages("expires_at <= ?", (now,))

    def mark_delivered(self, message_ids: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany(
                "UPDATE messages SET delivered = 1 WHERE message_id = ?",
                [(message_id,) for message_id in message_ids],
            )

    def delete_messages(self, message_ids: Iterable[str]) -> list[str]:
        candidates: dict[str, None] = {}
        with self._transaction():
            for batch in _batches(message_ids):
                rows = self._db.execute(
                    f"SELECT seq FROM messages WHERE message_id IN ({_marks(len(batch))})", batch
                )
                seqs = [row[0] for row in rows]
                if not seqs:
                    continue
                marks = _marks(len(seqs))
                rows = self._db.execute(
                    f"SELECT object_id FROM object_refs WHERE seq IN ({marks})", seqs
                )
                candidates.update(dict.fromkeys(row[0] for row in rows))
                self._db.execute(f"DELETE FROM object_refs WHERE seq IN ({marks})", seqs)
                self._db.execute(f"DELETE FROM messages WHERE seq IN ({marks})", seqs)
        still_held: set[str] = set()
        for batch in _batches(candidates):
            rows = self._db.execute(
                f"SELECT DISTINCT object_id FROM object_refs WHERE object_id IN "
                f"({_marks(len(batch))})",
                batch,
            )
            still_held.update(row[0] for row in rows)
        return [object_id for object_id in candidates if object_id not in still_held]

    # --- object references -------------------------------------------------------------
    def referrers(
        self, object_id: str, *, run_id: int | None = None, limit: int | None = None
    ) -> list[ObjectRef]:
        where = "r.object_id = ?"
        params: list[Any] = [object_id]
        if run_id is not None:
            where += " AND m.run_id = ?"
            params.append(run_id)
        rows = self._db.execute(
            "SELECT m.message_id, m.run_id, m.src_node_id, m.dst_node_id, m.reply_to,"
            " m.delivered FROM object_refs r JOIN messages m ON m.seq = r.seq"
            f" WHERE {where} LIMIT ?",
            (*params, -1 if limit is None else limit),
        )
        return [
            ObjectRef(
                message_id=row[0],
                run_id=row[1],
                src_node_id=row[2],
                dst_node_id=row[3],
                is_reply=bool(row[4]),
                delivered=bool(row[5]),
            )
            for row in rows
        ]

    def held_objects(self, message_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT r.object_id FROM object_refs r JOIN messages m ON m.seq = r.seq"
            " WHERE m.message_id = ?",
            (message_id,),
        )
        return [row[0] for row in rows]

    def drop_ref(self, message_id: str, object_id: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM object_refs WHERE object_id = ?"
            " AND seq = (SELECT seq FROM messages WHERE message_id = ?)",
            (object_id, message_id),
        )
        if cursor.rowcount == 0:
            return False
        row = self._db.execute(
            "SELECT 1 FROM object_refs WHERE object_id = ? LIMIT 1", (object_id,)
        ).fetchone()
        return row is None

    def referenced_object_ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT DISTINCT object_id FROM object_refs")}

    def close(self) -> None:
        self._db.close()
