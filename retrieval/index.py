"""The on-disk index: immutable versions published atomically through a CURRENT pointer.

    INDEX_DIR/
      CURRENT                  name of the published version, replaced atomically
      ingest.lock              held (flock) by the one ingest allowed at a time
      versions/v000007/        chunks.sqlite, vectors.hnsw, manifest.json

A writer copies the current version into a private temporary folder, changes it,
and publishes it by renaming the folder and then replacing CURRENT. A crash at any
point leaves CURRENT naming a complete version; readers notice a new CURRENT and
switch to it without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import msgspec
import numpy as np

from ragserve.errors import EmbeddingModelMismatch, IndexCorrupt, IndexNotFound, IngestLocked

from .store import Chunk, ChunkStore, Document, DocumentRow, StoredChunk
from .vectors import VectorIndex

FORMAT_VERSION = 1
DB_FILE = "chunks.sqlite"
VECTORS_FILE = "vectors.hnsw"
MANIFEST_FILE = "manifest.json"
KEEP_VERSIONS = 2


def default_index_dir() -> Path:
    """$RAGSERVE_INDEX_DIR, else $XDG_DATA_HOME/ragserve/index (~/.local/share/...)."""
    if env := os.environ.get("RAGSERVE_INDEX_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "ragserve" / "index"


class Manifest(msgspec.Struct, frozen=True):
    format_version: int
    version: str
    created_at: float
    embedding_model: str
    dim: int
    chunk_tokens: int
    chunk_overlap: int
    documents: int
    chunks: int


def check_vectors(chunks: Sequence[Chunk], vectors: np.ndarray, dim: int) -> None:
    """A document's vectors: one per chunk, of the index's dimension (any backend)."""
    if len(chunks) != len(vectors) or (len(vectors) and vectors.shape[1] != dim):
        raise IndexCorrupt(
            f"{len(vectors)} vectors of shape {vectors.shape} for "
            f"{len(chunks)} chunks; the index holds dimension {dim}"
        )


def new_manifest(
    name: str,
    *,
    embedding_model: str,
    dim: int,
    chunk_tokens: int,
    chunk_overlap: int,
    documents: int,
    chunks: int,
) -> Manifest:
    return Manifest(
        format_version=FORMAT_VERSION,
        version=name,
        created_at=time.time(),
        embedding_model=embedding_model,
        dim=dim,
        chunk_tokens=chunk_tokens,
        chunk_overlap=chunk_overlap,
        documents=documents,
        chunks=chunks,
    )


def current_version(index_dir: Path) -> str | None:
    try:
        name = (index_dir / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def read_manifest(version_dir: Path) -> Manifest:
    try:
        manifest = msgspec.json.decode((version_dir / MANIFEST_FILE).read_bytes(), type=Manifest)
    except (OSError, msgspec.DecodeError) as exc:
        raise IndexCorrupt(f"cannot read {version_dir / MANIFEST_FILE}: {exc}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise IndexCorrupt(
            f"index format {manifest.format_version} is not supported "
            f"(this ragserve reads format {FORMAT_VERSION}); re-ingest into a new index"
        )
    return manifest


class IndexVersion:
    """One published version opened read-only: manifest, chunk store and vectors."""

    def __init__(self, index_dir: Path, name: str) -> None:
        self.name = name
        self.dir = index_dir / "versions" / name
        self.manifest = read_manifest(self.dir)
        self.store = ChunkStore(self.dir / DB_FILE, readonly=True)
        self.vectors = VectorIndex.load(self.dir / VECTORS_FILE, self.manifest.dim)
        self._users = 0
        self._retired = False
        self._lock = threading.Lock()

    def acquire(self) -> IndexVersion:
        """Mark a search as using this version (a retired one stays open until released);
        the version is its own reader: its files never change."""
        with self._lock:
            self._users += 1
        return self

    def release(self, reader: object = None) -> None:
        with self._lock:
            self._users -= 1
            last = self._retired and self._users == 0
        if last:
            self.close()

    def retire(self) -> None:
        """A newer version is published: close once the last search using this one ends."""
        with self._lock:
            self._retired = True
            idle = self._users == 0
        if idle:
            self.close()

    @classmethod
    def open_current(cls, index_dir: Path) -> IndexVersion:
        name = current_version(index_dir)
        if name is None:
            raise IndexNotFound(
                f"no index at {index_dir}; run `ragserve ingest PATH --index {index_dir}` first"
            )
        return cls(index_dir, name)

    def close(self) -> None:
        self.store.close()

    # -- the Reader protocol (backend.py) ------------------------------------------------
    def dense(
        self, vector: np.ndarray, k: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        # never ask for more than the live chunks: hnswlib counts deleted ones too, and a k it
        # cannot fill raises (a small store with a replaced file found nothing at all)
        return self.vectors.search(vector, min(k, self.manifest.chunks), allowed)

    def similarity(self, vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        return self.vectors.similarity(vector, ids)

    def keyword(
        self, query: str, limit: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        return self.store.keyword_search(query, limit, allowed)

    def phrase_documents(self, phrase: str, limit: int) -> dict[int, int]:
        return self.store.phrase_documents(phrase, limit)

    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        return self.store.chunks(ids)

    def chunk_ids_for_documents(self, patterns: Sequence[str]) -> set[int]:
        return self.store.chunk_ids_for_documents(patterns)

    def documents(self) -> list[DocumentRow]:
        return self.store.documents()

    def document(self, path: str) -> DocumentRow | None:
        return self.store.document(path)

    def document_by_hash(self, prefix: str) -> DocumentRow | None:
        return self.store.document_by_hash(prefix)


@contextlib.contextmanager
def ingest_lock(index_dir: Path) -> Iterator[None]:
    """Hold the index's ingest lock; a second ingest is refused, not queued."""
    index_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(index_dir / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise IngestLocked(
                f"another ingest is running on {index_dir} (pid {holder}); wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock, also when the process dies


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IndexWriter:
    """Builds the next version from the current one. Use under `ingest_lock`."""

    def __init__(
        self,
        index_dir: Path,
        *,
        embedding_model: str,
        dim: Callable[[], int],
        chunk_tokens: int,
        chunk_overlap: int,
    ) -> None:
        self.index_dir = index_dir
        self.embedding_model = embedding_model
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        versions = index_dir / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        self._clean_leftovers(versions)
        self.base = current_version(index_dir)
        number = int(self.base[1:]) + 1 if self.base else 1
        self.name = f"v{number:06d}"
        self.tmp = versions / f"{self.name}.tmp"
        self.tmp.mkdir()
        if self.base:
            base_dir = versions / self.base
            manifest = read_manifest(base_dir)
            if manifest.embedding_model != embedding_model:
                shutil.rmtree(self.tmp)
                raise EmbeddingModelMismatch(manifest.embedding_model, embedding_model)
            shutil.copyfile(base_dir / DB_FILE, self.tmp / DB_FILE)
            self.dim = manifest.dim
            self.vectors = VectorIndex.load(base_dir / VECTORS_FILE, self.dim)
        else:
            self.dim = dim()  # a new index: only now is the embedding model needed
            self.vectors = VectorIndex(self.dim)
        self.store = ChunkStore(self.tmp / DB_FILE)
        self.changed = False

    @staticmethod
    def _clean_leftovers(versions: Path) -> None:
        """Remove temporary folders of ingests that were killed."""
        for entry in versions.glob("*.tmp"):
            shutil.rmtree(entry, ignore_errors=True)

    def documents(self) -> list[DocumentRow]:
        return self.store.documents()

    def skipped(self) -> dict[str, tuple[int, int, str, str]]:
        return self.store.skipped()

    def remove_document(self, path: str) -> None:
        ids = self.store.remove_document(path)
        self.vectors.remove(ids)
        self.changed = True

    def add_document(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> None:
        check_vectors(chunks, vectors, self.dim)
        ids = self.store.add_document(doc, chunks, time.time())
        self.vectors.add(ids, vectors)
        self.changed = True

    def set_skipped(self, path: str, size: int, mtime_ns: int, status: str, reason: str) -> None:
        self.store.set_skipped(path, size, mtime_ns, status, reason)
        self.changed = True

    def clear_skipped(self, path: str) -> None:
        if self.store.clear_skipped(path):
            self.changed = True

    def touch_document(self, path: str, source: str, mtime_ns: int) -> None:
        self.store.touch_document(path, source, mtime_ns)
        self.changed = True

    def publish(self) -> Manifest:
        """Write the version to disk and make it current, atomically."""
        docs = self.store.documents()
        manifest = new_manifest(
            self.name,
            embedding_model=self.embedding_model,
            dim=self.dim,
            chunk_tokens=self.chunk_tokens,
            chunk_overlap=self.chunk_overlap,
            documents=len(docs),
            chunks=self.store.chunk_count(),
        )
        self.store.set_meta({"manifest": msgspec.json.encode(manifest).decode()})
        self.store.commit()
        self.store.optimize()
        self.store.close()
        self.vectors.save(self.tmp / VECTORS_FILE)
        (self.tmp / MANIFEST_FILE).write_bytes(msgspec.json.encode(manifest))
        for f in self.tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final = self.tmp.with_name(self.name)
        os.rename(self.tmp, final)
        _fsync_dir(final.parent)
        pointer = self.index_dir / "CURRENT.tmp"
        pointer.write_text(self.name + "\n")
        with open(pointer, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(pointer, self.index_dir / "CURRENT")
        _fsync_dir(self.index_dir)
        self._gc()
        return manifest

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _gc(self) -> None:
        """Keep the newest versions; readers that still hold an older one keep their fds."""
        versions = sorted(
            p
            for p in (self.index_dir / "versions").iterdir()
            if p.is_dir() and not p.name.endswith(".tmp")
        )
        for old in versions[:-KEEP_VERSIONS]:
            shutil.rmtree(old, ignore_errors=True)
