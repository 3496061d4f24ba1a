"""Wire types shared by several resources: usage, sources, RAG options, stream options."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .engine import Finished


class Request(msgspec.Struct, kw_only=True):
    """Base of request bodies: unknown fields are accepted and ignored."""


class Response(msgspec.Struct, kw_only=True):
    """Base of response bodies: every field is sent, null included (clients expect them)."""


class PromptTokensDetails(Response):
    cached_tokens: int = 0


class Usage(Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


def usage_of(done: Finished) -> Usage:
    """The usage block of a finished generation (cached prompt tokens included)."""
    return Usage(
        prompt_tokens=done.prompt_tokens,
        completion_tokens=done.completion_tokens,
        total_tokens=done.prompt_tokens + done.completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=done.cached_tokens),
    )


class StreamOptions(Request):
    include_usage: bool = False


class RagOptions(Request):
    """ragserve's addition: `extra_body={"rag": {...}}` from the SDKs."""

    enabled: bool = True
    top_k: int | None = None
    documents: list[str] | None = None  # paths relative to the corpus root, or globs
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"
    append_sources: bool | None = None  # default: the server's setting


class Source(Response):
    """A passage the answer was given; [index] is how the model cites it."""

    index: int
    document: str
    page: int
    page_end: int
    score: float
    snippet: str
    chunk_id: int


def text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") in ("text", "input_text"):
            parts.append(str(part.get("text") or ""))
        elif isinstance(part, str):
            parts.append(part)
    return "\n".join(parts)
