"""Legacy completions: the prompt as given (special tokens parsed), no retrieval."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import msgspec

from retrieval.errors import InvalidRequest

from .. import rag
from ..engine import GenerationRequest, TextDelta
from ..protocol import Usage, usage_of
from ..sse import DONE, KEEPALIVE, error_frame, frame, with_keepalive
from ..state import AppState
from .protocol import Completion, CompletionChoice, CompletionRequest


class PreparedCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    request: GenerationRequest
    echo: str
    include_usage: bool


class CompletionService:
    def __init__(self, state: AppState) -> None:
        self.state = state

    def prepare(self, req: CompletionRequest, request_id: str) -> PreparedCompletion:
        req.validate()
        self.state.resolve_chat_model(req.model)
        engine = self.state.engine
        prompt = req.prompt_text()
        if req.suffix:
            fim = engine.fim_tokens()
            if fim is None or not isinstance(prompt, str):
                raise InvalidRequest(
                    "this model has no fill-in-the-middle tokens; 'suffix' is not supported",
                    param="suffix",
                )
            pre, suf, mid = fim
            tokens = [pre, *engine.tokenize(prompt), suf, *engine.tokenize(req.suffix), mid]
        elif isinstance(prompt, str):
            tokens = engine.tokenize(prompt)
        else:
            tokens = prompt
        if not tokens:
            raise InvalidRequest("'prompt' is empty", param="prompt")
        max_tokens = rag.plan_max_tokens(engine, len(tokens), req.max_tokens, 16)
        return PreparedCompletion(
            id=f"cmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=req.model or self.state.model_id,
            request=GenerationRequest(tokens, req.sampling_params(max_tokens), request_id),
            echo=prompt if req.echo and isinstance(prompt, str) else "",
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
        )

    def _chunk(
        self,
        p: PreparedCompletion,
        text: str,
        finish: str | None = None,
        usage: Usage | None = None,
        choices: bool = True,
    ) -> Completion:
        return Completion(
            id=p.id,
            created=p.created,
            model=p.model,
            usage=usage,
            choices=[CompletionChoice(text=text, finish_reason=finish)] if choices else [],
        )

    async def complete(self, p: PreparedCompletion) -> Completion:
        parts = [p.echo]
        done = None
        async for event in self.state.engine.generate(p.request):
            if isinstance(event, TextDelta):
                parts.append(event.text)
            else:
                done = event
        assert done is not None
        return self._chunk(p, "".join(parts), done.finish_reason, usage_of(done))

    async def stream(self, p: PreparedCompletion) -> AsyncIterator[bytes]:
        try:
            if p.echo:
                yield frame(self._chunk(p, p.echo))
            events = self.state.engine.generate(p.request)
            async for event in with_keepalive(events, 10.0):
                if event is None:
                    yield KEEPALIVE
                elif isinstance(event, TextDelta):
                    yield frame(self._chunk(p, event.text))
                else:
                    yield frame(self._chunk(p, "", event.finish_reason))
                    if p.include_usage:
                        yield frame(self._chunk(p, "", usage=usage_of(event), choices=False))
            yield DONE
        except Exception as exc:
            yield error_frame(exc)
