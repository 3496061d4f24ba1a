"""The library's own records: uploaded files (content-addressed blobs) and vector stores.

One SQLite file in the data directory. Blobs live under `files/` named by their SHA-256,
written to a temporary name and renamed, so an upload can neither overwrite another file
nor escape the directory (names never come from the client). Every method is safe to call
from worker threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from ragserve.retrieval.search import file_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, filename TEXT NOT NULL, bytes INTEGER NOT NULL,
    purpose TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stores (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, metadata TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, store_id TEXT NOT NULL, file_ids TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS store_files (
    store_id TEXT NOT NULL REFERENCES stores(id) ON DELETE CASCADE,
    file_id TEXT NOT NULL REFERENCES files(id),
    status TEXT NOT NULL, last_error TEXT, attributes TEXT NOT NULL,
    created_at INTEGER NOT NULL, document TEXT NOT NULL,
    PRIMARY KEY (store_id, file_id)
);
"""
MIGRATIONS = (  # columns added after the first release; each runs once
    ("stores", "owner", "ALTER TABLE stores ADD COLUMN owner TEXT"),
)
OWNERS = """
CREATE TABLE IF NOT EXISTS file_owners (
    file_id TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (file_id, owner)
);
"""
PDF_MAGIC = b"%PDF-"


class FileRecord(msgspec.Struct, frozen=True):
    id: str
    sha256: str
    filename: str
    bytes: int
    purpose: str
    created_at: int


class StoreRecord(msgspec.Struct, frozen=True):
    id: str
    name: str
    metadata: dict[str, str]
    created_at: int
    owner: str | None = None  # the key that created it (None: keys off, or the default)


class StoreFileRecord(msgspec.Struct, frozen=True):
    store_id: str
    file_id: str
    status: str  # in_progress | completed | failed | cancelled
    last_error: dict[str, str] | None
    attributes: dict[str, Any]
    created_at: int
    document: str  # its path in the store's index


