"""The app's OpenAPI document as served and committed: Litestar's schema of the routes plus
what it cannot see (each operation's error statuses, strict request bodies, SSE streams).

The server serves this document (`/openapi/openapi.json`); `python -m ragserve.server.openapi`
writes and checks the committed copy, so both are the same bytes' worth of truth.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)

from .access.policy import Need
from .middleware import template
from .operations import Operation, operation_of

_CHUNKS = (
    "With `stream: true`: server-sent events, each `data: <{chunk} as one line of JSON>` and "
    "a blank line, ending with `data: [DONE]`; an error after the stream began comes as `data: "
    '{{"error": {{...}}}}`.'
)


def document(spec: dict, app: Litestar) -> None:
    """Add what Litestar cannot see to its schema of `app`, in place: what each route
    declares in its Operation (operations.py) and msgspec's schemas of the wire types."""
    from .chat.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
    from .completions.protocol import Completion, CompletionRequest
    from .embeddings.protocol import EmbeddingList, EmbeddingRequest
    from .errors import ErrorResponse
    from .files.protocol import FileDeleted, FileList, FileObject
    from .health import Health, Readiness
    from .models.protocol import ModelList
    from .responses.protocol import RESPONSE_TYPES, StreamEvent
    from .vector_stores.protocol import STORE_TYPES

    # msgspec's own schemas of the wire types replace Litestar's, which drop constraints
    # on union members (a minimum length on `str | list`, exclusive bounds): the spec then
    # says exactly what the decoder enforces.
    _, components = msgspec.json.schema_components(
        [
            ChatCompletionRequest,
            ChatCompletion,
            ChatCompletionChunk,
            CompletionRequest,
            Completion,
            EmbeddingRequest,
            EmbeddingList,
            ModelList,
            FileList,
            FileObject,
            FileDeleted,
            *STORE_TYPES,
            *RESPONSE_TYPES,
            Health,
            Readiness,
            ErrorResponse,
        ],
        ref_template="#/components/schemas/{name}",
    )
    components["ResponseStreamEvent"] = {
        "anyOf": [
            {"$ref": f"#/components/schemas/{event.__name__}"}
            for event in StreamEvent.__args__  # type: ignore[attr-defined]
        ],
        "description": "One event of a streamed response (its `type` says which).",
    }
    spec["components"]["schemas"] = dict(sorted(components.items()))
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    retry = {
        "Retry-After": {
            "description": "seconds to wait before retrying",
            "schema": {"type": "integer"},
        }
    }
    for method, path, need, operation in operations(app):
        spec_op = spec["paths"][path][method]
        responses = spec_op["responses"]
        statuses = operation.statuses(need)
        if 400 not in statuses:
            responses.pop("400", None)  # Litestar's path-parameter check: never fails here
        for status, description in statuses.items():
            response: dict = {
                "description": description,
                "content": {"application/json": {"schema": error}},
            }
            if status in (429, 503):
                response["headers"] = retry
            responses[str(status)] = response
        if operation.body is not None:  # decoded by the handler itself (strictly)
            spec_op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(operation.body)}},
            }
        if operation.stream is not None:
            content = responses["200"]["content"]
            # the handler returns `Answer | Stream`: JSON is the answer alone, SSE the stream
            content["application/json"]["schema"] = _ref(operation.answer or operation.stream)
            content["text/event-stream"] = {
                "schema": {  # one server-sent event
                    "type": "object",
                    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
                    "required": ["data"],
                    "description": operation.stream_text or _CHUNKS.format(chunk=operation.stream),
                },
                "x-ragserve-event": _ref(operation.stream),
            }
        if operation.patch is not None:
            operation.patch(spec_op)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def operations(app: Litestar) -> Iterator[tuple[str, str, Need | None, Operation]]:
    """(method, OpenAPI path, access, Operation) of every documented route handler; a
    documented handler without an Operation is an error (its statuses would be unknown)."""
    for r in app.routes:
        for handler in getattr(r, "route_handlers", ()):
            if not handler.resolve_include_in_schema():
                continue
            operation = operation_of(handler.opt)
            if operation is None:
                raise RuntimeError(f"{r.path}: the route declares no Operation (operations.route)")
            path = template(r.path)
            for method in handler.http_methods:
                if method not in ("HEAD", "OPTIONS"):
                    yield method.lower(), path, handler.opt.get("access"), operation


class _Documented:
    """The documented copy of Litestar's schema, made once on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spec: dict[str, Any] | None = None

    def __call__(self, schema: dict[str, Any], app: Litestar) -> dict[str, Any]:
        with self._lock:
            if self._spec is None:
                spec = copy.deepcopy(schema)
                document(spec, app)
                self._spec = spec
            return self._spec


class _DocumentedPlugin(OpenAPIRenderPlugin):
    """One of Litestar's renderers, handed the documented schema instead of the bare one."""

    def __init__(self, inner: OpenAPIRenderPlugin, documented: _Documented) -> None:
        super().__init__(path=inner.paths, media_type=inner.media_type)
        self.inner, self.documented = inner, documented

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        return self.inner.render(request, self.documented(openapi_schema, request.app))


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """`/openapi/openapi.json` (and `.yaml`, and the Swagger page at `/openapi`)."""
    documented = _Documented()
    return [
        _DocumentedPlugin(p, documented)
        for p in (SwaggerRenderPlugin(), JsonRenderPlugin(), YamlRenderPlugin())
    ]
