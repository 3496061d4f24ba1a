"""A thin ASGI front that answers /health while the real app is still being imported.

Importing Litestar, numpy and the rest takes most of a second on a small machine. The
listener starts at once with this front; it builds the real app on a thread, answers
liveness probes meanwhile, and hands every other request to the app once it exists. The
model is already loading by then (`ragserve serve` starts an EngineLoad first).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import msgspec

from ragserve import __version__

from .settings import Settings

_HEALTH = msgspec.json.encode({"status": "ok", "version": __version__})  # as the app's /health


class BootApp:
    def __init__(self, settings: Settings, preload: Any = None) -> None:
        self.settings = settings
        self.preload = preload  # an EngineLoad begun by `ragserve serve`
        self.app: Any = None
        self._error: BaseException | None = None
        self._built = threading.Event()
        threading.Thread(target=self._build, name="boot", daemon=True).start()

    def _build(self) -> None:
        try:
            from .app import create_app

            app = create_app(self.settings, preload=self.preload)
            app.state.start_loading()  # the lifespan startup the front does not forward
            self.app = app
        except BaseException as exc:  # surfaced on the first request
            self._error = exc
        finally:
            self._built.set()

    async def _ready_app(self) -> Any:
        while not self._built.is_set():
            await asyncio.sleep(0.01)
        if self._error is not None:
            raise self._error
        return self.app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.app is not None:
                        self.app.state.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self.app is None and scope["type"] == "http" and scope["path"] == "/health":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": _HEALTH})
            return
        app = await self._ready_app()
        await app(scope, receive, send)
