"""Every error case in OpenAI's shape, against the real server."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from liveserver import LiveServer, make_settings

from ragserve.engine import LlamaEngine
from ragserve.server.app import create_app
from ragserve.server.settings import bundled_model_path


def error_of(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def chat(http, body, **kw) -> httpx.Response:
    return http.post("/v1/chat/completions", json=body, **kw)


def test_validation_errors_are_400(http):
    assert error_of(chat(http, {"messages": "hi"}))["param"] == "messages"
    assert "at least one" in error_of(chat(http, {"messages": []}))["message"]
    bad_role = chat(http, {"messages": [{"role": "robot", "content": "x"}]})
    assert bad_role.status_code == 400 and "robot" in error_of(bad_role)["message"]
    assert (
        error_of(chat(http, {"messages": [{"role": "user", "content": "x"}], "n": 2}))["param"]
        == "n"
    )
    assert (
        error_of(chat(http, {"messages": [{"role": "user", "content": "x"}], "temperature": 7}))[
            "param"
        ]
        == "temperature"
    )
    assert (
        error_of(
            chat(
                http,
                {
                    "messages": [{"role": "user", "content": "x"}],
                    "tool_choice": "required",
                    "tools": [],
                },
            )
        )["param"]
        == "tool_choice"
    )
    not_json = http.post(
        "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400 and error_of(not_json)["type"] == "invalid_request_error"
    emb = http.post("/v1/embeddings", json={"input": "x", "encoding_format": "int8"})
    assert emb.status_code == 400 and error_of(emb)["param"] == "encoding_format"


def test_unknown_fields_and_client_quirks_are_accepted(http):
    resp = chat(
        http,
        {
            "model": "whatever",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Hi"},
                        {"type": "image_url", "image_url": {"url": "x"}},
                    ],
                },
                {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
                {"role": "tool", "content": "42", "tool_call_id": "1"},
                {"role": "user", "content": "ok", "name": "bob"},
            ],
            "max_completion_tokens": 3,
            "stream_options": {"include_usage": True},
            "user": {"id": "open-webui"},
            "prompt_cache_key": "x",
            "store": False,
            "metadata": {"a": "b"},
            "stop": ["\n\n", "###", "x", "y", "z"],
            "seed": 1,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "auto",
            "logprobs": False,
            "reasoning_effort": "low",
            "service_tier": "auto",
        },
        headers={
            "OpenAI-Organization": "org",
            "X-Stainless-Lang": "python",
            "Authorization": "Bearer undefined",
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] <= 3


def test_unknown_route_and_method(http):
    missing = http.get("/v1/nothing-here")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = http.delete("/v1/models")
    assert wrong.status_code == 405 and error_of(wrong)["type"] == "invalid_request_error"
    assert http.get("/v1/models/").status_code == 200
    assert http.get("/v1//models").status_code == 200


def test_model_not_found_404(http, index_dir, engine, retriever):
    resp = http.get("/v1/models/gpt-4o")
    assert resp.status_code == 404 and error_of(resp)["code"] == "model_not_found"
    strict = create_app(
        make_settings(index_dir, strict_models=True), engine=engine, retriever=retriever
    )
    with LiveServer(strict) as live:
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.NotFoundError) as err:
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
        assert err.value.code == "model_not_found" and err.value.param == "model"


def test_body_too_large_413(http):
    resp = chat(http, {"messages": [{"role": "user", "content": "x" * 300_000}]})
    assert resp.status_code == 413 and error_of(resp)["code"] == "request_too_large"


def test_context_length_exceeded(client):
    long = "word " * 3000
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": long}]
        )
    assert err.value.code == "context_length_exceeded" and err.value.param == "messages"
    assert "maximum context length" in err.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="smollm2", max_tokens=5000, messages=[{"role": "user", "content": "hi"}]
        )


def test_sources_are_dropped_before_the_context_overflows(index_dir, retriever):
    engine = LlamaEngine(bundled_model_path(), model_id="smollm2", n_ctx=512)
    app = create_app(make_settings(index_dir), engine=engine, retriever=retriever)
    with LiveServer(app) as live:
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
        question = "What is the budget of Project Falcon? Please answer carefully."
        roomy = client.chat.completions.create(
            model="smollm2", max_tokens=8, messages=[{"role": "user", "content": question}]
        )
        # ~380 tokens of question leave room for fewer passages in a 512-token context
        tight = client.chat.completions.create(
            model="smollm2",
            max_tokens=8,
            messages=[{"role": "user", "content": question + " Thanks." * 180}],
        )
    engine.close()
    assert len(tight.model_extra["sources"]) < len(roomy.model_extra["sources"])
    assert tight.usage.prompt_tokens + 8 <= 512


def test_api_keys_cors_and_queue(index_dir, retriever):
    engine = LlamaEngine(
        bundled_model_path(), model_id="smollm2", n_ctx=2048, parallel=1, max_queue=1
    )
    settings = make_settings(
        index_dir, api_keys=("k-one", "k-two"), cors_origins=("https://chat.example",)
    )
    with (
        LiveServer(create_app(settings, engine=engine, retriever=retriever)) as live,
        httpx.Client(base_url=live.url, timeout=60) as http,
    ):
        denied = http.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert denied.status_code == 401 and error_of(denied)["code"] == "invalid_api_key"
        assert http.get("/v1/models").status_code == 401
        assert http.get("/v1/models", headers={"Authorization": "Bearer k-two"}).status_code == 200
        assert http.get("/v1/models", headers={"x-api-key": "k-one"}).status_code == 200
        assert http.get("/health").status_code == 200
        assert http.get("/health/ready").status_code == 200
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()

        pre = http.options(
            "/v1/chat/completions",
            headers={
                "Origin": "https://chat.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
                "Access-Control-Request-Private-Network": "true",
            },
        )
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "https://chat.example"
        assert "authorization" in pre.headers["access-control-allow-headers"]
        assert pre.headers["access-control-allow-private-network"] == "true"
        err = http.get("/v1/models", headers={"Origin": "https://chat.example"})
        assert err.status_code == 401
        assert err.headers["access-control-allow-origin"] == "https://chat.example"
        other = http.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers

        # queue: one running, one waiting, the third is turned away with Retry-After
        auth = {"Authorization": "Bearer k-one"}
        body = {
            "model": "smollm2-norag",
            "max_tokens": 1500,  # many seconds: the slot stays taken while the test runs
            "stream": True,
            "messages": [{"role": "user", "content": "Tell a very long story."}],
            "ignore_eos": True,
        }
        with http.stream("POST", "/v1/chat/completions", json=body, headers=auth) as running:
            lines = running.iter_lines()  # keep it: a dropped iterator closes the connection
            next(lines)  # the first generation is under way
            deadline = time.monotonic() + 30
            while engine.stats().busy < 1:  # it holds the slot (the role chunk comes first)
                assert time.monotonic() < deadline, "the first request never started"
                time.sleep(0.01)
            waiting = threading.Thread(
                target=lambda: http.post(
                    "/v1/chat/completions",
                    json={**body, "stream": False, "max_tokens": 2},
                    headers=auth,
                )
            )
            waiting.start()
            deadline = time.monotonic() + 30
            while engine.queue_depth < 1:
                assert time.monotonic() < deadline, "the second request never queued"
                time.sleep(0.01)
            full = http.post("/v1/chat/completions", json={**body, "stream": False}, headers=auth)
            assert full.status_code == 429
            assert error_of(full)["type"] == "rate_limit_error"
            assert int(full.headers["retry-after"]) > 0
        waiting.join()
    engine.close()


def test_disconnect_stops_generation_and_the_queue_moves_on(server, http):
    body = {
        "model": "smollm2-norag",
        "max_tokens": 1500,
        "stream": True,
        "messages": [{"role": "user", "content": "Write a very long essay."}],
        # SmolLM2's end tokens barred: the answer cannot finish by itself before the client
        # leaves (CI once saw no cancel: a short essay that ended on its own is one way)
        "logit_bias": {"0": -100, "2": -100},
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        lines = resp.iter_lines()
        for _ in range(6):
            next(lines)
    # the client is gone; the server must stop that generation and serve the next request
    started = time.monotonic()
    quick = chat(
        http,
        {
            "model": "smollm2-norag",
            "max_tokens": 3,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert quick.status_code == 200
    deadline = time.monotonic() + 30
    while 'finish_reason="cancelled"' not in http.get("/metrics").text:
        assert time.monotonic() < deadline, http.get("/metrics").text[-3000:]
        time.sleep(0.1)
    assert time.monotonic() - started < 60
    metrics = http.get("/metrics").text
    for name in (
        "ragserve_requests_total",
        "ragserve_time_to_first_token_seconds_bucket",
        "ragserve_tokens_total",
        "ragserve_queue_depth",
        "ragserve_retrieval_seconds",
        "ragserve_index_chunks 3.0",
    ):
        assert name in metrics, name


def test_error_after_stream_started_is_an_error_frame(index_dir, retriever):
    from fakes import SubmitByGenerate

    from ragserve.engine import TextDelta

    class FailingEngine(SubmitByGenerate):
        model_id = "broken"
        n_ctx = 2048

        def tokenize(self, text, *, add_bos=False):
            return text.split()

        def chat_tokens(self, messages, tools=None):
            return " ".join(m["content"] for m in messages).split()

        def fim_tokens(self):
            return None

        def neutralize(self, text):
            return text

        async def generate(self, request):
            yield TextDelta("partial")
            raise RuntimeError("GPU fell off the bus")

    app = create_app(make_settings(index_dir), engine=FailingEngine(), retriever=retriever)
    with LiveServer(app) as live, httpx.Client(base_url=live.url) as http:
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200, resp.read()
            assert resp.headers["content-type"].startswith("text/event-stream"), resp.read()
            assert resp.headers["cache-control"] == "no-cache"
            assert resp.headers["x-accel-buffering"] == "no"
            frames = [line for line in resp.iter_lines() if line]
        assert all(f.startswith("data: ") for f in frames)
        last = json.loads(frames[-1][6:])
        assert last["error"]["type"] == "server_error" and "data: [DONE]" not in frames
        plain = http.post("/v1/chat/completions", json={**body, "stream": False})
        assert plain.status_code == 500 and plain.headers["x-should-retry"] == "false"
        assert error_of(plain)["type"] == "server_error"
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIError):
            list(
                client.chat.completions.create(
                    model="broken", messages=body["messages"], stream=True
                )
            )
