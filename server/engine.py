"""The generation engine: continuous batching over llama.cpp, behind `Engine.generate`.

One worker thread owns one llama.cpp context holding `parallel` sequences (slots).
Each step is one `llama_decode` that advances every running sequence by a token and
feeds a chunk of any prompt still being read, so a long prompt never freezes the
streams already running. Requests join between steps and leave when done; each slot
keeps the KV cache of its last conversation, and a new request goes to the slot that
shares the longest prefix with it, so a follow-up turn only processes its new tokens.
Sampling runs in C (a llama.cpp sampler chain per request, grammar included).

The event loop only awaits token events. Requests beyond the slots wait in a bounded
queue; a full queue is refused (QueueFull). A client that goes away frees its slot at
the next step.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import os
import queue
import random
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from .errors import EngineFailed, QueueFull
from .llama import Context, Model, Sampler, common_prefix

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

    def neutralize(self, text: str) -> str: ...

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
        self.submitted = time.perf_counter()
        self._text: list[str] = []
        self._text_lock = threading.Lock()
        self._scheduled = False  # a delivery is queued on the loop
        self._last_wake: float | None = None

    def emit(self, event: GenerationEvent | BaseException) -> None:
        """Send an event after any text still held (runs on the worker thread)."""
        with self._text_lock:
            pending = bool(self._text)
        if pending:
            _call_soon(self.loop, self.deliver_text)
        _call_soon(self.loop, self.events.put_nowait, event)

    def add_text(self, text: str) -> None:
        """Hold text for the event loop (worker thread); `due` says when to wake it."""
        with self._text_lock:
            self._text.append(text)

    def due(self, now: float, interval: float, force: bool) -> bool:
        """Whether the loop should be woken for the held text now (and note that it is).

        The first text goes at once (time to first token); after that at most one
        delivery per `interval`, and never a second while one is queued: a busy loop
        gets fewer, larger deltas instead of one wake-up per token.
        """
        with self._text_lock:
            if not self._text or self._scheduled:
                return False
            if not force and self._last_wake is not None and now - self._last_wake < interval:
                return False
            self._scheduled, self._last_wake = True, now
            return True

    def deliver_text(self) -> None:  # runs on the event loop
        with self._text_lock:
            text, self._text, self._scheduled = "".join(self._text), [], False
        if text:
            self.events.put_nowait(TextDelta(text))


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable, *args: object) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: its client is gone
        loop.call_soon_threadsafe(fn, *args)


def _deliver_all(jobs: list[_Job]) -> None:  # runs on the event loop
    for job in jobs:
        job.deliver_text()


def default_gpu_layers() -> int:
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


class _Slot:
    """One sequence of the context: what its KV cache holds, and the request using it."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.cached: list[int] = []  # the tokens in this sequence's KV cache, in order
        self.used_at = 0.0
        self.job: _Job | None = None

    def start(self, job: _Job, reuse: int, sampler, limit: int) -> None:
        self.job = job
        self.sampler = sampler
        self.pending = job.request.prompt_tokens[reuse:]  # prompt still to be read
        self.reused = reuse
        self.limit = limit
        self.next_token: int | None = None  # sampled, to be fed at the next step
        self.index = -1  # batch position whose logits this slot samples from
        self.generated = 0
        self.first_at: float | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = StopMatcher(job.request.params.stop)


