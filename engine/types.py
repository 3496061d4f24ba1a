"""The engine's contract: what a request is, what comes back, and the `Engine` protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import msgspec

from .tool_formats import ToolFormat, Trigger

# The context per request when none is set: the model's own if shorter. Open WebUI sends
# ~7k tokens of builtin tool definitions with every chat; 8k holds them, a question and the
# sources, and SmolLM2 is trained for 8k (Qwen2.5 for 32k: --n-ctx gives it more).
DEFAULT_N_CTX = 8192


class SamplingParams(msgspec.Struct, frozen=True, omit_defaults=True):
    max_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    grammar: str | None = None  # GBNF, checked by `Engine.check_grammar` before submission
    # A lazy grammar: free text until a trigger is generated; from the trigger on (the
    # grammar's text begins with it) every token must follow the grammar.
    grammar_triggers: tuple[Trigger, ...] = ()
    # Control tokens whose text stays in the output (a family's tool-call markers such as
    # Mistral's [TOOL_CALLS]); other control tokens are never shown.
    preserved: tuple[str, ...] = ()
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias); -100 bans, 100 forces
    ignore_eos: bool = False  # benchmarks: generate exactly max_tokens


class UpstreamCall(msgspec.Struct, frozen=True, omit_defaults=True):
    """The request as an OpenAI-compatible server takes it, for an engine that generates
    through one (`Engine.upstream`): the conversation as the model is to see it (sources
    included) or a legacy prompt, and what that server applies itself (its template, tool
    parsing, structured output). In-process engines ignore it."""

    messages: list[dict[str, Any]] | None = None  # /chat/completions
    prompt: str | list[int] | None = None  # /completions
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logit_bias: dict[str, float] | None = None


class GenerationRequest(msgspec.Struct, frozen=True):
    prompt_tokens: list[int]  # what the budget counted (an upstream engine reads `call`)
    params: SamplingParams
    request_id: str = ""
    call: UpstreamCall | None = None


class TextDelta(msgspec.Struct, frozen=True):
    text: str


class Finished(msgspec.Struct, frozen=True):
    finish_reason: str  # stop | length | cancelled
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ttft_s: float
    decode_s: float


class ToolCallsDelta(msgspec.Struct, frozen=True):
    """Tool-call pieces an upstream parsed itself, in OpenAI's streamed shape (`index`,
    then `id`/`type`/`function.name` on a call's first piece, `function.arguments` in parts)."""

    calls: list[dict[str, Any]]


GenerationEvent = TextDelta | ToolCallsDelta | Finished


class EngineStats(msgspec.Struct, frozen=True):
    slots: int
    busy: int
    queued: int


class Handle(Protocol):
    """A submitted request: iterate for its events; `cancel()` frees its slot."""

    def __aiter__(self) -> AsyncIterator[GenerationEvent]: ...

    def cancel(self) -> None: ...

    async def accepted(self) -> None:
        """Wait until the engine has taken the request on (an upstream answered with its
        headers); raises what refused it, so the client gets a status, not a broken stream."""
        ...


class Engine(Protocol):
    """What the HTTP layer needs from a model."""

    model_id: str

    @property
    def n_ctx(self) -> int: ...

    @property
    def n_vocab(self) -> int: ...

    # None: the model runs in this process. Else the OpenAI-compatible server generating
    # for it: requests carry `call`, and tool calls come back as ToolCallsDelta events.
    upstream: str | None
    # called (on the engine's thread) for every request that ends, however it ends
    listeners: list[Callable[[GenerationRequest, Finished], None]]

    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]: ...

    def chat_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """The prompt for a conversation (OpenAI-shaped message dicts, tool calls included)
        rendered by the model's template, with `tools` offered to the model."""
        ...

    def neutralize(self, text: str) -> str: ...

    @property
    def tool_format(self) -> ToolFormat:
        """How this model's template offers tools and how the model writes calls."""
        ...

    def fim_tokens(self) -> tuple[int, int, int] | None: ...

    def check_grammar(self, gbnf: str, param: str = "response_format") -> None:
        """Compile (and cache) a grammar; raises InvalidRequest if llama.cpp rejects it."""
        ...

    def submit(self, request: GenerationRequest) -> Handle:
        """Queue a request, or raise QueueFull/EngineFailed at once (before any response)."""
        ...

    def stats(self) -> EngineStats: ...

    def unavailable(self) -> str | None:
        """Why the engine cannot take requests now (an upstream that does not answer)."""
        ...

    def shutdown(self, message: str) -> None:
        """End running and waiting requests with an error (a server going down)."""
        ...

    def close(self) -> bool:
        """Stop and free the model; False if a decode is stuck and memory was kept."""
        ...


class BackendError(RuntimeError):
    """The model runtime failed (a decode, a grammar, a context that cannot be created)."""


class GrammarDeadEnd(BackendError):
    """No token of the vocabulary can continue the grammar (e.g. it demands a NUL byte)."""


class TokenSampler(Protocol):
    """One request's sampler: picks (and accepts) the token at a batch position."""

    def sample(self, index: int) -> int: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """What the scheduler needs from a model runtime: one batch of many sequences.

    llama.cpp's is `LlamaBackend`; the scheduler's unit tests use a tiny fake.
    """

    n_ctx: int  # cells per sequence
    n_batch: int  # tokens per decode

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """A token's bytes (`special`: control tokens as their text, else empty)."""
        ...

    def is_eog(self, token: int) -> bool: ...

    def clear_batch(self) -> None: ...

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Queue a token for the next decode; returns its batch index."""
        ...

    def decode(self) -> None:
        """Run the queued batch; raises BackendError."""
        ...

    def truncate(self, seq: int, keep: int) -> bool:
        """Drop a sequence's cells from `keep` on; False if impossible."""
        ...

    def sampler(self, params: SamplingParams) -> TokenSampler: ...
