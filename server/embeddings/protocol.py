"""/v1/embeddings wire types."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from ..protocol import Request, Response

Text = Annotated[str, Meta(pattern=r"\S", max_length=100_000)]  # not blank


class EmbeddingRequest(Request):
    input: Text | Annotated[list[Text], Meta(min_length=1, max_length=2048)]
    model: str = ""
    encoding_format: Literal["float", "base64"] = "float"
    # truncate and renormalise; at or above the model's own size: its full vectors
    dimensions: Annotated[int, Meta(ge=1)] | None = None
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
