"""/v1/completions (legacy) wire types."""

from __future__ import annotations

from typing import Any, Literal

from retrieval.errors import InvalidRequest

from ..engine import SamplingParams
from ..protocol import Request, Response, StreamOptions, Usage, sampling_from


class CompletionRequest(Request):
    prompt: str | list[Any]
    model: str = ""
    echo: bool = False
    frequency_penalty: float | None = None
    logprobs: int | None = None
    max_tokens: int | None = 16
    n: int | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: Any = None
    # -- ragserve additions (llama.cpp sampling) --
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    ignore_eos: bool = False

    def prompt_text(self) -> str | list[int]:
        p = self.prompt
        if isinstance(p, str):
            return p
        if p and all(isinstance(t, int) for t in p):
            return list(p)
        if len(p) == 1 and isinstance(p[0], str):
            return p[0]
        if len(p) == 1 and isinstance(p[0], list) and all(isinstance(t, int) for t in p[0]):
            return list(p[0])
        raise InvalidRequest(
            "'prompt' must be one string or one list of token ids (batches are not supported)",
            param="prompt",
        )

    def validate(self) -> None:
        if self.n not in (None, 1):
            raise InvalidRequest("only n=1 is supported", param="n")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidRequest("max_tokens must be at least 1", param="max_tokens")
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise InvalidRequest("temperature must be between 0 and 2", param="temperature")

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
