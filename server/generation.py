"""What chat and legacy completions share: the admitted request, the stream loop, and
answering without streaming while watching for the client to leave."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from litestar import Request

from ragserve.engine import Finished, GenerationRequest, Handle, TextDelta
from ragserve.errors import ClientGone

from .sse import DONE, KEEPALIVE, error_frame, with_keepalive

log = structlog.get_logger(__name__)
KEEPALIVE_S = 10.0
T = TypeVar("T")


@dataclass
class Admitted:
    """A request the engine has accepted: ids for the response, and its handle."""

    id: str
    created: int
    model: str
    request: GenerationRequest
    handle: Handle
    include_usage: bool
    started: float = field(default_factory=time.perf_counter)


async def collect(events: AsyncIterator[TextDelta | Finished]) -> tuple[str, Finished]:
    parts: list[str] = []
    done: Finished | None = None
    async for event in events:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        else:
            done = event
    assert done is not None
    return "".join(parts), done


async def stream_frames(
    events: AsyncIterator[Any],
    delta: Callable[[Any], bytes],
    finish: Callable[[Finished], Iterable[bytes]],
    name: str,
) -> AsyncIterator[bytes]:
    """SSE frames for an event stream: keepalive comments while waiting, then `[DONE]`, or
    an error frame if it fails after the response has begun. Empty text sends nothing."""
    try:
        async for event in with_keepalive(events, KEEPALIVE_S):
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, Finished):
                for frame in finish(event):
                    yield frame
            elif not (isinstance(event, TextDelta) and not event.text):
                yield delta(event)
        yield DONE
    except Exception as exc:
        log.warning(f"{name}.stream_failed", error=str(exc))
        yield error_frame(exc)


async def unless_disconnected(request: Request, work: Awaitable[T], handle: Handle) -> T:
    """Await `work`; if the client goes away first, cancel the generation and stop."""
    task: asyncio.Future[T] = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait([task, watcher], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    handle.cancel()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    log.info("request.client_gone")
    raise ClientGone("the client closed the connection")


class StreamBody:
    """An SSE body that cancels its generation when dropped, even if never iterated."""

    def __init__(self, frames: AsyncIterator[bytes], handle: Handle) -> None:
        self._frames = frames
        self._handle = handle

    def __aiter__(self) -> StreamBody:
        return self

    async def __anext__(self) -> bytes:
        return await self._frames.__anext__()

    async def aclose(self) -> None:
        self._handle.cancel()
        await self._frames.aclose()  # type: ignore[attr-defined]

    def __del__(self) -> None:
        self._handle.cancel()
