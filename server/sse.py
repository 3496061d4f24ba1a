"""Server-sent events as OpenAI clients parse them: `data: <json>\\n\\n`, no `id:` fields."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.response import Stream

from ragserve.errors import RagserveError

from .errors import error_body, to_ragserve_error

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b":\n\n"  # a bare comment; Continue drops frames after `: ping`
HEADERS = {
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
    "connection": "keep-alive",
}

_encoder = msgspec.json.Encoder()


def frame(payload: Any) -> bytes:
    return b"data: " + _encoder.encode(payload) + b"\n\n"


def error_frame(exc: BaseException) -> bytes:
    err = to_ragserve_error(exc) if isinstance(exc, Exception) else RagserveError("aborted")
    return frame(error_body(err))


async def with_keepalive(
    events: AsyncIterator[Any], interval_s: float
) -> AsyncIterator[Any | None]:
    """Yield `events`, and None whenever nothing came for `interval_s` seconds.

    The source runs in its own task feeding a queue, so a timeout never cancels it
    halfway; closing this generator cancels that task (and so the generation).
    """
    queue: asyncio.Queue = asyncio.Queue()
    end = object()

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await queue.put(exc)
            return
        await queue.put(end)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), interval_s)
            except TimeoutError:
                yield None
                continue
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class EventStream(Stream):
    """A Stream that keeps its own media type (Litestar's gives the handler's JSON priority)."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


def sse_response(body: AsyncIterator[bytes], request_id: str) -> Stream:
    return EventStream(
        body,
        media_type="text/event-stream",
        status_code=200,
        headers={**HEADERS, "x-request-id": request_id},
    )
