"""The generation engine: a GGUF model through llama-cpp-python, behind `Engine.generate`.

llama.cpp contexts are not thread-safe, so one worker thread owns the model and runs
requests in order from a bounded queue. The event loop only awaits token events, so
no request blocks another's stream; a full queue is refused (QueueFull) rather than
growing without bound, and a cancelled request stops at its next token.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import os
import queue
import random
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec
import structlog

from .errors import EngineFailed, QueueFull

log = structlog.get_logger(__name__)

FALLBACK_TEMPLATE = (  # ChatML, for GGUFs that carry no chat template
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


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
    grammar: str | None = None  # GBNF
    ignore_eos: bool = False  # benchmarks: generate exactly max_tokens


class GenerationRequest(msgspec.Struct, frozen=True):
    prompt_tokens: list[int]
    params: SamplingParams
    request_id: str = ""


class TextDelta(msgspec.Struct, frozen=True):
    text: str


class Finished(msgspec.Struct, frozen=True):
    finish_reason: str  # stop | length | cancelled
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ttft_s: float
    decode_s: float


GenerationEvent = TextDelta | Finished


class Engine(Protocol):
    """What the HTTP layer needs from a model."""

    model_id: str
    n_ctx: int

    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]: ...

    def render_chat(self, messages: list[dict[str, str]]) -> str: ...

    def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]: ...

    def fim_tokens(self) -> tuple[int, int, int] | None: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]: ...

    @property
    def queue_depth(self) -> int: ...


class StopMatcher:
    """Holds back text that might be the start of a stop string."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, stopped)."""
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        cut = min((i for s in self.stops if (i := self.pending.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self.pending = self.pending[:cut], ""
            return out, True
        hold = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(out) :]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class _Job:
    def __init__(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.loop = loop
        self.events: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        self.cancelled = threading.Event()
        self._text: list[str] = []
        self._text_lock = threading.Lock()

    def emit(self, event: GenerationEvent | BaseException) -> None:
        self._flush_text()
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def emit_text(self, text: str) -> None:
        """Queue text; the event loop is woken only when it has taken the previous text,
        so a busy loop gets fewer, larger deltas instead of one wake-up per token."""
        with self._text_lock:
            wake = not self._text
            self._text.append(text)
        if wake and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._deliver_text)

    def _deliver_text(self) -> None:  # runs on the event loop
        with self._text_lock:
            text, self._text = "".join(self._text), []
        if text:
            self.events.put_nowait(TextDelta(text))

    def _flush_text(self) -> None:
        with self._text_lock:
            pending = bool(self._text)
        if pending and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._deliver_text)


def default_gpu_layers() -> int:
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


class LlamaEngine:
    """One llama.cpp context driven by one worker thread; requests wait in a bounded queue."""

    def __init__(
        self,
        model_path: Path,
        *,
        model_id: str,
        n_ctx: int = 4096,
        n_gpu_layers: int | None = None,
        n_threads: int | None = None,
        n_batch: int = 512,
        max_queue: int = 16,
        flash_attn: bool = True,
    ) -> None:
        import llama_cpp

        if n_gpu_layers is None:
            n_gpu_layers = default_gpu_layers()
        # llama-cpp-python defaults to half the cores; prefill wants all of them.
        n_threads = n_threads or os.cpu_count() or 1
        started = time.perf_counter()
        self._llm = llama_cpp.Llama(
            str(model_path),
            n_ctx=n_ctx,
            n_gpu_layers=n_gpu_layers,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_batch=n_batch,
            flash_attn=flash_attn,
            verbose=False,
        )
        self._lib = llama_cpp
        self._pieces: dict[int, bytes] = {}
        # The worker needs the GIL between decode steps; with the default 5 ms switch
        # interval, the event loop thread can hold it for most of a token's time budget.
        sys.setswitchinterval(0.0005)
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self.model_id = model_id
        self.n_ctx = self._llm.n_ctx()
        meta = self._llm.metadata
        self._template_text = meta.get("tokenizer.chat_template") or FALLBACK_TEMPLATE
        self._add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
        self._bos = self._piece(self._llm.token_bos(), special=True)
        self._eos = self._piece(self._llm.token_eos(), special=True)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._formatter = Jinja2ChatFormatter(self._template_text, self._eos, self._bos)
        self._fim = tuple(
            int(meta[k])
            for k in (f"tokenizer.ggml.fim_{p}_token_id" for p in ("pre", "suf", "mid"))
            if k in meta
        )
        self._grammars: dict[str, Any] = {}
        # Called on the worker thread for every finished request, cancelled ones included.
        self.listeners: list[Callable[[GenerationRequest, Finished], None]] = []
        self._max_queue = max_queue
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._waiting = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._worker, name="llama-worker", daemon=True)
        self._thread.start()
        n_layer = llama_cpp.llama_model_n_layer(self._llm.model)
        offloaded = n_layer if n_gpu_layers < 0 else min(n_gpu_layers, n_layer)
        log.info(
            "engine.loaded",
            model=model_id,
            path=str(model_path),
            n_ctx=self.n_ctx,
            gpu_offload_supported=bool(llama_cpp.llama_supports_gpu_offload()),
            layers_offloaded=f"{offloaded}/{n_layer}" if n_gpu_layers else f"0/{n_layer}",
            seconds=round(time.perf_counter() - started, 2),
        )

    # -- tokens and templates -----------------------------------------------------------
    def _piece(self, token: int, special: bool = False) -> str:
        return self._piece_bytes(token, special).decode("utf-8", errors="replace")

    def _piece_bytes(self, token: int, special: bool = False) -> bytes:
        key = token if not special else -token - 1
        piece = self._pieces.get(key)
        if piece is None:
            piece = self._pieces[key] = self._token_to_piece(token, special)
        return piece

    def _token_to_piece(self, token: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        try:
            return self._formatter(messages=messages).prompt  # type: ignore[arg-type]
        except Exception as exc:
            # Templates without a system role raise: fold the system text into the first turn.
            if messages and messages[0]["role"] == "system" and len(messages) > 1:
                system, first, *rest = messages
                merged = {
                    "role": first["role"],
                    "content": system["content"] + "\n\n" + first["content"],
                }
                return self.render_chat([merged, *rest])
            raise EngineFailed(f"the model's chat template failed: {exc}") from exc

    def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        prompt = self.render_chat(messages)
        add_bos = self._add_bos and not (self._bos and prompt.startswith(self._bos))
        return self.tokenize(prompt, add_bos=add_bos)

    def fim_tokens(self) -> tuple[int, int, int] | None:
        return self._fim if len(self._fim) == 3 else None  # type: ignore[return-value]

    @property
    def queue_depth(self) -> int:
        return self._waiting

    # -- generation -----------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        job = _Job(request, asyncio.get_running_loop())
        with self._lock:
            if self._waiting >= self._max_queue:
                raise QueueFull(
                    f"the generation queue is full ({self._max_queue} requests); retry shortly"
                )
            self._waiting += 1
        self._jobs.put(job)
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            job.cancelled.set()  # a client that went away stops its generation

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                self._waiting -= 1
            if job.cancelled.is_set():
                continue
            try:
                self._run(job)
            except Exception as exc:
                log.exception("engine.failed", request_id=job.request.request_id)
                job.emit(EngineFailed(f"generation failed: {exc}"))

    def _grammar(self, text: str):
        if text not in self._grammars:
            from llama_cpp.llama_grammar import LlamaGrammar

            self._grammars[text] = LlamaGrammar.from_string(text, verbose=False)
        return self._grammars[text]

    def _run(self, job: _Job) -> None:
        req, p = job.request, job.request.params
        llm = self._llm
        tokens = req.prompt_tokens
        cached = 0
        for a, b in zip(llm._input_ids[: llm.n_tokens], tokens, strict=False):
            if a != b:
                break
            cached += 1
        llm.set_seed(p.seed if p.seed is not None else random.getrandbits(31))
        grammar = self._grammar(p.grammar) if p.grammar else None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(p.stop)
        limit = min(p.max_tokens, self.n_ctx - len(tokens))
        started = time.perf_counter()
        first_at = None
        n = 0
        reason = "length"
        if limit > 0:
            for token in llm.generate(
                tokens,
                top_k=p.top_k,
                top_p=p.top_p,
                min_p=p.min_p,
                temp=p.temperature,
                repeat_penalty=p.repeat_penalty,
                frequency_penalty=p.frequency_penalty,
                presence_penalty=p.presence_penalty,
                grammar=grammar,
            ):
                if first_at is None:
                    first_at = time.perf_counter()
                if job.cancelled.is_set():
                    reason = "cancelled"
                    break
                if not p.ignore_eos and self._lib.llama_vocab_is_eog(self._vocab, token):
                    reason = "stop"
                    break
                n += 1
                text, stopped = stops.feed(decoder.decode(self._piece_bytes(token)))
                if text:
                    job.emit_text(text)
                if stopped:
                    reason = "stop"
                    break
                if n >= limit:
                    break
        tail = stops.flush() if reason != "stop" else ""
        tail += decoder.decode(b"", final=True) if reason != "stop" else ""
        if tail and reason != "cancelled":
            job.emit_text(tail)
        ended = time.perf_counter()
        done = Finished(
            finish_reason=reason,
            prompt_tokens=len(tokens),
            completion_tokens=n,
            cached_tokens=cached,
            ttft_s=(first_at or ended) - started,
            decode_s=ended - (first_at or ended),
        )
        job.emit(done)
        for listener in list(self.listeners):
            listener(req, done)
