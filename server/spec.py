"""The app's OpenAPI document as served and committed: Litestar's schema of the routes plus
what it cannot see (each operation's error statuses, strict request bodies, SSE streams).

The server serves this document (`/openapi/openapi.json`); `python -m ragserve.server.openapi`
writes and checks the committed copy, so both are the same bytes' worth of truth.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)

# What each operation can answer besides 200, from the one error mapping (server/errors.py)
# and the middleware: keys (401), body limits (413), the browser guard without keys (415,
# 421), slow clients (408), the queue (429), loading (503), and failures (500).
_ALWAYS = {500: "internal error", 503: "still loading, or shutting down; retry"}
_POST = {
    400: "invalid request (OpenAI's error object; `param` names the field)",
    401: "missing or wrong API key (when keys are configured)",
    408: "the request body did not arrive in time",
    413: "request body too large",
    415: "a JSON body must be sent as application/json (no API key configured)",
    421: "Host not allowed (no API key configured)",
    **_ALWAYS,
}
ERRORS: dict[tuple[str, str], dict[int, str]] = {
    ("post", "/v1/chat/completions"): {
        **_POST,
        404: "the model id is not a chat model here (`--strict-models`, the embedding model, "
        "or `<model>@<store>` naming no store)",
        429: "the generation queue is full; retry",
    },
    ("post", "/v1/completions"): {
        **_POST,
        404: "the model id is not a chat model here (`--strict-models`, or the embedding model)",
        429: "the generation queue is full; retry",
    },
    ("post", "/v1/embeddings"): _POST,
    ("get", "/v1/models"): {401: _POST[401], 421: _POST[421], **_ALWAYS},
    ("get", "/v1/models/{model_id}"): {
        401: _POST[401],
        404: "no such model",
        421: _POST[421],
        **_ALWAYS,
    },
    ("get", "/health/ready"): {503: _ALWAYS[503]},
    ("get", "/v1/files"): {401: _POST[401], 421: _POST[421], **_ALWAYS},
    ("get", "/v1/files/{file_id}"): {
        401: _POST[401],
        404: "no such file in the library",
        421: _POST[421],
        **_ALWAYS,
    },
    ("get", "/v1/files/{file_id}/content"): {
        401: "no API key and no signed token (when keys are configured)",
        403: "the signed token expired, was altered, or is for another file",
        404: "no such file, or it changed since it was indexed",
        421: _POST[421],
        **_ALWAYS,
    },
}
_GET = {401: _POST[401], 421: _POST[421], **_ALWAYS}
_STORE_404 = "no such vector store (or file or batch in it); files named in a body: 400"
for _method, _path, _body in [
    ("post", "/v1/vector_stores", True),
    ("get", "/v1/vector_stores", False),
    ("get", "/v1/vector_stores/{vector_store_id}", False),
    ("post", "/v1/vector_stores/{vector_store_id}", True),
    ("delete", "/v1/vector_stores/{vector_store_id}", False),
    ("post", "/v1/vector_stores/{vector_store_id}/files", True),
    ("get", "/v1/vector_stores/{vector_store_id}/files", False),
    ("get", "/v1/vector_stores/{vector_store_id}/files/{file_id}", False),
    ("post", "/v1/vector_stores/{vector_store_id}/files/{file_id}", True),
    ("delete", "/v1/vector_stores/{vector_store_id}/files/{file_id}", False),
    ("post", "/v1/vector_stores/{vector_store_id}/file_batches", True),
    ("get", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}", False),
    ("post", "/v1/vector_stores/{vector_store_id}/search", True),
]:
    statuses = dict(_POST) if _body else dict(_GET)
    if _path != "/v1/vector_stores":
        statuses[404] = _STORE_404
    if _method == "delete" and "files" not in _path:
        statuses[409] = "the default store is the server's own index: it cannot be deleted"
    ERRORS[(_method, _path)] = statuses
_PAGE_400 = "a query parameter out of range (`limit`, `order` asc or desc, a filter value)"
for _path in ("/v1/files", "/v1/vector_stores", "/v1/vector_stores/{vector_store_id}/files"):
    ERRORS[("get", _path)] = {**ERRORS[("get", _path)], 400: _PAGE_400}
_RESPONSE_404 = "no such stored response (never stored, deleted, or past the retention)"
ERRORS[("post", "/v1/responses")] = {
    **_POST,
    404: "previous_response_id names no stored response; or the model id, or a vector store "
    "of file_search, does not exist",
    429: "the generation queue is full; retry",
}
ERRORS[("get", "/v1/responses/{response_id}")] = {**_GET, 404: _RESPONSE_404}
ERRORS[("delete", "/v1/responses/{response_id}")] = {**_GET, 404: _RESPONSE_404}
ERRORS[("get", "/v1/responses/{response_id}/input_items")] = {
    **_GET,
    400: "a query parameter out of range (`limit` 1..100, `order` asc or desc)",
    404: _RESPONSE_404,
}
ERRORS[("post", "/v1/files")] = {
    **_POST,
    400: "empty, too large, or a field missing (`param` says which)",
    403: "an upload from a web page of another origin (no API key configured)",
}
ERRORS[("delete", "/v1/files/{file_id}")] = {
    **_GET,
    404: "no such file",
    409: "the file belongs to the server's own corpus (remove it there)",
}
# API keys with scopes (server/access): every guarded route may refuse a key without the
# scope it needs, or a key past its per-minute limits; 404 hides what a key may not read
_SCOPE_403 = "the API key lacks the scope this operation needs (keys with scopes)"
_LIMIT_429 = "the API key's requests or tokens per minute are spent (see Retry-After)"
for _key in list(ERRORS):
    if _key[1].startswith("/v1/"):
        _statuses = ERRORS[_key] = dict(ERRORS[_key])  # some share one dict: copy first
        _statuses[403] = _statuses[403] + "; or " + _SCOPE_403 if 403 in _statuses else _SCOPE_403
        _statuses[429] = _statuses[429] + "; or " + _LIMIT_429 if 429 in _statuses else _LIMIT_429
STORE_BODIES = {
    ("post", "/v1/vector_stores"): "CreateVectorStore",
    ("post", "/v1/vector_stores/{vector_store_id}"): "UpdateVectorStore",
    ("post", "/v1/vector_stores/{vector_store_id}/files"): "CreateStoreFile",
    ("post", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): "UpdateStoreFile",
    ("post", "/v1/vector_stores/{vector_store_id}/file_batches"): "CreateBatch",
    ("post", "/v1/vector_stores/{vector_store_id}/search"): "SearchRequest",
}
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "contentMediaType": "application/octet-stream"},
                    "purpose": {"type": "string", "enum": ["assistants", "user_data"]},
                },
                "required": ["file", "purpose"],
            }
        }
    },
}
TOKEN_PARAMETER = {
    "name": "token",
    "in": "query",
    "required": False,
    "description": "a citation link's signature (`expiry.hmac`): opens this file without an "
    "API key until it expires",
    "schema": {"type": "string"},
}
BODIES = {
    "/v1/chat/completions": "ChatCompletionRequest",
    "/v1/completions": "CompletionRequest",
    "/v1/embeddings": "EmbeddingRequest",
    "/v1/responses": "ResponseRequest",
}
ANSWERS = {
    "/v1/chat/completions": "ChatCompletion",
    "/v1/completions": "Completion",
    "/v1/responses": "ResponseObject",
}
STREAMS = {
    "/v1/chat/completions": "ChatCompletionChunk",
    "/v1/completions": "Completion",
    "/v1/responses": "ResponseStreamEvent",
}
_CHUNKS = (
    "With `stream: true`: server-sent events, each `data: <{chunk} as one line of JSON>` and "
    "a blank line, ending with `data: [DONE]`; an error after the stream began comes as `data: "
    '{{"error": {{...}}}}`.'
)
STREAM_TEXT = {
    "/v1/responses": (
        "With `stream: true`: server-sent events, each `event: <type>` and `data: <one "
        "ResponseStreamEvent as one line of JSON>`, numbered by `sequence_number`; the last is "
        "`response.completed`, `response.incomplete` or `response.failed` (no `[DONE]`)."
    )
}


def document(spec: dict) -> None:
    """Add what Litestar cannot see to its schema of the app, in place."""
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
    for (method, path), statuses in ERRORS.items():
        responses = spec["paths"][path][method]["responses"]
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
    content = spec["paths"]["/v1/files/{file_id}/content"]["get"]
    content["parameters"] = [*content.get("parameters", []), TOKEN_PARAMETER]
    ok = content["responses"]["200"]
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    ok["content"] = {
        "application/pdf": {"schema": {"type": "string", "contentMediaType": "application/pdf"}},
        "text/plain": {"schema": {"type": "string"}},  # text, Markdown, HTML (never rendered)
        "application/octet-stream": {"schema": binary},  # Word, Hangul: downloaded
    }
    ok["headers"]["last-modified"]["schema"] = {"type": "string"}  # an HTTP-date, not ISO
    for (method, path), kind in STORE_BODIES.items():
        spec["paths"][path][method]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{kind}"}}},
        }
    spec["paths"]["/v1/files"]["post"]["requestBody"] = UPLOAD_BODY
    for path, kind in BODIES.items():  # decoded by the handlers themselves (strictly)
        spec["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{kind}"}}},
        }
    for path, chunk in STREAMS.items():
        content = spec["paths"][path]["post"]["responses"]["200"]["content"]
        # the handler returns `Answer | Stream`: JSON is the answer alone, SSE the stream
        content["application/json"]["schema"] = {"$ref": f"#/components/schemas/{ANSWERS[path]}"}
        content["text/event-stream"] = {
            "schema": {  # one server-sent event
                "type": "object",
                "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
                "required": ["data"],
                "description": STREAM_TEXT.get(path, _CHUNKS.format(chunk=chunk)),
            },
            "x-ragserve-event": {"$ref": f"#/components/schemas/{chunk}"},
        }


class _Documented:
    """The documented copy of Litestar's schema, made once on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spec: dict[str, Any] | None = None

    def __call__(self, schema: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._spec is None:
                spec = copy.deepcopy(schema)
                document(spec)
                self._spec = spec
            return self._spec


class _DocumentedPlugin(OpenAPIRenderPlugin):
    """One of Litestar's renderers, handed the documented schema instead of the bare one."""

    def __init__(self, inner: OpenAPIRenderPlugin, documented: _Documented) -> None:
        super().__init__(path=inner.paths, media_type=inner.media_type)
        self.inner, self.documented = inner, documented

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        return self.inner.render(request, self.documented(openapi_schema))


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """`/openapi/openapi.json` (and `.yaml`, and the Swagger page at `/openapi`)."""
    documented = _Documented()
    return [
        _DocumentedPlugin(p, documented)
        for p in (SwaggerRenderPlugin(), JsonRenderPlugin(), YamlRenderPlugin())
    ]
