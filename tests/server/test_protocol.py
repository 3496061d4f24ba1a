"""Unit tests: request parsing and validation, stop strings, SSE framing."""

from __future__ import annotations

import json

import msgspec
import pytest

from ragserve.engine import StopMatcher
from ragserve.errors import InvalidRequest
from ragserve.server.chat.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
)
from ragserve.server.sse import DONE, frame


def parse(body: dict) -> ChatCompletionRequest:
    return msgspec.json.decode(json.dumps(body), type=ChatCompletionRequest)


def test_request_accepts_client_variants_and_ignores_unknown_fields():
    req = parse(
        {
            "messages": [
                {"role": "developer", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]},
                {"role": "user", "content": "b"},
            ],
            "max_completion_tokens": 7,
            "stop": "END",
            "user": {"id": 1},
            "prompt_cache_key": "k",
            "rag": {"enabled": False},
        }
    )
    req.validate()
    assert req.template_messages() == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a\n\nb"},
    ]
    assert req.requested_max_tokens() == 7 and req.stops() == ("END",)
    assert req.rag is not None and not req.rag.enabled
    params = req.sampling_params(7)
    assert params.max_tokens == 7 and params.grammar is None


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "x", "content": "a"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "a"}], "n": 3}, "n"),
        ({"messages": [{"role": "user", "content": "a"}], "top_p": 1.5}, "top_p"),
        ({"messages": [{"role": "user", "content": "a"}], "max_tokens": 0}, "max_tokens"),
        (
            {
                "messages": [{"role": "user", "content": "a"}],
                "response_format": {"type": "json_schema"},
            },
            "response_format",
        ),
    ],
)
def test_invalid_requests(body, param):
    """Refused either when the body is decoded (bounds declared on the types, so they are in
    the OpenAPI spec too) or by validate(); either way naming the field."""
    try:
        parse(body).validate()
    except msgspec.ValidationError as exc:
        assert str(exc).endswith(f"at `$.{param}`"), exc
    except InvalidRequest as exc:
        assert exc.param == param
    else:
        pytest.fail("accepted")


def test_json_schema_becomes_a_grammar():
    req = parse(
        {
            "messages": [{"role": "user", "content": "a"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "schema": {
                        "type": "object",
                        "properties": {"a": {"type": "integer"}},
                        "required": ["a"],
                    },
                },
            },
        }
    )
    grammar = req.grammar()
    assert grammar and "root" in grammar


def test_stop_matcher_holds_back_partial_stops():
    m = StopMatcher(("</end>",))
    assert m.feed("hello </") == ("hello ", False)
    assert m.feed("e") == ("", False)
    assert m.feed("nd> tail") == ("", True)
    m = StopMatcher(("</end>",))
    assert m.feed("a </b") == ("a </b", False)
    assert StopMatcher(()).feed("x") == ("x", False)


def test_sse_frames_are_one_line_json_without_ids():
    chunk = ChatCompletionChunk(
        id="c1", created=1, model="m", choices=[ChunkChoice(index=0, delta=Delta(content="a\nb"))]
    )
    data = frame(chunk)
    assert data.startswith(b"data: {") and data.endswith(b"}\n\n")
    assert data.count(b"\n") == 2 and b"\nid:" not in data
    body = json.loads(data[6:])
    assert body["choices"][0] == {
        "index": 0,
        "delta": {"content": "a\nb"},
        "finish_reason": None,
        "logprobs": None,
    }
    assert "sources" not in body and body["usage"] is None
    assert DONE == b"data: [DONE]\n\n"
