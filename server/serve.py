"""Running the app under uvicorn: request timeouts, a connection limit, graceful shutdown.

uvicorn has no timeout for a request's headers or body, so a client that opens
connections and sends nothing would hold them for ever: the protocol below closes a
connection whose request headers don't arrive in time, and `TimedBody` answers 408 to
a body that stalls. On SIGTERM uvicorn stops accepting connections and waits; running
answers get `shutdown_grace` seconds to finish, then end with an error frame (never a
silent cut). Whatever then holds the process (a thread that never returns, a close that
waits on something gone) cannot keep it up: `HARD_STOP_MARGIN_S` after the grace it
prints every thread's stack to stderr and exits 1, so a supervisor's stop is bounded and
the stall can be read from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import msgspec
import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ragserve.errors import RequestTimeout

from .settings import Settings

log = structlog.get_logger(__name__)

# uvicorn waits grace + 5 s for connections, then the app closes (the engine's decode step,
# the library's writers): what is still running this long after the grace is stuck
HARD_STOP_MARGIN_S = 15.0


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


MIN_BODY_RATE = 64 * 1024  # bytes/s a body must average beyond --request-timeout
UPLOAD_BYTES = 1024 * 1024  # bodies above this (or of unknown length) are uploads
_TOO_MANY = msgspec.json.encode(
    {
        "error": {
            "message": "too many uploads are being received at once; retry shortly",
            "type": "rate_limit_error",
            "param": None,
            "code": "too_many_uploads",
        }
    }
)


class TimedBody:
    """ASGI middleware: a deadline for the request body (408 when it is not all there in
    time, however it trickles), and a bound on the uploads received at once (429).

    The deadline is `timeout` plus a second per MIN_BODY_RATE bytes the body declares (an
    upload of unknown length gets what `max_body` would), counted from when the headers
    arrived: a client sending a byte every few seconds can hold a connection only that
    long, and only `max_uploads` such large bodies are read at once."""

    def __init__(self, app: Any, timeout: float, *, max_body: int, max_uploads: int) -> None:
        self.app = app
        self.timeout = timeout
        self.max_body = max_body
        self.max_uploads = max_uploads
        self.uploads = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _content_length(scope)
        chunked = length is None and any(
            k == b"transfer-encoding" for k, _ in scope.get("headers") or ()
        )
        declared = self.max_body if chunked else (length or 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout + declared / MIN_BODY_RATE
        upload = chunked or declared > UPLOAD_BYTES
        if upload and self.uploads >= self.max_uploads:
            log.info("http.too_many_uploads", open=self.uploads)
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_TOO_MANY)).encode()),
                        (b"retry-after", b"5"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _TOO_MANY})
            return
        done = False

        async def timed() -> dict[str, Any]:
            nonlocal done
            if done:  # after the body: waiting for a disconnect, no limit
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {deadline - started:.0f} seconds "
                    f"(--request-timeout {self.timeout:g} s, plus 1 s per 64 KiB)"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body"):
                done = True
            return message

        started = loop.time()
        if upload:
            self.uploads += 1
        try:
            return await self.app(scope, timed, send)
        finally:
            if upload:
                self.uploads -= 1


def _content_length(scope: dict[str, Any]) -> int | None:
    for key, value in scope.get("headers") or ():
        if key == b"content-length":
            try:
                return max(0, int(value))
            except ValueError:
                return None
    return None


class GracefulServer(uvicorn.Server):
    """uvicorn, plus: after SIGTERM, running answers get a grace period, then an error."""

    def __init__(self, config: uvicorn.Config, app: Any, grace: float) -> None:
        super().__init__(config)
        self.ragserve = app
        self.grace = grace
        self._draining = False

    @property
    def hard_stop_s(self) -> float:
        return self.grace + HARD_STOP_MARGIN_S

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._draining and sig in (signal.SIGTERM, signal.SIGINT):
            self._draining = True
            log.info("server.draining", grace_s=self.grace, hard_stop_s=self.hard_stop_s)
            faulthandler.dump_traceback_later(self.hard_stop_s, exit=True)
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
        TimedBody(
            app,
            settings.request_timeout,
            max_body=max(settings.max_body_bytes, settings.max_upload_bytes),
            max_uploads=settings.max_uploads,
        ),
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
