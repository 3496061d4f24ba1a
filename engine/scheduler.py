"""The scheduler: continuous batching over a Backend's sequences, behind `Engine.submit`.

One worker thread owns the backend (for llama.cpp: one context holding `parallel`
sequences, the slots). Each step is one decode that advances every running sequence by a token and
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
import collections
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import structlog

from ragserve.errors import EngineFailed, InvalidRequest, QueueFull

from .jobs import Job, call_soon, deliver_all
from .options import DEFAULTS
from .slots import Entry, Slot
from .types import (
    Backend,
    BackendError,
    EngineStats,
    Finished,
    GenerationEvent,
    GenerationRequest,
    GrammarDeadEnd,
    SamplingParams,
)

log = structlog.get_logger(__name__)


# How long close() waits for a decode step in progress (a long CPU prompt chunk) before it
# gives up and keeps the memory: a shutdown stays bounded.
CLOSE_WAIT_S = 15.0


class Scheduler:
    """Continuous batching of requests over a Backend's sequences (slots)."""

    def __init__(
        self,
        backend: Backend,
        *,
        parallel: int,
        max_queue: int = DEFAULTS["max_queue"],
        stream_interval: float = DEFAULTS["stream_interval"],
        name: str = "engine-worker",
    ) -> None:
        self._backend = backend
        self.parallel = parallel
        self.n_ctx = backend.n_ctx
        # Called on the worker thread for every finished request, cancelled ones included.
        self.listeners: list[Callable[[GenerationRequest, Finished], None]] = []
        self._max_queue = max_queue
        self._inbox: queue.Queue[Job | str | None] = queue.Queue()
        self._waiting: collections.deque[Job] = collections.deque()
        self._n_waiting = 0  # submitted, not yet in a slot
        self._lock = threading.Lock()
        self._slots = [Slot(i) for i in range(parallel)]
        self._stream_interval = stream_interval
        self._thread = threading.Thread(target=self._worker, name=name, daemon=True)
        self._thread.start()

    # -- state --------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return self._n_waiting

    @property
    def busy_slots(self) -> int:
        return sum(1 for s in self._slots if s.job is not None)

    def stats(self) -> EngineStats:
        return EngineStats(slots=self.parallel, busy=self.busy_slots, queued=self._n_waiting)

    upstream: str | None = None  # generation happens here, in this process

    def unavailable(self) -> str | None:
        return None if self._thread.is_alive() else "the generation engine has stopped"

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
        """End every running and waiting request with an error (the server is going down).

        Their clients hear it at once, from this thread: the worker may be inside a long
        decode step (a CPU reading a prompt chunk takes seconds), and a shutdown's grace
        must not wait for it. The worker frees the slots and the line at its next step."""
        self._inbox.put(message)
        error = EngineFailed(message)
        with self._inbox.mutex:
            submitted = [j for j in self._inbox.queue if isinstance(j, Job)]
        jobs = [s.job for s in self._slots] + list(self._waiting) + submitted
        for job in jobs:
            if job is not None:
                job.cancelled.set()
                job.emit(error)

    def close(self) -> bool:
        """Stop the worker (running requests end as cancelled). False if it is stuck in a
        decode: then the backend's memory must not be freed under it."""
        self._inbox.put(None)
        self._thread.join(timeout=CLOSE_WAIT_S)
        if self._thread.is_alive():
            return False
        for slot in self._slots:
            if slot.job is not None:
                slot.sampler.close()
        return True

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
        self._drop_abandoned()
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
        for decoded in self._decode(entries):
            self._sample(decoded)  # before the next decode replaces the logits
        self._wake(force=False)
        return True

    def _sample(self, entries: list[Entry]) -> None:
        now = time.perf_counter()
        for e in entries:
            slot = e.slot
            if slot.job is not None and slot.index >= 0:
                index, slot.index = slot.index, -1
                try:
                    token = slot.sampler.sample(index)
                except GrammarDeadEnd as exc:
                    self._fail(slot, InvalidRequest(str(exc), param="response_format"), keep=True)
                    continue
                self._accept(slot, token, now)

    def _plan(self, slots: list[Slot]) -> list[Entry]:
        """This step's batch: every running stream's next token, then prompt chunks."""
        room = self._backend.n_batch
        entries = {s.seq: Entry(s) for s in slots}
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

    def _decode(self, entries: list[Entry]) -> Iterator[list[Entry]]:
        """Decode the batch and yield it; if it fails, undo it and decode (and yield) each
        slot's part alone, so one request's failure ends that request only."""
        try:
            self._fill(entries)
            self._backend.decode()
        except BackendError as exc:
            if len(entries) == 1:
                self._undo_and_fail(entries[0], exc)
                return
            log.warning("engine.decode_retry", error=str(exc), sequences=len(entries))
        else:
            yield entries
            return
        for e in entries:
            self._backend.truncate(e.slot.seq, e.start)
        for e in entries:
            try:
                self._fill([e])
                self._backend.decode()
            except BackendError as exc:
                self._undo_and_fail(e, exc)
            else:
                yield [e]

    def _fill(self, entries: list[Entry]) -> None:
        ctx = self._backend
        ctx.clear_batch()
        for e in entries:
            e.slot.index = -1
            for i, (token, logits) in enumerate(e.tokens):
                index = ctx.add(token, e.start + i, e.slot.seq, logits)
                if logits:
                    e.slot.index = index

    def _undo_and_fail(self, e: Entry, exc: Exception) -> None:
        log.error("engine.decode_failed", error=str(exc), seq=e.slot.seq)
        e.slot.index = -1
        self._fail(e.slot, EngineFailed(f"generation failed: {exc}"))

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

    def _drop_abandoned(self) -> None:
        """Waiting requests whose client went away give their place up at once, not when a
        slot frees (16 abandoned ones used to fill the queue, and new requests got 429)."""
        if not any(job.cancelled.is_set() for job in self._waiting):
            return
        kept = collections.deque(job for job in self._waiting if not job.cancelled.is_set())
        dropped = len(self._waiting) - len(kept)
        self._waiting = kept
        with self._lock:
            self._n_waiting -= dropped

    def _start(self, job: Job, free: list[Slot]) -> None:
        if job.cancelled.is_set():
            return
        req = job.request
        tokens = req.prompt_tokens
        limit = min(req.params.max_tokens, self.n_ctx - len(tokens))
        if not tokens or limit <= 0:
            self._emit_done(job, self._finished(job, "length", 0, 0, None))
            return
        try:
            sampler = self._backend.sampler(req.params)
        except Exception as exc:
            job.emit(EngineFailed(f"could not set up sampling: {exc}"))
            return
        slot, reuse = self._pick(free, tokens)
        reuse = min(reuse, len(tokens) - 1)  # the last prompt token gives the logits
        if not self._backend.truncate(slot.seq, reuse):
            reuse = 0
            self._backend.truncate(slot.seq, 0)
        del slot.cached[reuse:]
        slot.start(job, reuse, sampler, limit)

    @staticmethod
    def _pick(free: list[Slot], tokens: list[int]) -> tuple[Slot, int]:
        """The slot whose conversation this request continues, else the least recently used.

        A slot that merely shares a system prompt with the request is not taken over when
        it holds mostly something else: another user's conversation may come back to it.
        """
        scored = [(common_prefix(s.cached, tokens), s) for s in free]
        reuse, best = max(scored, key=lambda t: (t[0], t[1].used_at))
        if reuse and 2 * reuse >= len(best.cached):
            return best, reuse
        return min(scored, key=lambda t: t[1].used_at)[::-1]  # type: ignore[return-value]

    def _accept(self, slot: Slot, token: int, now: float) -> None:
        job = slot.job
        assert job is not None
        p = job.request.params
        if slot.first_at is None:
            slot.first_at = now
        if not p.ignore_eos and self._backend.is_eog(token):
            self._finish(slot, "stop", flush=True)  # text held back for a stop string is kept
            return
        slot.generated += 1
        text, stopped = slot.stops.feed(slot.decoder.decode(self._piece(token, p)))
        if text:
            job.add_text(text)
        if stopped:
            self._finish(slot, "stop")
        elif slot.generated >= slot.limit:
            self._finish(slot, "length")
        else:
            slot.next_token = token

    def _piece(self, token: int, p: SamplingParams) -> bytes:
        piece = self._backend.piece(token)
        if not piece and p.preserved:
            special = self._backend.piece(token, special=True)
            if special.decode(errors="replace") in p.preserved:
                return special
        return piece

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
        self._notify(job, done)

    def _notify(self, job: Job, done: Finished) -> None:
        """Tell the listeners (metrics) of every request that ends, however it ends."""
        for listener in list(self.listeners):
            listener(job.request, done)

    def _finish(self, slot: Slot, reason: str, *, flush: bool | None = None) -> None:
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

    def _release(self, slot: Slot) -> None:
        slot.sampler.close()
        slot.job = None
        slot.next_token = None
        slot.used_at = time.perf_counter()

    def _fail(self, slot: Slot, exc: Exception, *, keep: bool = False) -> None:
        """End a slot's request with an error; unless `keep`, its cache state is unknown."""
        job = slot.job
        assert job is not None
        self._release(slot)
        slot.pending = []
        if not keep:
            slot.cached = []
            self._backend.truncate(slot.seq, 0)
        job.emit(exc)
        self._notify(job, self._finished(job, "error", slot.generated, slot.reused, slot.first_at))

    def _fail_all(self, exc: Exception) -> None:
        for slot in self._slots:
            if slot.job is not None:
                self._fail(slot, exc, keep=True)
        while self._waiting:
            job = self._waiting.popleft()
            with self._lock:
                self._n_waiting -= 1
            job.emit(exc)
            self._notify(job, self._finished(job, "error", 0, 0, None))


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
