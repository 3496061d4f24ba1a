"""POST /v1/chat/completions."""

from __future__ import annotations

from litestar import Request, post
from litestar.response import Stream

from ..access.policy import needs, principal_of
from ..body import decode_body
from ..generation import StreamBody, unless_disconnected
from ..operations import POST, QUEUE_429, route
from ..sse import sse_response
from .protocol import ChatCompletion, ChatCompletionRequest
from .service import ChatService


@post(
    "/v1/chat/completions",
    status_code=200,
    summary="Create a chat completion, augmented with passages from the PDF library",
    opt=route(
        needs("chat"),
        {
            **POST,
            404: "the model id is not a chat model here (`--strict-models`, the embedding "
            "model, or `<model>@<store>` naming no store)",
            429: QUEUE_429,
        },
        body="ChatCompletionRequest",
        answer="ChatCompletion",
        stream="ChatCompletionChunk",
    ),
    operation_id="createChatCompletion",
    tags=["chat"],
)
async def create_chat_completion(request: Request, chat: ChatService) -> ChatCompletion | Stream:
    data = await decode_body(request, ChatCompletionRequest)
    prepared = await chat.prepare(
        data, request.state.request_id, str(request.base_url), principal=principal_of(request)
    )
    if data.stream:
        body = StreamBody(chat.stream(prepared), prepared.handle)
        return sse_response(body, request.state.request_id)
    return await unless_disconnected(request, chat.complete(prepared), prepared.handle)
