"""Approximate nearest-neighbour search: hnswlib behind a small interface."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hnswlib
import numpy as np

# M=32 / ef=128 keeps recall@10 above 0.98 on 100k+ vectors (bench/retrieval_bench.py).
M = 32
EF_CONSTRUCTION = 200
EF_SEARCH = 128


class VectorIndex:
    """Cosine-similarity index over L2-normalised vectors, labelled by chunk id."""

    def __init__(self, dim: int, index: hnswlib.Index | None = None, capacity: int = 1024):
        self.dim = dim
        if index is None:
            index = hnswlib.Index(space="ip", dim=dim)
            index.init_index(
                max_elements=capacity,
                M=M,
                ef_construction=EF_CONSTRUCTION,
                allow_replace_deleted=True,
            )
        self._index = index
        self._index.set_ef(EF_SEARCH)

    @classmethod
    def load(cls, path: Path, dim: int) -> VectorIndex:
        index = hnswlib.Index(space="ip", dim=dim)
        index.load_index(str(path), allow_replace_deleted=True)
        return cls(dim, index)

    def save(self, path: Path) -> None:
        self._index.save_index(str(path))

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if not len(ids):
            return
        needed = self._index.get_current_count() + len(ids)
        if needed > self._index.get_max_elements():
            self._index.resize_index(max(needed, self._index.get_max_elements() * 2))
        self._index.add_items(vectors, np.asarray(ids, dtype=np.int64), replace_deleted=True)

    def remove(self, ids: Sequence[int]) -> None:
        for i in ids:
            self._index.mark_deleted(int(i))

    def search(
        self, vector: np.ndarray, k: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity), best first."""
        count = self._index.get_current_count()
        if count == 0 or k <= 0:
            return []
        k = min(k, count)
        self._index.set_ef(max(EF_SEARCH, k))
        filt = None if allowed is None else (lambda label: label in allowed)
        try:
            labels, distances = self._index.knn_query(vector.reshape(1, -1), k=k, filter=filt)
        except RuntimeError:
            # hnswlib raises when fewer than k live elements pass the filter.
            return self._search_exact(vector, k, allowed) if allowed else []
        return [(int(i), 1.0 - float(d)) for i, d in zip(labels[0], distances[0], strict=True)]

    def similarity(self, vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of the query to each given chunk (ids not in the index: left out)."""
        ids = list(ids)
        if not ids:
            return {}
        try:
            vectors = np.asarray(self._index.get_items(ids), dtype=np.float32)
        except RuntimeError:  # an id that is not (or no longer) in the index
            return dict(self._one_by_one(vector, ids))
        return {i: float(s) for i, s in zip(ids, vectors @ vector, strict=True)}

    def _one_by_one(self, vector: np.ndarray, ids: list[int]):
        for i in ids:
            try:
                yield i, float(np.asarray(self._index.get_items([i]), dtype=np.float32)[0] @ vector)
            except RuntimeError:
                continue

    def _search_exact(
        self, vector: np.ndarray, k: int, allowed: set[int]
    ) -> list[tuple[int, float]]:
        ids = sorted(allowed)
        try:
            vectors = np.asarray(self._index.get_items(ids), dtype=np.float32)
        except RuntimeError:
            return []
        scores = vectors @ vector
        order = np.argsort(-scores)[:k]
        return [(ids[i], float(scores[i])) for i in order]
