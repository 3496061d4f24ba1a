"""Continuous batching with the real SmolLM2 GGUF: many requests at once, none cut short."""

from __future__ import annotations

import asyncio
import json
import time

import openai
import pytest
from helpers import generate_text

from ragserve.engine import GenerationRequest, LlamaEngine, SamplingParams, TextDelta
from ragserve.server.settings import bundled_model_path

SHORT = ["Explain photosynthesis.", "Write a poem about the sea.", "List five fruits."]


def chat(engine: LlamaEngine, text: str) -> list[int]:
    return engine.chat_tokens([{"role": "user", "content": text}])


@pytest.fixture(scope="module")
def batch_engine():
    engine = LlamaEngine(bundled_model_path(), model_id="smollm2", n_ctx=1024, parallel=4)
    yield engine
    engine.close()


def test_concurrent_sdk_streams_all_complete_in_full(server):
    """Six streams against four slots: all finish with every token asked for."""

    async def main():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)

        async def one(i: int) -> tuple[str, int, str | None]:
            stream = await client.chat.completions.create(
                model="smollm2-norag",
                messages=[{"role": "user", "content": f"Tell story number {i}."}],
                max_tokens=48,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            text, tokens, finish = "", 0, None
            async for c in stream:
                if c.choices:
                    text += c.choices[0].delta.content or ""
                    finish = c.choices[0].finish_reason or finish
                if c.usage:
                    tokens = c.usage.completion_tokens
            return text, tokens, finish

        try:
            return await asyncio.gather(*(one(i) for i in range(6)))
        finally:
            await client.close()

    results = asyncio.run(main())
    assert [(tokens, finish) for _, tokens, finish in results] == [(48, "length")] * 6
    assert all(text.strip() for text, _, _ in results)


@pytest.mark.parametrize("params", [{"temperature": 0}, {"temperature": 0.9, "seed": 7}])
def test_output_is_the_same_alone_and_in_a_batch(batch_engine, params):
    """Greedy and seeded sampling give a request the same text whatever runs beside it."""
    prompts = [chat(batch_engine, q) for q in SHORT]

    async def main():
        alone = [
            (await generate_text(batch_engine, p, max_tokens=60, **params))[0] for p in prompts
        ]
        together = await asyncio.gather(
            *(generate_text(batch_engine, p, max_tokens=60, **params) for p in prompts)
        )
        return alone, [text for text, _ in together]

    alone, together = asyncio.run(main())
    assert all(alone) and alone == together


def test_a_long_prompt_does_not_freeze_running_streams():
    """Prefill is chunked: a running stream keeps getting tokens while a long prompt is read."""
    engine = LlamaEngine(
        bundled_model_path(), model_id="smollm2", n_ctx=2048, parallel=2, n_batch=32
    )
    long_prompt = chat(engine, "Summarise this report. " + "The river rose again. " * 120)
    assert len(long_prompt) > 500

    async def main():
        times: list[float] = []

        async def running():
            req = GenerationRequest(
                chat(engine, "Count upwards."),
                SamplingParams(max_tokens=400, temperature=0, ignore_eos=True),
            )
            async for event in engine.generate(req):
                if isinstance(event, TextDelta):
                    times.append(time.perf_counter())

        task = asyncio.create_task(running())
        while len(times) < 3:
            await asyncio.sleep(0.005)
        submitted = time.perf_counter()
        _, done = await generate_text(engine, long_prompt, max_tokens=1)
        first = submitted + done.ttft_s
        await task
        return sum(submitted < t < first for t in times), first < times[-1]

    try:
        during, joined = asyncio.run(main())
    finally:
        engine.close()
    # ~17 steps of 31 prompt tokens each, and the stream gets a token in every step
    assert joined  # the long prompt was answered while the first stream still ran
    assert during >= 8, during


def test_a_cancelled_stream_frees_its_slot():
    engine = LlamaEngine(bundled_model_path(), model_id="smollm2", n_ctx=1024, parallel=1)
    finished: list[str] = []
    engine.listeners.append(lambda _req, done: finished.append(done.finish_reason))

    async def main():
        endless = GenerationRequest(
            chat(engine, "Write forever."),
            SamplingParams(max_tokens=100_000, temperature=0, ignore_eos=True),
        )
        stream = engine.generate(endless)
        await anext(stream)
        await anext(stream)
        await stream.aclose()  # the client went away
        return await asyncio.wait_for(generate_text(engine, chat(engine, "hi"), max_tokens=3), 60)

    try:
        text, done = asyncio.run(main())
    finally:
        engine.close()
    assert done.completion_tokens == 3 and text
    assert finished[0] == "cancelled"


def test_a_follow_up_returns_to_the_slot_holding_its_conversation(batch_engine):
    """Other users' requests take other slots; the second turn only reads its new tokens."""
    turn1 = [{"role": "user", "content": "What is the capital of France?"}]

    async def main():
        first_text, first = await generate_text(
            batch_engine, batch_engine.chat_tokens(turn1), max_tokens=20, temperature=0
        )
        await asyncio.gather(
            *(generate_text(batch_engine, chat(batch_engine, q), max_tokens=10) for q in SHORT)
        )
        turn2 = [
            *turn1,
            {"role": "assistant", "content": first_text},
            {"role": "user", "content": "And of Spain?"},
        ]
        _, second = await generate_text(
            batch_engine, batch_engine.chat_tokens(turn2), max_tokens=5, temperature=0
        )
        return first, second

    first, second = asyncio.run(main())
    assert second.cached_tokens >= first.prompt_tokens
    assert second.prompt_tokens - second.cached_tokens < 40  # only the new turn was read


def test_json_grammar_inside_a_batch(batch_engine):
    schema_grammar = (
        'root ::= "{" ws "\\"city\\"" ws ":" ws "\\"" [A-Za-z ]{1,20} "\\"" ws "}"\nws ::= [ ]?'
    )

    async def main():
        return await asyncio.gather(
            generate_text(
                batch_engine,
                chat(batch_engine, "A city as JSON."),
                max_tokens=40,
                temperature=0.8,
                grammar=schema_grammar,
            ),
            *(generate_text(batch_engine, chat(batch_engine, q), max_tokens=40) for q in SHORT),
        )

    results = asyncio.run(main())
    assert set(json.loads(results[0][0])) == {"city"}
    assert all(done.completion_tokens > 0 for _, done in results)
