"""The library's documents as OpenAI files: uploads (each its own file object, the bytes shared
underneath) and the documents of the server's own index; described, listed, served for
citations, deleted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from ragserve.errors import Conflict, InvalidRequest, NotFound, NotReady, PermissionDenied
from ragserve.ingest.formats import Sniffed, sniff
from ragserve.retrieval.search import file_id
from ragserve.retrieval.store import DocumentRow, is_upload, sha256_file

from ..access.keys import LOCAL, Principal
from ..access.visible import DEFAULT_STORE, Visibility
from ..catalog import Catalog, FileRecord
from ..pages import Page, paginate
from ..state import AppState
from ..vector_stores.service import VectorStores
from .protocol import FileDeleted, FileList, FileObject

PURPOSES = ("assistants", "user_data")
CHUNK = 1 << 20


def from_document(row: DocumentRow) -> FileObject:
    return FileObject(
        id=file_id(row.sha256),
        bytes=row.size,
        created_at=int(row.mtime_ns // 1_000_000_000),
        filename=PurePosixPath(row.path).name,
    )


def from_record(r: FileRecord) -> FileObject:
    return FileObject(
        id=r.id, bytes=r.bytes, created_at=r.created_at, filename=r.filename, purpose=r.purpose
    )


FILES_PAGE_MAX = 10_000  # OpenAI's default and largest page of files


class FileService:
    def __init__(
        self, state: AppState, catalog: Catalog, stores: VectorStores, visible: Visibility
    ) -> None:
        self.state = state
        self.catalog = catalog
        self.stores = stores
        self.visible = visible

    def upload(
        self, stream: IO[bytes], filename: str, purpose: str, owner: str | None = None
    ) -> FileObject:
        """Keep an uploaded file, whatever it is (as OpenAI does: a type ragserve cannot
        read fails its attach to a vector store, `unsupported_file`), and describe it.
        Its bytes are only ever stored, hashed and served back, never opened here."""
        limit = self.state.settings.max_upload_bytes
        if purpose not in PURPOSES:
            raise InvalidRequest(f"purpose must be one of {', '.join(PURPOSES)}", param="purpose")

        def chunks() -> Iterator[bytes]:
            size = 0
            while block := stream.read(CHUNK):
                size += len(block)
                if size > limit:
                    raise InvalidRequest(f"the file is larger than {limit} bytes", param="file")
                yield block
            if size == 0:
                raise InvalidRequest("the file is empty (0 bytes)", param="file")

        name = os.path.basename(filename.replace("\\", "/"))[:255] or "document"
        return from_record(self.catalog.add_file(chunks(), name, purpose, owner))

    def _document(self, fid: str) -> DocumentRow | None:
        try:
            row = self.state.retriever.document_by_file_id(fid)
        except NotReady:  # no index yet (or still loading): only uploads exist
            return None
        return None if row is None or is_upload(row) else row  # uploads: by their own id

    def _check(self, fid: str, principal: Principal) -> None:
        """404 for a file the caller may not see, as for one that does not exist."""
        if principal.everything:
            return
        self.visible.check_file(principal, fid, corpus=self.catalog.file(fid) is None)

    def list(
        self, principal: Principal = LOCAL, page: Page | None = None, purpose: str | None = None
    ) -> FileList:
        seen = self.visible.files(principal)
        data = {r.id: from_record(r) for r in self.catalog.files() if seen is None or r.id in seen}
        rows: list[DocumentRow] = []
        if seen is None or self.visible.readable(principal, DEFAULT_STORE):
            try:
                rows = self.state.retriever.documents_all()
            except NotReady:
                rows = []
        for row in sorted(rows, key=lambda r: r.path):
            if is_upload(row):
                continue  # listed above, by the upload's id
            data.setdefault(file_id(row.sha256), from_document(row))
        items = [f for f in data.values() if purpose is None or f.purpose == purpose]
        return FileList(**paginate(items, page or Page(limit=FILES_PAGE_MAX)))

    def retrieve(self, fid: str, principal: Principal = LOCAL) -> FileObject:
        self._check(fid, principal)
        record = self.catalog.file(fid)
        if record is not None:
            return from_record(record)
        row = self._document(fid)
        if row is None:
            raise NotFound(f"No such File object: {fid}", param="file_id")
        return from_document(row)

    def delete(self, fid: str, principal: Principal = LOCAL) -> FileDeleted:
        """Remove an upload from every store (their indexes are rebuilt without it): only
        for a caller that may change each of them."""
        self._check(fid, principal)
        if not principal.everything:
            for sid in self.catalog.stores_of(fid):
                found = self.visible.lookup(sid)
                if found is not None and not principal.can_write(sid, *found):
                    raise PermissionDenied(
                        f"this file is also in vector store {sid}, which this API key "
                        f"({principal.name}) may not change",
                        param="file_id",
                    )
        if self.catalog.file(fid) is None:
            if self._document(fid) is not None:
                raise Conflict(
                    "this file belongs to the server's own corpus; remove it there and run "
                    "the ingest again",
                    param="file_id",
                )
            raise NotFound(f"No such File object: {fid}", param="file_id")
        for sid in self.catalog.stores_of(fid):
            self.stores.detach(sid, fid)
        self.catalog.delete_file(fid)
        return FileDeleted(id=fid)

    def content(self, fid: str, principal: Principal = LOCAL) -> tuple[Path, str, Sniffed]:
        """The file's path, name and what it is (for an indexed document, only if its
        bytes are still what was indexed: this may hash the file, so run it in a worker
        thread)."""
        path, name = self._content(fid, principal)
        return path, name, sniff(path, name)

    def _content(self, fid: str, principal: Principal) -> tuple[Path, str]:
        if principal.link_file is None:  # a signed link was minted for a readable file
            self._check(fid, principal)
        record = self.catalog.file(fid)
        if record is not None:
            blob = self.catalog.blob_path(record.sha256)
            if blob is None:
                raise NotFound(f"the bytes of {fid} are no longer on the server", param="file_id")
            return blob, record.filename
        row = self._document(fid)
        if row is None:
            raise NotFound(f"No such File object: {fid}", param="file_id")
        path = Path(row.source)
        try:
            st = path.stat()
        except OSError:
            raise NotFound(f"the file of {row.path} is no longer on the server") from None
        unchanged = st.st_size == row.size and st.st_mtime_ns == row.mtime_ns
        if not path.is_file() or not (unchanged or sha256_file(path) == row.sha256):
            raise NotFound(
                f"{row.path} changed since it was indexed; run the ingest again", param="file_id"
            )
        return path, os.path.basename(row.path)
