"""/v1/responses wire types, fields in the order of OpenAI's reference.

A request converts itself into the chat request the one generation pipeline runs
(`ResponseRequest.chat_request`): input items become chat messages, function tools chat
tools, `text.format` a response format, and `file_search` the stores to search.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ragserve.errors import InvalidRequest

from ..chat.protocol import MAX_MESSAGES, MAX_TOOLS, ChatCompletionRequest, ToolName
from ..protocol import (
    Filter,
    MinP,
    RagOptions,
    RepeatPenalty,
    Request,
    Response,
    Seed,
    Source,
    Temperature,
    TopK,
    TopP,
    validate_filter,
)
from ..vector_stores.protocol import RankingOptions  # the stores' search: the same options

MAX_TEXT = 1 << 20  # characters in one input text part
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
Id = Annotated[str, Meta(max_length=256)]
ResponseId = Annotated[str, Meta(pattern=r"^resp_[A-Za-z0-9]{1,64}$")]
INCLUDABLE = (
    "file_search_call.results",
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "web_search_call.action.sources",
    "web_search_call.results",
)
HOSTED_TOOLS = (  # OpenAI's hosted tools this server does not run
    "web_search",
    "web_search_preview",
    "code_interpreter",
    "computer_use_preview",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
    "custom",
)


# -- input items ---------------------------------------------------------------------------
Parts = Annotated[
    list[dict[str, Any]],
    Meta(max_length=256, extra_json_schema={"items": {"$ref": "#/components/schemas/InputText"}}),
]


def _ref(*names: str) -> dict[str, Any]:
    """A schema for the spec: one of these components (the decoder checks them per item)."""
    return {"anyOf": [{"$ref": f"#/components/schemas/{n}"} for n in names]}


class InputText(Request):
    type: Literal["input_text", "output_text", "text", "refusal"]
    text: Text = ""
    refusal: Text = ""


class MessageItem(Request):
    """A message; `type` may be left out (the SDKs' "easy" input message)."""

    role: Literal["user", "system", "developer", "assistant"]
    content: Text | Parts
    type: Literal["message"] = "message"
    id: Id | None = None
    status: str | None = None


class FunctionCallItem(Request):
    call_id: Id
    name: ToolName
    type: Literal["function_call"]
    arguments: Text = "{}"
    id: Id | None = None
    status: str | None = None


class FunctionCallOutputItem(Request):
    call_id: Id
    output: Text | Parts
    type: Literal["function_call_output"]
    id: Id | None = None
    status: str | None = None


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem
ITEM_TYPES: dict[str, type[InputItem]] = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
}
SKIPPED_ITEMS = ("file_search_call", "reasoning")  # earlier outputs sent back: not prompt text


class HostedTool(Request):
    """One of OpenAI's hosted tools other than file_search: not offered to the model here."""

    type: Literal[HOSTED_TOOLS]  # type: ignore[valid-type]


class SkippedItem(Request):
    """An earlier output item sent back (a file search this server ran, reasoning): kept
    out of the prompt."""

    type: Literal[SKIPPED_ITEMS]  # type: ignore[valid-type]


def content_text(content: str | list[dict[str, Any]], where: str) -> str:
    """A message's text: a string, or its text parts; images and files are refused."""
    if isinstance(content, str):
        return content
    parts = []
    for i, raw in enumerate(content):
        kind = raw.get("type")
        if kind in ("input_image", "input_file", "input_audio"):
            raise InvalidRequest(
                f"{kind} is not supported: this server's model reads text only; upload PDFs "
                "with the Files API and search them with the file_search tool",
                param=f"{where}[{i}]",
            )
        part = _convert(raw, InputText, f"{where}[{i}]")
        parts.append(part.text or part.refusal)
    return "\n".join(parts)


def _convert(raw: Any, kind: type, where: str) -> Any:
    try:
        return msgspec.convert(raw, kind, strict=True)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        at = where + path.rstrip("`")
        raise InvalidRequest(f"invalid request body: {message} (at {at})", param=at) from None


# -- tools ---------------------------------------------------------------------------------
class FunctionTool(Request):
    name: ToolName
    type: Literal["function"]
    namespace: Annotated[str, Meta(max_length=64)] | None = None  # set for a namespace's tools
    description: Annotated[str, Meta(max_length=16384)] | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamespaceTool(Request):
    """Function tools grouped under a name (Codex); their calls carry `namespace`."""

    name: Annotated[str, Meta(max_length=64)]
    tools: Annotated[
        list[dict[str, Any]],
        Meta(
            max_length=MAX_TOOLS,
            extra_json_schema={"items": {"$ref": "#/components/schemas/FunctionTool"}},
        ),
    ]
    type: Literal["namespace"]
    description: Annotated[str, Meta(max_length=16384)] | None = None


