"""Embeddings with the index's own model: what clients embed matches what was ingested."""

from __future__ import annotations

import asyncio
import base64

import numpy as np

from ragserve.errors import InvalidRequest

from ..state import AppState
from .protocol import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage

MAX_TOTAL_CHARS = 1_000_000  # one request's share of the embedder


def texts_of(req: EmbeddingRequest) -> list[str]:
    """The inputs as a list. Their types, count and lengths were checked when the body was
    decoded (EmbeddingRequest); what is left is the request's total."""
    items = [req.input] if isinstance(req.input, str) else req.input
    if sum(map(len, items)) > MAX_TOTAL_CHARS:
        raise InvalidRequest(
            f"the inputs add up to more than {MAX_TOTAL_CHARS} characters; split the request",
            param="input",
        )
    return items


class EmbeddingService:
    def __init__(self, state: AppState) -> None:
        self.state = state

    async def embed(self, req: EmbeddingRequest) -> EmbeddingList:
        texts = texts_of(req)
        embedder = self.state.embedder
        # bulk: a chat's retrieval query goes first between our batches
        vectors = await asyncio.to_thread(lambda: embedder.embed_queries(texts, urgent=False))
        if req.dimensions is not None and req.dimensions < vectors.shape[1]:
            vectors = vectors[:, : req.dimensions]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        tokens = sum(await asyncio.to_thread(lambda: [embedder.count_tokens(t) for t in texts]))
        data = [
            Embedding(index=i, embedding=_encode(v, req.encoding_format))
            for i, v in enumerate(vectors.astype("<f4"))
        ]
        return EmbeddingList(
            data=data,
            model=self.state.embedding_model_id,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )


def _encode(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(vector.tobytes()).decode("ascii")  # little-endian float32
    return vector.tolist()
