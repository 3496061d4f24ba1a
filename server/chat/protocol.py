"""/v1/chat/completions wire types, fields in the order of OpenAI's reference."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ragserve.engine import SamplingParams, schema_to_gbnf
from ragserve.errors import InvalidRequest

from ..protocol import (
    LogitBias,
    MinP,
    Penalty,
    RagOptions,
    RepeatPenalty,
    Request,
    Response,
    Seed,
    Source,
    StopField,
    StreamOptions,
    Temperature,
    TopK,
    TopP,
    Usage,
    sampling_from,
    stop_strings,
    text_of,
)

MAX_MESSAGES = 2048
MAX_TOOLS = 128
MaxTokens = Annotated[int, Meta(ge=1)] | None

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(Request):
    role: Role
    content: str | list[Any] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    tool_call_id: str | None = None


class JsonSchemaFormat(Request):
    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(Request):
    type: str = "text"  # text | json_object | json_schema
    json_schema: JsonSchemaFormat | None = None


class ChatCompletionRequest(Request):
    messages: Annotated[list[ChatMessage], Meta(min_length=1, max_length=MAX_MESSAGES)]
    model: Annotated[str, Meta(max_length=256)] = ""
    frequency_penalty: Penalty = None
    logit_bias: LogitBias = None
    logprobs: Annotated[bool, Meta(extra_json_schema={"enum": [False]})] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=0)] | None = None  # logprobs: not supported
    max_tokens: MaxTokens = None
    max_completion_tokens: MaxTokens = None
    n: Annotated[int, Meta(ge=1, le=1)] | None = None  # one choice per request
    presence_penalty: Penalty = None
    response_format: ResponseFormat | None = None
    seed: Seed = None
    stop: StopField = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature = None
    top_p: TopP = None
    tools: Annotated[list[Any], Meta(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["auto", "none"] | None = None  # tools are not called yet
    parallel_tool_calls: bool | None = None
    user: Any = None
    # -- ragserve additions (llama.cpp sampling and retrieval control) --
    top_k: TopK = None
    min_p: MinP = None
    repeat_penalty: RepeatPenalty = None
    ignore_eos: bool = False
    rag: RagOptions | None = None

    def validate(self) -> None:
        """What the types cannot say (messages, n, tool_choice and the bounds are decoded)."""
        if self.logprobs:
            raise InvalidRequest("logprobs are not supported by this server", param="logprobs")
        if self.response_format is not None:
            kind = self.response_format.type
            if kind not in ("text", "json_object", "json_schema"):
                raise InvalidRequest(
                    f"response_format.type {kind!r} is not supported", param="response_format"
                )
            if kind == "json_schema" and (
                self.response_format.json_schema is None
                or self.response_format.json_schema.schema is None
            ):
                raise InvalidRequest(
                    "response_format json_schema needs json_schema.schema", param="response_format"
                )

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def stops(self) -> tuple[str, ...]:
        return stop_strings(self.stop)

    def grammar(self) -> str | None:
        """GBNF for `response_format`, built by llama.cpp's JSON-schema converter."""
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        from llama_cpp.llama_grammar import JSON_GBNF

        if fmt.type == "json_object":
            return JSON_GBNF
        assert fmt.json_schema is not None
        return schema_to_gbnf(fmt.json_schema.schema)

    def sampling_params(self, max_tokens: int) -> SamplingParams:
        return sampling_from(self, max_tokens, self.grammar())

    def plain_messages(self) -> list[dict[str, str]]:
        """Messages as the chat template wants them: text only, same-role runs merged."""
        out: list[dict[str, str]] = []
        for m in self.messages:
            role = {"developer": "system", "tool": "user", "function": "user"}.get(m.role, m.role)
            text = text_of(m.content)
            if m.role in ("tool", "function"):
                text = f"Tool result:\n{text}"
            if out and out[-1]["role"] == role:
                out[-1]["content"] += "\n\n" + text
            else:
                out.append({"role": role, "content": text})
        return out


class AssistantMessage(Response):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: None = None


class Choice(Response):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(Response):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
    # -- ragserve addition --
    sources: list[Source] = []


class Delta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None


class ChunkChoice(Response):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(Response):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
    # -- ragserve addition: present on the first chunk only --
    sources: list[Source] | msgspec.UnsetType = msgspec.UNSET
