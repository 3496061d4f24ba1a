"""Tool calling through the real server, the real SmolLM2 and the official SDKs.

SmolLM2's template knows nothing of tools, so these also show the fallback: tools described
in the system message, calls in the Hermes format, a grammar that makes a 135M model write
calls whose arguments validate against the schema.
"""

from __future__ import annotations

import asyncio
import json
import time
import typing
from collections.abc import Iterator

import httpx
import jsonschema
import openai
import pydantic
import pytest
from liveserver import LiveServer, make_settings

from ragserve.engine import LlamaEngine
from ragserve.server.app import create_app
from ragserve.server.settings import bundled_model_path

WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": WEATHER_PARAMS,
    },
}
ADD_PARAMS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
ADD = {"type": "function", "function": {"name": "add", "parameters": ADD_PARAMS}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
NORAG = "smollm2-norag"


def named(name: str) -> dict:
    return {"type": "function", "function": {"name": name}}


def assert_valid_call(call, name: str, schema: dict) -> dict:
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == name
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, schema)
    return arguments


def assembled(chunks) -> tuple[dict[int, dict], str, str | None, list]:
    """Stream chunks put together the way agents do it."""
    calls: dict[int, dict] = {}
    text, finish, firsts = "", None, []
    for chunk in chunks:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        text += choice.delta.content or ""
        for piece in choice.delta.tool_calls or ():
            if piece.index not in calls:
                firsts.append(piece)
                calls[piece.index] = {"id": piece.id, "name": piece.function.name, "args": ""}
            calls[piece.index]["args"] += piece.function.arguments or ""
    return calls, text, finish, firsts


def test_a_named_tool_choice_gives_a_call_whose_arguments_validate(client):
    resp = client.chat.completions.create(
        model=NORAG,
        messages=ASK,
        tools=[WEATHER, ADD],
        tool_choice=named("add"),
        temperature=0,
        max_tokens=100,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert_valid_call(call, "add", ADD_PARAMS)


def test_streamed_deltas_come_as_openai_sends_them_and_assemble_to_the_same_call(client):
    kwargs = dict(
        model=NORAG,
        messages=ASK,
        tools=[WEATHER, ADD],
        tool_choice=named("get_weather"),
        temperature=0,
        max_tokens=100,
        seed=7,
    )
    whole = client.chat.completions.create(**kwargs).choices[0].message.tool_calls[0]
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    calls, text, finish, firsts = assembled(chunks)
    assert finish == "tool_calls" and text == ""
    [first] = firsts  # the first delta of a call: index, id, type and name
    assert first.index == 0 and first.id and first.type == "function"
    assert first.function.name == "get_weather" and first.function.arguments == ""
    pieces = [
        p.function.arguments
        for c in chunks
        if c.choices
        for p in c.choices[0].delta.tool_calls or ()
        if p.function.arguments
    ]
    assert len(pieces) > 1  # arguments arrive as they are generated, not at the end
    for c in chunks:  # later pieces carry only the index and arguments
        for p in (c.choices[0].delta.tool_calls or ()) if c.choices else ():
            assert p is first or (p.id is None and p.function.name is None)
    assert calls[0]["name"] == whole.function.name
    assert json.loads(calls[0]["args"]) == json.loads(whole.function.arguments)
    jsonschema.validate(json.loads(calls[0]["args"]), WEATHER_PARAMS)


def test_required_gives_one_call_when_parallel_calls_are_off(client):
    resp = client.chat.completions.create(
        model=NORAG,
        messages=ASK,
        tools=[WEATHER, ADD],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=100,
    )
    [call] = resp.choices[0].message.tool_calls
    assert call.function.name in ("get_weather", "add")
    assert_valid_call(
        call, call.function.name, WEATHER_PARAMS if "weather" in call.function.name else ADD_PARAMS
    )
    assert resp.choices[0].finish_reason == "tool_calls"


def test_none_gives_text_and_never_call_syntax(client):
    resp = client.chat.completions.create(
        model=NORAG, messages=ASK, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=30
    )
    message = resp.choices[0].message
    assert message.tool_calls is None and message.content
    assert "<tool_call>" not in message.content
    assert resp.choices[0].finish_reason in ("stop", "length")


def weather_call(i: int, city: str) -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": json.dumps({"city": city, "unit": "celsius"}),
                },
            }
        ],
    }