class Catalog:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.blobs = data_dir / "files"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(data_dir / "library.sqlite", check_same_thread=False)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(SCHEMA + OWNERS)
        for table, column, sql in MIGRATIONS:
            columns = [r[1] for r in self._db.execute(f"PRAGMA table_info({table})")]
            if column not in columns:
                self._db.execute(sql)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self._lock, self._db:
            return self._db.execute(sql, args).rowcount

    # -- files ---------------------------------------------------------------------
    def blob(self, sha256: str) -> Path:
        return self.blobs / f"{sha256}.pdf"

    def add_file(
        self, chunks: Iterator[bytes], filename: str, purpose: str, owner: str | None = None
    ) -> FileRecord:
        """Store an upload by its content (the caller checked size and type)."""
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            os.replace(tmp, self.blob(sha))  # same content, same bytes: replacing is harmless
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        record = FileRecord(file_id(sha), sha, filename, size, purpose, int(time.time()))
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                (record.id, sha, filename, size, purpose, record.created_at),
            )
            if owner is not None:
                self._db.execute(
                    "INSERT OR IGNORE INTO file_owners VALUES (?, ?)", (record.id, owner)
                )
        return record

    def owners(self) -> dict[str, set[str]]:
        """The keys that uploaded each file (a file uploaded twice has two)."""
        out: dict[str, set[str]] = {}
        for fid, owner in self._rows("SELECT file_id, owner FROM file_owners"):
            out.setdefault(fid, set()).add(owner)
        return out

    def file_stores(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for sid, fid in self._rows("SELECT store_id, file_id FROM store_files"):
            out.setdefault(fid, []).append(sid)
        return out

    def file(self, fid: str) -> FileRecord | None:
        rows = self._rows("SELECT * FROM files WHERE id = ?", (fid,))
        return FileRecord(*rows[0]) if rows else None

    def files(self) -> list[FileRecord]:
        return [FileRecord(*r) for r in self._rows("SELECT * FROM files ORDER BY created_at, id")]

    def delete_file(self, fid: str) -> bool:
        record = self.file(fid)
        if record is None:
            return False
        self._write("DELETE FROM files WHERE id = ?", (fid,))
        self._write("DELETE FROM file_owners WHERE file_id = ?", (fid,))
        if not self._rows("SELECT 1 FROM files WHERE sha256 = ?", (record.sha256,)):
            self.blob(record.sha256).unlink(missing_ok=True)
        return True

    # -- stores --------------------------------------------------------------------
    def add_store(
        self, sid: str, name: str, metadata: dict[str, str], owner: str | None = None
    ) -> StoreRecord:
        record = StoreRecord(sid, name, metadata, int(time.time()), owner)
        self._write(
            "INSERT INTO stores (id, name, metadata, created_at, owner) VALUES (?, ?, ?, ?, ?)",
            (sid, name, json.dumps(metadata), record.created_at, owner),
        )
        return record

    def store(self, sid: str) -> StoreRecord | None:
        rows = self._rows(f"SELECT {STORE_COLUMNS} FROM stores WHERE id = ?", (sid,))
        return _store(rows[0]) if rows else None

    def stores(self) -> list[StoreRecord]:
        rows = self._rows(f"SELECT {STORE_COLUMNS} FROM stores ORDER BY created_at, id")
        return [_store(r) for r in rows]

    def update_store(self, sid: str, name: str | None, metadata: dict[str, str] | None) -> None:
        if name is not None:
            self._write("UPDATE stores SET name = ? WHERE id = ?", (name, sid))
        if metadata is not None:
            self._write("UPDATE stores SET metadata = ? WHERE id = ?", (json.dumps(metadata), sid))

    def delete_store(self, sid: str) -> None:
        self._write("DELETE FROM store_files WHERE store_id = ?", (sid,))
        self._write("DELETE FROM stores WHERE id = ?", (sid,))

    # -- files in stores -------------------------------------------------------------
    def attach(self, sid: str, fid: str, attributes: dict[str, Any], document: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO store_files VALUES (?, ?, 'in_progress', NULL, ?, ?, ?)",
            (sid, fid, json.dumps(attributes), int(time.time()), document),
        )

    def set_status(self, sid: str, fid: str, status: str, error: dict | None = None) -> None:
        self._write(
            "UPDATE store_files SET status = ?, last_error = ? WHERE store_id = ? AND file_id = ?",
            (status, json.dumps(error) if error else None, sid, fid),
        )

    def set_attributes(self, sid: str, fid: str, attributes: dict[str, Any]) -> None:
        self._write(
            "UPDATE store_files SET attributes = ? WHERE store_id = ? AND file_id = ?",
            (json.dumps(attributes), sid, fid),
        )

    def store_file(self, sid: str, fid: str) -> StoreFileRecord | None:
        rows = self._rows(
            "SELECT * FROM store_files WHERE store_id = ? AND file_id = ?", (sid, fid)
        )
        return _store_file(rows[0]) if rows else None

    def store_files(self, sid: str) -> list[StoreFileRecord]:
        rows = self._rows(
            "SELECT * FROM store_files WHERE store_id = ? ORDER BY created_at, file_id", (sid,)
        )
        return [_store_file(r) for r in rows]

    def detach(self, sid: str, fid: str) -> bool:
        return (
            self._write("DELETE FROM store_files WHERE store_id = ? AND file_id = ?", (sid, fid))
            > 0
        )

    def add_batch(self, bid: str, sid: str, file_ids: list[str]) -> BatchRecord:
        record = BatchRecord(bid, sid, file_ids, int(time.time()))
        self._write(
            "INSERT INTO batches VALUES (?, ?, ?, ?)",
            (bid, sid, json.dumps(file_ids), record.created_at),
        )
        return record

    def batch(self, sid: str, bid: str) -> BatchRecord | None:
        rows = self._rows("SELECT * FROM batches WHERE id = ? AND store_id = ?", (bid, sid))
        return (
            BatchRecord(rows[0][0], rows[0][1], json.loads(rows[0][2]), rows[0][3])
            if rows
            else None
        )

    def stores_of(self, fid: str) -> list[str]:
        return [
            r[0] for r in self._rows("SELECT store_id FROM store_files WHERE file_id = ?", (fid,))
        ]


class BatchRecord(msgspec.Struct, frozen=True):
    id: str
    store_id: str
    file_ids: list[str]
    created_at: int


STORE_COLUMNS = "id, name, metadata, created_at, owner"


def _store(row: tuple) -> StoreRecord:
    return StoreRecord(row[0], row[1], json.loads(row[2]), row[3], row[4])


def _store_file(row: tuple) -> StoreFileRecord:
    return StoreFileRecord(
        row[0],
        row[1],
        row[2],
        json.loads(row[3]) if row[3] else None,
        json.loads(row[4]),
        row[5],
        row[6],
    )
