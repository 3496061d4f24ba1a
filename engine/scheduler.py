"""The scheduler: continuous batching over llama.cpp, behind `Engine.submit`.

One worker thread owns one llama.cpp context holding `parallel` sequences (slots).
Each step is one `llama_decode` that advances every running sequence by a token and
feeds a chunk of any prompt still being read, so a long prompt never freezes the
streams already running. Requests join between steps and leave when done; each slot
keeps the KV cache of its last conversation, and a new request goes to the slot that
shares the longest prefix with it, so a follow-up turn only processes its new tokens.
Sampling runs in C (a llama.cpp sampler chain per request; grammars are checked first).

The event loop only awaits token events. Requests beyond the slots wait in a bounded
queue; a full queue is refused (QueueFull) by `submit`, before any response is sent. A
client that goes away frees its slot at the next step. A batch that fails to decode is
undone and each request in it retried alone, so one bad request fails only itself.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import os
import queue
import random
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import structlog

from ragserve.errors import EngineFailed, InvalidRequest, QueueFull

from .chat import ChatTemplate
from .grammar import GrammarCache, check_gbnf
from .jobs import Job, call_soon, deliver_all
from .llama import Candidates, Context, Grammar, GrammarDeadEnd, LlamaError, Model, Sampler
from .llama import common_prefix as common_prefix
from .stops import StopMatcher
from .types import EngineStats, Finished, GenerationEvent, GenerationRequest, SamplingParams

log = structlog.get_logger(__name__)
WARMUP_TOKENS = 48


def default_gpu_layers() -> int:
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


class _Slot:
    """One sequence of the context: what its KV cache holds, and the request using it."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.cached: list[int] = []  # the tokens in this sequence's KV cache, in order
        self.used_at = 0.0
        self.job: Job | None = None

    def start(self, job: Job, reuse: int, sampler: Sampler, limit: int) -> None:
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


