"""The library's own records: uploaded files, their bytes, vector stores and what each
holds, the secret that signs citation links.

`Catalog` is the interface the server uses; two implementations pass the same contract
tests (tests/server/test_catalog.py):

- `LocalCatalog` (local.py): one SQLite file in the data directory. Blobs live under `files/`
  named by their SHA-256, written to a temporary name and renamed, so an upload can neither
  overwrite another file nor escape the directory (names never come from the client).
- `PostgresCatalog` (postgres.py): the same records in the database the index lives in,
  the bytes too, so every replica sees every upload.

Every upload is its own file object with a random id; uploads of the same bytes share one
blob underneath. Every method is safe to call from worker threads.
"""

from __future__ import annotations

from pathlib import Path

from ragserve.retrieval.location import is_postgres

from .local import LocalCatalog
from .records import (
    INTERRUPTED,
    MAX_ATTEMPTS,
    PDF_MAGIC,
    BatchRecord,
    Catalog,
    FileRecord,
    StoreFileRecord,
    StoreRecord,
    new_file_id,
)

__all__ = [
    "INTERRUPTED",
    "MAX_ATTEMPTS",
    "PDF_MAGIC",
    "BatchRecord",
    "Catalog",
    "FileRecord",
    "LocalCatalog",
    "StoreFileRecord",
    "StoreRecord",
    "new_file_id",
    "open_catalog",
]


def open_catalog(store: str | None, data_dir: Path) -> Catalog:
    """The catalog beside the index: in its PostgreSQL database when `store` is a URL
    (the data directory then holds only a cache), else in the data directory."""
    if store and is_postgres(store):
        from .postgres import PostgresCatalog

        return PostgresCatalog(store, data_dir)
    return LocalCatalog(data_dir)
