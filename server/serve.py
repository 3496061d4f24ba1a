"""Running the app under uvicorn: request timeouts, a connection limit, graceful shutdown.

uvicorn has no timeout for a request's headers or body, so a client that opens
connections and sends nothing would hold them for ever: the protocol below closes a
connection whose request headers don't arrive in time, and `TimedBody` answers 408 to
a body that stalls. On SIGTERM uvicorn stops accepting connections and waits; running
answers get `shutdown_grace` seconds to finish, then end with an error frame (never a
silent cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ragserve.errors import RequestTimeout

from .settings import Settings

log = structlog.get_logger(__name__)


def header_timeout_protocol(timeout: float) -> type[H11Protocol]:
    class Protocol(H11Protocol):
        """Closes a connection whose next request's headers are not complete in time."""

        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._timer is None:
                self._timer = self.loop.call_later(timeout, self._expire)

        def _expire(self) -> None:
            self._timer = None
            if self._idle() and not self.transport.is_closing():
                log.info("http.header_timeout", seconds=timeout)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._idle():
                self._arm()
            super().data_received(data)
            if not self._idle() and self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

    return Protocol


class TimedBody:
    """ASGI middleware: 408 when the request body stops arriving for `timeout` seconds."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        done = False

        async def timed() -> dict[str, Any]:
            nonlocal done
            if done:  # after the body: waiting for a disconnect, no limit
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {self.timeout:g} seconds"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body"):
                done = True
            return message

        return await self.app(scope, timed, send)


class GracefulServer(uvicorn.Server):
    """uvicorn, plus: after SIGTERM, running answers get a grace period, then an error."""

    def __init__(self, config: uvicorn.Config, app: Any, grace: float) -> None:
        super().__init__(config)
        self.ragserve = app
        self.grace = grace
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._draining and sig in (signal.SIGTERM, signal.SIGINT):
            self._draining = True
            log.info("server.draining", grace_s=self.grace)
            asyncio.get_running_loop().call_later(self.grace, self._end_running)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """A drained shutdown exits 0: uvicorn would re-raise the signal once it is done,
        so a supervisor saw 143 (killed) for a clean stop."""
        with super().capture_signals():
            yield
            if self._draining:
                self._captured_signals.clear()
                log.info("server.stopped")

    def _end_running(self) -> None:
        state = getattr(self.ragserve.app, "state", None)
        if state is not None and state.ready:
            log.warning("server.grace_over", busy=state.engine.stats().busy)
            state.engine.shutdown("the server is shutting down; retry on another instance")


def run(app: Any, settings: Settings) -> None:
    """Serve `app` (the boot front) with the settings' limits until SIGTERM/SIGINT."""
    config = uvicorn.Config(
        TimedBody(app, settings.request_timeout),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http=header_timeout_protocol(settings.request_timeout),
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 5,
    )
    GracefulServer(config, app, settings.shutdown_grace).run()
