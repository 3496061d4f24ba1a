"""Stored responses (`store: true`): the Response object, its input items and the
conversation up to and including its output, which `previous_response_id` continues.

One SQLite file in the data directory, written in one transaction per response (a killed
process leaves it whole or absent); rows older than the retention are purged as new
ones arrive and at start-up.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

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


class ResponseStore:
    def __init__(self, data_dir: Path, retention_s: float) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.retention_s = retention_s
        self._db = sqlite3.connect(data_dir / "responses.sqlite", check_same_thread=False)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(SCHEMA)
        columns = [r[1] for r in self._db.execute("PRAGMA table_info(responses)")]
        if "owner" not in columns:  # stores written before keys had scopes
            self._db.execute("ALTER TABLE responses ADD COLUMN owner TEXT")
        self._lock = threading.Lock()
        self._purged = 0.0
        self.purge()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def purge(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        self._purged = now
        with self._lock, self._db:
            return self._db.execute(
                "DELETE FROM responses WHERE created_at < ?", (now - self.retention_s,)
            ).rowcount

    def put(
        self,
        response: ResponseObject,
        items: list[dict[str, Any]],
        history: list[dict[str, Any]],
        owner: str | None = None,
    ) -> None:
        enc = msgspec.json.encode
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (id, created_at, body, history, owner) "
                "VALUES (?, ?, ?, ?, ?)",
                (response.id, response.created_at, enc(response), enc(history), owner),
            )
            self._db.executemany(
                "INSERT INTO response_items VALUES (?, ?, ?, ?)",
                [(response.id, i, item["id"], enc(item)) for i, item in enumerate(items)],
            )
        if time.time() - self._purged > PURGE_EVERY_S:
            self.purge()

    def get(self, rid: str) -> Stored | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body, history, created_at, owner FROM responses WHERE id = ?", (rid,)
            ).fetchone()
        if row is None or row[2] < time.time() - self.retention_s:
            return None
        return Stored(
            msgspec.json.decode(row[0], type=ResponseObject), msgspec.json.decode(row[1]), row[3]
        )

    def delete(self, rid: str) -> bool:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM responses WHERE id = ?", (rid,)).rowcount > 0

    def items(
        self, rid: str, after: str | None, limit: int, order: str
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of the response's input items, and whether more follow."""
        desc = order == "desc"
        with self._lock:
            start = None
            if after is not None:
                row = self._db.execute(
                    "SELECT position FROM response_items WHERE response_id = ? AND id = ?",
                    (rid, after),
                ).fetchone()
                start = row[0] if row else None
            where = "" if start is None else ("AND position < ?" if desc else "AND position > ?")
            args: tuple = (rid,) if start is None else (rid, start)
            rows = self._db.execute(
                f"SELECT body FROM response_items WHERE response_id = ? {where} "
                f"ORDER BY position {'DESC' if desc else 'ASC'} LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        page = [msgspec.json.decode(r[0]) for r in rows[:limit]]
        return page, len(rows) > limit
