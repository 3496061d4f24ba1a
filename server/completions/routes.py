"""POST /v1/completions (legacy; IDE autocomplete, LlamaIndex)."""

from __future__ import annotations

from litestar import Request, post
from litestar.response import Stream

from ..sse import sse_response
from .protocol import Completion, CompletionRequest
from .service import CompletionService


@post(
    "/v1/completions",
    status_code=200,
    summary="Create a completion (no retrieval)",
    operation_id="createCompletion",
    tags=["completions"],
)
async def create_completion(
    data: CompletionRequest, request: Request, completions: CompletionService
) -> Completion | Stream:
    prepared = completions.prepare(data, request.state.request_id)
    if data.stream:
        return sse_response(completions.stream(prepared), request.state.request_id)
    return await completions.complete(prepared)
