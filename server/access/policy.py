"""One access policy for every route: each route handler declares what it needs
(`opt=needs(...)`), and one guard enforces it before the body is read. A handler without
a declaration is refused (and a test lists every route, so none can ship unguarded).

Store-scoped routes answer 404, not 403, for stores the key may not read: the reply is
the one a store that does not exist gets, so ids do not leak.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from ragserve.errors import InvalidApiKey, NotFound, PermissionDenied, RateLimited

from .keys import LOCAL, Principal

Level = Literal["read", "write"]


@dataclass(frozen=True)
class Need:
    scope: str | None  # None: public (health, metrics)
    store: Level | None = None  # the `vector_store_id` path parameter must be readable/writable
    audit: bool = False  # a write: one audit event per request


PUBLIC = Need(None)
AUTHENTICATED = Need("")  # any valid key, no scope (the API's own documentation)


def needs(scope: str | None, *, store: Level | None = None, audit: bool = False) -> dict:
    """The `opt` of a route handler: what its caller must hold."""
    return {"access": Need(scope, store, audit)}


def principal_of(connection: ASGIConnection | dict) -> Principal:
    scope = connection if isinstance(connection, dict) else connection.scope
    return scope.get("state", {}).get("principal", LOCAL)


class Policy:
    """The app's policy: the guard every route runs, with what it needs to decide (the
    stores' names and owners, from the catalog) and the per-key rate limits."""

    def __init__(self, lookup: Any = None) -> None:
        self.lookup: Any = lookup  # sid -> (name, owner) | None
        self.limiter = Limiter()

    def allowed(self, principal: Principal, sid: str, level: Level) -> bool:
        if principal.grant.admin:
            return True
        found = self.lookup(sid) if self.lookup is not None else None
        if found is None:
            return True  # the route's own 404 answers
        name, owner = found
        if level == "read":
            return principal.can_read(sid, name, owner)
        return principal.can_write(sid, name, owner)

    async def guard(self, connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        need: Need | None = handler.opt.get("access")
        if need is None and connection.scope.get("method") == "OPTIONS":
            return  # Litestar's own OPTIONS handlers (they say which methods exist)
        if need is None:
            raise PermissionDenied(
                f"the route {connection.scope['path']} declares no access policy"
            )
        principal = principal_of(connection)
        if need.audit:
            connection.scope.setdefault("state", {})["audit"] = True
        if need.scope is None:
            return
        if principal.link_file is not None:
            # a signed citation link opens its file's content, and nothing else
            if (
                handler.opt.get("link")
                and connection.path_params.get("file_id") == principal.link_file
            ):
                return
            raise InvalidApiKey("Incorrect API key provided.")
        if need.scope and not principal.has(need.scope):
            raise PermissionDenied(
                f"this API key ({principal.name}) lacks the scope '{need.scope}' "
                f"that {connection.scope.get('method')} {connection.scope['path']} needs"
            )
        if need.store is not None and principal.name is not None:
            sid = connection.path_params["vector_store_id"]
            ok = await asyncio.to_thread(self.allowed, principal, sid, "read")
            if not ok:
                raise NotFound(f"No vector store found with id '{sid}'", param="vector_store_id")
            if need.store == "write":
                ok = await asyncio.to_thread(self.allowed, principal, sid, "write")
                if not ok:
                    raise PermissionDenied(
                        f"this API key ({principal.name}) may read the vector store '{sid}' but "
                        "not change it"
                    )


class Limiter:
    """Per-key requests and tokens per minute: token buckets that refill continuously.
    Tokens are charged when a generation finishes, so a key over its budget is refused
    from its next request until the bucket refills (429 with Retry-After)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._pending: dict[str, Principal] = {}  # generations running, by request id
        self._lock = threading.Lock()

    def _level(self, key: tuple[str, str], per_min: int, now: float) -> float:
        level, at = self._buckets.get(key, (float(per_min), now))
        return min(float(per_min), level + (now - at) * per_min / 60.0)

    def admit(self, principal: Principal, now: float | None = None) -> None:
        g = principal.grant
        if principal.name is None or (g.rpm is None and g.tpm is None):
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            if g.tpm is not None:
                tokens = self._level((g.name, "tpm"), g.tpm, now)
                if tokens <= 0:
                    wait = math.ceil((1 - tokens) * 60.0 / g.tpm)
                    raise RateLimited(
                        f"Rate limit reached for {g.name}: {g.tpm} tokens per minute. "
                        f"Try again in {wait} s.",
                        wait,
                    )
            if g.rpm is not None:
                level = self._level((g.name, "rpm"), g.rpm, now)
                if level < 1:
                    wait = math.ceil((1 - level) * 60.0 / g.rpm)
                    raise RateLimited(
                        f"Rate limit reached for {g.name}: {g.rpm} requests per minute. "
                        f"Try again in {wait} s.",
                        wait,
                    )
                self._buckets[(g.name, "rpm")] = (level - 1, now)

    def expect(self, request_id: str, principal: Principal) -> None:
        if principal.name is not None and principal.grant.tpm is not None:
            with self._lock:
                self._pending[request_id] = principal

    def settle(self, request_id: str, tokens: int) -> None:
        with self._lock:
            principal = self._pending.pop(request_id, None)
        if principal is not None:
            self.charge(principal, tokens)

    def charge(self, principal: Principal, tokens: int, now: float | None = None) -> None:
        g = principal.grant
        if principal.name is None or g.tpm is None or tokens <= 0:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            level = self._level((g.name, "tpm"), g.tpm, now)
            self._buckets[(g.name, "tpm")] = (level - tokens, now)
