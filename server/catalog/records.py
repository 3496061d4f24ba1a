"""The catalog's records and its interface (see __init__.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec

PDF_MAGIC = b"%PDF-"
MAX_ATTEMPTS = 3  # ingest runs an attach may be interrupted in before it is failed
INTERRUPTED = {
    "code": "server_error",
    "message": f"the ingest of this file was interrupted {MAX_ATTEMPTS} times (the server "
    "stopped or was killed while it ran); attach it again",
}


def new_file_id() -> str:
    """A random id in the shape of the corpus documents' content ids (file- + 32 hex)."""
    return "file-" + secrets.token_hex(16)


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
    report: dict[str, Any] | None = None  # what its ingest found (pages, chunks, OCR)


class BatchRecord(msgspec.Struct, frozen=True):
    id: str
    store_id: str
    file_ids: list[str]
    created_at: int


class Catalog(Protocol):
    """What the server keeps about its library, wherever it keeps it."""

    where: str  # for messages: a folder, or the database URL without its password

    def close(self) -> None: ...

    # files and their bytes
    def add_file(
        self, chunks: Iterator[bytes], filename: str, purpose: str, owner: str | None = None
    ) -> FileRecord:
        """Keep an upload (the caller checked its size and type) as a new file object."""
        ...

    def file(self, fid: str) -> FileRecord | None: ...

    def files(self) -> list[FileRecord]: ...

    def delete_file(self, fid: str) -> bool:
        """Forget the file (its blob too, once no other file shares it)."""
        ...

    def blob_path(self, sha256: str) -> Path | None:
        """A local file holding these bytes (fetched into a cache where they live elsewhere);
        None when no file has them."""
        ...

    def owners(self) -> dict[str, set[str]]:
        """The key that uploaded each file."""
        ...

    def file_stores(self) -> dict[str, list[str]]: ...

    def stores_of(self, fid: str) -> list[str]: ...

    # stores
    def add_store(
        self, sid: str, name: str, metadata: dict[str, str], owner: str | None = None
    ) -> StoreRecord: ...

    def ensure_store(self, sid: str, name: str) -> None:
        """Create the store unless it exists (replicas starting together: once)."""
        ...

    def store(self, sid: str) -> StoreRecord | None: ...

    def stores(self) -> list[StoreRecord]: ...

    def update_store(self, sid: str, name: str | None, metadata: dict[str, str] | None) -> None: ...

    def delete_store(self, sid: str) -> None: ...

    # files in stores
    def attach(self, sid: str, fid: str, attributes: dict[str, Any], document: str) -> bool:
        """Add (or re-add) the file to the store, `in_progress`; False when the file or the
        store is gone (deleted meanwhile)."""
        ...

    def set_status(
        self, sid: str, fid: str, status: str, error: dict | None = None, report: dict | None = None
    ) -> None:
        """`report` (what the ingest found) replaces the file's earlier one when given."""
        ...

    def set_attributes(self, sid: str, fid: str, attributes: dict[str, Any]) -> None: ...

    def store_file(self, sid: str, fid: str) -> StoreFileRecord | None: ...

    def store_files(self, sid: str) -> list[StoreFileRecord]: ...

    def detach(self, sid: str, fid: str) -> bool: ...

    def begin_sync(self, sid: str) -> list[StoreFileRecord]:
        """An ingest of the store starts: count one more attempt for each file waiting in
        it, fail those interrupted too often (INTERRUPTED), return the rest."""
        ...

    def pending_stores(self) -> list[str]:
        """Stores with files still `in_progress`."""
        ...

    def add_batch(self, bid: str, sid: str, file_ids: list[str]) -> BatchRecord: ...

    def batch(self, sid: str, bid: str) -> BatchRecord | None: ...

    # the secret that signs citation links
    def secret(self) -> bytes:
        """Created on first use, the same for every process sharing the catalog."""
        ...