def agent_history() -> list[dict]:
    """Three earlier rounds of the same agent loop: the model learns the pattern from them."""
    messages: list[dict] = []
    for i, (city, report) in enumerate([("Paris", "18 C"), ("Rome", "25 C"), ("Oslo", "3 C")]):
        messages += [
            {"role": "user", "content": f"What is the weather in {city}?"},
            weather_call(i, city),
            {"role": "tool", "tool_call_id": f"call_{i}", "content": report},
            {"role": "assistant", "content": f"It is {report} in {city}."},
        ]
    return [*messages, {"role": "user", "content": "What is the weather in Berlin?"}]


@pytest.fixture
def agent(index_dir) -> Iterator[openai.OpenAI]:
    """A server of its own: at temperature 0, what a small model decides in `auto` mode can
    flip with the numerics of whatever the shared engine's KV cache held before."""
    engine = LlamaEngine(bundled_model_path(), model_id="smollm2", n_ctx=2048, parallel=1)
    with LiveServer(create_app(make_settings(index_dir), engine=engine)) as live:
        yield openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0, timeout=120)
    engine.close()


def test_auto_round_trip_call_then_result_then_answer_reusing_the_cached_prefix(agent):
    client = agent
    messages = agent_history()
    first = client.chat.completions.create(
        model=NORAG, messages=messages, tools=[WEATHER], temperature=0, max_tokens=60
    )
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    assert assert_valid_call(call, "get_weather", WEATHER_PARAMS)["city"] == "Berlin"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "11 C"},
    ]
    final = client.chat.completions.create(
        model=NORAG, messages=messages, tools=[WEATHER], temperature=0, max_tokens=40
    )
    answer = final.choices[0]
    assert answer.finish_reason == "stop" and answer.message.tool_calls is None
    assert "11" in answer.message.content
    usage = final.usage
    # the whole conversation up to the model's own call was still in the KV cache
    assert usage.prompt_tokens_details.cached_tokens > 0.8 * usage.prompt_tokens


def test_parse_with_a_strict_pydantic_function_tool(client):
    class Weather(pydantic.BaseModel):
        city: str = pydantic.Field(max_length=40)
        unit: typing.Literal["celsius", "fahrenheit"]

    resp = client.chat.completions.parse(
        model=NORAG,
        messages=ASK,
        tools=[openai.pydantic_function_tool(Weather, name="get_weather")],
        tool_choice=named("get_weather"),
        temperature=0,
        max_tokens=100,
    )
    call = resp.choices[0].message.tool_calls[0]
    parsed = call.function.parsed_arguments
    # what the server guarantees: the named tool, arguments the strict schema accepts (the
    # grammar's work); what SmolLM2 puts in `city` depends on what the KV cache held
    # before (CI once saw "" after other modules' requests, never alone)
    assert call.function.name == "get_weather"
    assert isinstance(parsed, Weather) and len(parsed.city) <= 40


def test_langchain_bind_tools_returns_tool_calls(server):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    llm = ChatOpenAI(
        base_url=server.url + "/v1", api_key="unused", model=NORAG, temperature=0, max_tokens=100
    )
    message = llm.bind_tools([add], tool_choice="add").invoke("What is 2 plus 3?")
    [call] = message.tool_calls
    assert call["name"] == "add" and set(call["args"]) == {"a", "b"}
    assert all(isinstance(v, int) for v in call["args"].values())


@pytest.mark.parametrize(
    ("tools", "choice", "param"),
    [
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/x"}}}],
            "required",
            "tools[0].function.parameters",
        ),
        (
            [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {"s": {"maxLength": 99999}}},
                    },
                }
            ],
            "auto",
            "tools[0].function.parameters",
        ),
        ([WEATHER], named("nope"), "tool_choice"),
        ([WEATHER, WEATHER], "auto", "tools"),
        (None, "required", "tool_choice"),
    ],
)
def test_bad_tools_get_400_naming_the_field_and_the_server_keeps_serving(
    client, tools, choice, param
):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=NORAG, messages=ASK, tools=tools, tool_choice=choice, max_tokens=5
        )
    assert err.value.body["param"] == param
    ok = client.chat.completions.create(model=NORAG, messages=ASK, max_tokens=3)
    assert ok.choices[0].message.content is not None


def test_a_bad_tool_name_is_refused_when_decoded(http):
    body = {
        "messages": ASK,
        "tools": [{"type": "function", "function": {"name": "no spaces allowed"}}],
    }
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400 and "tools" in resp.json()["error"]["message"]


