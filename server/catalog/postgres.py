"""The catalog in PostgreSQL: every replica sees every upload, store and attach.

The tables are schema version 2 of retrieval/postgres.py (one schema, migrated at
connect). An upload's bytes are spooled to a local file while they arrive (a slow client
never holds a database connection), then written in 1 MiB parts in the same transaction
as its file record, so a killed replica leaves either both or neither. Replicas read the
bytes back into a content-addressed cache under the data directory (checked against the
hash) to serve `/v1/files/{id}/content` and to ingest them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path

import structlog

from ..sqldb import Execute, PostgresDatabase
from .sql import SqlCatalog

log = structlog.get_logger(__name__)
PART = 1 << 20
POOL_SIZE = 8


class PostgresCatalog(SqlCatalog):
    def __init__(self, url: str, data_dir: Path) -> None:
        self.db = self.pg = PostgresDatabase(url, POOL_SIZE)  # migrates the schema if need be
        self.where = self.pg.where
        self.cache = data_dir / "cache" / "blobs"

    # -- blobs -------------------------------------------------------------------------------
    def _cached(self, sha256: str) -> Path:
        return self.cache / f"{sha256}.pdf"

    def _spool_dir(self) -> Path:
        return self.cache

    def _keep_blob(self, execute: Execute, tmp: Path, sha256: str, size: int) -> None:
        fresh = execute(
            "INSERT INTO {p}blobs VALUES (?, ?) ON CONFLICT DO NOTHING", (sha256, size)
        ).rowcount
        if fresh:
            with open(tmp, "rb") as fh:
                for seq, part in enumerate(iter(lambda: fh.read(PART), b"")):
                    execute("INSERT INTO {p}blob_parts VALUES (?, ?, ?)", (sha256, seq, part))
        os.replace(tmp, self._cached(sha256))  # this replica has the bytes already

    def _drop_blob(self, execute: Execute, sha256: str) -> None:
        execute("DELETE FROM {p}blobs WHERE sha256 = ?", (sha256,))  # its parts go with it

    def _forget_blob(self, sha256: str) -> None:
        self._cached(sha256).unlink(missing_ok=True)

    def blob_path(self, sha256: str) -> Path | None:
        path = self._cached(sha256)
        if path.is_file():
            return path
        self.cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache, prefix=".fetch-")
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, self.pg.connection() as conn:
                cursor = conn.execute(
                    "SELECT data FROM rs_blob_parts WHERE sha256 = %s ORDER BY seq", (sha256,)
                )
                for (data,) in cursor:
                    digest.update(data)
                    out.write(data)
            if digest.hexdigest() != sha256:  # no parts (deleted), or not these bytes
                if self._rows("SELECT 1 FROM {p}files WHERE sha256 = ? LIMIT 1", (sha256,)):
                    log.error("catalog.blob_corrupt", sha256=sha256)
                return None
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path

    # -- secrets -------------------------------------------------------------------------------
    def secret(self) -> bytes:
        """The citation secret: the first replica to ask creates it, all share it."""
        self._write(
            "INSERT INTO {p}secrets VALUES ('citations', ?) ON CONFLICT DO NOTHING",
            (secrets.token_bytes(32),),
        )
        return bytes(self._rows("SELECT value FROM {p}secrets WHERE name = 'citations'")[0][0])
