"""Request bodies decoded strictly by msgspec, so the server accepts exactly what the
OpenAPI spec (generated from the same types) allows: no "1" for 1 or 0 for false."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from litestar import Request

from ragserve.errors import InvalidRequest

T = TypeVar("T")
_AT = re.compile(r"^(?P<message>.*?)(?: - at (?:`key` in )?`\$(?P<path>[^`]*)`)?$", re.S)
TOKEN_IDS_HINT = (
    "; token-id input is not supported: this server's embedding model has its own "
    "tokenizer, send the text itself (LangChain: OpenAIEmbeddings(check_embedding_ctx_length="
    "False))"
)


def _integral(value: Any) -> Any:
    """JSON Schema counts 1.0 as an integer: integral floats become ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        if "got `float`" not in str(exc):
            raise
    # rare: `"max_tokens": 16.0`; decoded again without a type, then converted strictly
    return msgspec.convert(_integral(msgspec.json.decode(body)), type=kind, strict=True)


async def decode_body(request: Request, kind: type[T]) -> T:
    body = await request.body()
    try:
        return _decode(body, kind)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        message = match["message"]
        path = (match["path"] or "").lstrip(".").replace("[...]", "")  # [...]: a dict value
        if message.startswith("Expected `array` of length >= 1"):
            message = "must contain at least one item"
        if path.startswith("input[") and ("got `int`" in message or "got `array`" in message):
            message += TOKEN_IDS_HINT
        where = f" (at {path})" if path else ""
        raise InvalidRequest(
            f"invalid request body: {message}{where}", param=path or None
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest(
            "the request body is not valid JSON: it must be UTF-8 and nest at most a few "
            "hundred levels deep"
        ) from None
