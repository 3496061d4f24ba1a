"""The catalog in the data directory: one SQLite file, blobs under `files/` by SHA-256.

A blob is written to a temporary name and renamed, so an upload can neither overwrite
another file nor escape the directory (names never come from the client).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import structlog

from ..sqldb import Execute, SqliteDatabase
from .sql import SqlCatalog

log = structlog.get_logger(__name__)
SECRET_FILE = ".ragserve-citation-key"

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
    ("store_files", "attempts", "ALTER TABLE store_files ADD COLUMN attempts INTEGER DEFAULT 0"),
    ("store_files", "report", "ALTER TABLE store_files ADD COLUMN report TEXT"),
)
OWNERS = """
CREATE TABLE IF NOT EXISTS file_owners (
    file_id TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (file_id, owner)
);
"""


class LocalCatalog(SqlCatalog):
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.where = str(data_dir)
        self.blobs = data_dir / "files"
        self.blobs.mkdir(parents=True, exist_ok=True)
        db = SqliteDatabase(data_dir / "library.sqlite", SCHEMA + OWNERS)
        for table, column, sql in MIGRATIONS:
            if column not in db.columns(table):
                db.run(sql)
        self.db = db

    # -- blobs -------------------------------------------------------------------------------
    def blob(self, sha256: str) -> Path:
        return self.blobs / f"{sha256}.pdf"

    def blob_path(self, sha256: str) -> Path | None:
        path = self.blob(sha256)
        return path if path.is_file() else None

    def _spool_dir(self) -> Path:
        return self.blobs

    def _keep_blob(self, execute: Execute, tmp: Path, sha256: str, size: int) -> None:
        os.replace(tmp, self.blob(sha256))  # same content, same bytes: replacing is harmless

    def _forget_blob(self, sha256: str) -> None:
        self.blob(sha256).unlink(missing_ok=True)

    def secret(self) -> bytes:
        return file_secret(self.dir)


def file_secret(data_dir: Path) -> bytes:
    """The secret kept in `data_dir` (created on first use, 0600, whole or not at all: it
    is written aside and linked into place, so a process starting beside this one never
    reads half of it), else (a read-only data directory) one for this process only."""
    path = data_dir / SECRET_FILE
    kept = _read_secret(path)
    if kept is not None:
        return kept
    secret = secrets.token_bytes(32)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".secret-")
        try:
            with os.fdopen(fd, "w") as f:  # mkstemp: 0600 already
                f.write(secret.hex())
            os.link(tmp, path)  # fails if another process was first
        finally:
            os.unlink(tmp)
    except FileExistsError:
        kept = _read_secret(path)
        if kept is not None:
            return kept
        raise
    except OSError as exc:
        log.warning("citations.secret_not_saved", path=str(path), error=exc.strerror)
    return secret


def _read_secret(path: Path) -> bytes | None:
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return secret or None
