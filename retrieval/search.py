"""Hybrid search: hnswlib dense search fused with FTS5 keyword search by reciprocal rank."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import structlog

from ragserve.errors import EmbeddingModelMismatch, IndexNotFound, InvalidRequest

from .backend import Backend, Reader, Version, open_backend
from .embedder import Embedder
from .fusion import IDENTIFIER_DOCS, fuse, identifiers
from .rerank import Reranker
from .store import UPLOAD_SOURCE, DocumentRow, is_upload

log = structlog.get_logger(__name__)

Mode = Literal["hybrid", "dense", "keyword"]
MODES: tuple[str, ...] = ("hybrid", "dense", "keyword")
SNIPPET_CHARS = 240
KEYWORD_POOL = 200  # hybrid: BM25 of this many chunks, so dense candidates have theirs


class Filters(msgspec.Struct, frozen=True, omit_defaults=True):
    """Restrict a search. `documents`: paths relative to the corpus root, or globs."""

    documents: list[str] | None = None


class Hit(msgspec.Struct, frozen=True):
    chunk_id: int
    document: str
    page: int
    page_end: int
    score: float
    text: str
    char_start: int
    char_end: int
    # the Files API id of the document, where the hit comes from a vector store (two stores
    # may each hold a file of the same name: the name alone does not say which)
    file_id: str | None = None
    # None: the text layer; else OCR read (some of) it with this mean confidence (0-100)
    ocr_confidence: float | None = None
    # a format without pages: where in the file the passage starts (a heading path, a
    # line); `page`/`page_end` then count sections and are not shown
    location: str | None = None

    @property
    def pages(self) -> tuple[int | None, int | None]:
        """(page, page_end) as shown to clients: (None, None) for a format without pages."""
        return (None, None) if self.location is not None else (self.page, self.page_end)

    @property
    def origin(self) -> Literal["text", "ocr"]:
        """Where the passage's text came from: the PDF's text layer, or OCR of a scan."""
        return "text" if self.ocr_confidence is None else "ocr"

    def snippet(self, limit: int = SNIPPET_CHARS) -> str:
        text = " ".join(self.text.split())
        return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


FILE_ID_PREFIX = "file-"
FILE_ID_HEX = 32


def file_id(sha256: str) -> str:
    """A document's id in the Files API: named by its content, so it never points at
    other bytes, and the same across index versions."""
    return FILE_ID_PREFIX + sha256[:FILE_ID_HEX]


def document_file_id(row: DocumentRow) -> str:
    """The Files API id of an indexed document: the upload's own id, or for a document of
    the corpus folder its content id."""
    if is_upload(row):
        return row.source[len(UPLOAD_SOURCE) :]
    return file_id(row.sha256)


def page_label(start: int, end: int, *, short: bool = True) -> str:
    """`p. 3` / `pp. 3-4` (short) or `page 3` / `pages 3-4`."""
    one, many = ("p.", "pp.") if short else ("page", "pages")
    return f"{one} {start}" if start == end else f"{many} {start}-{end}"


def place_label(
    start: int | None, end: int | None, location: str | None, *, short: bool = True
) -> str:
    """Where a passage is: its location in a format without pages, else its page(s)."""
    if location is not None or start is None:
        return location or ""
    return page_label(start, end if end is not None else start, short=short)


ADJACENT_CHARS = 2  # chunks this close (a line break between them) are one place


def merge_places(hits: list[Hit]) -> list[Hit]:
    """Overlapping or adjacent chunks of one document as one passage spanning their pages,
    so a list of sources names distinct places and no text is given twice. Places keep
    the rank of their best chunk (and its id and score)."""
    rank = {id(h): i for i, h in enumerate(hits)}  # chunk ids repeat across stores' indexes
    places: list[tuple[int, Hit]] = []
    by_document: dict[tuple[str | None, str], list[Hit]] = {}
    for h in hits:
        by_document.setdefault((h.file_id, h.document), []).append(h)
    for group in by_document.values():
        group.sort(key=lambda h: (h.char_start, h.char_end))
        run = [group[0]]
        for h in group[1:]:
            if h.char_start <= max(x.char_end for x in run) + ADJACENT_CHARS:
                run.append(h)
            else:
                places.append(_merged(run, rank))
                run = [h]
        places.append(_merged(run, rank))
    return [h for _, h in sorted(places, key=lambda p: p[0])]


def _merged(run: list[Hit], rank: dict[int, int]) -> tuple[int, Hit]:
    best = min(run, key=lambda h: rank[id(h)])
    if len(run) == 1:
        return rank[id(best)], best
    text, end = run[0].text, run[0].char_end
    for h in run[1:]:
        if h.char_end <= end:
            continue  # inside what the run already holds
        text = _join(text, h.text, end - h.char_start)
        end = h.char_end
    return rank[id(best)], msgspec.structs.replace(
        best,
        page=min(h.page for h in run),
        page_end=max(h.page_end for h in run),
        text=text,
        char_start=run[0].char_start,
        char_end=end,
        ocr_confidence=min(read) if (read := _ocr_confidences(run)) else None,
        location=run[0].location,
    )


def _ocr_confidences(run: list[Hit]) -> list[float]:
    """The OCR confidences of a run's chunks: a merged passage shows the least sure."""
    return [h.ocr_confidence for h in run if h.ocr_confidence is not None]