class FileSearchTool(Request):
    vector_store_ids: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=8)]
    type: Literal["file_search"]
    filters: Filter | None = None
    max_num_results: Annotated[int, Meta(ge=1, le=50)] | None = None
    ranking_options: RankingOptions | None = None


Tool = FunctionTool | FileSearchTool


class FunctionChoice(Request, tag="function", tag_field="type"):
    name: ToolName


class FileSearchChoice(Request, tag="file_search", tag_field="type"):
    pass


ToolChoice = Literal["none", "auto", "required"] | FunctionChoice | FileSearchChoice


class PlainText(Request, tag="text", tag_field="type"):
    pass


class JsonObject(Request, tag="json_object", tag_field="type"):
    pass


class JsonSchema(Request, tag="json_schema", tag_field="type"):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    schema: dict[str, Any]
    description: Annotated[str, Meta(max_length=16384)] | None = None
    strict: bool | None = None


TextFormat = PlainText | JsonObject | JsonSchema


class TextConfig(Request):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None  # accepted, ignored


class Reasoning(Request):
    effort: str | None = None
    summary: str | None = None


Items = Annotated[
    list[dict[str, Any]],
    Meta(
        max_length=MAX_MESSAGES,
        extra_json_schema={
            "items": _ref(
                "MessageItem", "FunctionCallItem", "FunctionCallOutputItem", "SkippedItem"
            )
        },
    ),
]
Tools = Annotated[
    list[dict[str, Any]],
    Meta(
        max_length=MAX_TOOLS,
        extra_json_schema={
            "items": _ref("FunctionTool", "FileSearchTool", "NamespaceTool", "HostedTool")
        },
    ),
]