class LlamaEngine:
    """A GGUF model served with continuous batching; requests wait in a bounded queue."""

    def __init__(
        self,
        model_path: Path,
        *,
        model_id: str,
        n_ctx: int = 4096,
        parallel: int = 4,
        n_gpu_layers: int | None = None,
        n_threads: int | None = None,
        n_batch: int = 512,
        max_queue: int = 16,
        flash_attn: bool = True,
        stream_interval: float = 0.05,
    ) -> None:
        if n_gpu_layers is None:
            n_gpu_layers = default_gpu_layers()
        # llama.cpp defaults to half the cores; prompt processing wants all of them.
        n_threads = n_threads or os.cpu_count() or 1
        parallel = max(1, parallel)
        started = time.perf_counter()
        self._model = Model(model_path, n_gpu_layers=n_gpu_layers)
        try:
            self._ctx = Context(
                self._model,
                n_ctx=n_ctx,
                n_seq=parallel,
                n_batch=max(n_batch, parallel),
                n_threads=n_threads,
                flash_attn=flash_attn,
            )
        except Exception:
            self._model.close()
            raise
        # The worker needs the GIL between decode steps; with the default 5 ms switch
        # interval, the event loop thread can hold it for most of a token's time budget.
        sys.setswitchinterval(0.0005)
        self.model_id = model_id
        self.n_ctx = self._ctx.n_ctx
        self.parallel = parallel
        meta = self._model.metadata
        self._template_text = meta.get("tokenizer.chat_template") or FALLBACK_TEMPLATE
        self._add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
        self._bos = self._model.piece(self._model.bos, special=True).decode(errors="replace")
        self._eos = self._model.piece(self._model.eos, special=True).decode(errors="replace")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._formatter = Jinja2ChatFormatter(self._template_text, self._eos, self._bos)
        self._fim = tuple(
            int(meta[k])
            for k in (f"tokenizer.ggml.fim_{p}_token_id" for p in ("pre", "suf", "mid"))
            if k in meta
        )
        self._grammars: dict[str, Sampler] = {}
        self._specials = self._model.special_texts()
        # Called on the worker thread for every finished request, cancelled ones included.
        self.listeners: list[Callable[[GenerationRequest, Finished], None]] = []
        self._max_queue = max_queue
        self._inbox: queue.Queue[_Job | None] = queue.Queue()
        self._waiting: collections.deque[_Job] = collections.deque()
        self._n_waiting = 0  # submitted, not yet in a slot
        self._lock = threading.Lock()
        self._slots = [_Slot(i) for i in range(parallel)]
        self._stream_interval = stream_interval
        self._thread = threading.Thread(target=self._worker, name="llama-worker", daemon=True)
        self._thread.start()
        n_layer = self._model.n_layer
        offloaded = n_layer if n_gpu_layers < 0 else min(n_gpu_layers, n_layer)
        import llama_cpp

        log.info(
            "engine.loaded",
            model=model_id,
            path=str(model_path),
            n_ctx=self.n_ctx,
            parallel=parallel,
            gpu_offload_supported=bool(llama_cpp.llama_supports_gpu_offload()),
            layers_offloaded=f"{offloaded}/{n_layer}" if n_gpu_layers else f"0/{n_layer}",
            seconds=round(time.perf_counter() - started, 2),
        )

    # -- tokens and templates -----------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        return self._model.tokenize(text, add_bos=add_bos)

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

    def neutralize(self, text: str) -> str:
        """Third-party text (retrieved passages) with chat markup broken up, so that a PDF
        containing `<|im_start|>system` reads as text instead of starting a new turn."""
        for special in self._specials:
            if special in text:
                text = text.replace(special, special[0] + "\u2060" + special[1:])
        return text

    def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        prompt = self.render_chat(messages)
        add_bos = self._add_bos and not (self._bos and prompt.startswith(self._bos))
        return self.tokenize(prompt, add_bos=add_bos)

    def fim_tokens(self) -> tuple[int, int, int] | None:
        return self._fim if len(self._fim) == 3 else None  # type: ignore[return-value]

    @property
    def queue_depth(self) -> int:
        return self._n_waiting

    @property
    def busy_slots(self) -> int:
        return sum(1 for s in self._slots if s.job is not None)

    # -- generation -----------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        if not self._thread.is_alive():
            raise EngineFailed("the generation engine has stopped")
        job = _Job(request, asyncio.get_running_loop())
        with self._lock:
            if self._n_waiting >= self._max_queue:
                raise QueueFull(
                    f"the generation queue is full ({self._max_queue} requests waiting "
                    f"for {self.parallel} slots); retry shortly"
                )
            self._n_waiting += 1
        self._inbox.put(job)
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            job.cancelled.set()  # a client that went away frees its slot at the next step

    def close(self) -> None:
        """Stop the worker (running requests end as cancelled) and free llama.cpp memory."""
        self._inbox.put(None)
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            return  # a decode is stuck; leave the memory rather than free it under it
        for slot in self._slots:
            if slot.job is not None:
                slot.sampler.close()
        for grammar in self._grammars.values():
            grammar.close()
        self._ctx.close()
        self._model.close()

    # -- the worker -----------------------------------------------------------------
    def _worker(self) -> None:
        try:
            while self._step():
                pass
        except Exception as exc:  # a broken context: fail everything still waiting
            log.exception("engine.crashed")
            self._fail_all(EngineFailed(f"the generation engine failed: {exc}"))
        else:  # close(): running answers end as cancelled, waiting ones are refused
            for slot in self._slots:
                if slot.job is not None:
                    self._finish(slot, "cancelled")
            self._fail_all(EngineFailed("the server is shutting down"))

    def _take_new(self, block: bool) -> bool:
        """Move submitted jobs into the waiting line; False when asked to stop."""
        try:
            job = self._inbox.get(block=block)
            while True:
                if job is None:
                    return False
                self._waiting.append(job)
                job = self._inbox.get_nowait()
        except queue.Empty:
            return True

    def _step(self) -> bool:
        running = any(s.job is not None for s in self._slots)
        if not self._take_new(block=not running and not self._waiting):
            return False
        self._admit()
        ctx = self._ctx
        ctx.clear_batch()
        slots = [s for s in self._slots if s.job is not None]
        for slot in slots:
            if slot.job is not None and slot.job.cancelled.is_set():
                self._finish(slot, "cancelled")
        if any(s.job is not None and s.pending for s in slots):
            self._wake(force=True)  # this step reads prompt chunks and may take a while
        # Every running stream advances one token; prompts fill the rest of the batch.
        for slot in slots:
            if slot.job is not None and slot.next_token is not None:
                slot.index = ctx.add(slot.next_token, len(slot.cached), slot.seq, True)
                slot.cached.append(slot.next_token)
                slot.next_token = None
        for slot in sorted(slots, key=lambda s: s.job.submitted if s.job else 0.0):
            if slot.job is None or not slot.pending or ctx.room == 0:
                continue
            chunk = slot.pending[: ctx.room]
            slot.pending = slot.pending[len(chunk) :]
            last = len(chunk) - 1
            for i, token in enumerate(chunk):
                index = ctx.add(token, len(slot.cached), slot.seq, not slot.pending and i == last)
                slot.cached.append(token)
            slot.index = index if not slot.pending else -1
        if ctx.n_tokens == 0:
            return True
        try:
            ctx.decode()
        except Exception as exc:
            log.exception("engine.decode_failed")
            for slot in slots:
                if slot.job is not None:
                    self._fail(slot, EngineFailed(f"generation failed: {exc}"))
            return True
        now = time.perf_counter()
        for slot in slots:
            if slot.job is not None and slot.index >= 0:
                token = slot.sampler.sample(ctx, slot.index)
                slot.index = -1
                self._accept(slot, token, now)
        self._wake(force=False)
        return True

    def _wake(self, force: bool) -> None:
        """Hand held text to the event loop: one wake-up per loop for all streams due."""
        now = time.perf_counter()
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for slot in self._slots:
            job = slot.job
            if job is not None and job.due(now, self._stream_interval, force):
                by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            _call_soon(loop, _deliver_all, jobs)

    def _admit(self) -> None:
        """Give waiting requests free slots, each the one sharing its longest prefix."""
        while self._waiting:
            free = [s for s in self._slots if s.job is None]
            if not free:
                return
            job = self._waiting.popleft()
            with self._lock:
                self._n_waiting -= 1
            if job.cancelled.is_set():
                continue
            req = job.request
            tokens = req.prompt_tokens
            limit = min(req.params.max_tokens, self.n_ctx - len(tokens))
            if not tokens or limit <= 0:
                job.emit(self._finished(job, "length", 0, 0, None))
                continue
            slot, reuse = self._pick(free, tokens)
            reuse = min(reuse, len(tokens) - 1)  # the last prompt token gives the logits
            if not self._ctx.truncate(slot.seq, reuse):
                reuse = 0
                self._ctx.truncate(slot.seq, 0)
            del slot.cached[reuse:]
            try:
                sampler = self._sampler(req.params)
            except Exception as exc:
                job.emit(EngineFailed(f"could not set up sampling: {exc}"))
                continue
            slot.start(job, reuse, sampler, limit)

    @staticmethod
    def _pick(free: list[_Slot], tokens: list[int]) -> tuple[_Slot, int]:
        """The slot whose conversation this request continues, else the least recently used.

        A slot that merely shares a system prompt with the request is not taken over when
        it holds mostly something else: another user's conversation may come back to it.
        """
        scored = [(common_prefix(s.cached, tokens), s) for s in free]
        reuse, best = max(scored, key=lambda t: (t[0], t[1].used_at))
        if reuse and 2 * reuse >= len(best.cached):
            return best, reuse
        return min(scored, key=lambda t: t[1].used_at)[::-1]  # type: ignore[return-value]

    def _sampler(self, p: SamplingParams):
        grammar = None
        if p.grammar:
            grammar = self._grammars.get(p.grammar)
            if grammar is None:
                grammar = self._grammars[p.grammar] = Sampler.grammar(self._model, p.grammar)
        seed = p.seed if p.seed is not None else random.getrandbits(32)
        return Sampler(self._model, p, seed, grammar)

    def _accept(self, slot: _Slot, token: int, now: float) -> None:
        job = slot.job
        assert job is not None
        p = job.request.params
        if slot.first_at is None:
            slot.first_at = now
        if not p.ignore_eos and self._model.is_eog(token):
            self._finish(slot, "stop", flush=True)  # text held back for a stop string is kept
            return
        slot.generated += 1
        text, stopped = slot.stops.feed(slot.decoder.decode(self._model.piece(token)))
        if text:
            job.add_text(text)
        if stopped:
            self._finish(slot, "stop")
        elif slot.generated >= slot.limit:
            self._finish(slot, "length")
        else:
            slot.next_token = token

    def _finished(
        self, job: _Job, reason: str, generated: int, reused: int, first_at: float | None
    ) -> Finished:
        ended = time.perf_counter()
        return Finished(
            finish_reason=reason,
            prompt_tokens=len(job.request.prompt_tokens),
            completion_tokens=generated,
            cached_tokens=reused,
            ttft_s=(first_at or ended) - job.submitted,
            decode_s=ended - (first_at or ended),
        )

    def _finish(self, slot: _Slot, reason: str, *, flush: bool | None = None) -> None:
        job = slot.job
        assert job is not None
        if flush if flush is not None else reason == "length":
            tail = slot.stops.flush() + slot.decoder.decode(b"", final=True)
            if tail:
                job.add_text(tail)
        slot.pending = []  # stopped while reading the prompt: the cache keeps what was read
        done = self._finished(job, reason, slot.generated, slot.reused, slot.first_at)
        slot.sampler.close()
        slot.job = None
        slot.next_token = None
        slot.used_at = time.perf_counter()
        job.emit(done)
        for listener in list(self.listeners):
            listener(job.request, done)

    def _fail(self, slot: _Slot, exc: Exception) -> None:
        job = slot.job
        assert job is not None
        slot.sampler.close()
        slot.job = None
        slot.next_token = None
        slot.cached = []  # the cache state is unknown after a failed decode
        self._ctx.truncate(slot.seq, 0)
        job.emit(exc)

    def _fail_all(self, exc: Exception) -> None:
        for slot in self._slots:
            if slot.job is not None:
                job, slot.job = slot.job, None
                slot.sampler.close()
                job.emit(exc)
        self._take_new(block=False)
        while self._waiting:
            self._waiting.popleft().emit(exc)
