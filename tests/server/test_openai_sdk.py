"""The real server driven by the official openai SDK (sync and async)."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import openai
import pytest

QUESTION = "What is the budget of Project Falcon?"


def test_models_list_and_retrieve(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["smollm2", "smollm2-norag", "all-MiniLM-L6-v2"]
    assert client.models.retrieve("smollm2-norag").id == "smollm2-norag"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-4o")
    assert err.value.code == "model_not_found"


def test_chat_answers_with_sources_pointing_at_the_right_document(client):
    resp = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=40,
        temperature=0,
    )
    assert resp.object == "chat.completion"
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    sources = resp.model_extra["sources"]
    assert sources[0]["document"] == "falcon.pdf"
    assert sources[0]["index"] == 1 and sources[0]["page"] >= 1 and sources[0]["snippet"]
    assert "Sources:" in choice.message.content and "falcon.pdf" in choice.message.content
    u = resp.usage
    assert u.prompt_tokens > 50 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert resp._request_id


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "담당자는 누구입니까? 김민수"}],
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    first = chunks[0]
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert first.model_extra["sources"][0]["document"] == "도로보수.pdf"
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].delta.content is None
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()


def test_norag_model_and_rag_request_field(client):
    plain = client.chat.completions.create(
        model="smollm2-norag", messages=[{"role": "user", "content": QUESTION}], max_tokens=5
    )
    assert plain.model_extra["sources"] == []
    assert plain.usage.prompt_tokens < 60
    off = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=5,
        extra_body={"rag": {"enabled": False}},
    )
    assert off.model_extra["sources"] == []
    filtered = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=5,
        extra_body={"rag": {"documents": ["orchid.pdf"], "top_k": 1, "append_sources": False}},
    )
    assert [s["document"] for s in filtered.model_extra["sources"]] == ["orchid.pdf"]
    assert "Sources:" not in filtered.choices[0].message.content


def test_background_title_call_is_not_augmented(client):
    resp = client.chat.completions.create(
        model="gpt-3.5-turbo",  # LibreChat's default title model maps to the served one
        messages=[
            {
                "role": "user",
                "content": "### Task:\nGenerate a concise title for the "
                "chat about Project Falcon's budget. Reply in JSON.",
            }
        ],
        max_tokens=5,
    )
    assert resp.model_extra["sources"] == []


def test_json_schema_output_parses(client):
    schema = {
        "type": "object",
        "properties": {"project": {"type": "string"}, "budget_millions": {"type": "number"}},
        "required": ["project", "budget_millions"],
        "additionalProperties": False,
    }
    resp = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": QUESTION + " Answer in JSON."}],
        max_tokens=80,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "b", "schema": schema}},
    )
    data = json.loads(resp.choices[0].message.content)
    assert set(data) == {"project", "budget_millions"}
    assert isinstance(data["budget_millions"], int | float)
    obj = client.chat.completions.create(
        model="smollm2-norag",
        max_tokens=200,
        temperature=0,
        messages=[{"role": "user", "content": 'Reply with the JSON object {"ok": true}.'}],
        response_format={"type": "json_object"},
    )
    content = obj.choices[0].message.content
    assert content.lstrip().startswith("{")  # the grammar allows nothing else
    if obj.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)


def test_embeddings_base64_default_equals_float(client, embedder):
    texts = ["Project Falcon budget", "계약금액"]
    b64 = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # SDK asks base64
    flt = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="float")
    assert [d.index for d in b64.data] == [0, 1]
    a = np.array([d.embedding for d in b64.data])
    b = np.array([d.embedding for d in flt.data])
    assert a.shape == (2, 384) and np.allclose(a, b, atol=1e-6)
    assert np.allclose(a, embedder.embed_queries(texts), atol=1e-5)
    assert b64.usage.prompt_tokens > 0
    raw = client.embeddings.with_raw_response.create(
        model="x", input="hi", encoding_format="base64"
    )
    vec = np.frombuffer(
        base64.b64decode(raw.http_response.json()["data"][0]["embedding"]), dtype="<f4"
    )
    assert vec.shape == (384,) and abs(np.linalg.norm(vec) - 1) < 1e-4
    short = client.embeddings.create(model="x", input="hi", dimensions=64, encoding_format="float")
    assert len(short.data[0].embedding) == 64
    long = client.embeddings.create(model="x", input="budget " * 2000)  # over 512 tokens
    assert len(long.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError, match="token-id input"):
        client.embeddings.create(model="x", input=[[1, 2, 3]])


def test_legacy_completions(client):
    resp = client.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert resp.object == "text_completion" and resp.choices[0].text
    assert resp.usage.completion_tokens > 0
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="smollm2",
            prompt="The capital of France is",
            max_tokens=8,
            temperature=0,
            stream=True,
        )
        if c.choices
    )
    assert streamed == resp.choices[0].text


def test_second_turn_reuses_the_kv_cache(client):
    history = [{"role": "user", "content": QUESTION}]
    first = client.chat.completions.create(
        model="smollm2", messages=history, max_tokens=20, temperature=0
    )
    history += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And who manages it?"},
    ]
    second = client.chat.completions.create(model="smollm2", messages=history, max_tokens=5)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached > 0.3 * first.usage.prompt_tokens


def test_async_client_two_concurrent_streams_complete(server):
    async def run():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)

        async def one(question: str) -> tuple[str, int]:
            stream = await client.chat.completions.create(
                model="smollm2-norag",
                messages=[{"role": "user", "content": question}],
                max_tokens=40,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            text, usage = "", 0
            async for c in stream:
                if c.choices:
                    text += c.choices[0].delta.content or ""
                if c.usage:
                    usage = c.usage.completion_tokens
            return text, usage

        results = await asyncio.gather(one("Count to twenty."), one("Name ten colours."))
        await client.close()
        return results

    for text, tokens in asyncio.run(run()):
        assert text and tokens > 0
