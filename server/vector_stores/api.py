"""The vector-store resource in OpenAI's shapes, over `VectorStores` and the catalog."""

from __future__ import annotations

import secrets
from pathlib import PurePosixPath
from typing import Any

import msgspec

from ragserve.errors import InvalidRequest, NotFound
from ragserve.retrieval.search import document_file_id

from ..access.keys import LOCAL, Principal
from ..access.visible import Visibility
from ..catalog import StoreFileRecord, StoreRecord
from ..pages import Page, paginate
from ..protocol import validate_filter
from .protocol import (
    CreateBatch,
    CreateStoreFile,
    CreateVectorStore,
    FileBatch,
    FileCounts,
    IngestReport,
    LastError,
    SearchContent,
    SearchRequest,
    SearchResult,
    SearchResults,
    UpdateStoreFile,
    UpdateVectorStore,
    VectorStore,
    VectorStoreDeleted,
    VectorStoreFile,
    VectorStoreFileDeleted,
    VectorStoreFileList,
    VectorStoreList,
)
from .service import VectorStores


def counts(files: list[StoreFileRecord]) -> FileCounts:
    c = FileCounts(total=len(files))
    for f in files:
        setattr(c, f.status, getattr(c, f.status) + 1)
    return c


def batch_status(c: FileCounts) -> Any:
    if c.in_progress:
        return "in_progress"
    return "failed" if c.failed and not c.completed else "completed"


