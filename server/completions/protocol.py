"""/v1/completions (legacy) wire types."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from ragserve.engine import SamplingParams
from ragserve.errors import InvalidRequest

from ..protocol import (
    LogitBias,
    MinP,
    Penalty,
    RepeatPenalty,
    Request,
    Response,
    Seed,
    StopField,
    StreamOptions,
    Temperature,
    TopK,
    TopP,
    Usage,
    sampling_from,
)

_TOKEN_IDS = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},  # llama_token: int32
    "minItems": 1,
}
# a list prompt is token ids, or one string, or one list of token ids (no batches); ids
# must also be below the model's vocabulary size, which no static spec can say
_PROMPTS = {
    "anyOf": [
        _TOKEN_IDS,
        {"items": {"type": "string", "minLength": 1}, "maxItems": 1},
        {"items": _TOKEN_IDS, "maxItems": 1},
    ]
}


class CompletionRequest(Request):
    prompt: (
        Annotated[str, Meta(min_length=1)]
        | Annotated[list[Any], Meta(min_length=1, max_length=1 << 20, extra_json_schema=_PROMPTS)]
    )
    model: Annotated[str, Meta(max_length=256)] = ""
    echo: bool = False
    frequency_penalty: Penalty = None
    logit_bias: LogitBias = None
    logprobs: Annotated[int, Meta(ge=0, le=0)] | None = None  # not supported
    max_tokens: Annotated[int, Meta(ge=1)] | None = 16
    n: Annotated[int, Meta(ge=1, le=1)] | None = None  # one choice per request
    presence_penalty: Penalty = None
    seed: Seed = None
    stop: StopField = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: Temperature = None
    top_p: TopP = None
    user: Any = None
    # -- ragserve additions (llama.cpp sampling) --
    top_k: TopK = None
    min_p: MinP = None
    repeat_penalty: RepeatPenalty = None
    ignore_eos: bool = False

    def prompt_text(self) -> str | list[int]:
        p = self.prompt
        if isinstance(p, str):
            return p
        if p and all(type(t) is int for t in p):  # not bool, which is an int in Python
            return list(p)
        if len(p) == 1 and isinstance(p[0], str):
            return p[0]
        if len(p) == 1 and isinstance(p[0], list) and all(type(t) is int for t in p[0]):
            return list(p[0])
        raise InvalidRequest(
            "'prompt' must be one string or one list of token ids (batches are not supported)",
            param="prompt",
        )

    def validate(self) -> None:
        if self.logprobs:
            raise InvalidRequest("logprobs are not supported by this server", param="logprobs")

    def sampling_params(self, max_tokens: int) -> SamplingParams:
        return sampling_from(self, max_tokens)


class CompletionChoice(Response):
    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: str | None = None


class Completion(Response):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = 0
    model: str = ""
    choices: list[CompletionChoice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
