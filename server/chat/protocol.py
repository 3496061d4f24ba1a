"""/v1/chat/completions wire types, fields in the order of OpenAI's reference."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ragserve.engine import SamplingParams, ToolFormat, schema_to_gbnf
from ragserve.errors import InvalidRequest

from ..protocol import (
    Annotation,
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
MAX_CALLS = 128  # tool calls in one assistant message
MaxTokens = Annotated[int, Meta(ge=1)] | None
ToolName = Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]  # OpenAI's rule

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class FunctionCall(Request):
    name: Annotated[str, Meta(max_length=256)]
    arguments: str | dict[str, Any] = "{}"  # a JSON string (some clients send the object)


class ToolCall(Request):
    """A call an assistant message made, as clients send it back in the history."""

    function: FunctionCall | None = None  # some clients send bare ids; such calls are skipped
    id: Annotated[str, Meta(max_length=256)] = ""
    type: Literal["function"] = "function"


class ChatMessage(Request):
    role: Role
    content: str | list[Any] | None = None
    name: str | None = None
    tool_calls: Annotated[list[ToolCall], Meta(max_length=MAX_CALLS)] | None = None
    tool_call_id: Annotated[str, Meta(max_length=256)] | None = None


class FunctionDefinition(Request):
    name: ToolName
    description: Annotated[str, Meta(max_length=16384)] | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema; checked when the grammar is built
    strict: bool | None = None


class Tool(Request):
    function: FunctionDefinition
    type: Literal["function"] = "function"


class FunctionName(Request):
    name: ToolName


class NamedToolChoice(Request):
    function: FunctionName
    type: Literal["function"] = "function"


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


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
    tools: Annotated[list[Tool], Meta(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: Any = None
    # -- ragserve additions (llama.cpp sampling and retrieval control) --
    top_k: TopK = None
    min_p: MinP = None
    repeat_penalty: RepeatPenalty = None
    ignore_eos: bool = False
    rag: RagOptions | None = None

    def validate(self) -> None:
        """What the types cannot say (messages, n and the bounds are decoded)."""
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
        names = [t.function.name for t in self.tools or ()]
        if len(set(names)) < len(names):
            raise InvalidRequest("tools must have distinct function names", param="tools")
        choice = self.tool_choice
        if choice not in (None, "none", "auto") and not names:
            raise InvalidRequest("tool_choice needs tools to choose from", param="tool_choice")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise InvalidRequest(
                f"tool_choice names {choice.function.name!r}, which is not in tools",
                param="tool_choice",
            )

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def stops(self) -> tuple[str, ...]:
        return stop_strings(self.stop)

    def tool_plan(self) -> ToolPlan | None:
        """The tools offered to the model and how it may call them (None: no tools, or
        `tool_choice: none`, which keeps them out of the prompt so only text comes back)."""
        if not self.tools or self.tool_choice == "none":
            return None
        choice = self.tool_choice or "auto"
        return ToolPlan(
            tools=[tool_dict(t) for t in self.tools],
            choice=choice.function.name if isinstance(choice, NamedToolChoice) else choice,
            parallel=self.parallel_tool_calls is not False,
        )

    def response_schema(self) -> dict[str, Any] | None:
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return {"type": "object"}
        assert fmt.json_schema is not None
        return fmt.json_schema.schema

    def grammar(self) -> str | None:
        """GBNF for `response_format`, built by llama.cpp's JSON-schema converter."""
        schema = self.response_schema()
        if schema is None:
            return None
        fmt = self.response_format
        if fmt is not None and fmt.type == "json_object":
            from llama_cpp.llama_grammar import JSON_GBNF

            return JSON_GBNF
        return schema_to_gbnf(schema)

    def sampling_params(self, max_tokens: int, tools: ToolFormat | None = None) -> SamplingParams:
        """Sampling for this request; with tools, a grammar for the calls in the model's
        own syntax (lazy for `auto`: free text until the model starts a call)."""
        plan = self.tool_plan()
        if plan is None or tools is None:
            return sampling_from(self, max_tokens, self.grammar())
        gbnf, triggers = tools.grammar(
            plan.tools, plan.choice, plan.parallel, self.response_schema()
        )
        return msgspec.structs.replace(
            sampling_from(self, max_tokens, gbnf),
            grammar_triggers=triggers,
            preserved=tools.preserved(),
        )

    def template_messages(self) -> list[dict[str, Any]]:
        """Messages as chat templates take them (OpenAI-shaped dicts, text content, tool
        calls and results kept as such); runs of plain same-role turns merged."""
        out: list[dict[str, Any]] = []
        for m in self.messages:
            role = {"developer": "system", "function": "tool"}.get(m.role, m.role)
            message: dict[str, Any] = {"role": role, "content": text_of(m.content)}
            calls = [c for c in m.tool_calls or () if c.function is not None]
            if role == "assistant" and calls:
                message["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in calls
                    if c.function is not None
                ]
            elif role == "tool":
                message["tool_call_id"] = m.tool_call_id or m.name or ""
                if m.name:
                    message["name"] = m.name
            plain = set(message) == {"role", "content"} and role != "tool"
            if plain and out and set(out[-1]) == {"role", "content"} and out[-1]["role"] == role:
                out[-1]["content"] += "\n\n" + message["content"]
            else:
                out.append(message)
        return out


class ToolPlan(msgspec.Struct, frozen=True):
    tools: list[dict[str, Any]]  # OpenAI tool objects, as templates render them
    choice: str  # auto | required | the one function's name
    parallel: bool


def tool_dict(tool: Tool) -> dict[str, Any]:
    f = tool.function
    function: dict[str, Any] = {
        "name": f.name,
        "description": f.description,
        "parameters": f.parameters,
    }
    if f.strict is not None:
        function["strict"] = f.strict
    return {"type": "function", "function": {k: v for k, v in function.items() if v is not None}}


class FunctionCallOut(Response):
    name: str
    arguments: str  # JSON


class ToolCallOut(Response):
    id: str
    function: FunctionCallOut
    type: Literal["function"] = "function"


class AssistantMessage(Response):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: None = None
    tool_calls: list[ToolCallOut] | msgspec.UnsetType = msgspec.UNSET
    annotations: list[Annotation] = []


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


class DeltaFunction(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(msgspec.Struct, omit_defaults=True):
    """A piece of a call: the first carries id, type and name; then arguments arrive."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction | None = None


class Delta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None
    annotations: list[Annotation] | None = None


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
