"""Vector stores: each is an index (the same `Backend` the CLI writes: a folder, or one
collection of the PostgreSQL database) fed with uploaded files.

Attaching a file records it `in_progress` in the catalog and queues the store with the
server's `IngestRunner` (runner.py), which brings the store's index up to date with the
catalog in this process: the server's own embedder and settings, extraction in the
ingest's process pool (time and memory limits, hostile-PDF handling), one version
published atomically, then each waiting file marked `completed` or `failed` with its reason.
Searches switch to the new version on their own, on every replica.

The CLI's index is the store `vs_default`: files attached to it are documents under
`uploads/`, kept apart from the corpus folder's (`ragserve ingest --prune` leaves them,
and neither can replace the other).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
import structlog

from ragserve.errors import Conflict, InvalidRequest, NotFound, NotReady
from ragserve.ingest.ocr import unavailable_reason
from ragserve.ingest.pipeline import (
    FileReport,
    IngestCancelled,
    IngestOptions,
    Upload,
    sync_uploads,
)
from ragserve.retrieval.backend import Backend, LocalBackend, open_backend
from ragserve.retrieval.fusion import MAX_SCORE
from ragserve.retrieval.location import is_postgres
from ragserve.retrieval.search import Filters, Hit, Retriever
from ragserve.retrieval.store import is_upload

from ..catalog import Catalog, StoreFileRecord, StoreRecord
from ..protocol import And, Eq, Filter, Gt, Gte, Lt, Ne, Or
from ..state import AppState
from .protocol import IngestReport
from .runner import IngestRunner

log = structlog.get_logger(__name__)
DEFAULT_STORE = "vs_default"
DEFAULT_COLLECTION = "default"  # the CLI's index in a database
UPLOADS = "uploads/"  # where files attached to vs_default live in the CLI's index
MAX_FILES_PER_STORE = 10_000
READY_WAIT_S = 600.0


def safe_name(filename: str) -> str:
    """A file name that stays inside the corpus folder: its last part, no control or
    separator characters, no leading dots (its suffix kept: it tells Markdown from text)."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    return re.sub(r"[\x00-\x1f\x7f/]", "", name).lstrip(". ").strip()[:200] or "document"


