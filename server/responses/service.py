"""The Responses API on the chat pipeline: a request becomes a chat request (history from a
stored response first), ChatService admits and runs it, and one `Render` turns its events
into Responses stream events and the final Response object, for both shapes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import msgspec
import structlog

from ragserve.engine import Finished, TextDelta
from ragserve.errors import ContextLengthExceeded, InvalidRequest, NotFound

from ..access.keys import LOCAL, Principal
from ..chat.protocol import MAX_MESSAGES, ChatCompletionRequest, DeltaToolCall
from ..chat.service import ChatService, Cited, Prepared
from ..chat.tool_calls import CallDelta
from ..generation import KEEPALIVE_S
from ..library import Library
from ..sse import KEEPALIVE, with_keepalive
from ..state import AppState
from .protocol import (
    AnnotationAdded,
    ArgumentsDelta,
    ArgumentsDone,
    Event,
    FileCitation,
    FileSearchCall,
    FileSearchResult,
    FunctionCallItem,
    IncompleteDetails,
    InputItem,
    InputTokensDetails,
    ItemAdded,
    ItemDone,
    MessageItem,
    OutputFunctionCall,
    OutputMessage,
    OutputText,
    OutputTokensDetails,
    PartAdded,
    PartDone,
    ResponseCompleted,
    ResponseCreated,
    ResponseError,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    ResponseObject,
    ResponseRequest,
    ResponseText,
    ResponseUsage,
    SearchCompleted,
    SearchInProgress,
    SearchSearching,
    TextDeltaEvent,
    TextDone,
    UrlCitationAnnotation,
    content_text,
    messages_of,
)
from .store import StoredResponses, open_response_store

log = structlog.get_logger(__name__)
_encoder = msgspec.json.Encoder()


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class Turn:
    """An admitted response: the chat generation behind it and what it echoes and stores."""

    prepared: Prepared
    request: ResponseRequest
    response: ResponseObject  # in progress: the echoed fields, no output yet
    items: list[dict[str, Any]]  # this request's input items, with ids
    history: list[dict[str, Any]]  # chat messages before this turn's output
    search: FileSearchCall | None = None
    filenames: dict[str, str] = field(default_factory=dict)  # file id -> upload's name


def _may_see(principal: Principal, owner: str | None) -> bool:
    return principal.name is None or principal.grant.admin or owner == principal.name


class ResponseService:
    def __init__(self, state: AppState, chat: ChatService, library: Library) -> None:
        self.state = state
        self.chat = chat
        self.library = library

    @cached_property
    def store(self) -> StoredResponses | None:
        s = self.state.settings
        days = s.response_retention_days
        if days <= 0:
            return None
        return open_response_store(s.retrieval.store, s.data, days * 86400)

    def close(self) -> None:
        if "store" in self.__dict__ and self.store is not None:
            self.store.close()

    # -- stored responses --------------------------------------------------------------
    async def stored(self, rid: str, param: str | None = None, principal: Principal = LOCAL):
        """A stored response, for its creator (and admins) only: others get the 404 of one
        that does not exist."""
        found = await asyncio.to_thread(self.store.get, rid) if self.store else None
        if found is not None and not _may_see(principal, found.owner):
            found = None
        if found is None:
            raise NotFound(f"No response with id '{rid}' is stored", param=param)
        return found

    async def delete(self, rid: str, principal: Principal = LOCAL) -> bool:
        await self.stored(rid, None, principal)
        deleted = await asyncio.to_thread(self.store.delete, rid) if self.store else False
        if not deleted:
            raise NotFound(f"No response with id '{rid}' is stored")
        return True

    async def input_items(
        self, rid: str, after: str | None, limit: int, order: str, principal: Principal = LOCAL
    ) -> tuple[list[dict[str, Any]], bool]:
        await self.stored(rid, None, principal)
        assert self.store is not None
        return await asyncio.to_thread(self.store.items, rid, after, limit, order)

    # -- admission ---------------------------------------------------------------------
    async def prepare(
        self, req: ResponseRequest, request_id: str, base_url: str, principal: Principal = LOCAL
    ) -> Turn:
        """Everything that can fail before the first byte, ending with the engine
        accepting the generation (429 otherwise), as for chat."""
        if req.include and "message.output_text.logprobs" in req.include:
            raise InvalidRequest("logprobs are not supported by this server", param="include")
        history: list[dict[str, Any]] = []
        if req.previous_response_id:
            previous = await self.stored(
                req.previous_response_id, "previous_response_id", principal
            )
            history = previous.history
        items = req.input_items()
        if not items:
            raise InvalidRequest("input must contain at least one item", param="input")
        chat_req = req.chat_request(history)
        search = req.file_search()
        threshold = (
            search.ranking_options.score_threshold
            if search is not None and search.ranking_options
            else None
        )
        while True:
            try:
                prepared = await self.chat.prepare(
                    chat_req,
                    request_id,
                    base_url,
                    retrieval=req.retrieval(),
                    threshold=threshold,
                    principal=principal,
                )
                break
            except ContextLengthExceeded as exc:
                shorter = _truncated(chat_req) if req.truncation == "auto" else None
                if shorter is None:
                    exc.param = "input"  # the Responses name of what is too long
                    raise
                chat_req = shorter
        sampling = prepared.request.params
        fmt = req.text.format if req.text and req.text.format else None
        response = ResponseObject(
            id=new_id("resp"),
            created_at=int(time.time()),
            instructions=req.instructions,
            max_output_tokens=req.max_output_tokens,
            max_tool_calls=req.max_tool_calls,
            model=prepared.model,
            parallel_tool_calls=req.parallel_tool_calls is not False,
            previous_response_id=req.previous_response_id,
            reasoning=msgspec.to_builtins(req.reasoning)
            if req.reasoning
            else {"effort": None, "summary": None},
            store=req.store and self.store is not None,
            temperature=sampling.temperature,
            text=ResponseText(
                format={k: v for k, v in msgspec.to_builtins(fmt).items() if v is not None}
                if fmt
                else {"type": "text"}
            ),
            tool_choice=msgspec.to_builtins(req.tool_choice) if req.tool_choice else "auto",
            tools=[msgspec.to_builtins(t) for t in req.typed_tools()],
            top_p=sampling.top_p,
            truncation=req.truncation or "disabled",
            user=req.user,
            metadata=req.metadata or {},
            prompt_cache_key=req.prompt_cache_key,
            safety_identifier=req.safety_identifier,
            sources=prepared.sources,
        )
        turn = Turn(
            prepared,
            req,
            response,
            [item_dict(item) for item in items],
            history + messages_of(items),
        )
        if search is not None and prepared.query is not None:
            turn.filenames = await asyncio.to_thread(self._filenames, prepared)
            turn.search = self._search_call(turn, prepared)
        return turn

    def _filenames(self, p: Prepared) -> dict[str, str]:
        catalog = self.library.catalog
        out = {}
        for s in p.sources:
            record = catalog.file(s.file_id) if s.file_id else None
            if record is not None:
                out[record.id] = record.filename
        return out

    def _search_call(self, turn: Turn, p: Prepared) -> FileSearchCall:
        include = turn.request.include or ()
        results = None
        if "file_search_call.results" in include:
            results = []
            for source, hit in zip(p.sources, p.hits, strict=False):
                record = p.records.get(source.file_id or source.document)
                attributes = dict(record.attributes) if record else {}
                if source.page is not None:
                    attributes["ragserve.page"] = source.page
                    attributes["ragserve.page_end"] = source.page_end
                if source.location is not None:
                    attributes["ragserve.location"] = source.location
                if source.url:
                    attributes["ragserve.url"] = source.url
                attributes["ragserve.origin"] = source.origin
                if source.ocr_confidence is not None:
                    attributes["ragserve.ocr_confidence"] = source.ocr_confidence
                results.append(
                    FileSearchResult(
                        file_id=source.file_id or "",
                        filename=turn.filenames.get(source.file_id or "", source.document),
                        score=source.score,
                        text=hit.text,
                        attributes=attributes,
                    )
                )
        assert p.query is not None
        return FileSearchCall(
            id=new_id("fs"), queries=[p.query], status="completed", results=results
        )

    # -- answering ---------------------------------------------------------------------
    async def complete(self, turn: Turn) -> ResponseObject:
        render = Render(turn)
        render.start()
        async for event in self.chat.events(turn.prepared):
            render.feed(event)
        await self._keep(turn, render.response)
        return render.response

    async def stream(self, turn: Turn) -> AsyncIterator[bytes]:
        render = Render(turn)
        try:
            for first in render.start():
                yield sse(first)
            async for event in with_keepalive(self.chat.events(turn.prepared), KEEPALIVE_S):
                if event is None:
                    yield KEEPALIVE
                    continue
                frames = render.feed(event)
                if isinstance(event, Finished):  # kept before the client hears it is done
                    await self._keep(turn, render.response)
                for out in frames:
                    yield sse(out)
        except Exception as exc:
            log.warning("responses.stream_failed", error=str(exc))
            failed = render.fail(exc)
            await self._keep(turn, render.response)
            yield sse(failed)

    async def _keep(self, turn: Turn, response: ResponseObject) -> None:
        if not response.store or self.store is None or response.status == "cancelled":
            return
        history = turn.history + output_messages(response)
        await asyncio.to_thread(
            self.store.put,
            response,
            turn.items,
            history[-MAX_MESSAGES:],
            turn.prepared.principal.name,
        )


def sse(event: Event) -> bytes:
    kind = type(event).__struct_config__.tag
    return b"event: " + str(kind).encode() + b"\ndata: " + _encoder.encode(event) + b"\n\n"


def _truncated(req: ChatCompletionRequest) -> ChatCompletionRequest | None:
    """The request without its oldest turn (`truncation: auto`); None when only the last
    user turn (and the system prompt) is left."""
    messages = list(req.messages)
    first = next((i for i, m in enumerate(messages) if m.role not in ("system", "developer")), None)
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    if first is None or first >= last_user:
        return None
    end = first + 1
    while end < last_user and messages[end].role not in ("user",):
        end += 1  # the answer, calls and results that belong to the dropped turn
    log.info("responses.truncated", dropped=end - first)
    return msgspec.structs.replace(req, messages=messages[:first] + messages[end:])


def item_dict(item: InputItem) -> dict[str, Any]:
    """An input item as `input_items` lists it: typed, with an id."""
    if isinstance(item, MessageItem):
        kind = "output_text" if item.role == "assistant" else "input_text"
        text = content_text(item.content, "input")
        return {
            "id": item.id or new_id("msg"),
            "type": "message",
            "role": item.role,
            "content": [{"type": kind, "text": text}],
            "status": "completed",
        }
    if isinstance(item, FunctionCallItem):
        return {
            "id": item.id or new_id("fc"),
            "type": "function_call",
            "call_id": item.call_id,
            "name": item.name,
            "arguments": item.arguments,
            "status": "completed",
        }
    output = item.output if isinstance(item.output, str) else content_text(item.output, "input")
    return {
        "id": item.id or new_id("fco"),
        "type": "function_call_output",
        "call_id": item.call_id,
        "output": output,
        "status": "completed",
    }


def output_messages(response: ResponseObject) -> list[dict[str, Any]]:
    """The response's output as chat messages (what the next turn's history continues)."""
    items: list[InputItem] = []
    for item in response.output:
        if isinstance(item, OutputMessage):
            text = "".join(part.text for part in item.content)
            items.append(MessageItem(role="assistant", content=text))
        elif isinstance(item, OutputFunctionCall):
            items.append(
                FunctionCallItem(
                    type="function_call",
                    call_id=item.call_id,
                    name=item.name,
                    arguments=item.arguments,
                )
            )
    return messages_of(items)


class Render:
    """Chat events -> Responses stream events, building the Response as they go."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.response = msgspec.structs.replace(turn.response, output=[])
        self.seq = 0
        self.message: OutputMessage | None = None  # the open message item
        self.text: list[str] = []
        self.calls: dict[int, tuple[int, OutputFunctionCall]] = {}  # call index -> output index
        self.open_call: int | None = None
        self.namespaces = turn.request.namespaces()

    def _event(self, cls: type[Event], **fields: Any) -> Event:
        event = cls(sequence_number=self.seq, **fields)
        self.seq += 1
        return event

    def _snapshot(self) -> ResponseObject:
        return msgspec.structs.replace(self.response, output=list(self.response.output))

    def start(self) -> list[Event]:
        out = [
            self._event(ResponseCreated, response=self._snapshot()),
            self._event(ResponseInProgress, response=self._snapshot()),
        ]
        search = self.turn.search
        if search is not None:
            at = len(self.response.output)
            pending = msgspec.structs.replace(search, status="in_progress", results=None)
            out.append(self._event(ItemAdded, output_index=at, item=pending))
            for cls in (SearchInProgress, SearchSearching, SearchCompleted):
                out.append(self._event(cls, item_id=search.id, output_index=at))
            self.response.output.append(search)
            out.append(self._event(ItemDone, output_index=at, item=search))
        return out

    def feed(self, event: Any) -> list[Event]:
        if isinstance(event, TextDelta):
            return self._text(event.text) if event.text else []
        if isinstance(event, CallDelta):
            out: list[Event] = []
            for piece in event.calls:
                out += self._call(piece)
            return out
        if isinstance(event, Cited):
            return self._cited(event)
        assert isinstance(event, Finished)
        return self._finish(event)

    # -- the message -------------------------------------------------------------------
    def _open_message(self) -> list[Event]:
        out = self._close_call()
        self.message = OutputMessage(id=new_id("msg"), status="in_progress", content=[])
        self.text = []
        at = len(self.response.output)
        self.response.output.append(self.message)
        part = OutputText(text="")
        self.message.content.append(part)
        out.append(
            self._event(
                ItemAdded,
                output_index=at,
                item=msgspec.structs.replace(self.message, content=[]),
            )
        )
        out.append(
            self._event(
                PartAdded, item_id=self.message.id, output_index=at, content_index=0, part=part
            )
        )
        return out

    def _text(self, text: str) -> list[Event]:
        out = [] if self.message is not None else self._open_message()
        assert self.message is not None
        self.text.append(text)
        out.append(
            self._event(
                TextDeltaEvent,
                item_id=self.message.id,
                output_index=self._index(self.message),
                content_index=0,
                delta=text,
            )
        )
        return out

    def _index(self, item: Any) -> int:
        return next(i for i, o in enumerate(self.response.output) if o is item)

    def _cited(self, cited: Cited) -> list[Event]:
        if self.message is None:
            return []
        part = self.message.content[0]
        by_url = {s.url: s for s in self.turn.prepared.sources if s.url}
        out = []
        for a in cited.annotations:
            c = a.url_citation
            source = by_url.get(c.url)
            added: list[Any] = []
            if source is not None and source.file_id:
                name = self.turn.filenames.get(source.file_id, source.document)
                added.append(FileCitation(file_id=source.file_id, filename=name, index=c.end_index))
            added.append(
                UrlCitationAnnotation(
                    url=c.url, title=c.title, start_index=c.start_index, end_index=c.end_index
                )
            )
            for annotation in added:
                part.annotations.append(annotation)
                out.append(
                    self._event(
                        AnnotationAdded,
                        item_id=self.message.id,
                        output_index=self._index(self.message),
                        content_index=0,
                        annotation_index=len(part.annotations) - 1,
                        annotation=annotation,
                    )
                )
        return out

    def _close_message(self, status: str) -> list[Event]:
        message = self.message
        if message is None:
            return []
        self.message = None
        at = self._index(message)
        text = "".join(self.text)
        part = msgspec.structs.replace(message.content[0], text=text)
        done = msgspec.structs.replace(message, status=status, content=[part])
        self.response.output[at] = done
        return [
            self._event(TextDone, item_id=message.id, output_index=at, content_index=0, text=text),
            self._event(PartDone, item_id=message.id, output_index=at, content_index=0, part=part),
            self._event(ItemDone, output_index=at, item=done),
        ]

    # -- function calls ----------------------------------------------------------------
    def _call(self, piece: DeltaToolCall) -> list[Event]:
        assert piece.function is not None
        out: list[Event] = []
        args = piece.function.arguments or ""
        if piece.id is not None:  # a new call
            out += self._close_message("completed") + self._close_call()
            call = OutputFunctionCall(
                id=new_id("fc"),
                call_id=piece.id,
                name=piece.function.name or "",
                arguments="",
                status="in_progress",
                namespace=self.namespaces.get(piece.function.name or ""),
            )
            at = len(self.response.output)
            self.response.output.append(call)
            self.calls[piece.index] = (at, call)
            self.open_call = piece.index
            out.append(self._event(ItemAdded, output_index=at, item=call))
        at, call = self.calls[piece.index]
        if args:
            call = msgspec.structs.replace(call, arguments=call.arguments + args)
            self.calls[piece.index] = (at, call)
            self.response.output[at] = call
            out.append(self._event(ArgumentsDelta, item_id=call.id, output_index=at, delta=args))
        return out

    def _close_call(self, status: Literal["completed", "incomplete"] = "completed") -> list[Event]:
        """Close the call being written; `incomplete`: the token limit cut it (its
        arguments may not be whole JSON)."""
        if self.open_call is None:
            return []
        at, call = self.calls[self.open_call]
        self.open_call = None
        done = msgspec.structs.replace(call, status=status)
        self.response.output[at] = done
        return [
            self._event(
                ArgumentsDone,
                item_id=call.id,
                output_index=at,
                name=call.name,
                arguments=call.arguments,
            ),
            self._event(ItemDone, output_index=at, item=done),
        ]

    # -- the end -----------------------------------------------------------------------
    def _finish(self, done: Finished) -> list[Event]:
        incomplete = done.finish_reason == "length"
        out: list[Event] = []
        if not self.response.output or all(
            isinstance(o, FileSearchCall) for o in self.response.output
        ):
            out += self._open_message()  # an empty answer is still a message
        out += self._close_message("incomplete" if incomplete else "completed")
        out += self._close_call("incomplete" if incomplete else "completed")
        status = "incomplete" if incomplete else "completed"
        if done.finish_reason == "cancelled":
            status = "cancelled"
        self.response = msgspec.structs.replace(
            self.response,
            status=status,
            completed_at=int(time.time()),
            incomplete_details=IncompleteDetails(reason="max_output_tokens")
            if incomplete
            else None,
            usage=ResponseUsage(
                input_tokens=done.prompt_tokens,
                input_tokens_details=InputTokensDetails(cached_tokens=done.cached_tokens),
                output_tokens=done.completion_tokens,
                output_tokens_details=OutputTokensDetails(),
                total_tokens=done.prompt_tokens + done.completion_tokens,
            ),
        )
        cls = ResponseIncomplete if incomplete else ResponseCompleted
        out.append(self._event(cls, response=self._snapshot()))
        return out

    def fail(self, exc: Exception) -> Event:
        from ..errors import to_ragserve_error

        err = to_ragserve_error(exc)
        self.response = msgspec.structs.replace(
            self.response,
            status="failed",
            error=ResponseError(code=err.code or "server_error", message=err.message),
        )
        return self._event(ResponseFailed, response=self._snapshot())
