"""/v1/responses: create (streaming or not), retrieve, delete, list input items."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Request, delete, get, post
from litestar.params import Parameter
from litestar.response import Stream

from ..access.policy import needs, principal_of
from ..body import decode_body
from ..generation import StreamBody, unless_disconnected
from ..operations import GET, POST, QUEUE_429, route
from ..sse import sse_response
from .protocol import InputItemList, ResponseDeleted, ResponseObject, ResponseRequest
from .service import ResponseService

TAGS = ["responses"]
ONE = "/v1/responses/{response_id:str}"
STORED_404 = "no such stored response (never stored, deleted, or past the retention)"
STREAM_TEXT = (
    "With `stream: true`: server-sent events, each `event: <type>` and `data: <one "
    "ResponseStreamEvent as one line of JSON>`, numbered by `sequence_number`; the last is "
    "`response.completed`, `response.incomplete` or `response.failed` (no `[DONE]`)."
)


@post(
    "/v1/responses",
    status_code=200,
    opt=route(
        needs("chat"),
        {
            **POST,
            404: "previous_response_id names no stored response; or the model id, or a vector "
            "store of file_search, does not exist",
            429: QUEUE_429,
        },
        body="ResponseRequest",
        answer="ResponseObject",
        stream="ResponseStreamEvent",
        stream_text=STREAM_TEXT,
    ),
    operation_id="createResponse",
    tags=TAGS,
    summary="Create a response (file_search runs on this server's vector stores)",
)
async def create_response(request: Request, responses: ResponseService) -> ResponseObject | Stream:
    data = await decode_body(request, ResponseRequest)
    turn = await responses.prepare(
        data, request.state.request_id, str(request.base_url), principal_of(request)
    )
    if data.stream:
        body = StreamBody(responses.stream(turn), turn.prepared.handle)
        return sse_response(body, request.state.request_id)
    return await unless_disconnected(request, responses.complete(turn), turn.prepared.handle)


@get(
    ONE,
    opt=route(needs("chat"), {**GET, 404: STORED_404}),
    operation_id="getResponse",
    tags=TAGS,
    summary="Retrieve a stored response",
)
async def get_response(
    response_id: str, request: Request, responses: ResponseService
) -> ResponseObject:
    return (await responses.stored(response_id, None, principal_of(request))).response


@delete(
    ONE,
    status_code=200,
    opt=route(needs("chat", audit=True), {**GET, 404: STORED_404}),
    operation_id="deleteResponse",
    tags=TAGS,
    summary="Delete a stored response",
)
async def delete_response(
    response_id: str, request: Request, responses: ResponseService
) -> ResponseDeleted:
    await responses.delete(response_id, principal_of(request))
    return ResponseDeleted(id=response_id)


@get(
    ONE + "/input_items",
    opt=route(
        needs("chat"),
        {
            **GET,
            400: "a query parameter out of range (`limit` 1..100, `order` asc or desc)",
            404: STORED_404,
        },
    ),
    operation_id="listInputItems",
    tags=TAGS,
    summary="List a stored response's input items",
)
async def list_input_items(
    response_id: str,
    request: Request,
    responses: ResponseService,
    after: Annotated[str | None, Parameter(max_length=256)] = None,
    limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> InputItemList:
    items, more = await responses.input_items(
        response_id, after, limit, order, principal_of(request)
    )
    return InputItemList(
        data=items,
        first_id=items[0]["id"] if items else None,
        last_id=items[-1]["id"] if items else None,
        has_more=more,
    )
