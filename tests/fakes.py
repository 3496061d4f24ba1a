"""Small, obvious fakes for unit tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from ragserve.engine import EngineStats, Finished, GenerationRequest, TextDelta, ToolFormat


class FakeHandle:
    def __init__(self, events: AsyncIterator) -> None:
        self.events = events
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator:
        return self.events.__aiter__()

    def cancel(self) -> None:
        self.cancelled = True

    async def accepted(self) -> None:
        return None


class SubmitByGenerate:
    """The rest of the Engine contract for fakes that only write `generate`."""

    n_vocab = 1000
    queue_depth = 0
    upstream = None

    def __init__(self) -> None:
        self.listeners: list = []

    def close(self) -> bool:
        return True

    def submit(self, request: GenerationRequest) -> FakeHandle:
        return FakeHandle(self.generate(request))  # type: ignore[attr-defined]

    def check_grammar(self, gbnf: str, param: str = "response_format") -> None:
        pass

    def stats(self) -> EngineStats:
        return EngineStats(slots=1, busy=0, queued=0)

    def shutdown(self, message: str) -> None:
        pass

    def unavailable(self) -> str | None:
        return None


class FakeEngine(SubmitByGenerate):
    """One token per whitespace-separated word; replies with a fixed text."""

    model_id = "fake"

    def __init__(self, n_ctx: int = 200, reply: str = "It is 4.2 million [1].") -> None:
        super().__init__()
        self.n_ctx = n_ctx
        self.reply = reply
        self.requests: list[GenerationRequest] = []

    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        return [hash(w) % 1000 for w in text.split()]

    tool_format = ToolFormat("hermes", native=False)

    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        offered = " ".join(f"<tool> {json.dumps(t)}" for t in tools or ())
        turns = " ".join(f"<{m['role']}> {m['content']}" for m in messages)
        return (offered + " " if offered else "") + turns + " <assistant>"

    def chat_tokens(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        return self.tokenize(self.render_chat(messages, tools))

    def fim_tokens(self):
        return None

    def neutralize(self, text: str) -> str:
        return text

    async def generate(self, request: GenerationRequest) -> AsyncIterator:
        self.requests.append(request)
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            yield TextDelta(word if i == 0 else " " + word)
        yield Finished("stop", len(request.prompt_tokens), len(words), 0, 0.01, 0.01)