class ResponseRequest(Request):
    model: Annotated[str, Meta(max_length=256)] = ""
    input: Text | Items = ""
    instructions: Text | None = None
    include: Annotated[list[Literal[INCLUDABLE]], Meta(max_length=16)] | None = None  # type: ignore[valid-type]
    max_output_tokens: Annotated[int, Meta(ge=1)] | None = None
    metadata: (
        Annotated[dict[str, Annotated[str, Meta(max_length=512)]], Meta(max_length=16)] | None
    ) = None
    parallel_tool_calls: bool | None = None
    previous_response_id: ResponseId | None = None
    reasoning: Reasoning | None = None  # accepted; this model does not reason
    store: bool = True
    stream: bool = False
    temperature: Temperature = None
    text: TextConfig | None = None
    tool_choice: ToolChoice | None = None
    tools: Tools | None = None
    top_p: TopP = None
    truncation: Literal["auto", "disabled"] | None = None
    user: Annotated[str, Meta(max_length=256)] | None = None
    background: Literal[False] | None = None
    max_tool_calls: Annotated[int, Meta(ge=1)] | None = None
    prompt_cache_key: Annotated[str, Meta(max_length=256)] | None = None
    safety_identifier: Annotated[str, Meta(max_length=256)] | None = None
    service_tier: str | None = None
    # -- ragserve additions, as in chat (llama.cpp sampling and retrieval control) --
    top_k: TopK = None
    min_p: MinP = None
    repeat_penalty: RepeatPenalty = None
    seed: Seed = None
    ignore_eos: bool = False
    rag: RagOptions | None = None

    def input_items(self) -> list[InputItem]:
        """`input` as typed items (a string is one user message); earlier tool outputs
        this server ran (file searches) and reasoning items are skipped."""
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        items: list[InputItem] = []
        for i, raw in enumerate(self.input):
            kind = raw.get("type", "message")
            if kind in SKIPPED_ITEMS:
                continue
            if kind == "item_reference":
                raise InvalidRequest(
                    "item_reference is not supported: send the item itself, or continue a "
                    "stored response with previous_response_id",
                    param=f"input[{i}]",
                )
            cls = ITEM_TYPES.get(kind) if isinstance(kind, str) else None
            if cls is None:
                raise InvalidRequest(
                    f"input item type {kind!r} is not supported", param=f"input[{i}]"
                )
            item = _convert(raw, cls, f"input[{i}]")
            if isinstance(item, MessageItem):
                content_text(item.content, f"input[{i}].content")  # refuse images up front
            items.append(item)
        return items

    def typed_tools(self) -> list[Tool]:
        out: list[Tool] = []
        for i, raw in enumerate(self.tools or ()):
            kind = raw.get("type")
            if kind == "function":
                out.append(_convert(raw, FunctionTool, f"tools[{i}]"))
            elif kind == "file_search":
                tool = _convert(raw, FileSearchTool, f"tools[{i}]")
                if tool.filters is not None:
                    validate_filter(tool.filters)
                out.append(tool)
            elif kind == "namespace":  # Codex groups some function tools: offered flat
                group = _convert(raw, NamespaceTool, f"tools[{i}]")
                for j, sub in enumerate(group.tools):
                    tool = _convert(sub, FunctionTool, f"tools[{i}].tools[{j}]")
                    out.append(msgspec.structs.replace(tool, namespace=group.name))
            elif kind in HOSTED_TOOLS:
                continue  # OpenAI's own tools (Codex sends web_search): not offered here
            else:
                raise InvalidRequest(f"tool type {kind!r} is not supported", param=f"tools[{i}]")
        if sum(isinstance(t, FileSearchTool) for t in out) > 1:
            raise InvalidRequest("at most one file_search tool", param="tools")
        return out

    def namespaces(self) -> dict[str, str]:
        """Function name -> its namespace, for the tools offered in one."""
        return {
            t.name: t.namespace
            for t in self.typed_tools()
            if isinstance(t, FunctionTool) and t.namespace
        }

    def file_search(self) -> FileSearchTool | None:
        """The file_search tool the server runs this turn (None: none, or `tool_choice: none`)."""
        if self.tool_choice == "none":
            return None
        return next((t for t in self.typed_tools() if isinstance(t, FileSearchTool)), None)

    def retrieval(self) -> bool | None:
        """With a file_search tool, it decides retrieval; without one, the model id does."""
        if not any(t.get("type") == "file_search" for t in self.tools or ()):
            return None
        return self.file_search() is not None

    def chat_request(self, history: list[dict[str, Any]]) -> ChatCompletionRequest:
        """The chat request this one runs as: `history` (an earlier response's messages),
        then this request's items, with the instructions first."""
        messages = [{"role": "system", "content": self.instructions}] if self.instructions else []
        messages += history + messages_of(self.input_items())
        tools = self.typed_tools()
        functions = [t for t in tools if isinstance(t, FunctionTool)]
        search = next((t for t in tools if isinstance(t, FileSearchTool)), None)
        choice: Any = self.tool_choice
        if isinstance(choice, FileSearchChoice):
            if search is None:
                raise InvalidRequest(
                    "tool_choice names file_search, which is not in tools", param="tool_choice"
                )
            choice = "auto"  # the server runs the search; the model may still call functions
        elif isinstance(choice, FunctionChoice):
            choice = {"type": "function", "function": {"name": choice.name}}
        if not functions:  # nothing for the model to call: file_search is the server's
            if choice == "required" and search is None:
                raise InvalidRequest("tool_choice required needs tools", param="tool_choice")
            choice = None
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_completion_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "tools": [
                {
                    "type": "function",
                    "function": msgspec.structs.asdict(t) | {"type": None, "namespace": None},
                }
                for t in functions
            ]
            or None,
            "tool_choice": choice,
            "parallel_tool_calls": self.parallel_tool_calls,
            "response_format": self._response_format(),
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed,
            "ignore_eos": self.ignore_eos or None,
            "rag": msgspec.to_builtins(self.rag) if self.rag else None,
        }
        if search is not None:  # the tool names the stores, whatever `rag` says
            body["rag"] = (body["rag"] or {}) | {
                "enabled": True,
                "vector_store_ids": search.vector_store_ids,
                "filters": msgspec.to_builtins(search.filters) if search.filters else None,
                "top_k": search.max_num_results,
            }
        for tool in body["tools"] or ():
            tool["function"] = {k: v for k, v in tool["function"].items() if v is not None}
        try:
            return msgspec.convert(
                {k: v for k, v in body.items() if v is not None}, ChatCompletionRequest
            )
        except msgspec.ValidationError as exc:
            raise InvalidRequest(f"invalid request body: {exc}") from None

    def _response_format(self) -> dict[str, Any] | None:
        fmt = self.text.format if self.text else None
        if fmt is None or isinstance(fmt, PlainText):
            return None
        if isinstance(fmt, JsonObject):
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": fmt.name, "schema": fmt.schema}}


def messages_of(items: list[InputItem]) -> list[dict[str, Any]]:
    """Input items as chat messages: calls join the assistant turn they follow."""
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if isinstance(item, MessageItem):
            out.append({"role": item.role, "content": content_text(item.content, f"input[{i}]")})
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            output = (
                item.output
                if isinstance(item.output, str)
                else content_text(item.output, f"input[{i}].output")
            )
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    return out


