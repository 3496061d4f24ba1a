"""The OpenAI Agents SDK against ragserve: its default model speaks Responses; a function
tool runs in the agent loop, and its hosted FileSearchTool is run by this server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import openai
import pdfgen
import pytest
from liveserver import LiveServer, make_settings

from ragserve.server.app import create_app

agents = pytest.importorskip("agents")
CONTRACT = [
    ["물품 구매 계약서"],
    ["계약번호 GX-4471 의 납품 기한은 2027년 3월 31일이며 계약금액은 7억 2천만원이다."],
]


@pytest.fixture(scope="module")
def live(tmp_path_factory, index_dir, engine, retriever) -> Iterator[LiveServer]:
    agents.set_tracing_disabled(True)  # no trace uploads to OpenAI
    settings = make_settings(index_dir, data_dir=tmp_path_factory.mktemp("agents-data"))
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as server:
        yield server


def model(live: LiveServer, name: str) -> agents.OpenAIResponsesModel:
    client = openai.AsyncOpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
    return agents.OpenAIResponsesModel(model=name, openai_client=client)


def test_an_agent_calls_a_function_tool_and_answers_from_its_result(live):
    calls: list[str] = []

    @agents.function_tool
    def contract_deadline(contract_id: str) -> str:
        """The delivery deadline of a contract."""
        calls.append(contract_id)
        return "31 March 2027"

    agent = agents.Agent(
        name="clerk",
        instructions="Use the tool to look contracts up.",
        model=model(live, "smollm2-norag"),
        tools=[contract_deadline],
        model_settings=agents.ModelSettings(
            tool_choice="required",
            # one call a turn: forced to call, SmolLM2 may otherwise repeat the call until
            # max_tokens (seen on an AVX2-only CPU), an incomplete response the SDK rightly
            # treats as an error
            parallel_tool_calls=False,
            temperature=0,
            max_tokens=300,
            extra_body={"repeat_penalty": 1.3},
        ),  # reset to auto after the call (the SDK's default), so the next turn answers
    )
    result = asyncio.run(agents.Runner.run(agent, "When is contract GX-4471 due?", max_turns=4))
    assert calls, "the tool was not called"
    kinds = [item.type for item in result.new_items]
    assert kinds[0] == "tool_call_item" and "tool_call_output_item" in kinds
    assert kinds.count("tool_call_output_item") == len(calls)
    assert kinds[-1] == "message_output_item"
    assert isinstance(result.final_output, str)


def test_an_agent_with_the_hosted_file_search_tool_cites_the_store(live, tmp_path):
    sdk = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0, timeout=120)
    pdf = pdfgen.write_pdf(tmp_path / "계약서.pdf", CONTRACT)
    with pdf.open("rb") as f:
        uploaded = sdk.files.create(file=f, purpose="assistants")
    store = sdk.vector_stores.create(name="agents", file_ids=[uploaded.id])
    deadline = time.monotonic() + 120
    while sdk.vector_stores.retrieve(store.id).file_counts.completed < 1:
        assert time.monotonic() < deadline
        time.sleep(0.3)

    agent = agents.Agent(
        name="librarian",
        instructions="Answer from the documents.",
        model=model(live, "smollm2"),
        tools=[
            agents.FileSearchTool(
                vector_store_ids=[store.id], max_num_results=3, include_search_results=True
            )
        ],
        model_settings=agents.ModelSettings(
            temperature=0, max_tokens=300, extra_body={"repeat_penalty": 1.3}
        ),
    )
    result = asyncio.run(agents.Runner.run(agent, "GX-4471 납품 기한은?", max_turns=2))
    searches = [i for i in result.new_items if i.type == "tool_call_item"]
    assert searches and searches[0].raw_item.type == "file_search_call"
    assert searches[0].raw_item.results[0].file_id == uploaded.id
    message = next(i for i in result.new_items if i.type == "message_output_item")
    annotations = message.raw_item.content[0].annotations
    assert any(a.type == "file_citation" and a.file_id == uploaded.id for a in annotations)
    assert result.final_output