class VectorStores:
    def __init__(self, state: AppState, catalog: Catalog) -> None:
        self.state = state
        self.catalog = catalog
        self.root = state.settings.data / "stores"
        self._retrievers: dict[str, Retriever] = {}
        self._guard = threading.Lock()
        catalog.ensure_store(DEFAULT_STORE, "default")
        s = state.settings
        self.ocr = s.ocr_settings()  # found once: Tesseract and its language data
        if reason := unavailable_reason(s.ocr, s.ocr_lang):  # type: ignore[arg-type]
            log.warning("ocr.off", reason=reason)
        self.runner = IngestRunner(
            self._sync, catalog.pending_stores, concurrency=s.attach_concurrency
        )
        self.runner.start()  # and resume what a stopped process left in progress

    def close(self) -> None:
        self.runner.close()
        with self._guard:
            retrievers, self._retrievers = self._retrievers, {}
        for retriever in retrievers.values():
            retriever.close()
            retriever.backend.close()

    # -- places ----------------------------------------------------------------------
    def index_dir(self, sid: str) -> Path:
        if sid == DEFAULT_STORE:
            return self.state.settings.retrieval.index_dir
        return self.root / sid / "index"

    def backend(self, sid: str) -> Backend:
        """The store's index (close it after use)."""
        store = self.state.settings.retrieval.store
        if store and is_postgres(store):
            return open_backend(
                store, collection=DEFAULT_COLLECTION if sid == DEFAULT_STORE else sid
            )
        return LocalBackend(self.index_dir(sid))

    def record(self, sid: str) -> StoreRecord:
        record = self.catalog.store(sid)
        if record is None:
            self._forget(sid)  # deleted, maybe through another replica
            raise NotFound(f"No vector store found with id '{sid}'", param="vector_store_id")
        return record

    def retriever(self, sid: str) -> Retriever | None:
        """The store's searcher (None while it has no index yet)."""
        if sid == DEFAULT_STORE:
            return self.state.retriever
        with self._guard:
            found = self._retrievers.get(sid)
        if found is not None:
            return found
        backend = self.backend(sid)
        try:
            if backend.current() is None:
                backend.close()
                return None
            made = Retriever(backend, self.state.embedder)
        except BaseException:
            backend.close()
            raise
        with self._guard:
            found = self._retrievers.setdefault(sid, made)
        if found is not made:
            made.close()
            backend.close()
        return found

    def _forget(self, sid: str) -> None:
        with self._guard:
            retriever = self._retrievers.pop(sid, None)
        if retriever is not None:
            retriever.close()
            retriever.backend.close()

    # -- stores ----------------------------------------------------------------------
    def create(self, name: str, metadata: dict[str, str], owner: str | None = None) -> StoreRecord:
        sid = "vs_" + secrets.token_hex(12)
        return self.catalog.add_store(sid, name, metadata, owner)

    def delete(self, sid: str) -> None:
        self.record(sid)
        if sid == DEFAULT_STORE:
            raise Conflict(
                "the default store is the server's own index; it cannot be deleted",
                param="vector_store_id",
            )
        self.catalog.delete_store(sid)
        self._forget(sid)
        self._drop(sid)

    def _drop(self, sid: str) -> None:
        backend = self.backend(sid)
        try:
            backend.drop()
        finally:
            backend.close()
        if not is_postgres(self.state.settings.retrieval.store or ""):
            import shutil

            shutil.rmtree(self.root / sid, ignore_errors=True)

    # -- files -----------------------------------------------------------------------
    def document_for(self, sid: str, filename: str) -> str:
        """Where a file of this name lives in the store's index."""
        name = safe_name(filename)
        return UPLOADS + name if sid == DEFAULT_STORE else name

    def attach(self, sid: str, fid: str, attributes: dict[str, Any]) -> StoreFileRecord:
        """Add the file to the store (a file of the same name in it is replaced) and queue
        its ingest; the record says `in_progress` until that is done."""
        self.record(sid)
        file = self.catalog.file(fid)
        if file is None:
            raise InvalidRequest(f"No such File object: {fid}", param="file_id")
        files = self.catalog.store_files(sid)
        if len(files) >= MAX_FILES_PER_STORE and all(f.file_id != fid for f in files):
            raise InvalidRequest(
                f"a vector store holds at most {MAX_FILES_PER_STORE} files", param="file_id"
            )
        document = self.document_for(sid, file.filename)
        if sid == DEFAULT_STORE:
            self._check_corpus_name(document)
        for other in files:
            if other.document == document and other.file_id != fid:
                self.catalog.detach(sid, other.file_id)  # a revised version replaces it
        attached = self.catalog.attach(sid, fid, attributes, document)
        record = self.catalog.store_file(sid, fid) if attached else None
        if record is None:  # the file or the store was deleted meanwhile
            self.record(sid)
            raise Conflict(f"file {fid} was deleted while it was being attached", param="file_id")
        self.runner.schedule(sid)
        return record

    def _check_corpus_name(self, document: str) -> None:
        try:
            rows = self.state.retriever.documents([document])
        except NotReady:
            return
        row = rows.get(document)
        if row is not None and not is_upload(row):
            raise Conflict(
                f"the server's corpus already has a document at {document}; rename the file",
                param="file_id",
            )

    def detach(self, sid: str, fid: str) -> None:
        self.record(sid)
        if not self.catalog.detach(sid, fid):
            raise NotFound(f"No file {fid} in vector store {sid}", param="file_id")
        self.runner.schedule(sid)

    # -- background ingest -------------------------------------------------------------
    def _embedder(self):
        deadline = time.monotonic() + READY_WAIT_S
        while True:
            try:
                return self.state.embedder
            except NotReady:
                if self.state.load_error or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _sync(self, sid: str, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Bring the store's index up to date with its files in the catalog (runs in one of
        the runner's threads; IngestLocked when another process is at it)."""
        embedder = self._embedder()
        if self.catalog.store(sid) is None:
            return
        s = self.state.settings
        backend = self.backend(sid)
        try:
            with backend.lock():
                waiting = self.catalog.begin_sync(sid)
                if not waiting and sid != DEFAULT_STORE and backend.current() is None:
                    return
                records = {r.id: r for r in self.catalog.files()}
                uploads = [
                    Upload(f.document, f.file_id, r.sha256, r.bytes, r.created_at)
                    for f in self.catalog.store_files(sid)
                    if f.status in ("in_progress", "completed")
                    and (r := records.get(f.file_id)) is not None
                ]
                reports: dict[str, FileReport] = {}
                options = IngestOptions(
                    index_dir=backend.where,
                    paths=[],
                    workers=s.attach_workers,
                    max_page_chars=s.max_page_chars,
                    max_document_chars=s.max_document_chars,
                    ocr=self.ocr,
                )
                try:
                    summary = sync_uploads(
                        backend,
                        embedder,
                        uploads,
                        self.catalog.blob_path,
                        options,
                        shared=sid == DEFAULT_STORE,
                        on_file=lambda r: reports.__setitem__(r.path, r),
                        cancelled=cancelled,
                    )
                except IngestCancelled:
                    raise
                except Exception as exc:  # the run failed as a whole: so did its files
                    log.exception("vector_store.ingest_failed", store=sid)
                    error = {"code": "server_error", "message": str(exc)[:500]}
                    for f in waiting:
                        self.catalog.set_status(sid, f.file_id, "failed", error)
                    return
                for f in waiting:
                    report = reports.get(f.document)
                    if report is not None and report.status in ("failed", "skipped"):
                        code = report.code or "invalid_file"  # or unsupported_file
                        reason = {"code": code, "message": report.reason}
                        self.catalog.set_status(sid, f.file_id, "failed", reason)
                    else:  # ingested (its report), or unchanged (the earlier report stays)
                        found = _report(report) if report and report.status == "ingested" else None
                        self.catalog.set_status(sid, f.file_id, "completed", report=found)
                log.info(
                    "vector_store.ingested",
                    store=sid,
                    **{k: getattr(summary, k) for k in _COUNTS},
                )
                if self.catalog.store(sid) is None:  # deleted while it ran
                    self._forget(sid)
                    backend.drop()
        finally:
            backend.close()
        retriever = self.retriever(sid) if sid != DEFAULT_STORE else self.state.retriever
        if retriever is not None:
            retriever.refresh(force=True)

    # -- search ------------------------------------------------------------------------
    def search(
        self, sid: str, query: str, top_k: int, filters: Filter | None, threshold: float | None
    ) -> list[tuple[StoreFileRecord, Hit]]:
        self.record(sid)
        retriever = self.retriever(sid)
        if retriever is None:
            return []
        listed = self.catalog.store_files(sid)
        files = {f.document: f for f in listed if f.status == "completed"}
        unfinished = {f.document for f in listed} - set(files)
        allowed: list[str] | None = None
        if filters is not None:
            allowed = [d for d, f in files.items() if matches(filters, f.attributes)]
            if not allowed:
                return []
        hits = retriever.search(
            query, top_k, Filters(documents=[_literal(d) for d in allowed]) if allowed else None
        )
        out = []
        for h in hits:
            record = files.get(h.document)
            if record is None and (sid != DEFAULT_STORE or h.document in unfinished):
                continue  # being removed, or replaced
            # OpenAI's scores are 0..1: the hybrid score scaled (>= 0.5: an identifier of
            # the query named this document)
            record = record or _corpus_record(sid, h.document)
            score = round(min(1.0, h.score / MAX_SCORE), 6)
            h = msgspec.structs.replace(h, score=score, file_id=record.file_id or None)
            if threshold is not None and h.score < threshold:
                continue
            out.append((record, h))
        return out


def _literal(path: str) -> str:
    """A document path as a glob that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def _corpus_record(sid: str, document: str) -> StoreFileRecord:
    return StoreFileRecord(sid, "", "completed", None, {}, 0, document)


def _report(r: FileReport) -> dict[str, Any]:
    """What the file's status shows of its ingest: an IngestReport (zeros left out)."""
    return msgspec.to_builtins(
        IngestReport(
            format=r.format,
            pages=r.pages,
            sections=r.sections,
            chunks=r.chunks,
            ocr_pages=r.ocr_pages,
            ocr_failed_pages=r.ocr_failed_pages,
            ocr_skipped_pages=r.ocr_skipped_pages,
            unread_pages=r.unread_pages,
            note=r.reason,
        )
    )


_COUNTS = ("ingested", "unchanged", "failed", "skipped", "removed", "seconds", "version")


def _kind(value: Any) -> str:
    """The JSON type an attribute compares as: `true` is not `1` (Python says it is)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def matches(f: Filter, attributes: dict[str, Any]) -> bool:
    """OpenAI's attribute filters: comparisons (eq ne gt gte lt lte) and and/or."""
    if isinstance(f, And):
        return all(matches(sub, attributes) for sub in f.filters)
    if isinstance(f, Or):
        return any(matches(sub, attributes) for sub in f.filters)
    value = attributes.get(f.key)
    if isinstance(f, Eq):
        return value is not None and _kind(value) == _kind(f.value) and value == f.value
    if isinstance(f, Ne):
        return not (_kind(value) == _kind(f.value) and value == f.value)
    if value is None or _kind(value) != _kind(f.value) or isinstance(value, bool):
        return False  # a missing value, a boolean, or another type: no order to compare
    try:
        if isinstance(f, Gt):
            return bool(value > f.value)
        if isinstance(f, Gte):
            return bool(value >= f.value)
        if isinstance(f, Lt):
            return bool(value < f.value)
        return bool(value <= f.value)
    except TypeError:
        return False  # a number against a string