# -- the Response object -------------------------------------------------------------------
class FileCitation(Response, tag="file_citation", tag_field="type"):
    file_id: str
    filename: str
    index: int


class UrlCitationAnnotation(Response, tag="url_citation", tag_field="type"):
    url: str
    title: str
    start_index: int
    end_index: int


Annotation = FileCitation | UrlCitationAnnotation


class OutputText(Response, tag="output_text", tag_field="type"):
    text: str
    annotations: list[Annotation] = []
    logprobs: list[Any] = []


class OutputMessage(Response, tag="message", tag_field="type"):
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText] = []


class OutputFunctionCall(Response, tag="function_call", tag_field="type"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    namespace: str | None = None


class FileSearchResult(Response):
    file_id: str
    filename: str
    score: float
    text: str
    attributes: dict[str, Any]


class FileSearchCall(Response, tag="file_search_call", tag_field="type"):
    id: str
    queries: list[str]
    status: Literal["in_progress", "searching", "completed", "incomplete", "failed"]
    results: list[FileSearchResult] | None = None


OutputItem = OutputMessage | OutputFunctionCall | FileSearchCall


class InputTokensDetails(Response):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(Response):
    reasoning_tokens: int = 0


class ResponseUsage(Response):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(Response):
    code: str
    message: str


class IncompleteDetails(Response):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseText(Response):
    format: dict[str, Any]
    verbosity: str = "medium"


class ResponseObject(Response):
    id: str
    object: Literal["response"] = "response"
    created_at: int = 0
    status: Literal["completed", "failed", "in_progress", "incomplete", "cancelled"] = "in_progress"
    completed_at: int | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    model: str = ""
    output: list[OutputItem] = []
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"effort": None, "summary": None}
    )
    store: bool = True
    temperature: float = 1.0
    text: ResponseText = msgspec.field(
        default_factory=lambda: ResponseText(format={"type": "text"})
    )
    tool_choice: Any = "auto"
    tools: list[dict[str, Any]] = []
    top_p: float = 1.0
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = {}
    background: bool = False
    service_tier: str = "default"
    top_logprobs: int = 0
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # -- ragserve addition: the passages the answer was given (as in chat's `sources`) --
    sources: list[Source] = []


class ResponseDeleted(Response):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class InputItemList(Response):
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool
    object: Literal["list"] = "list"


# -- stream events (each one line of SSE `data`, with `event: <type>`) -----------------------
class Event(Response, tag_field="type"):
    sequence_number: int


class ResponseCreated(Event, tag="response.created"):
    response: ResponseObject


class ResponseInProgress(Event, tag="response.in_progress"):
    response: ResponseObject


class ResponseCompleted(Event, tag="response.completed"):
    response: ResponseObject


class ResponseIncomplete(Event, tag="response.incomplete"):
    response: ResponseObject


class ResponseFailed(Event, tag="response.failed"):
    response: ResponseObject


class ItemAdded(Event, tag="response.output_item.added"):
    output_index: int
    item: OutputItem


class ItemDone(Event, tag="response.output_item.done"):
    output_index: int
    item: OutputItem


class PartAdded(Event, tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class PartDone(Event, tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class TextDeltaEvent(Event, tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = []


class TextDone(Event, tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = []


class AnnotationAdded(Event, tag="response.output_text.annotation.added"):
    item_id: str
    output_index: int
    content_index: int
    annotation_index: int
    annotation: Annotation


class ArgumentsDelta(Event, tag="response.function_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str


class ArgumentsDone(Event, tag="response.function_call_arguments.done"):
    item_id: str
    output_index: int
    name: str
    arguments: str


class SearchInProgress(Event, tag="response.file_search_call.in_progress"):
    item_id: str
    output_index: int


class SearchSearching(Event, tag="response.file_search_call.searching"):
    item_id: str
    output_index: int


class SearchCompleted(Event, tag="response.file_search_call.completed"):
    item_id: str
    output_index: int


StreamEvent = (
    ResponseCreated
    | ResponseInProgress
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | ItemAdded
    | ItemDone
    | PartAdded
    | PartDone
    | TextDeltaEvent
    | TextDone
    | AnnotationAdded
    | ArgumentsDelta
    | ArgumentsDone
    | SearchInProgress
    | SearchSearching
    | SearchCompleted
)
RESPONSE_TYPES = [
    ResponseRequest,
    ResponseObject,
    ResponseDeleted,
    InputItemList,
    InputText,
    MessageItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    SkippedItem,
    FunctionTool,
    FileSearchTool,
    NamespaceTool,
    HostedTool,
    *StreamEvent.__args__,  # type: ignore[attr-defined]
]
