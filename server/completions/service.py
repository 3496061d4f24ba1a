"""Legacy completions: the prompt as given (special tokens parsed), no retrieval."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ragserve.engine import Engine, Finished, GenerationRequest, UpstreamCall
from ragserve.errors import ContextLengthExceeded, InvalidRequest

from .. import rag
from ..access.keys import LOCAL, Principal
from ..generation import Admitted, collect, stream_frames
from ..protocol import Usage, logit_bias_of, usage_of, wire_logit_bias
from ..sse import frame
from ..state import AppState
from .protocol import Completion, CompletionChoice, CompletionRequest

MAX_SPECIAL_TOKENS = 1024  # llama.cpp's special-token pass is quadratic in their number


@dataclass
class PreparedCompletion(Admitted):
    echo: str = ""


def prompt_tokens(engine: Engine, req: CompletionRequest) -> list[int]:
    """The prompt as token ids: bounded, validated, tokenized (call it off the event loop)."""
    prompt = req.prompt_text()
    if isinstance(prompt, list):
        bad = next((t for t in prompt if not 0 <= t < engine.n_vocab), None)
        if bad is not None:
            raise InvalidRequest(
                f"token id {bad} is outside this model's vocabulary (0..{engine.n_vocab - 1})",
                param="prompt",
            )
        return prompt
    texts = [prompt, req.suffix or ""]
    chars = sum(map(len, texts))
    if chars > engine.n_ctx * 16:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {engine.n_ctx} tokens; the prompt has "
            f"{chars} characters, far more than that.",
            param="prompt",
        )
    specials = sum(len(engine.neutralize(t)) - len(t) for t in texts)  # one joiner each
    if specials > MAX_SPECIAL_TOKENS:
        raise InvalidRequest(
            f"the prompt contains {specials} control tokens; at most {MAX_SPECIAL_TOKENS}",
            param="prompt",
        )
    if req.suffix:
        fim = engine.fim_tokens()
        if fim is None:
            raise InvalidRequest(
                "this model has no fill-in-the-middle tokens; 'suffix' is not supported",
                param="suffix",
            )
        pre, suf, mid = fim
        return [pre, *engine.tokenize(prompt), suf, *engine.tokenize(req.suffix), mid]
    return engine.tokenize(prompt)


class CompletionService:
    def __init__(self, state: AppState) -> None:
        self.state = state

    async def prepare(
        self, req: CompletionRequest, request_id: str, principal: Principal = LOCAL
    ) -> PreparedCompletion:
        req.validate()
        await asyncio.to_thread(self.state.resolve_chat_model, req.model, principal)
        engine = self.state.engine
        logit_bias_of(req.logit_bias, engine.n_vocab)  # 400 for ids not in the vocabulary
        tokens = await asyncio.to_thread(prompt_tokens, engine, req)
        if not tokens:
            raise InvalidRequest("'prompt' is empty", param="prompt")
        max_tokens = rag.plan_max_tokens(engine, len(tokens), req.max_tokens, 16)
        call = None
        if engine.upstream is not None:  # the prompt as given: the upstream tokenizes it
            bias = req.logit_bias
            call = UpstreamCall(
                prompt=req.prompt_text(),
                logit_bias=wire_logit_bias(bias),
            )
        request = GenerationRequest(tokens, req.sampling_params(max_tokens), request_id, call)
        prompt = req.prompt
        prepared = PreparedCompletion(
            id=f"cmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=req.model or self.state.model_id,
            request=request,
            handle=self.state.submit(request, principal),  # QueueFull: 429 before it starts
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
            echo=prompt if req.echo and isinstance(prompt, str) else "",
        )
        await prepared.handle.accepted()  # an upstream's refusal is a status, not a stream
        return prepared

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
        text, done = await collect(p.handle)  # type: ignore[arg-type]
        return self._chunk(p, p.echo + text, done.finish_reason, usage_of(done))

    async def stream(self, p: PreparedCompletion) -> AsyncIterator[bytes]:
        def finish(done: Finished) -> list[bytes]:
            frames = [frame(self._chunk(p, "", done.finish_reason))]
            if p.include_usage:
                frames.append(frame(self._chunk(p, "", usage=usage_of(done), choices=False)))
            return frames

        if p.echo:
            yield frame(self._chunk(p, p.echo))
        async for data in stream_frames(
            p.handle,  # type: ignore[arg-type]
            lambda event: frame(self._chunk(p, event.text)),
            finish,
            "completions",
        ):
            yield data
