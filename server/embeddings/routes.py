"""POST /v1/embeddings."""

from __future__ import annotations

from litestar import post

from .protocol import EmbeddingList, EmbeddingRequest
from .service import EmbeddingService


@post(
    "/v1/embeddings",
    status_code=200,
    summary="Create embeddings",
    operation_id="createEmbedding",
    tags=["embeddings"],
)
async def create_embeddings(data: EmbeddingRequest, embeddings: EmbeddingService) -> EmbeddingList:
    return await embeddings.embed(data)
