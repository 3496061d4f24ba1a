"""/v1/embeddings wire types."""

from __future__ import annotations

from typing import Any, Literal

from ..protocol import Request, Response


class EmbeddingRequest(Request):
    input: str | list[Any]
    model: str = ""
    encoding_format: str = "float"  # float | base64
    dimensions: int | None = None
    user: Any = None


class Embedding(Response):
    object: Literal["embedding"] = "embedding"
    index: int = 0
    embedding: list[float] | str = []


class EmbeddingUsage(Response):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(Response):
    object: Literal["list"] = "list"
    data: list[Embedding] = []
    model: str = ""
    usage: EmbeddingUsage | None = None
