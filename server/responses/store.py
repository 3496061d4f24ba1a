"""Stored responses (`store: true`): the Response object, its input items and the
conversation up to and including its output, which `previous_response_id` continues.

One SQLite file in the data directory, or (with a `postgresql://` store) two tables of the
library's database; written in one transaction per response (a killed process leaves it
whole or absent); rows older than the retention are purged as new
ones arrive and at start-up.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import msgspec

from ragserve.retrieval.location import is_postgres

from ..sqldb import Database, PostgresDatabase, SqliteDatabase
from .protocol import ResponseObject

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, created_at INTEGER NOT NULL,
    body BLOB NOT NULL, history BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS response_items (
    response_id TEXT NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, id TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (response_id, position)
);
CREATE INDEX IF NOT EXISTS responses_created ON responses(created_at);
"""
PURGE_EVERY_S = 600.0


class Stored(msgspec.Struct, frozen=True):
    response: ResponseObject
    history: list[dict[str, Any]]  # chat messages: earlier turns, this input, this output
    owner: str | None = None  # the key that created it (None: keys were off)


class SqlResponseStore:
    """The queries, once for both databases (server/sqldb.py)."""

    db: Database
    retention_s: float
    _purged: float = 0.0

    def close(self) -> None:
        self.db.close()

    def purge(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        self._purged = now
        return self.db.run(
            "DELETE FROM {p}responses WHERE created_at < ?", (now - self.retention_s,)
        ).rowcount

    def put(
        self,
        response: ResponseObject,
        items: list[dict[str, Any]],
        history: list[dict[str, Any]],
        owner: str | None = None,
    ) -> None:
        enc = msgspec.json.encode
        with self.db.transaction() as execute:
            execute("DELETE FROM {p}responses WHERE id = ?", (response.id,))  # its items too
            execute(
                "INSERT INTO {p}responses (id, created_at, body, history, owner) "
                "VALUES (?, ?, ?, ?, ?)",
                (response.id, response.created_at, enc(response), enc(history), owner),
            )
            for i, item in enumerate(items):
                execute(
                    "INSERT INTO {p}response_items VALUES (?, ?, ?, ?)",
                    (response.id, i, item["id"], enc(item)),
                )
        if time.time() - self._purged > PURGE_EVERY_S:
            self.purge()

    def get(self, rid: str) -> Stored | None:
        rows = self.db.run(
            "SELECT body, history, created_at, owner FROM {p}responses WHERE id = ?", (rid,)
        ).fetchall()
        if not rows or rows[0][2] < time.time() - self.retention_s:
            return None
        body, history, _, owner = rows[0]
        return Stored(
            msgspec.json.decode(bytes(body), type=ResponseObject),
            msgspec.json.decode(bytes(history)),
            owner,
        )

    def delete(self, rid: str) -> bool:
        return self.db.run("DELETE FROM {p}responses WHERE id = ?", (rid,)).rowcount > 0

    def items(
        self, rid: str, after: str | None, limit: int, order: str
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of the response's input items, and whether more follow."""
        desc = order == "desc"
        with self.db.transaction() as execute:
            start = None
            if after is not None:
                row = execute(
                    "SELECT position FROM {p}response_items WHERE response_id = ? AND id = ?",
                    (rid, after),
                ).fetchall()
                start = row[0][0] if row else None
            where = "" if start is None else ("AND position < ?" if desc else "AND position > ?")
            args: tuple = (rid,) if start is None else (rid, start)
            rows = execute(
                f"SELECT body FROM {{p}}response_items WHERE response_id = ? {where} "
                f"ORDER BY position {'DESC' if desc else 'ASC'} LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        page = [msgspec.json.decode(bytes(r[0])) for r in rows[:limit]]
        return page, len(rows) > limit


class ResponseStore(SqlResponseStore):
    """In the data directory: responses.sqlite."""

    def __init__(self, data_dir: Path, retention_s: float) -> None:
        self.retention_s = retention_s
        db = SqliteDatabase(data_dir / "responses.sqlite", SCHEMA)
        if "owner" not in db.columns("responses"):  # stores written before keys had scopes
            db.run("ALTER TABLE responses ADD COLUMN owner TEXT")
        self.db = db
        self.purge()


class PostgresResponseStore(SqlResponseStore):
    """In the library's database (tables rs_responses, rs_response_items), so a
    `previous_response_id` made on one replica continues on another."""

    def __init__(self, url: str, retention_s: float) -> None:
        self.retention_s = retention_s
        self.db = PostgresDatabase(url, 4)
        self.purge()


class StoredResponses(Protocol):
    """Where stored responses live: `ResponseStore` (SQLite in the data directory) or
    `PostgresResponseStore` (the library's database, shared by replicas)."""

    retention_s: float

    def close(self) -> None: ...

    def purge(self, now: float | None = None) -> int: ...

    def put(
        self,
        response: ResponseObject,
        items: list[dict[str, Any]],
        history: list[dict[str, Any]],
        owner: str | None = None,
    ) -> None: ...

    def get(self, rid: str) -> Stored | None: ...

    def delete(self, rid: str) -> bool: ...

    def items(
        self, rid: str, after: str | None, limit: int, order: str
    ) -> tuple[list[dict[str, Any]], bool]: ...


def open_response_store(store: str | None, data_dir: Path, retention_s: float) -> StoredResponses:
    if store and is_postgres(store):
        return PostgresResponseStore(store, retention_s)
    return ResponseStore(data_dir, retention_s)
