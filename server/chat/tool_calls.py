"""Generated text -> OpenAI tool calls: the engine's text events through the family's parser.

Text before a call streams as content; a call's first delta carries its index, id, type
and name, then its arguments arrive in pieces as they are generated. No call syntax ever
reaches `content`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec

from ragserve.engine import (
    CallArguments,
    CallStart,
    Finished,
    Text,
    TextDelta,
    ToolFormat,
)

from .protocol import DeltaFunction, DeltaToolCall, FunctionCallOut, ToolCallOut


class CallDelta(msgspec.Struct, frozen=True):
    """Tool-call pieces produced by one engine event (in order, adjacent ones merged)."""

    calls: list[DeltaToolCall]


ChatEvent = TextDelta | CallDelta | Finished


async def with_tool_calls(
    events: AsyncIterator[TextDelta | Finished], tools: ToolFormat, parallel: bool
) -> AsyncIterator[ChatEvent]:
    """The engine's events with calls parsed out of the text; `finish_reason` becomes
    `tool_calls` when the model stopped after calling."""
    parser = tools.parser()
    ids: dict[int, str] = {}

    def convert(parsed: list[Text | CallStart | CallArguments]) -> list[ChatEvent]:
        out: list[ChatEvent] = []
        for event in parsed:
            if isinstance(event, Text):
                if out and isinstance(out[-1], TextDelta):
                    out[-1] = TextDelta(out[-1].text + event.text)
                else:
                    out.append(TextDelta(event.text))
                continue
            if event.index > 0 and not parallel:
                continue  # one call was asked for: later ones are dropped
            if isinstance(event, CallStart):
                ids[event.index] = tools.call_id()
                piece = DeltaToolCall(
                    index=event.index,
                    id=ids[event.index],
                    type="function",
                    function=DeltaFunction(name=event.name, arguments=""),
                )
            else:
                last = out[-1] if out else None
                if isinstance(last, CallDelta) and last.calls[-1].index == event.index:
                    previous = last.calls[-1]
                    assert previous.function is not None
                    merged = (previous.function.arguments or "") + event.text
                    last.calls[-1] = msgspec.structs.replace(
                        previous,
                        function=msgspec.structs.replace(previous.function, arguments=merged),
                    )
                    continue
                piece = DeltaToolCall(
                    index=event.index, function=DeltaFunction(arguments=event.text)
                )
            if out and isinstance(out[-1], CallDelta):
                out[-1].calls.append(piece)
            else:
                out.append(CallDelta([piece]))
        return out

    async for event in events:
        if isinstance(event, TextDelta):
            for item in convert(parser.feed(event.text)):
                yield item
            continue
        for item in convert(parser.finish()):
            yield item
        if ids and event.finish_reason == "stop":
            event = msgspec.structs.replace(event, finish_reason="tool_calls")
        yield event


@dataclass
class Assembled:
    """A whole answer: its text and its calls (for the non-streaming response)."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, ToolCallOut] = field(default_factory=dict)

    def add(self, event: TextDelta | CallDelta) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
            return
        for piece in event.calls:
            assert piece.function is not None
            call = self.calls.get(piece.index)
            if call is None:
                self.calls[piece.index] = ToolCallOut(
                    id=piece.id or "",
                    function=FunctionCallOut(
                        name=piece.function.name or "", arguments=piece.function.arguments or ""
                    ),
                )
            else:
                call.function.arguments += piece.function.arguments or ""

    def content(self) -> str | None:
        text = "".join(self.text)
        return None if self.calls and not text.strip() else text

    def tool_calls(self) -> list[ToolCallOut] | msgspec.UnsetType:
        return [self.calls[i] for i in sorted(self.calls)] if self.calls else msgspec.UNSET
