"""Chat completions: retrieval, prompt packing, generation; one event flow for both shapes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from ragserve.engine import (
    Finished,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    ToolCallsDelta,
    ToolFormat,
    UpstreamCall,
)
from ragserve.retrieval.search import Filters, Hit, Mode, document_file_id, merge_places

from .. import rag
from ..access.keys import LOCAL, Principal
from ..catalog import StoreFileRecord
from ..citations import content_url, url_citations
from ..generation import Admitted, stream_frames
from ..library import Library
from ..protocol import (
    Annotation,
    Filter,
    Source,
    logit_bias_of,
    sampling_from,
    usage_of,
    validate_filter,
    wire_logit_bias,
)
from ..sse import frame
from ..state import AppState
from ..vector_stores.service import DEFAULT_STORE
from .protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    DeltaToolCall,
    ToolPlan,
)
from .tool_calls import Assembled, CallDelta, ChatEvent, with_tool_calls

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Search:
    query: str
    top_k: int
    filters: Filters | None
    mode: Mode
    rerank: bool | None
    stores: list[str] | None = None  # vector stores (None: the server's own index)
    attributes: Filter | None = None  # OpenAI attribute filters over the stores' files
    threshold: float | None = None  # the stores' 0..1 score below which hits are dropped
    principal: Principal = LOCAL  # who asks: retrieval stays inside the stores it may read


@dataclass
class Prepared(Admitted):
    sources: list[Source] = field(default_factory=list)
    append_sources: bool = False
    tools: ToolFormat | None = None  # the family whose calls are parsed out of the text
    parallel: bool = True
    query: str | None = None  # what was searched (None: no search this turn)
    hits: list[Hit] = field(default_factory=list)  # the passages behind `sources`, whole
    # the stores' records of the hits' files, by file id (a corpus document's: by path)
    records: dict[str, StoreFileRecord] = field(default_factory=dict)
    principal: Principal = LOCAL


class Cited(msgspec.Struct, frozen=True):
    """The answer's citations, once its text is complete (before it finishes)."""

    annotations: list[Annotation]


def constrained(req: ChatCompletionRequest, plan: ToolPlan | None) -> bool:
    """Whether the answer must be JSON or a call (no footer may follow it)."""
    return req.response_schema() is not None or (plan is not None and plan.choice != "auto")


def upstream_call(
    req: ChatCompletionRequest, plan: ToolPlan | None, messages: list[dict[str, Any]]
) -> UpstreamCall:
    """The request for an upstream server: the packed conversation (sources in the last
    user turn), the tools and output format as the client gave them."""
    choice: str | dict[str, Any] | None = None
    if plan is not None and plan.choice not in ("auto", "required"):
        choice = {"type": "function", "function": {"name": plan.choice}}
    elif plan is not None:
        choice = plan.choice
    fmt = req.response_format
    bias = req.logit_bias
    return UpstreamCall(
        messages=messages,
        tools=plan.tools if plan is not None else None,
        tool_choice=choice,
        parallel_tool_calls=req.parallel_tool_calls if plan is not None else None,
        response_format=msgspec.to_builtins(fmt) if fmt and fmt.type != "text" else None,
        logit_bias=wire_logit_bias(bias),
    )


