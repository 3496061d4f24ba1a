"""POST /v1/completions (legacy; IDE autocomplete, LlamaIndex)."""

from __future__ import annotations

from litestar import Request, post
from litestar.response import Stream

from ..access.policy import needs, principal_of
from ..body import decode_body
from ..generation import StreamBody, unless_disconnected
from ..operations import POST, QUEUE_429, route
from ..sse import sse_response
from .protocol import Completion, CompletionRequest
from .service import CompletionService


@post(
    "/v1/completions",
    status_code=200,
    summary="Create a completion (no retrieval)",
    opt=route(
        needs("chat"),
        {
            **POST,
            404: "the model id is not a chat model here (`--strict-models`, or the embedding "
            "model)",
            429: QUEUE_429,
        },
        body="CompletionRequest",
        answer="Completion",
        stream="Completion",
    ),
    operation_id="createCompletion",
    tags=["completions"],
)
async def create_completion(
    request: Request, completions: CompletionService
) -> Completion | Stream:
    data = await decode_body(request, CompletionRequest)
    prepared = await completions.prepare(data, request.state.request_id, principal_of(request))
    if data.stream:
        body = StreamBody(completions.stream(prepared), prepared.handle)
        return sse_response(body, request.state.request_id)
    return await unless_disconnected(request, completions.complete(prepared), prepared.handle)
