"""What each route declares once, in its handler's `opt`: the access it needs
(access/policy.py `needs`) and what it answers (`Operation`: the error statuses besides
200, the body the handler decodes itself, its stream). The OpenAPI document (spec.py), the
metrics labels, CORS methods and the paths clients may send without `/v1`
(middleware.RouteTable) are all derived from the handlers; there is no list of routes to
keep beside them, and a documented route without an Operation fails the spec's build.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from .access.policy import Need

# What an operation can answer besides 200, from the one error mapping (server/errors.py)
# and the middleware: keys (401), body limits (413), the browser guard without keys (415,
# 421), slow clients (408), the queue (429), loading (503), and failures (500).
ALWAYS = {500: "internal error", 503: "still loading, or shutting down; retry"}
POST = {
    400: "invalid request (OpenAI's error object; `param` names the field)",
    401: "missing or wrong API key (when keys are configured)",
    408: "the request body did not arrive in time",
    413: "request body too large",
    415: "a JSON body must be sent as application/json (no API key configured)",
    421: "Host not allowed (no API key configured)",
    **ALWAYS,
}
GET = {401: POST[401], 421: POST[421], **ALWAYS}
PAGE_400 = "a query parameter out of range (`limit`, `order` asc or desc, a filter value)"
QUEUE_429 = "the generation queue is full; retry"
# API keys with scopes (server/access): every route that needs a scope may refuse a key
# without it, or a key past its per-minute limits; 404 hides what a key may not read
SCOPE_403 = "the API key lacks the scope this operation needs (keys with scopes)"
LIMIT_429 = "the API key's requests or tokens per minute are spent (see Retry-After)"


class Operation(msgspec.Struct, frozen=True):
    """One route's answers, for its OpenAPI operation."""

    errors: Mapping[int, str]  # status -> when (besides 200)
    body: str | None = None  # a JSON body the handler decodes itself: its schema's name
    answer: str | None = None  # a route that may stream: the schema of its JSON answer
    stream: str | None = None  # ... and of each server-sent event's data
    stream_text: str | None = None  # how the stream is framed, where not the chat chunks'
    # what else the operation's spec needs (a multipart body, a query token, media types)
    patch: Callable[[dict[str, Any]], None] | None = None

    def statuses(self, need: Need | None) -> dict[int, str]:
        """The errors, with the scope (403) and rate-limit (429) refusals of a key where
        the route needs a scope."""
        out = dict(self.errors)
        if need is not None and need.scope:
            out[403] = f"{out[403]}; or {SCOPE_403}" if 403 in out else SCOPE_403
            out[429] = f"{out[429]}; or {LIMIT_429}" if 429 in out else LIMIT_429
        return out


def route(access: dict[str, Any], errors: Mapping[int, str], **answers: Any) -> dict[str, Any]:
    """A handler's `opt`: `access` from `needs(...)`, and its Operation."""
    return {**access, "operation": Operation(errors, **answers)}


def operation_of(opt: Mapping[str, Any]) -> Operation | None:
    return opt.get("operation")