def test_tool_requests_batch_with_plain_ones(server):
    async def run() -> list:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        jobs = [
            client.chat.completions.create(
                model=NORAG,
                messages=[{"role": "user", "content": f"Add {i} and {i + 1}."}],
                tools=[ADD],
                tool_choice=named("add"),
                temperature=0,
                max_tokens=100,
            )
            for i in range(4)
        ] + [
            client.chat.completions.create(
                model=NORAG, messages=[{"role": "user", "content": "Hi"}], max_tokens=10
            )
            for _ in range(2)
        ]
        return await asyncio.gather(*jobs)

    results = asyncio.run(run())
    for resp in results[:4]:
        assert_valid_call(resp.choices[0].message.tool_calls[0], "add", ADD_PARAMS)
    for resp in results[4:]:
        assert resp.choices[0].message.tool_calls is None and resp.choices[0].message.content


def test_streaming_with_tools_keeps_usage_and_stop_strings(client):
    chunks = list(
        client.chat.completions.create(
            model=NORAG,
            messages=ASK,
            tools=[WEATHER],
            tool_choice=named("get_weather"),
            stream=True,
            stream_options={"include_usage": True},
            temperature=0,
            max_tokens=100,
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    calls, _, finish, _ = assembled(chunks)
    assert finish == "tool_calls" and calls[0]["name"] == "get_weather"
    text = client.chat.completions.create(
        model=NORAG,
        messages=[{"role": "user", "content": "Count: one, two, three, four"}],
        tools=[WEATHER],
        stop=["three"],
        temperature=0,
        max_tokens=40,
    )
    assert "three" not in (text.choices[0].message.content or "")


def test_auto_with_a_response_format_answers_in_the_format_or_calls(client):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 60}},
        "required": ["answer"],
    }
    resp = client.chat.completions.create(
        model=NORAG,
        messages=[{"role": "user", "content": "Say hello."}],
        tools=[WEATHER],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        temperature=0,
        max_tokens=100,
    )
    message = resp.choices[0].message
    if message.tool_calls:
        assert_valid_call(message.tool_calls[0], "get_weather", WEATHER_PARAMS)
    else:
        jsonschema.validate(json.loads(message.content), schema)


def test_rag_sources_stay_with_the_tool_loop_and_tool_turns_do_not_search_again(client):
    question = "What is the budget of Project Falcon? Use the calculator if needed."
    messages = [{"role": "user", "content": question}]
    first = client.chat.completions.create(
        model="smollm2",
        messages=messages,
        tools=[ADD],
        tool_choice=named("add"),
        temperature=0,
        max_tokens=100,
    )
    sources = first.model_extra["sources"]
    assert sources and sources[0]["document"] == "falcon.pdf"
    [call] = first.choices[0].message.tool_calls
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "4.2"},
    ]
    final = client.chat.completions.create(
        model="smollm2", messages=messages, tools=[ADD], temperature=0, max_tokens=30
    )
    # no new search: the question's sources come back, and its augmented turn is the
    # cached prefix (the passages are still in front of the model)
    assert final.model_extra["sources"] == sources
    usage = final.usage
    assert usage.prompt_tokens_details.cached_tokens > 0.8 * usage.prompt_tokens


def test_with_tools_a_full_queue_still_gets_429_and_a_closed_stream_frees_its_slot(index_dir):
    engine = LlamaEngine(
        bundled_model_path(), model_id="smollm2", n_ctx=4096, parallel=1, max_queue=0
    )
    body = {
        "model": NORAG,
        "messages": ASK,
        "tools": [WEATHER],
        "max_tokens": 3000,
        "ignore_eos": True,  # runs for many seconds: the slot stays taken
        "stream": True,
    }
    try:
        with (
            LiveServer(create_app(make_settings(index_dir), engine=engine)) as live,
            httpx.Client(base_url=live.url, timeout=60) as http,
        ):
            with http.stream("POST", "/v1/chat/completions", json=body) as first:
                lines = first.iter_lines()
                next(lines)  # the first request holds the only slot
                second = http.post("/v1/chat/completions", json=body)
                assert second.status_code == 429 and int(second.headers["retry-after"]) > 0
            deadline = time.monotonic() + 10
            while engine.stats().busy:  # closed: cancelled at the next step
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        engine.close()
