"""An optional second stage: a cross-encoder re-scores the fused top-N within a time budget.

A cross-encoder reads the query and a passage together, which no embedding can, at the
price of one forward pass per passage. For Korean corpora `BAAI/bge-reranker-v2-m3` is
the usual choice; any sentence-transformers `CrossEncoder` (hub name or local folder)
works. Off unless configured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import structlog

log = structlog.get_logger(__name__)
BATCH = 8


class Reranker:
    def __init__(
        self,
        name_or_path: str,
        *,
        device: str = "cpu",
        top_n: int = 20,
        budget_s: float = 0.5,
    ) -> None:
        self.name_or_path = name_or_path
        self.device = device
        self.top_n = top_n
        self.budget_s = budget_s
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(self.name_or_path, device=self.device)
                log.info("reranker.loaded", model=self.name_or_path, device=self.device)
            return self._model

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        """Cross-encoder scores, batch by batch until the budget is spent (the rest: none)."""
        model = self.load()
        started = time.perf_counter()
        out: list[float] = []
        for i in range(0, min(len(passages), self.top_n), BATCH):
            if out and time.perf_counter() - started > self.budget_s:
                log.info("reranker.budget_spent", scored=len(out), of=len(passages))
                break
            batch = [(query, p) for p in passages[i : min(i + BATCH, self.top_n)]]
            with self._lock:  # torch modules are not safe to call concurrently
                out.extend(float(s) for s in model.predict(batch, show_progress_bar=False))
        return out

    def rerank(self, query: str, ranked: list[tuple[int, str]]) -> list[int]:
        """Ids of `ranked` (id, text) reordered: the scored prefix by score, then the rest."""
        scores = self.scores(query, [text for _, text in ranked])
        head = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
        return [ranked[i][0] for i in head] + [item for item, _ in ranked[len(scores) :]]
