"""Tool calls in generated text, per model family, parsed while the text streams.

Each family writes calls its own way: Qwen2.5 and other Hermes-style templates
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, Llama 3.1/3.2
`<|python_tag|>{"name": ..., "parameters": {...}}` (or the bare JSON object), Mistral
`[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]`. A parser is fed the text as it is
generated and returns events: plain text (never a partial tag), the start of a call (its
name known), and pieces of the call's arguments as they are generated, so an agent can show
progress. The HTTP layer turns them into OpenAI `tool_calls` deltas. (Groundwork for tool
calling: the templates and grammars come next.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

Family = Literal["hermes", "llama3", "mistral"]
OPENERS: dict[Family, str] = {
    "hermes": "<tool_call>",
    "llama3": "<|python_tag|>",
    "mistral": "[TOOL_CALLS]",
}
CLOSERS: dict[Family, str] = {"hermes": "</tool_call>", "llama3": "", "mistral": ""}
ARGUMENT_KEYS = ("arguments", "parameters")


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class CallStart:
    index: int
    name: str


@dataclass(frozen=True)
class CallArguments:
    index: int
    text: str  # a piece of the JSON arguments, in order


Event = Text | CallStart | CallArguments


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t\r\n":
        i += 1
    return i


def _string_end(s: str, i: int) -> int:
    """Index after the JSON string starting at s[i] == '"', or -1 if it is not complete."""
    i += 1
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s[i] == '"':
            return i + 1
        i += 1
    return -1


def _value_end(s: str, i: int) -> int:
    """Index after the JSON value starting at s[i], or -1 if it is not complete yet."""
    if i >= len(s):
        return -1
    if s[i] == '"':
        return _string_end(s, i)
    if s[i] in "{[":
        depth = 0
        while i < len(s):
            c = s[i]
            if c == '"':
                i = _string_end(s, i)
                if i < 0:
                    return -1
                continue
            if c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return -1
    j = i
    while j < len(s) and s[j] not in ",}] \t\r\n":
        j += 1
    return j if j < len(s) else -1  # a number or literal ends only where something follows


class _Call:
    """One JSON call object `{"name": ..., "arguments": ...}` being read."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.name: str | None = None
        self.sent = 0  # characters of the arguments already emitted
        self.started = False  # CallStart emitted

    def read(self, s: str) -> tuple[list[Event], int]:
        """Events for what `s` (starting at the object's `{`) now holds, and, once the object
        is complete, the index after it (else -1)."""
        events: list[Event] = []
        i = _skip_ws(s, 1)
        args: tuple[int, int] | None = None  # start, end (-1: still open)
        while i < len(s) and s[i] != "}":
            if s[i] == ",":
                i = _skip_ws(s, i + 1)
                continue
            key_end = _string_end(s, i) if s[i] == '"' else -1
            if key_end < 0:
                break
            key = json.loads(s[i:key_end])
            colon = _skip_ws(s, key_end)
            if colon >= len(s) or s[colon] != ":":
                break
            start = _skip_ws(s, colon + 1)
            end = _value_end(s, start)
            if key == "name" and end > 0 and self.name is None:
                self.name = json.loads(s[start:end])
            elif key in ARGUMENT_KEYS:
                args = (start, end)
            if end < 0:
                break
            i = _skip_ws(s, end)
        if self.name is not None and not self.started:
            events.append(CallStart(self.index, self.name))
            self.started = True
        if args is not None and self.name is not None:
            start, end = args
            stop = end if end > 0 else len(s)
            piece = s[start + self.sent : stop]
            if piece:
                self.sent += len(piece)
                events.append(CallArguments(self.index, piece))
        closed = i < len(s) and s[i] == "}"
        return events, (i + 1 if closed else -1)


class ToolCallParser:
    """Feed generated text; get text and tool-call events back, never a partial tag."""

    def __init__(self, family: Family, *, start_index: int = 0) -> None:
        self.family = family
        self.opener = OPENERS[family]
        self.closer = CLOSERS[family]
        self.buffer = ""
        self.in_calls = False
        self.index = start_index
        self.call: _Call | None = None
        self.calls = 0
        self.at_start = True  # llama3 may write the bare JSON object as the whole answer
        self.after_call = False  # whitespace between calls is not text

    def feed(self, text: str) -> list[Event]:
        self.buffer += text
        return self._drain(final=False)

    def finish(self) -> list[Event]:
        events = self._drain(final=True)
        if self.buffer and not self.in_calls:
            events.append(Text(self.buffer))
        self.buffer = ""
        return events

    def _drain(self, final: bool) -> list[Event]:
        events: list[Event] = []
        while True:
            before = (self.buffer, self.in_calls)
            events += self._calls() if self.in_calls else self._text(final)
            if (self.buffer, self.in_calls) == before:
                return events

    def _text(self, final: bool) -> list[Event]:
        if self.at_start and self.family == "llama3":
            stripped = self.buffer.lstrip()
            if stripped.startswith("{"):  # a bare JSON call as the whole answer
                self.buffer, self.in_calls, self.at_start = stripped, True, False
                return []
            if not stripped:
                return []
        self.at_start = False
        if self.after_call:
            stripped = self.buffer.lstrip()
            if not stripped:
                self.buffer = "" if final else self.buffer
                return []
            self.buffer, self.after_call = stripped, False
        cut = self.buffer.find(self.opener)
        if cut >= 0:
            text, self.buffer = self.buffer[:cut], self.buffer[cut + len(self.opener) :]
            self.in_calls = True
            return [Text(text)] if text else []
        hold = 0 if final else _partial_suffix(self.buffer, self.opener)
        text = self.buffer[: len(self.buffer) - hold]
        self.buffer = self.buffer[len(text) :]
        return [Text(text)] if text else []

    def _calls(self) -> list[Event]:
        s = self.buffer.lstrip()
        if self.family == "mistral" and s.startswith("["):
            s = s[1:].lstrip()
        if s.startswith(","):
            s = s[1:].lstrip()
        if self.family == "mistral" and s.startswith("]"):
            self.buffer, self.in_calls, self.after_call = s[1:], False, True
            return []
        if self.closer and s.startswith(self.closer):
            self.buffer, self.in_calls, self.after_call = s[len(self.closer) :], False, True
            return []
        if not s.startswith("{"):
            self.buffer = s
            return []
        if self.call is None:
            self.call = _Call(self.index + self.calls)
        events, end = self.call.read(s)
        if end < 0:
            self.buffer = s
            return events
        self.buffer = s[end:]
        self.calls += 1
        self.call = None
        return events

    @property
    def found_calls(self) -> int:
        return self.calls


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that begins `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
