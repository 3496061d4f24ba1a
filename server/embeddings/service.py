"""Embeddings with the index's own model: what clients embed matches what was ingested."""

from __future__ import annotations

import asyncio
import base64

import numpy as np

from ragserve.errors import InvalidRequest

from ..state import AppState
from .protocol import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage

MAX_INPUTS = 2048  # OpenAI's limit; LangChain sends up to 1000 per request
MAX_CHARS = 100_000
MAX_TOTAL_CHARS = 1_000_000  # one request's share of the embedder


def texts_of(req: EmbeddingRequest) -> list[str]:
    value = req.input
    items = [value] if isinstance(value, str) else value
    if not items:
        raise InvalidRequest("'input' must not be empty", param="input")
    if len(items) > MAX_INPUTS:
        raise InvalidRequest(f"at most {MAX_INPUTS} inputs per request", param="input")
    if all(isinstance(i, int) for i in items) or all(isinstance(i, list) for i in items):
        raise InvalidRequest(
            "token-id input is not supported: this server's embedding model has its own "
            "tokenizer; send the text itself (LangChain: OpenAIEmbeddings("
            "check_embedding_ctx_length=False))",
            param="input",
        )
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidRequest(f"input[{i}] must be a string", param="input")
        if not item.strip():
            raise InvalidRequest(f"input[{i}] is empty", param="input")
        if len(item) > MAX_CHARS:
            raise InvalidRequest(f"input[{i}] is longer than {MAX_CHARS} characters", param="input")
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
        if req.encoding_format not in ("float", "base64"):
            raise InvalidRequest(
                "encoding_format must be 'float' or 'base64'", param="encoding_format"
            )
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
