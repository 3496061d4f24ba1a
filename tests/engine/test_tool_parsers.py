"""Tool-call parsers fed the model's output split at every possible point: the calls come
out whole, arguments stream in order, and no piece of call syntax ever leaks into text."""

from __future__ import annotations

import json

import pytest

from ragserve.engine.tools import (
    OPENERS,
    CallArguments,
    CallStart,
    Event,
    Text,
    ToolCallParser,
)

WEATHER = {"city": "Seoul", "unit": "celsius", "days": [1, 2], "note": 'a "quoted" }{ brace'}
CASES = {
    "hermes": (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": '
        + json.dumps(WEATHER)
        + '}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "KST"}}\n'
        "</tool_call>",
        "Let me check.\n",
        [("get_weather", WEATHER), ("get_time", {"tz": "KST"})],
    ),
    "llama3": (
        '<|python_tag|>{"name": "get_weather", "parameters": ' + json.dumps(WEATHER) + "}",
        "",
        [("get_weather", WEATHER)],
    ),
    "mistral": (
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": '
        + json.dumps(WEATHER)
        + '}, {"name": "get_time", "arguments": {"tz": "KST"}}]',
        "",
        [("get_weather", WEATHER), ("get_time", {"tz": "KST"})],
    ),
}


def run(family: str, pieces: list[str]) -> list[Event]:
    parser = ToolCallParser(family)  # type: ignore[arg-type]
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.finish()


def check(family: str, events: list[Event], text: str, calls: list) -> None:
    # exact text: any leaked piece of call syntax, partial tag included, would show here
    assert "".join(e.text for e in events if isinstance(e, Text)) == text
    assert not any(OPENERS[family] in e.text for e in events if isinstance(e, Text))
    starts = [e for e in events if isinstance(e, CallStart)]
    assert [(s.index, s.name) for s in starts] == [(i, name) for i, (name, _) in enumerate(calls)]
    for i, (_, arguments) in enumerate(calls):
        streamed = "".join(e.text for e in events if isinstance(e, CallArguments) and e.index == i)
        assert json.loads(streamed) == arguments
        # the start of a call comes before any of its arguments
        first_args = next(
            k for k, e in enumerate(events) if isinstance(e, CallArguments) and e.index == i
        )
        assert events.index(starts[i]) < first_args


@pytest.mark.parametrize("family", sorted(CASES))
def test_every_split_point(family):
    output, text, calls = CASES[family]
    for cut in range(len(output) + 1):
        check(family, run(family, [output[:cut], output[cut:]]), text, calls)


@pytest.mark.parametrize("family", sorted(CASES))
def test_token_by_token_the_arguments_stream_as_they_are_generated(family):
    output, text, calls = CASES[family]
    events = run(family, list(output))
    check(family, events, text, calls)
    pieces = [e for e in events if isinstance(e, CallArguments) and e.index == 0]
    assert len(pieces) > 10  # many small deltas, not one at the end


def test_text_that_only_looks_like_a_tag_is_text():
    events = run("hermes", ["a <tool", "box> and <t", "able>"])
    assert "".join(e.text for e in events if isinstance(e, Text)) == "a <toolbox> and <table>"
    assert not [e for e in events if not isinstance(e, Text)]


def test_llama3_bare_json_answer_is_a_call():
    events = run("llama3", [' {"name": "f", "parameters": {"x": 1}}'])
    assert [e for e in events if isinstance(e, CallStart)] == [CallStart(0, "f")]
    assert not [e for e in events if isinstance(e, Text)]
