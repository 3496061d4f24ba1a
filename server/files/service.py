"""The PDFs behind the index, as OpenAI files: listed, described and served for citations."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ragserve.errors import NotFound
from ragserve.retrieval.search import file_id
from ragserve.retrieval.store import DocumentRow, sha256_file

from ..state import AppState
from .protocol import FileList, FileObject


def file_object(row: DocumentRow, created_at: float = 0) -> FileObject:
    return FileObject(
        id=file_id(row.sha256),
        bytes=row.size,
        created_at=int(created_at or row.mtime_ns // 1_000_000_000),
        filename=PurePosixPath(row.path).name,
    )


class FileService:
    def __init__(self, state: AppState) -> None:
        self.state = state

    def _row(self, fid: str) -> DocumentRow:
        row = self.state.retriever.document_by_file_id(fid)
        if row is None:
            raise NotFound(f"No such File object: {fid}", param="file_id")
        return row

    def list(self) -> FileList:
        rows = sorted(self.state.retriever.documents_all(), key=lambda r: r.path)
        data = [file_object(r) for r in rows]
        return FileList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
        )

    def retrieve(self, fid: str) -> FileObject:
        return file_object(self._row(fid))

    def content(self, fid: str) -> tuple[Path, str]:
        """The PDF's path and file name, if its bytes are still what was indexed (run in a
        worker thread: it may hash the file)."""
        row = self._row(fid)
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
