"""Wire types shared by several resources: usage, sources, RAG options, stream options."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ragserve.engine import Finished, SamplingParams
from ragserve.errors import InvalidRequest
from ragserve.retrieval.search import place_label

# Bounds on what one request may ask for, enforced when the body is decoded (and so
# documented in the OpenAPI spec): every list, string and number a client controls.
MAX_STOP = 64
MAX_STOP_CHARS = 512
MAX_LOGIT_BIAS = 300  # OpenAI's own limit
Stop = Annotated[str, Meta(max_length=MAX_STOP_CHARS)]
StopField = Stop | Annotated[list[Stop], Meta(max_length=MAX_STOP)] | None
Temperature = Annotated[float, Meta(ge=0, le=2)] | None
TopP = Annotated[float, Meta(ge=0, le=1)] | None
Penalty = Annotated[float, Meta(ge=-2, le=2)] | None
TopK = Annotated[int, Meta(ge=0, le=1000)] | None
MinP = Annotated[float, Meta(ge=0, le=1)] | None
RepeatPenalty = Annotated[float, Meta(gt=0, le=10)] | None
Seed = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | None
TokenKey = Annotated[str, Meta(pattern=r"^[0-9]{1,9}$")]  # a token id, below the vocabulary size
LogitBias = (
    Annotated[
        dict[TokenKey, Annotated[float, Meta(ge=-100, le=100)]], Meta(max_length=MAX_LOGIT_BIAS)
    ]
    | None
)


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


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    """`stop` as clients send it (a string, a list, or nothing) as a tuple."""
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def wire_logit_bias(bias: dict[Any, float] | None) -> dict[str, float] | None:
    """A request's logit_bias as an upstream server takes it (token ids as strings)."""
    return {str(k): float(v) for k, v in bias.items()} if bias else None


def logit_bias_of(bias: dict[str, float] | None, n_vocab: int) -> tuple[tuple[int, float], ...]:
    """OpenAI's `logit_bias` ({"token id": -100..100}) checked against the vocabulary."""
    out = []
    for key, value in (bias or {}).items():
        try:
            token = int(key)
        except ValueError:
            token = -1
        if not 0 <= token < n_vocab:
            raise InvalidRequest(
                f"logit_bias key {key!r} is not a token id of this model (0..{n_vocab - 1})",
                param="logit_bias",
            )
        if not -100 <= value <= 100:
            raise InvalidRequest(
                f"logit_bias[{key}] must be between -100 and 100", param="logit_bias"
            )
        out.append((token, float(value)))
    return tuple(out)


def sampling_from(req: Any, max_tokens: int, grammar: str | None = None) -> SamplingParams:
    """SamplingParams from a chat or legacy completion request (their shared fields)."""
    d = SamplingParams()

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    return SamplingParams(
        max_tokens=max_tokens,
        temperature=pick(req.temperature, d.temperature),
        top_p=pick(req.top_p, d.top_p),
        top_k=pick(req.top_k, d.top_k),
        min_p=pick(req.min_p, d.min_p),
        presence_penalty=pick(req.presence_penalty, d.presence_penalty),
        frequency_penalty=pick(req.frequency_penalty, d.frequency_penalty),
        repeat_penalty=pick(req.repeat_penalty, d.repeat_penalty),
        seed=req.seed,
        stop=stop_strings(req.stop),
        grammar=grammar,
        logit_bias=logit_bias_of(getattr(req, "logit_bias", None), 2**31 - 1),
        ignore_eos=req.ignore_eos,
    )


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


AttributeValue = Annotated[str, Meta(max_length=512)] | float | bool


class _Comparison(Request, tag_field="type"):
    key: Annotated[str, Meta(max_length=64)]
    value: AttributeValue


class Eq(_Comparison, tag="eq"):
    pass


class Ne(_Comparison, tag="ne"):
    pass


class Gt(_Comparison, tag="gt"):
    pass


class Gte(_Comparison, tag="gte"):
    pass


class Lt(_Comparison, tag="lt"):
    pass


class Lte(_Comparison, tag="lte"):
    pass


class _Compound(Request, tag_field="type"):
    filters: Annotated[list[Filter], Meta(min_length=1, max_length=32)]


class And(_Compound, tag="and"):
    pass


class Or(_Compound, tag="or"):
    pass


# OpenAI's attribute filters: a comparison, or and/or over nested filters
Filter = Eq | Ne | Gt | Gte | Lt | Lte | And | Or
MAX_FILTER_DEPTH = 16


def validate_filter(f: Filter, depth: int = 0) -> None:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidRequest(f"filters nest deeper than {MAX_FILTER_DEPTH}", param="filters")
    if isinstance(f, And | Or):
        for sub in f.filters:
            validate_filter(sub, depth + 1)
    elif isinstance(f, Gt | Gte | Lt | Lte) and isinstance(f.value, bool):
        raise InvalidRequest(
            f"filter {f.key!r}: {type(f).__name__.lower()} compares numbers or strings, not "
            "booleans",
            param="filters",
        )


class RagOptions(Request):
    """ragserve's addition: `extra_body={"rag": {...}}` from the SDKs."""

    enabled: bool = True
    top_k: Annotated[int, Meta(ge=1, le=50)] | None = None
    # paths relative to the corpus root, or globs
    documents: Annotated[list[Annotated[str, Meta(max_length=512)]], Meta(max_length=64)] | None = (
        None
    )
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"
    append_sources: bool | None = None  # default: the server's setting
    rerank: bool | None = None  # default: when the server has a reranker
    # search again on a turn whose last message is a tool result (default: reuse the
    # question's sources, so an agent loop keeps its cached prompt prefix)
    on_tool_results: bool = False
    # the vector stores to search (default: the server's own index); OpenAI's attribute
    # filters narrow them to the files whose attributes match
    vector_store_ids: (
        Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=8)] | None
    ) = None
    filters: Filter | None = None


class Source(Response):
    """A passage the answer was given; [index] is how the model cites it."""

    index: int
    document: str
    page: int | None  # None: a format without pages (Markdown, Word, HWPX, ...): see `location`
    page_end: int | None
    score: float
    snippet: str
    chunk_id: int
    file_id: str | None = None  # the PDF in the Files API
    url: str | None = None  # opens the PDF at `page` (signed when API keys are on)
    origin: Literal["text", "ocr"] = "text"  # the PDF's text layer, or OCR of a scanned page
    ocr_confidence: float | None = None  # Tesseract's mean confidence (0-100) where OCR'd
    location: str | None = None  # a format without pages: where (a heading path, a line)

    @property
    def title(self) -> str:
        return f"{self.document}, {place_label(self.page, self.page_end, self.location)}"


class UrlCitation(Response):
    url: str
    title: str
    start_index: int  # where the answer cites it, in characters of `content`
    end_index: int


class Annotation(Response):
    """OpenAI's citation of a URL; Open WebUI shows each as a source chip with a link."""

    url_citation: UrlCitation
    type: Literal["url_citation"] = "url_citation"


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