def _join(first: str, second: str, overlap: int) -> str:
    """`first` then `second` without the characters they share (chunk texts are stripped
    slices of one text, so the shared part is found, not computed)."""
    if overlap > 0:
        for at in range(max(0, len(first) - overlap - 8), len(first)):
            if second.startswith(first[at:]):
                return first[:at] + second
    return first + " " + second


class Retriever:
    """Searches the current index version; switches to a newly published one on its own."""

    def __init__(
        self,
        location: Path | str | Backend,
        embedder: Embedder,
        *,
        check_interval_s: float = 1.0,
        reranker: Reranker | None = None,
    ):
        """`location`: an index folder, a `postgresql://` URL or an open backend."""
        self.backend = open_backend(location)
        self._owns_backend = self.backend is not location
        self.embedder = embedder
        self.reranker = reranker
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._version: Version | None = None
        self._checked_at = 0.0
        try:
            self.refresh(force=True)
        except BaseException:
            if self._owns_backend:
                self.backend.close()
            raise

    @property
    def version(self) -> Version:
        self.refresh()
        assert self._version is not None
        return self._version

    def refresh(self, *, force: bool = False) -> bool:
        """Load the published version if it changed; cheap enough to call per request."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.check_interval_s:
            return False
        self._checked_at = now
        name = self.backend.current()
        if self._version is not None and name == self._version.name:
            return False
        with self._lock:
            if self._version is not None and name == self._version.name:
                return False
            version = self.backend.open()
            if version.manifest.embedding_model != self.embedder.model_id:
                version.retire()
                raise EmbeddingModelMismatch(
                    version.manifest.embedding_model, self.embedder.model_id
                )
            old, self._version = self._version, version
            log.info(
                "index.loaded",
                version=version.name,
                documents=version.manifest.documents,
                chunks=version.manifest.chunks,
            )
        if old is not None:
            old.retire()  # closed when the searches still running on it end
        return True

    def search(
        self,
        query: str,
        top_k: int = 5,
        filters: Filters | None = None,
        mode: Mode = "hybrid",
        rerank: bool | None = None,
    ) -> list[Hit]:
        """The best `top_k` chunks. `rerank`: None uses the reranker when one is configured."""
        if mode not in MODES:
            raise InvalidRequest(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if top_k <= 0 or not query.strip():
            return []
        started = time.perf_counter()
        self.refresh()
        with self._using() as version:
            return self._search(version, query, top_k, filters, mode, started, rerank)

    @contextmanager
    def _using(self) -> Iterator[Reader]:
        """A reader on the current version, held (not closed by a switch) until the block
        ends."""
        with self._lock:  # no retire() between reading the version and acquiring it
            version = self._current()
            reader = version.acquire()
        try:
            yield reader
        finally:
            version.release(reader)

    def close(self) -> None:
        """Let go of the current version (closed when its last search ends)."""
        with self._lock:
            version, self._version = self._version, None
        if version is not None:
            version.retire()
        if self._owns_backend:
            self.backend.close()

    def documents(self, paths: Iterable[str]) -> dict[str, DocumentRow]:
        """The current version's rows for these document paths (those it holds)."""
        with self._using() as version:
            return {p: row for p in set(paths) if (row := version.document(p)) is not None}

    def documents_all(self) -> list[DocumentRow]:
        with self._using() as version:
            return version.documents()

    def document_by_file_id(self, file_id: str) -> DocumentRow | None:
        """The document whose content `file_id` names (see `file_id`), if indexed."""
        digest = file_id.removeprefix(FILE_ID_PREFIX)
        if len(digest) != FILE_ID_HEX or not all(c in "0123456789abcdef" for c in digest):
            return None
        self.refresh()
        with self._using() as version:
            return version.document_by_hash(digest)

    @staticmethod
    def _fuse(
        version: Reader,
        query: str,
        vector: np.ndarray,
        dense: list[tuple[int, float]],
        keyword: list[tuple[int, float]],
        allowed: set[int] | None,
    ) -> list[tuple[int, float]]:
        """Both scores for every pooled chunk, then fusion (see fusion.py)."""
        depth = len(dense)
        decisive: set[int] = set()
        for token in identifiers(query):
            found = version.phrase_documents(token, limit=200)
            if allowed is not None:
                found = {c: d for c, d in found.items() if c in allowed}
            if 0 < len(set(found.values())) <= IDENTIFIER_DOCS:
                decisive.update(found)
        pool = {i for i, _ in dense} | {i for i, _ in keyword[:depth]} | decisive
        dense_all = dict(dense)
        dense_all.update(version.similarity(vector, sorted(pool - dense_all.keys())))
        keyword_all = dict(keyword)
        # not in the deep list: no term matched (0), or ranked below it (at most its last)
        floor = keyword[-1][1] if len(keyword) >= KEYWORD_POOL else 0.0
        return fuse(dense_all, {i: keyword_all.get(i, floor) for i in pool}, decisive)

    def _rerank(
        self, version: Reader, query: str, ranked: list[tuple[int, float]]
    ) -> list[tuple[int, float]]:
        assert self.reranker is not None
        head = ranked[: self.reranker.top_n]
        texts = version.chunks(i for i, _ in head)
        pairs = [(i, texts[i].text) for i, _ in head if i in texts]
        order = self.reranker.rerank(query, pairs)
        score = dict(ranked)
        return [(i, score[i]) for i in order] + ranked[len(head) :]

    def _current(self) -> Version:
        if self._version is None:
            raise IndexNotFound(f"no index at {self.backend.where}")
        return self._version

    def _search(
        self,
        version: Reader,
        query: str,
        top_k: int,
        filters: Filters | None,
        mode: Mode,
        started: float,
        rerank: bool | None = None,
    ) -> list[Hit]:
        allowed = None
        if filters is not None and filters.documents:
            allowed = version.chunk_ids_for_documents(filters.documents)
            if not allowed:
                return []
        depth = max(top_k * 4, 20)  # each list is fused from deeper than what is returned
        dense: list[tuple[int, float]] = []
        keyword: list[tuple[int, float]] = []
        if mode in ("hybrid", "dense"):
            vector = self.embedder.embed_queries([query])[0]
            dense = version.dense(vector, depth, allowed)
        if mode in ("hybrid", "keyword"):
            # hybrid scores dense candidates too: one deeper query instead of a second one
            keyword = version.keyword(query, KEYWORD_POOL if mode == "hybrid" else depth, allowed)
        if mode == "hybrid":
            ranked = self._fuse(version, query, vector, dense, keyword, allowed)
        else:
            ranked = dense or keyword
        if self.reranker is not None and rerank is not False and ranked:
            ranked = self._rerank(version, query, ranked)
        ranked = ranked[:top_k]
        chunks = version.chunks(i for i, _ in ranked)
        hits = [
            Hit(
                chunk_id=i,
                document=c.document,
                page=c.page_start,
                page_end=c.page_end,
                score=round(score, 6),
                text=c.text,
                char_start=c.char_start,
                char_end=c.char_end,
                ocr_confidence=c.ocr_confidence,
                location=c.location,
            )
            for i, score in ranked
            if (c := chunks.get(i)) is not None
        ]
        log.debug(
            "retrieval.done",
            mode=mode,
            k=top_k,
            hits=len(hits),
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return hits