class _Entry:
    """What one slot put into this step's batch, so the step can be undone for it alone."""

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot
        self.start = len(slot.cached)
        self.next_token = slot.next_token
        self.pending = slot.pending
        self.tokens: list[tuple[int, bool]] = []  # (token, wants logits)


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
        warmup: bool = True,
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
        self.n_vocab = self._model.n_vocab
        self.parallel = parallel
        meta = self._model.metadata
        self._add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
        self.template = ChatTemplate(
            meta.get("tokenizer.chat_template"),
            bos=self._model.piece(self._model.bos, special=True).decode(errors="replace"),
            eos=self._model.piece(self._model.eos, special=True).decode(errors="replace"),
            specials=self._model.special_texts(),
        )
        self._fim = tuple(
            int(meta[k])
            for k in (f"tokenizer.ggml.fim_{p}_token_id" for p in ("pre", "suf", "mid"))
            if k in meta
        )
        self._grammars = GrammarCache(lambda gbnf: Grammar(self._model, gbnf))
        self._candidates: Candidates | None = None  # built on the first grammar request
        # Called on the worker thread for every finished request, cancelled ones included.
        self.listeners: list[Callable[[GenerationRequest, Finished], None]] = []
        self._max_queue = max_queue
        self._inbox: queue.Queue[Job | str | None] = queue.Queue()
        self._waiting: collections.deque[Job] = collections.deque()
        self._n_waiting = 0  # submitted, not yet in a slot
        self._lock = threading.Lock()
        self._slots = [_Slot(i) for i in range(parallel)]
        self._stream_interval = stream_interval
        if warmup:
            self._warmup()
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

    def _warmup(self) -> None:
        """One batched prefill and one decode step before reporting ready: a CPU that cannot
        run this build's kernels fails here, at start-up, not on a user's first question."""
        log.info("engine.warmup", tokens=WARMUP_TOKENS, sequences=min(2, self.parallel))
        ctx, bos = self._ctx, self._model.bos
        seqs = range(min(2, self.parallel))
        n = max(1, min(WARMUP_TOKENS, ctx.n_batch // len(seqs)))
        tokens = [bos if bos >= 0 else 0] * n
        for seq in seqs:
            for pos, token in enumerate(tokens):
                ctx.add(token, pos, seq, pos == n - 1)
        ctx.decode()
        ctx.clear_batch()
        for seq in seqs:
            ctx.add(tokens[0], n, seq, True)
        ctx.decode()
        ctx.clear_batch()
        for seq in seqs:
            ctx.truncate(seq, 0)

    # -- tokens and templates -----------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        return self._model.tokenize(text, add_bos=add_bos)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return self.template.render(messages)

    def neutralize(self, text: str) -> str:
        return self.template.neutralize(text)

    def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        prompt = self.render_chat(messages)
        bos = self.template.bos
        add_bos = self._add_bos and not (bos and prompt.startswith(bos))
        return self.tokenize(prompt, add_bos=add_bos)

    def fim_tokens(self) -> tuple[int, int, int] | None:
        return self._fim if len(self._fim) == 3 else None  # type: ignore[return-value]

    def check_grammar(self, gbnf: str) -> None:
        check_gbnf(gbnf)
        try:
            self._grammars.clone(gbnf).close()
        except LlamaError as exc:
            raise InvalidRequest(
                f"the grammar for response_format was rejected: {exc}", param="response_format"
            ) from exc

    # -- state --------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return self._n_waiting

    @property
    def busy_slots(self) -> int:
        return sum(1 for s in self._slots if s.job is not None)

    def stats(self) -> EngineStats:
        return EngineStats(slots=self.parallel, busy=self.busy_slots, queued=self._n_waiting)

    # -- generation -----------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> Job:
        """Queue a request; refused at once when the queue is full (before any response)."""
        if not self._thread.is_alive():
            raise EngineFailed("the generation engine has stopped")
        job = Job(request, asyncio.get_running_loop())
        with self._lock:
            # free slots take requests at once; past them, up to max_queue may wait
            if self._n_waiting + self.busy_slots >= self._max_queue + self.parallel:
                raise QueueFull(
                    f"the generation queue is full ({self._max_queue} requests waiting "
                    f"for {self.parallel} slots); retry shortly"
                )
            self._n_waiting += 1
        self._inbox.put(job)
        return job

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """submit() and iterate, for callers that need no admission before their response."""
        async for event in self.submit(request):
            yield event

    def shutdown(self, message: str) -> None:
        """End every running and waiting request with an error (the server is going down)."""
        self._inbox.put(message)

    def close(self) -> None:
        """Stop the worker (running requests end as cancelled) and free llama.cpp memory."""
        self._inbox.put(None)
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            return  # a decode is stuck; leave the memory rather than free it under it
        for slot in self._slots:
            if slot.job is not None:
                slot.sampler.close()
        self._grammars.close()
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
                if isinstance(job, str):  # shutdown(message)
                    self._fail_all(EngineFailed(job))
                else:
                    self._waiting.append(job)
                job = self._inbox.get_nowait()
        except queue.Empty:
            return True

    def _step(self) -> bool:
        running = any(s.job is not None for s in self._slots)
        if not self._take_new(block=not running and not self._waiting):
            return False
        self._admit()
        slots = [s for s in self._slots if s.job is not None]
        for slot in slots:
            if slot.job is not None and slot.job.cancelled.is_set():
                self._finish(slot, "cancelled")
        slots = [s for s in slots if s.job is not None]
        if any(s.pending for s in slots):
            self._wake(force=True)  # this step reads prompt chunks and may take a while
        entries = self._plan(slots)
        if not entries:
            return True
        self._decode(entries)
        now = time.perf_counter()
        for e in entries:
            slot = e.slot
            if slot.job is not None and slot.index >= 0:
                index, slot.index = slot.index, -1
                try:
                    token = slot.sampler.sample(self._ctx, index, self._candidates_for(slot))
                except GrammarDeadEnd as exc:
                    self._fail(slot, InvalidRequest(str(exc), param="response_format"), keep=True)
                    continue
                self._accept(slot, token, now)
        self._wake(force=False)
        return True

    def _plan(self, slots: list[_Slot]) -> list[_Entry]:
        """This step's batch: every running stream's next token, then prompt chunks."""
        room = self._ctx.n_batch
        entries = {s.seq: _Entry(s) for s in slots}
        for slot in slots:
            if slot.next_token is not None:
                entries[slot.seq].tokens.append((slot.next_token, True))
                slot.cached.append(slot.next_token)
                slot.next_token = None
                room -= 1
        for slot in sorted(slots, key=lambda s: s.job.submitted if s.job else 0.0):
            if not slot.pending or room <= 0:
                continue
            chunk, slot.pending = slot.pending[:room], slot.pending[room:]
            room -= len(chunk)
            last = len(chunk) - 1
            entry = entries[slot.seq]
            for i, token in enumerate(chunk):
                entry.tokens.append((token, not slot.pending and i == last))
            slot.cached.extend(chunk)
        return [e for e in entries.values() if e.tokens]

    def _decode(self, entries: list[_Entry]) -> None:
        """Decode the batch; if it fails, undo it and decode each slot's part alone, so
        one request's failure ends that request only."""
        try:
            self._fill(entries)
            self._ctx.decode()
            return
        except LlamaError as exc:
            if len(entries) == 1:
                self._undo_and_fail(entries[0], exc)
                return
            log.warning("engine.decode_retry", error=str(exc), sequences=len(entries))
        for e in entries:
            self._ctx.truncate(e.slot.seq, e.start)
        for e in entries:
            try:
                self._fill([e])
                self._ctx.decode()
            except LlamaError as exc:
                self._undo_and_fail(e, exc)

    def _fill(self, entries: list[_Entry]) -> None:
        ctx = self._ctx
        ctx.clear_batch()
        for e in entries:
            e.slot.index = -1
            for i, (token, logits) in enumerate(e.tokens):
                index = ctx.add(token, e.start + i, e.slot.seq, logits)
                if logits:
                    e.slot.index = index

    def _undo_and_fail(self, e: _Entry, exc: Exception) -> None:
        log.error("engine.decode_failed", error=str(exc), seq=e.slot.seq)
        e.slot.index = -1
        self._fail(e.slot, EngineFailed(f"generation failed: {exc}"))

    def _candidates_for(self, slot: _Slot) -> Candidates:
        if self._candidates is None and slot.sampler.grammar is not None:
            self._candidates = Candidates(self._model)
        return self._candidates  # type: ignore[return-value]

    def _wake(self, force: bool) -> None:
        """Hand held text to the event loop: one wake-up per loop for all streams due."""
        now = time.perf_counter()
        by_loop: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        for slot in self._slots:
            job = slot.job
            if job is not None and job.due(now, self._stream_interval, force):
                by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            call_soon(loop, deliver_all, jobs)

    def _admit(self) -> None:
        """Give waiting requests free slots, each the one sharing its longest prefix."""
        while self._waiting:
            free = [s for s in self._slots if s.job is None]
            if not free:
                return
            job = self._waiting.popleft()
            try:
                self._start(job, free)
            finally:
                # only now: submit() counts waiting + busy, and this job is one or the other
                with self._lock:
                    self._n_waiting -= 1

    def _start(self, job: Job, free: list[_Slot]) -> None:
        if job.cancelled.is_set():
            return
        req = job.request
        tokens = req.prompt_tokens
        limit = min(req.params.max_tokens, self.n_ctx - len(tokens))
        if not tokens or limit <= 0:
            self._emit_done(job, self._finished(job, "length", 0, 0, None))
            return
        try:
            sampler = self._sampler(req.params)
        except Exception as exc:
            job.emit(EngineFailed(f"could not set up sampling: {exc}"))
            return
        slot, reuse = self._pick(free, tokens)
        reuse = min(reuse, len(tokens) - 1)  # the last prompt token gives the logits
        if not self._ctx.truncate(slot.seq, reuse):
            reuse = 0
            self._ctx.truncate(slot.seq, 0)
        del slot.cached[reuse:]
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

    def _sampler(self, p: SamplingParams) -> Sampler:
        grammar = self._grammars.clone(p.grammar) if p.grammar else None
        seed = p.seed if p.seed is not None else random.getrandbits(32)
        try:
            return Sampler(self._model, p, seed, grammar)
        except Exception:
            if grammar is not None:
                grammar.close()
            raise

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
        self, job: Job, reason: str, generated: int, reused: int, first_at: float | None
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

    def _emit_done(self, job: Job, done: Finished) -> None:
        job.emit(done)
        for listener in list(self.listeners):
            listener(job.request, done)

    def _finish(self, slot: _Slot, reason: str, *, flush: bool | None = None) -> None:
        job = slot.job
        assert job is not None
        if flush if flush is not None else reason == "length":
            tail = slot.stops.flush() + slot.decoder.decode(b"", final=True)
            if tail:
                job.add_text(tail)
        slot.pending = []  # stopped while reading the prompt: the cache keeps what was read
        done = self._finished(job, reason, slot.generated, slot.reused, slot.first_at)
        self._release(slot)
        self._emit_done(job, done)

    def _release(self, slot: _Slot) -> None:
        slot.sampler.close()
        slot.job = None
        slot.next_token = None
        slot.used_at = time.perf_counter()

    def _fail(self, slot: _Slot, exc: Exception, *, keep: bool = False) -> None:
        """End a slot's request with an error; unless `keep`, its cache state is unknown."""
        job = slot.job
        assert job is not None
        self._release(slot)
        slot.pending = []
        if not keep:
            slot.cached = []
            self._ctx.truncate(slot.seq, 0)
        job.emit(exc)
        failed = self._finished(job, "error", slot.generated, slot.reused, slot.first_at)
        for listener in list(self.listeners):
            listener(job.request, failed)

    def _fail_all(self, exc: Exception) -> None:
        for slot in self._slots:
            if slot.job is not None:
                self._fail(slot, exc, keep=True)
        while self._waiting:
            job = self._waiting.popleft()
            with self._lock:
                self._n_waiting -= 1
            job.emit(exc)
