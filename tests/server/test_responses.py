"""The Responses API through a real server with the official SDK: created, streamed with
typed events, stored and continued, function tools, and file_search on a vector store of
an uploaded Korean PDF."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pdfgen
import pytest
from fakes import FakeEngine
from liveserver import LiveServer, make_settings
from openai.types.responses import (
    Response,
    ResponseFileSearchToolCall,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
)

from ragserve.engine import TextDelta
from ragserve.server.app import create_app

CONTRACT = [
    ["물품 구매 계약서"],
    ["계약번호 GX-4471 의 납품 기한은 2027년 3월 31일이며 계약금액은 7억 2천만원이다."],
]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 40}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture(scope="module")
def store(sdk, tmp_path_factory) -> tuple[str, str]:
    """A vector store holding one uploaded Korean contract: (store id, file id)."""
    pdf = pdfgen.write_pdf(tmp_path_factory.mktemp("resp-pdfs") / "계약서.pdf", CONTRACT)
    with pdf.open("rb") as f:
        uploaded = sdk.files.create(file=f, purpose="assistants")
    vs = sdk.vector_stores.create(name="contracts", file_ids=[uploaded.id])
    deadline = time.monotonic() + 120
    while sdk.vector_stores.retrieve(vs.id).file_counts.completed < 1:
        assert time.monotonic() < deadline, "the upload was not indexed in time"
        time.sleep(0.3)
    return vs.id, uploaded.id


def text_of(response: Response) -> str:
    return response.output_text


def test_a_plain_response_has_every_field_the_sdk_types_require(sdk):
    r = sdk.responses.create(
        model="smollm2-norag",
        input="Say hello.",
        instructions="You are terse.",
        max_output_tokens=16,
        metadata={"ticket": "42"},
        temperature=0,
    )
    assert isinstance(r, Response)
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.status in ("completed", "incomplete")
    assert r.model == "smollm2-norag"
    assert r.instructions == "You are terse."
    assert r.metadata == {"ticket": "42"}
    assert r.max_output_tokens == 16
    assert isinstance(r.output[0], ResponseOutputMessage)
    assert r.output_text.strip()
    u = r.usage
    assert u is not None and u.input_tokens > 0 and u.output_tokens > 0
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert u.input_tokens_details.cached_tokens >= 0
    assert u.output_tokens_details.reasoning_tokens == 0
    assert r.parallel_tool_calls is True and r.tools == [] and r.tool_choice == "auto"


def test_max_output_tokens_makes_it_incomplete(sdk):
    r = sdk.responses.create(
        model="smollm2-norag",
        input="Write a long story about a dragon.",
        max_output_tokens=3,
        temperature=0,
    )
    assert r.status == "incomplete"
    assert r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage is not None and r.usage.output_tokens == 3


def test_streaming_sends_the_typed_events_in_order(sdk):
    with sdk.responses.stream(
        model="smollm2-norag", input="Name a colour.", max_output_tokens=12
    ) as stream:
        events = list(stream)
    final = events[-1].response  # the SDK's get_final_response() wants `completed` only
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    for expected in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert expected in kinds
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == deltas


def test_stored_responses_are_retrieved_listed_continued_and_deleted(sdk):
    first = sdk.responses.create(
        model="smollm2-norag",
        input=[
            {"role": "user", "content": "My name is Mina."},
            {"role": "assistant", "content": "Hello Mina."},
            {"role": "user", "content": "Please remember it."},
        ],
        max_output_tokens=16,
        temperature=0,
    )
    got = sdk.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == first.output_text
    items = sdk.responses.input_items.list(first.id, order="asc")
    assert [i.role for i in items.data] == ["user", "assistant", "user"]
    assert items.data[0].content[0].text == "My name is Mina."
    page = sdk.responses.input_items.list(first.id, order="asc", limit=2)
    assert len(page.data) == 2 and page.has_more
    rest = sdk.responses.input_items.list(first.id, order="asc", after=page.data[-1].id)
    assert [i.id for i in rest.data] == [items.data[2].id] and not rest.has_more

    second = sdk.responses.create(
        model="smollm2-norag",
        previous_response_id=first.id,
        input="What is my name?",
        max_output_tokens=16,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    assert second.usage is not None
    # the first turn is in the KV cache: only the new turn is processed
    assert second.usage.input_tokens_details.cached_tokens > first.usage.input_tokens // 2

    assert sdk.responses.delete(first.id) is None
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError) as e:
        sdk.responses.create(model="smollm2", previous_response_id=first.id, input="hi")
    assert e.value.body["param"] == "previous_response_id"


def test_store_false_is_not_kept_and_full_history_reuses_the_prefix(sdk):
    history = [{"role": "user", "content": "List three fruits, briefly."}]
    first = sdk.responses.create(
        model="smollm2-norag", input=history, store=False, max_output_tokens=24, temperature=0
    )
    assert first.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(first.id)
    # Codex's way: the whole history (the output items included) every turn
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"role": "user", "content": "And three vegetables?"})
    second = sdk.responses.create(
        model="smollm2-norag", input=history, store=False, max_output_tokens=24, temperature=0
    )
    assert second.usage.input_tokens_details.cached_tokens > first.usage.input_tokens // 2


def forced_weather_call(sdk, max_output_tokens: int):
    return sdk.responses.create(
        model="smollm2-norag",
        input="What is the weather in Seoul?",
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_output_tokens=max_output_tokens,
    )


def test_a_function_tool_round_trip(sdk):
    first = forced_weather_call(sdk, 100)
    calls = [o for o in first.output if isinstance(o, ResponseFunctionToolCall)]
    assert len(calls) >= 1 and calls[0].name == "get_weather"
    assert set(json.loads(calls[0].arguments)) == {"city"}
    assert calls[0].call_id and calls[0].id.startswith("fc_")
    second = sdk.responses.create(
        model="smollm2-norag",
        previous_response_id=first.id,
        input=[
            {
                "type": "function_call_output",
                "call_id": calls[0].call_id,
                "output": '{"temp_c": 21, "sky": "clear"}',
            }
        ],
        tools=[WEATHER],
        max_output_tokens=32,
    )
    assert second.status in ("completed", "incomplete")
    assert isinstance(second.output[-1], ResponseOutputMessage | ResponseFunctionToolCall)


def test_a_call_cut_by_the_token_limit_is_incomplete(sdk):
    """The limit reached inside a call's arguments: the response is incomplete and so is
    that call (its arguments are not whole JSON), never `completed`."""
    r = forced_weather_call(sdk, 24)  # the call is named by then; its arguments not done
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    calls = [o for o in r.output if isinstance(o, ResponseFunctionToolCall)]
    assert calls and calls[-1].status == "incomplete", r.output
    assert all(c.status == "completed" for c in calls[:-1])


def test_a_streamed_function_call_has_argument_events(sdk):
    with sdk.responses.stream(
        model="smollm2-norag",
        input="Weather in Busan?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
        max_output_tokens=100,
    ) as stream:
        events = list(stream)
    final = events[-1].response
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    call = next(o for o in final.output if isinstance(o, ResponseFunctionToolCall))
    assert done.arguments == call.arguments and json.loads(call.arguments)["city"]


def test_file_search_cites_the_uploaded_file_at_its_page(sdk, store):
    store_id, file_id = store
    r = sdk.responses.create(
        model="smollm2",
        input="계약번호 GX-4471 의 납품 기한은?",
        tools=[{"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 3}],
        include=["file_search_call.results"],
        max_output_tokens=48,
        temperature=0,
    )
    search = r.output[0]
    assert isinstance(search, ResponseFileSearchToolCall)
    assert search.status == "completed" and search.queries == ["계약번호 GX-4471 의 납품 기한은?"]
    assert search.results and search.results[0].file_id == file_id
    top = search.results[0]
    assert top.filename == "계약서.pdf" and "GX-4471" in (top.text or "")
    page = int(top.attributes["ragserve.page"])  # the passage's first page (a float in the SDK)
    assert 1 <= page <= top.attributes["ragserve.page_end"] == 2
    assert top.attributes["ragserve.origin"] == "text"  # a typed PDF: no OCR confidence
    assert "ragserve.ocr_confidence" not in top.attributes
    url = top.attributes["ragserve.url"]
    assert f"/v1/files/{file_id}/content" in url and url.endswith(f"#page={page}")
    message = r.output[-1]
    assert isinstance(message, ResponseOutputMessage)
    annotations = message.content[0].annotations
    cites = [a for a in annotations if a.type == "file_citation"]
    links = [a for a in annotations if a.type == "url_citation"]
    assert cites and cites[0].file_id == file_id and cites[0].filename == "계약서.pdf"
    assert links and links[0].url == url
    assert 0 <= cites[0].index <= len(message.content[0].text)


def test_file_search_results_stay_out_unless_included_and_filters_apply(sdk, store):
    store_id, _ = store
    tool = {"type": "file_search", "vector_store_ids": [store_id]}
    r = sdk.responses.create(
        model="smollm2", input="GX-4471 납품", tools=[tool], max_output_tokens=8
    )
    assert isinstance(r.output[0], ResponseFileSearchToolCall) and r.output[0].results is None
    none = sdk.responses.create(
        model="smollm2",
        input="GX-4471 납품",
        tools=[{**tool, "filters": {"type": "eq", "key": "team", "value": "nobody"}}],
        include=["file_search_call.results"],
        max_output_tokens=8,
    )
    assert none.output[0].results == []


def test_file_search_streams_its_events(sdk, store):
    store_id, _ = store
    with sdk.responses.stream(
        model="smollm2",
        input="GX-4471 계약금액",
        tools=[{"type": "file_search", "vector_store_ids": [store_id]}],
        max_output_tokens=24,
    ) as stream:
        kinds = [e.type for e in stream]
    searching = [k for k in kinds if k.startswith("response.file_search_call.")]
    assert searching == [
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
    ]
    assert "response.output_text.annotation.added" in kinds


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0]",
        ),
        ({"input": "hi", "tools": [{"type": "no_such_tool"}]}, "tools[0]"),
        (
            {"input": "hi", "tools": [{"type": "namespace", "name": "n", "tools": [{}]}]},
            "tools[0].tools[0]",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        ({"input": [{"type": "nonsense"}]}, "input[0]"),
        ({"input": [{"role": "user"}]}, "input[0]"),
        ({"input": "hi", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"input": "hi", "background": True}, "background"),
        ({"input": "hi", "include": ["message.output_text.logprobs"]}, "include"),
        ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format"),
        ({"input": []}, "input"),
        ({"input": "hi", "previous_response_id": "resp_doesnotexist"}, "previous_response_id"),
    ],
)
def test_bad_requests_get_openai_errors_naming_the_field(library, body, param):
    r = httpx.post(library.url + "/v1/responses", json={"model": "smollm2", **body}, timeout=30)
    assert r.status_code in (400, 404), r.text
    error = r.json()["error"]
    assert error["param"] == param, error
    assert error["message"]


def test_json_schema_text_format_goes_through_the_grammar(sdk):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 20}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    r = sdk.responses.create(
        model="smollm2-norag",
        input="Give a one-word answer: what colour is the sky?",
        text={"format": {"type": "json_schema", "name": "a", "schema": schema, "strict": True}},
        max_output_tokens=48,
    )
    assert set(json.loads(r.output_text)) == {"answer"}
    assert r.text.format.type == "json_schema"


def test_stored_responses_survive_a_restart(tmp_path, index_dir, engine, retriever):
    settings = make_settings(index_dir, data_dir=tmp_path)
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as first:
        sdk = openai.OpenAI(base_url=first.url + "/v1", api_key="x", max_retries=0)
        kept = sdk.responses.create(model="smollm2-norag", input="Hi.", max_output_tokens=8)
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as second:
        sdk = openai.OpenAI(base_url=second.url + "/v1", api_key="x", max_retries=0)
        again = sdk.responses.retrieve(kept.id)
        assert again.output_text == kept.output_text and again.usage == kept.usage
        follow = sdk.responses.create(
            model="smollm2-norag", previous_response_id=kept.id, input="Bye.", max_output_tokens=8
        )
        assert follow.previous_response_id == kept.id


def test_retention_purges_old_responses_and_zero_stores_none(
    tmp_path, index_dir, engine, retriever
):
    from ragserve.server.responses.protocol import ResponseObject
    from ragserve.server.responses.store import ResponseStore

    store = ResponseStore(tmp_path, retention_s=3600)
    now = time.time()
    store.put(ResponseObject(id="resp_old", created_at=int(now - 7200)), [], [])
    store.put(ResponseObject(id="resp_new", created_at=int(now)), [{"id": "msg_1"}], [])
    assert store.get("resp_old") is None  # past the retention: gone even before a purge
    assert store.purge(now) == 1
    assert store.get("resp_new") is not None
    assert store.items("resp_new", None, 10, "asc") == ([{"id": "msg_1"}], False)
    store.close()

    settings = make_settings(index_dir, data_dir=tmp_path / "none", response_retention_days=0)
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as live:
        sdk = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
        r = sdk.responses.create(model="smollm2-norag", input="Hi.", max_output_tokens=4)
        assert r.store is False
        with pytest.raises(openai.NotFoundError):
            sdk.responses.retrieve(r.id)


def test_a_codex_request_is_answered(sdk):
    """What Codex CLI 0.171 sends (shape kept, texts shortened): developer messages with
    input_text parts, function tools, a `namespace` of tools, a hosted `web_search`,
    `store: false`, `reasoning`, `include`, `client_metadata`."""
    body = {
        "model": "smollm2-norag",
        "instructions": None,
        "input": [
            {
                "type": "message",
                "id": "msg_a",
                "role": "developer",
                "content": [{"type": "input_text", "text": "You are a coding agent."}],
            },
            {
                "type": "message",
                "id": "msg_b",
                "role": "user",
                "content": [{"type": "input_text", "text": "Say hello."}],
            },
        ],
        "tools": [
            {
                "type": "function",
                "name": "exec_command",
                "description": "Runs a command.",
                "strict": False,
                "parameters": {
                    "type": "object",
                    "properties": {"cmd": {"type": "string", "maxLength": 40}},
                    "required": ["cmd"],
                    "additionalProperties": False,
                },
            },
            {
                "type": "namespace",
                "name": "multi_agent_v1",
                "description": "Sub-agents.",
                "tools": [
                    {
                        "type": "function",
                        "name": "close_agent",
                        "description": "Close one.",
                        "strict": False,
                        "parameters": {"type": "object", "properties": {}},
                    }
                ],
            },
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "thread-1",
        "client_metadata": {"thread_id": "thread-1"},
    }
    body = {k: v for k, v in body.items() if v is not None}
    with sdk.responses.stream(
        **{k: v for k, v in body.items() if k != "stream" and k != "client_metadata"},
        extra_body={"client_metadata": body["client_metadata"]},
        max_output_tokens=24,
        temperature=0,
    ) as stream:
        events = list(stream)
    final = events[-1].response
    assert final.status in ("completed", "incomplete")
    assert [t.name for t in final.tools] == ["exec_command", "close_agent"]
    assert final.tools[1].model_extra.get("namespace") == "multi_agent_v1"
    named = sdk.responses.create(
        model="smollm2-norag",
        input="Close the agent.",
        tools=body["tools"],
        tool_choice={"type": "function", "name": "close_agent"},
        store=False,
        max_output_tokens=32,
        temperature=0,
    )
    call = next(o for o in named.output if isinstance(o, ResponseFunctionToolCall))
    assert call.name == "close_agent" and call.namespace == "multi_agent_v1"


class FailingEngine(FakeEngine):
    """Says one word, then fails: what a broken generation looks like mid-stream."""

    n_vocab = 1000
    model_id = "fake"

    async def generate(self, request):
        yield TextDelta("Partly")
        raise RuntimeError("the model failed")


def test_a_generation_that_fails_mid_stream_ends_failed_and_is_stored_so(tmp_path, index_dir):
    settings = make_settings(index_dir, data_dir=tmp_path)
    with LiveServer(create_app(settings, engine=FailingEngine(n_ctx=1000))) as live:
        sdk = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
        with sdk.responses.stream(model="fake-norag", input="Hi.") as stream:
            events = list(stream)
        assert events[-1].type == "response.failed"
        failed = events[-1].response
        assert failed.status == "failed" and failed.error.message
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert sdk.responses.retrieve(failed.id).status == "failed"
