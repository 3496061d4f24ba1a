"""Small, obvious fakes for unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

from server.engine import Finished, GenerationRequest, TextDelta


class FakeEngine:
    """One token per whitespace-separated word; replies with a fixed text."""

    model_id = "fake"
    queue_depth = 0

    def __init__(self, n_ctx: int = 200, reply: str = "It is 4.2 million [1].") -> None:
        self.n_ctx = n_ctx
        self.reply = reply
        self.requests: list[GenerationRequest] = []

    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        return [hash(w) % 1000 for w in text.split()]

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"

    def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenize(self.render_chat(messages))

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