class StoreApi:
    def __init__(self, stores: VectorStores, visible: Visibility) -> None:
        self.stores = stores
        self.catalog = stores.catalog
        self.visible = visible

    def _known(self, file_ids: list[str], principal: Principal = LOCAL) -> None:
        """Files a request names must exist, for its caller (a 400: the store in the path
        does)."""
        seen = self.visible.files(principal)
        for fid in file_ids:
            if self.catalog.file(fid) is None or (seen is not None and fid not in seen):
                raise InvalidRequest(f"No such File object: {fid}", param="file_ids")

    def _store(self, record: StoreRecord, sizes: dict[str, int] | None = None) -> VectorStore:
        files = self.catalog.store_files(record.id)
        c = counts(files)
        if sizes is None:
            sizes = self._sizes()
        return VectorStore(
            id=record.id,
            created_at=record.created_at,
            name=record.name,
            usage_bytes=sum(sizes.get(f.file_id, 0) for f in files),
            file_counts=c,
            status="in_progress" if c.in_progress else "completed",
            last_active_at=max([record.created_at, *(f.created_at for f in files)]),
            metadata=record.metadata,
        )

    def _file(self, f: StoreFileRecord) -> VectorStoreFile:
        record = self.catalog.file(f.file_id)
        return VectorStoreFile(
            id=f.file_id,
            created_at=f.created_at,
            vector_store_id=f.store_id,
            status=f.status,  # type: ignore[arg-type]
            usage_bytes=record.bytes if record else 0,
            last_error=LastError(**f.last_error) if f.last_error else None,  # type: ignore[arg-type]
            attributes=f.attributes,
            ingest=msgspec.convert(f.report, IngestReport) if f.report else None,
        )

    # -- stores ----------------------------------------------------------------------
    def create(self, body: CreateVectorStore, principal: Principal = LOCAL) -> VectorStore:
        self._known(body.file_ids, principal)  # before anything is created
        record = self.stores.create(body.name, body.metadata or {}, principal.name)
        for fid in body.file_ids:
            self.stores.attach(record.id, fid, {})
        return self._store(record)

    def _sizes(self) -> dict[str, int]:
        return {f.id: f.bytes for f in self.catalog.files()}

    def list(self, principal: Principal = LOCAL, page: Page | None = None) -> VectorStoreList:
        sizes = self._sizes()
        data = [self._store(r, sizes) for r in self.visible.stores(principal)]
        return VectorStoreList(**paginate(data, page or Page()))

    def get(self, sid: str) -> VectorStore:
        return self._store(self.stores.record(sid))

    def update(self, sid: str, body: UpdateVectorStore) -> VectorStore:
        self.stores.record(sid)
        self.catalog.update_store(sid, body.name, body.metadata)
        return self.get(sid)

    def delete(self, sid: str) -> VectorStoreDeleted:
        self.stores.delete(sid)
        return VectorStoreDeleted(id=sid)

    # -- files -----------------------------------------------------------------------
    def attach(
        self, sid: str, body: CreateStoreFile, principal: Principal = LOCAL
    ) -> VectorStoreFile:
        self.stores.record(sid)
        self._known([body.file_id], principal)
        return self._file(self.stores.attach(sid, body.file_id, body.attributes or {}))

    def files(
        self, sid: str, page: Page | None = None, status: str | None = None
    ) -> VectorStoreFileList:
        self.stores.record(sid)
        data = [self._file(f) for f in self.catalog.store_files(sid)]
        data = [f for f in data if status is None or f.status == status]
        return VectorStoreFileList(**paginate(data, page or Page()))

    def _record(self, sid: str, fid: str) -> StoreFileRecord:
        self.stores.record(sid)
        f = self.catalog.store_file(sid, fid)
        if f is None:
            raise NotFound(f"No file {fid} in vector store {sid}", param="file_id")
        return f

    def file(self, sid: str, fid: str) -> VectorStoreFile:
        return self._file(self._record(sid, fid))

    def set_attributes(self, sid: str, fid: str, body: UpdateStoreFile) -> VectorStoreFile:
        self._record(sid, fid)
        self.catalog.set_attributes(sid, fid, body.attributes)
        return self.file(sid, fid)

    def detach(self, sid: str, fid: str) -> VectorStoreFileDeleted:
        self.stores.detach(sid, fid)
        return VectorStoreFileDeleted(id=fid)

    # -- batches ---------------------------------------------------------------------
    def create_batch(self, sid: str, body: CreateBatch, principal: Principal = LOCAL) -> FileBatch:
        self.stores.record(sid)
        self._known(body.file_ids, principal)
        batch = self.catalog.add_batch("vsfb_" + secrets.token_hex(12), sid, body.file_ids)
        for fid in body.file_ids:
            self.stores.attach(sid, fid, body.attributes or {})
        return self.batch(sid, batch.id)

    def batch(self, sid: str, bid: str) -> FileBatch:
        self.stores.record(sid)
        batch = self.catalog.batch(sid, bid)
        if batch is None:
            raise NotFound(f"No file batch {bid} in vector store {sid}", param="batch_id")
        ids = set(batch.file_ids)
        c = counts([f for f in self.catalog.store_files(sid) if f.file_id in ids])
        return FileBatch(
            id=bid,
            created_at=batch.created_at,
            vector_store_id=sid,
            status=batch_status(c),
            file_counts=c,
        )

    # -- search ----------------------------------------------------------------------
    def search(self, sid: str, body: SearchRequest) -> SearchResults:
        if body.filters is not None:
            validate_filter(body.filters)
        queries = [body.query] if isinstance(body.query, str) else body.query
        threshold = body.ranking_options.score_threshold if body.ranking_options else None
        found = self.stores.search(
            sid, " ".join(queries), body.max_num_results, body.filters, threshold
        )
        unlisted = {h.document for record, h in found if not record.file_id}
        ids = self._corpus_ids(sid, unlisted) if unlisted else {}
        return SearchResults(
            search_query=queries,
            data=[
                SearchResult(
                    file_id=record.file_id or ids.get(hit.document, ""),
                    filename=PurePosixPath(hit.document).name if record.file_id else hit.document,
                    score=hit.score,
                    attributes=record.attributes,
                    content=[SearchContent(text=hit.text)],
                    page=hit.pages[0],
                    page_end=hit.pages[1],
                    location=hit.location,
                    origin=hit.origin,
                    ocr_confidence=hit.ocr_confidence,
                )
                for record, hit in found
            ],
        )

    def _corpus_ids(self, sid: str, documents: set[str]) -> dict[str, str]:
        """File ids of documents the CLI put in a store (they have no upload record)."""
        retriever = self.stores.retriever(sid)
        if retriever is None:
            return {}
        return {d: document_file_id(row) for d, row in retriever.documents(documents).items()}
