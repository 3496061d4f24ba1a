"""Where an index lives, behind one small interface: local files or PostgreSQL.

The search (search.py) and the ingest (ingest/pipeline.py) see only these protocols:

- a `Backend` names one index (a folder, or one collection in a PostgreSQL database),
  says which version is published, opens it for reading, and hands out the one `Writer`
  allowed at a time;
- a `Version` is one published state, held by a search while it runs (`acquire` gives a
  `Reader` on one consistent view, `release` lets it go);
- a `Writer` builds the next version; nothing it does is visible until `publish`, and a
  writer that dies (or `abort`s) leaves the published version as it was.

`open_backend` picks the implementation from the location: a `postgresql://` URL, or a
path. Both pass the same contract tests (tests/retrieval/test_backends.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import numpy as np

from .index import IndexVersion, IndexWriter, Manifest, current_version, ingest_lock
from .location import is_postgres
from .store import Chunk, Document, DocumentRow, StoredChunk


class Reader(Protocol):
    """One consistent view of a published version, for the length of one search."""

    def dense(
        self, vector: np.ndarray, k: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity), best first."""
        ...

    def similarity(self, vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]: ...

    def keyword(
        self, query: str, limit: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, BM25 score), best first, higher is better."""
        ...

    def phrase_documents(self, phrase: str, limit: int) -> dict[int, int]:
        """Chunks holding the phrase's analyzed terms consecutively: chunk id -> doc id."""
        ...

    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]: ...

    def chunk_ids_for_documents(self, patterns: Sequence[str]) -> set[int]: ...

    def documents(self) -> list[DocumentRow]: ...

    def document(self, path: str) -> DocumentRow | None: ...

    def document_by_hash(self, prefix: str) -> DocumentRow | None: ...


class Version(Protocol):
    name: str
    manifest: Manifest

    def acquire(self) -> Reader: ...

    def release(self, reader: Reader | None = None) -> None: ...

    def retire(self) -> None:
        """A newer version replaced this one: close once its last reader is released."""
        ...


class Writer(Protocol):
    base: str | None  # the version this one is built from
    changed: bool

    def documents(self) -> list[DocumentRow]: ...

    def skipped(self) -> dict[str, tuple[int, int, str, str]]: ...

    def remove_document(self, path: str) -> None: ...

    def add_document(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> None: ...

    def set_skipped(
        self, path: str, size: int, mtime_ns: int, status: str, reason: str
    ) -> None: ...

    def clear_skipped(self, path: str) -> None: ...

    def touch_document(self, path: str, source: str, mtime_ns: int) -> None: ...

    def publish(self) -> Manifest: ...

    def abort(self) -> None: ...


class Backend(Protocol):
    where: str  # for messages and logs: a path, or a URL without its password

    def current(self) -> str | None:
        """The published version's name (None: nothing published yet); cheap."""
        ...

    def open(self) -> Version:
        """The published version (IndexNotFound when there is none)."""
        ...

    def lock(self) -> AbstractContextManager[None]:
        """The one ingest allowed at a time (IngestLocked when another holds it)."""
        ...

    def writer(
        self, *, embedding_model: str, dim_of, chunk_tokens: int, chunk_overlap: int
    ) -> Writer:
        """The next version's writer; call under `lock()`. `dim_of()` gives the embedding
        dimension, asked only when the index is new (so the model loads only then)."""
        ...

    def drop(self) -> None:
        """Delete the index, every version of it (a deleted vector store)."""
        ...

    def close(self) -> None: ...


class LocalBackend:
    """Versions in a folder (index.py): hnswlib vectors, SQLite FTS5, a CURRENT pointer."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        self.where = str(index_dir)

    def current(self) -> str | None:
        return current_version(self.index_dir)

    def open(self) -> IndexVersion:
        return IndexVersion.open_current(self.index_dir)

    def lock(self) -> AbstractContextManager[None]:
        return ingest_lock(self.index_dir)

    def writer(
        self, *, embedding_model: str, dim_of, chunk_tokens: int, chunk_overlap: int
    ) -> IndexWriter:
        return IndexWriter(
            self.index_dir,
            embedding_model=embedding_model,
            dim=dim_of,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
        )

    def drop(self) -> None:
        shutil.rmtree(self.index_dir, ignore_errors=True)

    def close(self) -> None:
        pass


def open_backend(location: str | Path | Backend, *, collection: str = "default") -> Backend:
    """The backend for a location: a `postgresql://` URL (the index named `collection` in
    that database), or an index folder."""
    if not isinstance(location, str | Path):
        return location
    if is_postgres(location):
        from .postgres import PostgresBackend

        return PostgresBackend.connect(str(location), collection)
    return LocalBackend(Path(location))
