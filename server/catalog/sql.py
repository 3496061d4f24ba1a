"""The catalog's records in SQL, written once for both databases (server/sqldb.py).

An implementation gives `SqlCatalog` its database and says where an upload's bytes go
(local.py: files by hash in the data directory; postgres.py: the database itself).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..sqldb import Database, Execute
from .records import (
    INTERRUPTED,
    MAX_ATTEMPTS,
    BatchRecord,
    FileRecord,
    StoreFileRecord,
    StoreRecord,
    new_file_id,
)

STORE = "id, name, metadata, created_at, owner"
STORE_FILE = "store_id, file_id, status, last_error, attributes, created_at, document"
STORE_FILE_READ = STORE_FILE + ", report"


class SqlCatalog:
    db: Database

    # -- where an upload's bytes go (the implementation's) -----------------------------------
    def _spool_dir(self) -> Path:
        """Where an upload is written while it arrives."""
        raise NotImplementedError

    def _keep_blob(self, execute: Execute, tmp: Path, sha256: str, size: int) -> None:
        """Keep the bytes in `tmp` as the blob `sha256` (inside the record's transaction)."""
        raise NotImplementedError

    def _drop_blob(self, execute: Execute, sha256: str) -> None:
        """The last file with these bytes is gone (inside its transaction)."""

    def _forget_blob(self, sha256: str) -> None:
        """After that transaction committed: local copies may go."""

    # -- helpers -----------------------------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self.db.run(sql, args).fetchall()

    def _write(self, sql: str, args: tuple = ()) -> int:
        return self.db.run(sql, args).rowcount

    # -- files -------------------------------------------------------------------------------
    def add_file(
        self, chunks: Iterator[bytes], filename: str, purpose: str, owner: str | None = None
    ) -> FileRecord:
        """A slow upload fills a local file first; the database sees one short transaction."""
        spool = self._spool_dir()
        spool.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, name = tempfile.mkstemp(dir=spool, prefix=".upload-")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            record = FileRecord(new_file_id(), sha, filename, size, purpose, int(time.time()))
            with self.db.transaction() as execute:
                self._keep_blob(execute, tmp, sha, size)
                execute(
                    "INSERT INTO {p}files (id, sha256, filename, bytes, purpose, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (record.id, sha, filename, size, purpose, record.created_at),
                )
                if owner is not None:
                    execute(
                        "INSERT INTO {p}file_owners VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (record.id, owner),
                    )
        finally:
            tmp.unlink(missing_ok=True)  # kept blobs were moved away
        return record

    def file(self, fid: str) -> FileRecord | None:
        rows = self._rows(f"SELECT {FILE} FROM {{p}}files WHERE id = ?", (fid,))
        return FileRecord(*rows[0]) if rows else None

    def files(self) -> list[FileRecord]:
        return [
            FileRecord(*r)
            for r in self._rows(f"SELECT {FILE} FROM {{p}}files ORDER BY created_at, id")
        ]

    def delete_file(self, fid: str) -> bool:
        with self.db.transaction() as execute:
            found = execute("SELECT sha256 FROM {p}files WHERE id = ?", (fid,)).fetchall()
            if not found:
                return False
            sha = found[0][0]
            execute("DELETE FROM {p}store_files WHERE file_id = ?", (fid,))
            execute("DELETE FROM {p}file_owners WHERE file_id = ?", (fid,))
            execute("DELETE FROM {p}files WHERE id = ?", (fid,))
            last = not execute("SELECT 1 FROM {p}files WHERE sha256 = ? LIMIT 1", (sha,)).fetchall()
            if last:
                self._drop_blob(execute, sha)
        if last:
            self._forget_blob(sha)
        return True

    def owners(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for fid, owner in self._rows("SELECT file_id, owner FROM {p}file_owners"):
            out.setdefault(fid, set()).add(owner)
        return out

    def file_stores(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for sid, fid in self._rows("SELECT store_id, file_id FROM {p}store_files"):
            out.setdefault(fid, []).append(sid)
        return out

    def stores_of(self, fid: str) -> list[str]:
        rows = self._rows("SELECT store_id FROM {p}store_files WHERE file_id = ?", (fid,))
        return [r[0] for r in rows]

    # -- stores ------------------------------------------------------------------------------
    def add_store(
        self, sid: str, name: str, metadata: dict[str, str], owner: str | None = None
    ) -> StoreRecord:
        record = StoreRecord(sid, name, metadata, int(time.time()), owner)
        self._write(
            f"INSERT INTO {{p}}stores ({STORE}) VALUES (?, ?, ?, ?, ?)",
            (sid, name, json.dumps(metadata), record.created_at, owner),
        )
        return record

    def ensure_store(self, sid: str, name: str) -> None:
        self._write(
            f"INSERT INTO {{p}}stores ({STORE}) VALUES (?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING",
            (sid, name, "{}", int(time.time())),
        )

    def store(self, sid: str) -> StoreRecord | None:
        rows = self._rows(f"SELECT {STORE} FROM {{p}}stores WHERE id = ?", (sid,))
        return _store(rows[0]) if rows else None

    def stores(self) -> list[StoreRecord]:
        rows = self._rows(f"SELECT {STORE} FROM {{p}}stores ORDER BY created_at, id")
        return [_store(r) for r in rows]

    def update_store(self, sid: str, name: str | None, metadata: dict[str, str] | None) -> None:
        with self.db.transaction() as execute:
            if name is not None:
                execute("UPDATE {p}stores SET name = ? WHERE id = ?", (name, sid))
            if metadata is not None:
                execute(
                    "UPDATE {p}stores SET metadata = ? WHERE id = ?", (json.dumps(metadata), sid)
                )

    def delete_store(self, sid: str) -> None:
        with self.db.transaction() as execute:
            execute("DELETE FROM {p}store_files WHERE store_id = ?", (sid,))
            execute("DELETE FROM {p}batches WHERE store_id = ?", (sid,))
            execute("DELETE FROM {p}stores WHERE id = ?", (sid,))

    # -- files in stores -----------------------------------------------------------------------
    def attach(self, sid: str, fid: str, attributes: dict[str, Any], document: str) -> bool:
        try:
            self._write(
                f"INSERT INTO {{p}}store_files ({STORE_FILE}, attempts) "
                "VALUES (?, ?, 'in_progress', NULL, ?, ?, ?, 0) "
                "ON CONFLICT (store_id, file_id) DO UPDATE SET status = 'in_progress', "
                "last_error = NULL, report = NULL, attributes = excluded.attributes, "
                "created_at = excluded.created_at, document = excluded.document, attempts = 0",
                (sid, fid, json.dumps(attributes), int(time.time()), document),
            )
        except self.db.integrity_error:  # the file or the store was deleted meanwhile
            return False
        return True

    def set_status(
        self, sid: str, fid: str, status: str, error: dict | None = None, report: dict | None = None
    ) -> None:
        self._write(
            "UPDATE {p}store_files SET status = ?, last_error = ?, report = COALESCE(?, report) "
            "WHERE store_id = ? AND file_id = ?",
            (status, json.dumps(error) if error else None, _dump(report), sid, fid),
        )

    def set_attributes(self, sid: str, fid: str, attributes: dict[str, Any]) -> None:
        self._write(
            "UPDATE {p}store_files SET attributes = ? WHERE store_id = ? AND file_id = ?",
            (json.dumps(attributes), sid, fid),
        )

    def store_file(self, sid: str, fid: str) -> StoreFileRecord | None:
        rows = self._rows(
            f"SELECT {STORE_FILE_READ} FROM {{p}}store_files WHERE store_id = ? AND file_id = ?",
            (sid, fid),
        )
        return _store_file(rows[0]) if rows else None

    def store_files(self, sid: str) -> list[StoreFileRecord]:
        rows = self._rows(
            f"SELECT {STORE_FILE_READ} FROM {{p}}store_files WHERE store_id = ? "
            "ORDER BY created_at, file_id",
            (sid,),
        )
        return [_store_file(r) for r in rows]

    def detach(self, sid: str, fid: str) -> bool:
        return (
            self._write("DELETE FROM {p}store_files WHERE store_id = ? AND file_id = ?", (sid, fid))
            > 0
        )

    def begin_sync(self, sid: str) -> list[StoreFileRecord]:
        with self.db.transaction() as execute:
            execute(
                "UPDATE {p}store_files SET attempts = COALESCE(attempts, 0) + 1 "
                "WHERE store_id = ? AND status = 'in_progress'",
                (sid,),
            )
            execute(
                "UPDATE {p}store_files SET status = 'failed', last_error = ? "
                "WHERE store_id = ? AND status = 'in_progress' AND attempts > ?",
                (json.dumps(INTERRUPTED), sid, MAX_ATTEMPTS),
            )
            rows = execute(
                f"SELECT {STORE_FILE_READ} FROM {{p}}store_files "
                "WHERE store_id = ? AND status = 'in_progress' ORDER BY created_at, file_id",
                (sid,),
            ).fetchall()
        return [_store_file(r) for r in rows]

    def pending_stores(self) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT store_id FROM {p}store_files WHERE status = 'in_progress'"
        )
        return sorted(r[0] for r in rows)

    def add_batch(self, bid: str, sid: str, file_ids: list[str]) -> BatchRecord:
        record = BatchRecord(bid, sid, file_ids, int(time.time()))
        self._write(
            "INSERT INTO {p}batches (id, store_id, file_ids, created_at) VALUES (?, ?, ?, ?)",
            (bid, sid, json.dumps(file_ids), record.created_at),
        )
        return record

    def batch(self, sid: str, bid: str) -> BatchRecord | None:
        rows = self._rows(
            "SELECT id, store_id, file_ids, created_at FROM {p}batches "
            "WHERE id = ? AND store_id = ?",
            (bid, sid),
        )
        if not rows:
            return None
        return BatchRecord(rows[0][0], rows[0][1], _json(rows[0][2]), rows[0][3])


FILE = "id, sha256, filename, bytes, purpose, created_at"


def _json(value: Any) -> Any:
    """A JSON column: text in SQLite, already decoded from PostgreSQL's jsonb."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _store(row: tuple) -> StoreRecord:
    return StoreRecord(row[0], row[1], _json(row[2]), row[3], row[4])


def _store_file(row: tuple) -> StoreFileRecord:
    return StoreFileRecord(
        row[0],
        row[1],
        row[2],
        _json(row[3]) if row[3] else None,
        _json(row[4]),
        row[5],
        row[6],
        _json(row[7]) if row[7] else None,
    )


def _dump(value: dict | None) -> str | None:
    return json.dumps(value) if value is not None else None
