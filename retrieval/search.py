"""Hybrid search: hnswlib dense search fused with FTS5 keyword search by reciprocal rank."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Literal

import msgspec
import structlog

from ragserve.errors import EmbeddingModelMismatch, IndexNotFound, InvalidRequest

from .embedder import Embedder
from .index import IndexVersion, current_version

log = structlog.get_logger(__name__)

Mode = Literal["hybrid", "dense", "keyword"]
MODES: tuple[str, ...] = ("hybrid", "dense", "keyword")
RRF_K = 60  # the constant from Cormack et al.; damps the weight of the very top ranks
SNIPPET_CHARS = 240


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

    def snippet(self, limit: int = SNIPPET_CHARS) -> str:
        text = " ".join(self.text.split())
        return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def rrf(
    rankings: list[list[int]], weights: list[float] | None = None, k: int = RRF_K
) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion of several ranked id lists."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank + 1)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)


def confidence(scores: list[float], floor: float = 0.0) -> float:
    """How much a ranker's best hit stands out from the runners-up (relative gap).

    A model that does not understand a query (all-MiniLM on Korean, say) returns a
    flat list of near-equal similarities; plain RRF would let that noise outvote a
    keyword match that stands far above the rest. Weighting each list by its gap
    keeps RRF's robustness while trusting whichever ranker is sure.
    """
    if not scores:
        return 0.0
    if len(scores) == 1:
        return 0.5
    top = scores[0]
    rest = scores[1:5]
    gap = (top - sum(rest) / len(rest)) / (abs(top) or 1.0)
    return min(1.0, max(floor, gap))


def page_label(start: int, end: int, *, short: bool = True) -> str:
    """`p. 3` / `pp. 3-4` (short) or `page 3` / `pages 3-4`."""
    one, many = ("p.", "pp.") if short else ("page", "pages")
    return f"{one} {start}" if start == end else f"{many} {start}-{end}"


class Retriever:
    """Searches the current index version; switches to a newly published one on its own."""

    def __init__(self, index_dir: Path, embedder: Embedder, *, check_interval_s: float = 1.0):
        self.index_dir = index_dir
        self.embedder = embedder
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._version: IndexVersion | None = None
        self._checked_at = 0.0
        self.refresh(force=True)

    @property
    def version(self) -> IndexVersion:
        self.refresh()
        assert self._version is not None
        return self._version

    def refresh(self, *, force: bool = False) -> bool:
        """Load the published version if it changed; cheap enough to call per request."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.check_interval_s:
            return False
        self._checked_at = now
        name = current_version(self.index_dir)
        if self._version is not None and name == self._version.name:
            return False
        with self._lock:
            if self._version is not None and name == self._version.name:
                return False
            version = IndexVersion.open_current(self.index_dir)
            if version.manifest.embedding_model != self.embedder.model_id:
                version.close()
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
        self, query: str, top_k: int = 5, filters: Filters | None = None, mode: Mode = "hybrid"
    ) -> list[Hit]:
        if mode not in MODES:
            raise InvalidRequest(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if top_k <= 0 or not query.strip():
            return []
        started = time.perf_counter()
        self.refresh()
        with self._lock:  # no retire() between reading the version and acquiring it
            version = self._current().acquire()
        try:
            return self._search(version, query, top_k, filters, mode, started)
        finally:
            version.release()

    def _current(self) -> IndexVersion:
        if self._version is None:
            raise IndexNotFound(f"no index at {self.index_dir}")
        return self._version

    def _search(
        self,
        version: IndexVersion,
        query: str,
        top_k: int,
        filters: Filters | None,
        mode: Mode,
        started: float,
    ) -> list[Hit]:
        allowed = None
        if filters is not None and filters.documents:
            allowed = version.store.chunk_ids_for_documents(filters.documents)
            if not allowed:
                return []
        depth = max(top_k * 4, 20)  # each list is fused from deeper than what is returned
        dense: list[tuple[int, float]] = []
        keyword: list[tuple[int, float]] = []
        if mode in ("hybrid", "dense"):
            vector = self.embedder.embed_queries([query])[0]
            dense = version.vectors.search(vector, depth, allowed)
        if mode in ("hybrid", "keyword"):
            keyword = version.store.keyword_search(query, depth, allowed)
        if mode == "hybrid":
            ranked = rrf(
                [[i for i, _ in dense], [i for i, _ in keyword]],
                [confidence([s for _, s in dense]), confidence([s for _, s in keyword])],
            )
        else:
            ranked = dense or keyword
        ranked = ranked[:top_k]
        chunks = version.store.chunks(i for i, _ in ranked)
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
