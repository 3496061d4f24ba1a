"""Jobs: how a request's events cross from the engine thread to the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable

from .types import Finished, GenerationEvent, GenerationRequest, TextDelta


class Job:
    """A submitted request: the engine thread emits, the event loop iterates (the Handle)."""

    def __init__(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.loop = loop
        self.events: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        self.cancelled = threading.Event()
        self.submitted = time.perf_counter()
        self._text: list[str] = []
        self._text_lock = threading.Lock()
        self._scheduled = False  # a delivery is queued on the loop
        self._last_wake: float | None = None

    def emit(self, event: GenerationEvent | BaseException) -> None:
        """Send an event after any text still held (runs on the worker thread)."""
        with self._text_lock:
            pending = bool(self._text)
        if pending:
            call_soon(self.loop, self.deliver_text)
        call_soon(self.loop, self.events.put_nowait, event)

    def add_text(self, text: str) -> None:
        """Hold text for the event loop (worker thread); `due` says when to wake it."""
        with self._text_lock:
            self._text.append(text)

    def due(self, now: float, interval: float, force: bool) -> bool:
        """Whether the loop should be woken for the held text now (and note that it is).

        The first text goes at once (time to first token); after that at most one
        delivery per `interval`, and never a second while one is queued: a busy loop
        gets fewer, larger deltas instead of one wake-up per token.
        """
        with self._text_lock:
            if not self._text or self._scheduled:
                return False
            if not force and self._last_wake is not None and now - self._last_wake < interval:
                return False
            self._scheduled, self._last_wake = True, now
            return True

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        try:
            async for event in events_of(self.events):
                yield event
        finally:
            self.cancelled.set()  # a client that went away frees its slot at the next step

    def cancel(self) -> None:
        self.cancelled.set()

    async def accepted(self) -> None:
        return None  # queued in this process: its response may begin at once

    def deliver_text(self) -> None:  # runs on the event loop
        with self._text_lock:
            text, self._text, self._scheduled = "".join(self._text), [], False
        if text:
            self.events.put_nowait(TextDelta(text))


async def events_of(
    queue: asyncio.Queue[GenerationEvent | BaseException],
) -> AsyncIterator[GenerationEvent]:
    """A request's events up to its Finished; an error put on the queue is raised."""
    while True:
        event = await queue.get()
        if isinstance(event, BaseException):
            raise event
        yield event
        if isinstance(event, Finished):
            return


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable, *args: object) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: its client is gone
        loop.call_soon_threadsafe(fn, *args)


def deliver_all(jobs: list[Job]) -> None:  # runs on the event loop
    for job in jobs:
        job.deliver_text()