class ChatService:
    def __init__(self, state: AppState, library: Library) -> None:
        self.state = state
        self.library = library
        self.memory = rag.TurnMemory()

    async def prepare(
        self,
        req: ChatCompletionRequest,
        request_id: str,
        base_url: str = "http://localhost",
        *,
        retrieval: bool | None = None,
        threshold: float | None = None,
        principal: Principal = LOCAL,
    ) -> Prepared:
        """Everything that can fail before the first byte (errors here are plain JSON),
        ending with the engine accepting the request or refusing it (429). `retrieval`
        overrides what the model id says (a Responses `file_search` tool decides it)."""
        started = time.perf_counter()
        req.validate()
        state, s = self.state, self.state.settings
        # one hop to a worker thread for everything before the engine: the model and store
        # lookups (the catalog), the grammar, retrieval and packing (a hop costs a GIL
        # hand-off, up to a switch interval when other threads are busy)
        sampling, packed, records, search, plan = await asyncio.to_thread(
            self._plan, req, retrieval, threshold, s.public_url or base_url, principal
        )
        engine, options = state.engine, req.rag
        state.metrics.sources_used.observe(len(packed.sources))
        if len(packed.sources) < packed.retrieved:
            log.info("rag.budget", retrieved=packed.retrieved, used=len(packed.sources))
        append = (
            s.append_sources
            if options is None or options.append_sources is None
            else options.append_sources
        )
        remote = engine.upstream is not None
        request = GenerationRequest(
            packed.prompt_tokens,
            msgspec.structs.replace(sampling, max_tokens=packed.max_tokens),
            request_id,
            upstream_call(req, plan, packed.messages) if remote else None,
        )
        prepared = Prepared(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=req.model or state.model_id,
            request=request,
            handle=state.submit(request, principal),  # QueueFull: 429 before the response starts
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
            started=started,
            sources=packed.sources,
            append_sources=append
            and bool(packed.sources)
            and (sampling.grammar is None or bool(sampling.grammar_triggers))
            and not (remote and constrained(req, plan)),
            # an upstream parses calls itself (ToolCallsDelta); here they come out of the text
            tools=engine.tool_format if plan is not None and not remote else None,
            parallel=plan.parallel if plan is not None else True,
            query=search.query if search is not None else None,
            hits=packed.hits,
            records=records,
            principal=principal,
        )
        await prepared.handle.accepted()  # an upstream's refusal is a status, not a stream
        return prepared

    def _plan(
        self,
        req: ChatCompletionRequest,
        retrieval: bool | None,
        threshold: float | None,
        base_url: str,
        principal: Principal,
    ) -> tuple[
        SamplingParams, rag.Packed, dict[str, StoreFileRecord], Search | None, ToolPlan | None
    ]:
        state, s = self.state, self.state.settings
        rag_on = state.resolve_chat_model(req.model, principal)
        engine = state.engine  # 503 before any work while the model is still loading
        logit_bias_of(req.logit_bias, engine.n_vocab)  # 400 for ids not in the vocabulary
        messages = req.template_messages()
        plan = req.tool_plan()
        options = req.rag
        if options is not None and not options.enabled:
            rag_on = False
        if retrieval is not None:
            rag_on = retrieval
        elif rag_on and rag.is_background_call(messages):
            rag_on = False
            log.info("rag.skipped", reason="background call")
        search: Search | None = None
        tool_turn = messages[-1]["role"] == "tool"
        if rag_on and (not tool_turn or (options is not None and options.on_tool_results)):
            top_k = (options.top_k if options and options.top_k else None) or s.rag_top_k
            filters = (
                Filters(documents=options.documents) if options and options.documents else None
            )
            mode: Mode = options.mode if options else "hybrid"
            rerank = options.rerank if options else None
            named = state.store_of(req.model, principal)
            stores = options.vector_store_ids if options else None
            if options is not None and options.filters is not None:
                validate_filter(options.filters)
            search = Search(
                rag.search_query(messages),
                top_k,
                filters,
                mode,
                rerank,
                stores or ([named] if named else None),
                options.filters if options else None,
                threshold,
                principal,
            )
        sampling, packed, records = self._build(
            req, messages, search, rag_on, plan, base_url, principal
        )
        return sampling, packed, records, search, plan

    def _build(
        self,
        req: ChatCompletionRequest,
        messages: list[dict[str, Any]],
        search: Search | None,
        rag_on: bool,
        plan: ToolPlan | None,
        base_url: str,
        principal: Principal = LOCAL,
    ) -> tuple[SamplingParams, rag.Packed, dict[str, StoreFileRecord]]:
        state, s = self.state, self.state.settings
        engine = state.engine
        if engine.upstream is not None:  # tools and response_format are the upstream's
            sampling = sampling_from(req, 1)
        else:  # the grammar: bounded, then compiled and cached (400 before any work)
            sampling = req.sampling_params(1, engine.tool_format if plan is not None else None)
        if sampling.grammar:
            engine.check_grammar(sampling.grammar, "tools" if plan else "response_format")
        hits: list[Hit] = []
        records: dict[str, StoreFileRecord] = {}
        if search is not None:
            t0 = time.perf_counter()
            hits, records = self._search(search)
            hits = merge_places(hits)
            elapsed = time.perf_counter() - t0
            state.metrics.retrieval.observe(elapsed)
            log.info(
                "retrieval.done",
                k=search.top_k,
                hits=len(hits),
                ms=round(elapsed * 1000, 1),
                documents=sorted({h.document for h in hits}),
            )
        packed = rag.pack(
            engine,
            messages,
            hits,
            req.requested_max_tokens(),
            s.default_max_tokens,
            self.memory.scoped(principal.name, search.stores if search else None)
            if rag_on
            else None,
            plan.tools if plan is not None else None,
        )
        if packed.sources:  # new ones, or remembered for a turn after tool calls
            packed.sources = self._linked(packed.sources, base_url)
        return sampling, packed, records

    def _search(self, search: Search) -> tuple[list[Hit], dict[str, StoreFileRecord]]:
        """Hits from the server's index, or from vector stores (best first across them),
        and the stores' records of the documents they come from."""
        stores = search.stores
        if search.principal.name is not None:  # keys on: only what this key may read
            stores = self.library.visible.search_stores(search.principal, stores)
            if stores == []:
                return [], {}
        if stores is None and search.attributes is None:
            retriever = self.state.retriever
            found = retriever.search(
                search.query, search.top_k, search.filters, search.mode, search.rerank
            )
            return found, {}
        library = self.library.stores
        pairs = []
        for sid in stores or [DEFAULT_STORE]:
            pairs += library.search(
                sid, search.query, search.top_k, search.attributes, search.threshold
            )
        pairs.sort(key=lambda pair: -pair[1].score)
        pairs = pairs[: search.top_k]
        return [h for _, h in pairs], {h.file_id or h.document: r for r, h in pairs}

    def _linked(self, sources: list[Source], base_url: str) -> list[Source]:
        """Sources with their file ids and links to the PDF at the page."""
        wanted = (s.document for s in sources if s.file_id is None)
        rows = self.state.retriever.documents(wanted)
        signer = self.state.signer
        out = []
        for s in sources:
            row = rows.get(s.document)
            fid = s.file_id or (document_file_id(row) if row else None)
            if fid is None:
                out.append(s)
                continue
            url = content_url(base_url, fid, s.page, signer)
            out.append(msgspec.structs.replace(s, file_id=fid, url=url))
        return out

    async def events(self, p: Prepared) -> AsyncIterator[ChatEvent | Cited]:
        """The engine's events, tool calls parsed out, then (not after calls: that turn is
        not the answer yet) the sources footer as a last text delta and the citations."""
        events: AsyncIterator[ChatEvent] = p.handle  # type: ignore[assignment]
        if p.tools is not None:
            events = with_tool_calls(p.handle, p.tools, p.parallel)  # type: ignore[arg-type]
        answer: list[str] = []
        called = False
        async for event in events:
            if isinstance(event, ToolCallsDelta):  # parsed by an upstream: OpenAI's shape
                event = CallDelta([msgspec.convert(c, DeltaToolCall) for c in event.calls])
            if isinstance(event, TextDelta):
                answer.append(event.text)
            elif isinstance(event, CallDelta):
                called = True
            elif not called and event.finish_reason != "cancelled":
                if p.append_sources:
                    footer = rag.sources_footer("".join(answer), p.sources)
                    answer.append(footer)
                    yield TextDelta(footer)
                cited = url_citations("".join(answer), p.sources)
                if cited:  # as soon as it is known: when the answer (and its [n]) is complete
                    yield Cited(cited)
            if isinstance(event, Finished):
                self._log_done(p, event)
            yield event

    def _log_done(self, p: Prepared, done: Finished) -> None:
        rate = (done.completion_tokens - 1) / done.decode_s if done.decode_s > 0 else 0.0
        log.info(
            "chat.done",
            finish=done.finish_reason,
            prompt_tokens=done.prompt_tokens,
            cached_tokens=done.cached_tokens,
            completion_tokens=done.completion_tokens,
            ttft_ms=round(done.ttft_s * 1000, 1),
            tok_s=round(rate, 1),
            sources=len(p.sources),
            total_ms=round((time.perf_counter() - p.started) * 1000),
        )

    async def complete(self, p: Prepared) -> ChatCompletion:
        answer = Assembled()
        done: Finished | None = None
        cited: list[Annotation] = []
        async for event in self.events(p):
            if isinstance(event, Finished):
                done = event
            elif isinstance(event, Cited):
                cited = event.annotations
            else:
                answer.add(event)
        assert done is not None
        return ChatCompletion(
            id=p.id,
            created=p.created,
            model=p.model,
            choices=[
                Choice(
                    index=0,
                    message=AssistantMessage(
                        content=answer.content(),
                        tool_calls=answer.tool_calls(),
                        annotations=cited,
                    ),
                    finish_reason=done.finish_reason,
                )
            ],
            usage=usage_of(done),
            sources=p.sources,
        )

    async def stream(self, p: Prepared) -> AsyncIterator[bytes]:
        def chunk(delta: Delta, finish: str | None = None, **extra) -> bytes:
            return frame(
                ChatCompletionChunk(
                    id=p.id,
                    created=p.created,
                    model=p.model,
                    choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
                    **extra,
                )
            )

        def delta(event: TextDelta | CallDelta | Cited) -> bytes:
            if isinstance(event, CallDelta):
                return chunk(Delta(tool_calls=event.calls))
            if isinstance(event, Cited):
                return chunk(Delta(annotations=event.annotations))
            return chunk(Delta(content=event.text))

        def finish(done: Finished) -> list[bytes]:
            frames = [chunk(Delta(), done.finish_reason)]
            if p.include_usage:
                frames.append(
                    frame(
                        ChatCompletionChunk(
                            id=p.id,
                            created=p.created,
                            model=p.model,
                            choices=[],
                            usage=usage_of(done),
                        )
                    )
                )
            return frames

        yield chunk(Delta(role="assistant", content=""), sources=p.sources)
        async for data in stream_frames(self.events(p), delta, finish, "chat"):
            yield data
