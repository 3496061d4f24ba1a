"""POST /v1/embeddings."""

from __future__ import annotations

from litestar import Request, post

from ..access.policy import needs
from ..body import decode_body
from ..operations import POST, route
from .protocol import EmbeddingList, EmbeddingRequest
from .service import EmbeddingService


@post(
    "/v1/embeddings",
    status_code=200,
    summary="Create embeddings",
    opt=route(needs("chat"), POST, body="EmbeddingRequest"),
    operation_id="createEmbedding",
    tags=["embeddings"],
)
async def create_embeddings(request: Request, embeddings: EmbeddingService) -> EmbeddingList:
    return await embeddings.embed(await decode_body(request, EmbeddingRequest))
