"""The scheduler on a fake backend: admission, chunked prefill, slot choice, cancellation,
failures and shutdown, in milliseconds (the real llama.cpp runs in tests/server/)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ragserve.engine import (
    BackendError,
    Finished,
    GenerationRequest,
    SamplingParams,
    Scheduler,
    TextDelta,
)
from ragserve.errors import EngineFailed, QueueFull

EOG = 0
POISON = 666  # a token the fake cannot decode


class FakeSampler:
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    def sample(self, index: int) -> int:
        """The next token counts up from the last one fed; 9 is followed by end-of-generation."""
        token = self.backend.batch[index][0]
        return EOG if token % 10 == 9 else token + 1

    def close(self) -> None:
        pass


class FakeBackend:
    """Tokens are numbers and their text is `<n>`; every decode is recorded."""

    def __init__(self, n_ctx: int = 256, n_batch: int = 16) -> None:
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.batch: list[tuple[int, int, int, bool]] = []
        self.decodes: list[list[tuple[int, int, int, bool]]] = []
        self.cells: dict[int, int] = {}  # seq -> cells held
        self.gate = threading.Event()  # clear: decode waits, so tests can look mid-flight
        self.gate.set()

    def piece(self, token: int, *, special: bool = False) -> bytes:
        return f"<{token}>".encode()

    def is_eog(self, token: int) -> bool:
        return token == EOG

    def clear_batch(self) -> None:
        self.batch = []

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        assert len(self.batch) < self.n_batch, "batch overflow"
        assert pos == self.cells.get(seq, 0) + sum(1 for b in self.batch if b[2] == seq)
        self.batch.append((token, pos, seq, logits))
        return len(self.batch) - 1

    def decode(self) -> None:
        self.gate.wait(5)
        if any(b[0] == POISON for b in self.batch):
            raise BackendError("poisoned batch")
        self.decodes.append(list(self.batch))
        for _, _, seq, _ in self.batch:
            self.cells[seq] = self.cells.get(seq, 0) + 1

    def truncate(self, seq: int, keep: int) -> bool:
        self.cells[seq] = min(self.cells.get(seq, 0), keep)
        return True

    def sampler(self, params: SamplingParams) -> FakeSampler:
        return FakeSampler(self)


def request(tokens: list[int], **params) -> GenerationRequest:
    return GenerationRequest(tokens, SamplingParams(**params))


async def run(handle) -> tuple[str, Finished]:
    text = []
    async for event in handle:
        if isinstance(event, TextDelta):
            text.append(event.text)
        else:
            return "".join(text), event
    raise AssertionError("no Finished event")


def one(engine: Scheduler, req: GenerationRequest) -> tuple[str, Finished]:
    """Submit and run one request on a fresh event loop."""

    async def go() -> tuple[str, Finished]:
        return await run(engine.submit(req))

    return asyncio.run(go())


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


def scheduler(backend: FakeBackend, **kw) -> Scheduler:
    return Scheduler(backend, parallel=kw.pop("parallel", 2), stream_interval=0, **kw)


def test_a_request_counts_up_to_the_end_token(backend):
    engine = scheduler(backend)
    text, done = one(engine, request([1, 2, 3]))
    assert text == "<4><5><6><7><8><9>" and done.finish_reason == "stop"
    assert (done.prompt_tokens, done.completion_tokens) == (3, 6)
    engine.close()


def test_max_tokens_and_stop_strings_end_a_request(backend):
    engine = scheduler(backend)
    text, done = one(engine, request([1], max_tokens=2))
    assert (text, done.finish_reason) == ("<2><3>", "length")
    text, done = one(engine, request([1], stop=("<4>",)))
    assert (text, done.finish_reason) == ("<2><3>", "stop")
    engine.close()


def test_admission_refuses_at_once_past_free_slots_plus_queue(backend):
    backend.gate.clear()  # nothing finishes while we submit

    async def go() -> None:
        engine = scheduler(backend, max_queue=1)
        handles = [engine.submit(request([1])) for _ in range(3)]  # 2 slots + 1 waiting
        with pytest.raises(QueueFull):
            engine.submit(request([1]))
        backend.gate.set()
        results = await asyncio.gather(*(run(h) for h in handles))
        assert all(done.finish_reason == "stop" for _, done in results)
        engine.close()

    asyncio.run(go())


def test_a_long_prompt_is_read_in_chunks_while_a_stream_runs(backend):
    async def go() -> None:
        engine = scheduler(backend)
        running = engine.submit(request([10], max_tokens=30, ignore_eos=True))
        long = engine.submit(request(list(range(100, 140)), max_tokens=1))
        await asyncio.gather(run(running), run(long))
        engine.close()

    asyncio.run(go())
    reading = [d for d in backend.decodes if any(t >= 100 for t, *_ in d)]
    assert len(reading) >= 3  # 40 prompt tokens through a 16-token batch
    assert all(len(d) <= backend.n_batch for d in backend.decodes)
    # the running stream advanced in the steps that read the prompt
    assert sum(1 for d in reading if any(t < 100 for t, *_ in d)) >= 2


def test_a_follow_up_goes_to_its_conversation_and_reuses_the_cache(backend):
    async def go() -> Finished:
        engine = scheduler(backend)
        first = [1, 2, 3, 4, 5, 6]
        await run(engine.submit(request(first, max_tokens=1)))
        await run(engine.submit(request([40, 41], max_tokens=1)))  # another user
        _, done = await run(engine.submit(request([*first, 7, 8], max_tokens=1)))
        engine.close()
        return done

    done = asyncio.run(go())
    assert done.cached_tokens == 6


def test_a_cancelled_request_frees_its_slot_for_the_next(backend):
    async def go() -> None:
        engine = scheduler(backend, parallel=1, max_queue=1)
        endless = engine.submit(request([10], max_tokens=10_000, ignore_eos=True))
        waiting = engine.submit(request([1], max_tokens=2))
        endless.cancel()
        _, done = await asyncio.wait_for(run(waiting), 5)
        assert done.finish_reason == "length"
        assert engine.stats().busy == 0
        engine.close()

    asyncio.run(go())


class SlowBackend(FakeBackend):
    """2 ms a decode: a request with a long budget keeps its slot for a while."""

    def decode(self) -> None:
        time.sleep(0.002)
        super().decode()


def test_abandoned_waiting_requests_give_their_place_up_at_once():
    backend = SlowBackend(n_ctx=100_000)

    async def go() -> None:
        engine = scheduler(backend, parallel=1, max_queue=2)
        endless = engine.submit(request([10], max_tokens=10_000, ignore_eos=True))
        gone = [engine.submit(request([1], max_tokens=2)) for _ in range(2)]
        with pytest.raises(QueueFull):
            engine.submit(request([1]))
        for handle in gone:
            handle.cancel()  # their clients went away while they waited
        deadline = time.monotonic() + 5
        while engine.queue_depth:  # while the slot is still taken
            assert time.monotonic() < deadline, "abandoned requests kept their places"
            await asyncio.sleep(0.005)
        assert engine.stats().busy == 1
        again = [engine.submit(request([1], max_tokens=2)) for _ in range(2)]
        endless.cancel()
        results = await asyncio.wait_for(asyncio.gather(*(run(h) for h in again)), 5)
        assert all(done.finish_reason == "length" for _, done in results)
        engine.close()

    asyncio.run(go())


def test_a_failed_decode_fails_only_its_own_request(backend):
    async def go() -> None:
        engine = scheduler(backend)
        good = engine.submit(request([1, 2]))
        bad = engine.submit(request([3, POISON]))
        with pytest.raises(EngineFailed):
            await run(bad)
        text, done = await run(good)
        assert text.endswith("<9>") and done.finish_reason == "stop"
        engine.close()

    asyncio.run(go())


def test_shutdown_ends_running_and_waiting_requests_with_an_error(backend):
    async def go() -> None:
        engine = scheduler(backend, parallel=1, max_queue=4)
        running = engine.submit(request([10], max_tokens=10_000, ignore_eos=True))
        waiting = engine.submit(request([1]))
        engine.shutdown("going down")
        for handle in (running, waiting):
            with pytest.raises(EngineFailed, match="going down"):
                await asyncio.wait_for(run(handle), 5)
        engine.close()

    asyncio.run(go())


def test_listeners_see_every_request_that_ends(backend):
    seen: list[str] = []

    async def go() -> None:
        engine = scheduler(backend)
        engine.listeners.append(lambda _req, done: seen.append(done.finish_reason))
        await run(engine.submit(request([1], max_tokens=1)))
        with pytest.raises(EngineFailed):
            await run(engine.submit(request([POISON])))
        engine.close()

    asyncio.run(go())
    assert seen == ["length", "error"]
