"""Retrieval-augmented prompt assembly: the search query, the sources, the token budget.

Sources go into the *last* user turn. Everything before it stays byte-identical from
one turn to the next, so llama.cpp reuses the conversation's KV cache and only the
new turn is processed.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence

import msgspec

from ragserve.engine import Engine
from ragserve.errors import ContextLengthExceeded
from ragserve.retrieval.search import Hit, page_label

from .protocol import Source

INSTRUCTIONS = (
    "Answer the question using the numbered sources below. Cite every source you use "
    "with its number in square brackets, like [1] or [2]. If the sources do not contain "
    "the answer, say that the documents do not say, and do not make one up."
)
FOLLOW_UP_WORDS = 8  # a last turn this short is probably a follow-up ("and the cost?")
MAX_QUERY_CHARS = 2000
_BACKGROUND = (
    re.compile(r"^\s*### Task:", re.S),  # Open WebUI: titles, tags, follow-ups, queries
    re.compile(r"\b(title|headline)\b.{0,80}\bconversation\b", re.I | re.S),  # LibreChat
    re.compile(r"\bconversation\b.{0,80}\btitle\b", re.I | re.S),
)
_CITATION = re.compile(r"\[(\d{1,3})\]")


class TurnMemory:
    """The augmented text of earlier user turns, keyed by the conversation up to them.

    Clients send history back without the sources that were injected. Putting those
    earlier augmented turns back makes the prompt's prefix identical to what is already
    in the KV cache (only the new turn is processed), and the model still sees the
    passages a follow-up question refers to. The key is a hash of the whole plain
    conversation prefix, so only an identical conversation finds an entry.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._items: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(messages: Sequence[dict[str, str]]) -> str:
        return hashlib.sha256(msgspec.json.encode(list(messages))).hexdigest()

    def remember(self, messages: Sequence[dict[str, str]], augmented: str) -> None:
        with self._lock:
            self._items[self.key(messages)] = augmented
            self._items.move_to_end(self.key(messages))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def restore(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The history with earlier user turns replaced by their augmented form."""
        out = []
        for i, m in enumerate(messages):
            text = None
            if m["role"] == "user" and i < len(messages) - 1:
                with self._lock:
                    text = self._items.get(self.key(messages[: i + 1]))
            out.append({"role": m["role"], "content": text} if text else m)
        return out


class Packed(msgspec.Struct):
    prompt_tokens: list[int]
    max_tokens: int
    sources: list[Source]
    retrieved: int  # hits before the budget dropped some


def is_background_call(messages: list[dict[str, str]]) -> bool:
    """Client housekeeping (chat titles, tags) that must not be augmented."""
    users = [m for m in messages if m["role"] == "user"]
    if len(users) != 1:
        return False
    return any(p.search(users[0]["content"][:2000]) for p in _BACKGROUND)


def search_query(messages: list[dict[str, str]]) -> str:
    """The last user turn, with the previous one when the last reads like a follow-up."""
    users = [m["content"] for m in messages if m["role"] == "user" and m["content"].strip()]
    if not users:
        return ""
    query = users[-1]
    if len(query.split()) < FOLLOW_UP_WORDS and len(users) > 1:
        query = users[-2] + "\n" + query
    return query[-MAX_QUERY_CHARS:]


def source_block(n: int, hit: Hit) -> str:
    pages = page_label(hit.page, hit.page_end, short=False)
    return f"[{n}] ({hit.document}, {pages})\n{hit.text.strip()}\n"


def augmented_turn(question: str, blocks: Sequence[str]) -> str:
    return (
        f"{INSTRUCTIONS}\n\n<sources>\n" + "\n".join(blocks) + f"</sources>\n\nQuestion: {question}"
    )


def overflow(n_ctx: int, prompt: int, completion: int) -> ContextLengthExceeded:
    return ContextLengthExceeded(
        f"This model's maximum context length is {n_ctx} tokens. However, your messages "
        f"resulted in {prompt} tokens (plus {completion} for the completion). Please reduce "
        "the length of the messages or the completion."
    )


def plan_max_tokens(engine: Engine, prompt_len: int, requested: int | None, default: int) -> int:
    """The completion budget; raises context_length_exceeded when nothing fits."""
    room = engine.n_ctx - prompt_len
    if requested is not None:
        if requested > room:
            raise overflow(engine.n_ctx, prompt_len, requested)
        return requested
    if room < 1:
        raise overflow(engine.n_ctx, prompt_len, 1)
    return min(default, room)


def pack(
    engine: Engine,
    messages: list[dict[str, str]],
    hits: Sequence[Hit],
    requested_max_tokens: int | None,
    default_max_tokens: int,
    memory: TurnMemory | None = None,
) -> Packed:
    """Fit as many hits as the context allows into the last user turn, best first."""
    plain = messages
    base: list[int] | None = None
    if memory is not None:
        restored = memory.restore(messages)
        if restored != messages:
            tokens = engine.chat_tokens(restored)
            if len(tokens) + (requested_max_tokens or 1) <= engine.n_ctx:
                messages, base = restored, tokens  # earlier sources fit: keep the cached prefix
    if base is None:
        base = engine.chat_tokens(messages)
    max_tokens = plan_max_tokens(engine, len(base), requested_max_tokens, default_max_tokens)
    if not hits or messages[-1]["role"] != "user":
        return Packed(base, max_tokens, [], len(hits))
    question = messages[-1]["content"]

    def with_sources(blocks: list[str]) -> tuple[list[dict[str, str]], list[int]]:
        turn = {"role": "user", "content": augmented_turn(question, blocks)}
        augmented = [*messages[:-1], turn]
        return augmented, engine.chat_tokens(augmented)

    # The usual case: every hit fits, and the prompt is tokenized once.
    # passages are third-party text: no chat markup from them
    hits = [msgspec.structs.replace(h, text=engine.neutralize(h.text)) for h in hits]
    used = list(hits)
    blocks = [source_block(n, hit) for n, hit in enumerate(used, 1)]
    augmented, tokens = with_sources(blocks)
    if len(tokens) + max_tokens > engine.n_ctx:
        # Too long: price each block, keep the best ones that fit, then check the result.
        frame = with_sources([])[1]
        budget = engine.n_ctx - max_tokens - len(frame) - 8  # 8: merges at block edges
        blocks, used = [], []
        for hit in hits:
            block = source_block(len(blocks) + 1, hit)
            cost = len(engine.tokenize(block)) + 1
            if cost > budget:
                continue  # a shorter hit further down may still fit
            budget -= cost
            blocks.append(block)
            used.append(hit)
        while True:
            augmented, tokens = with_sources(blocks) if blocks else (messages, base)
            if len(tokens) + max_tokens <= engine.n_ctx or not blocks:
                break
            blocks.pop()
            used.pop()
    if memory is not None and blocks:
        memory.remember(plain, augmented[-1]["content"])
    sources = [
        Source(
            index=i,
            document=h.document,
            page=h.page,
            page_end=h.page_end,
            score=h.score,
            snippet=h.snippet(),
            chunk_id=h.chunk_id,
        )
        for i, h in enumerate(used, 1)
    ]
    return Packed(tokens, max_tokens, sources, len(hits))


def sources_footer(answer: str, sources: list[Source]) -> str:
    """A plain-text list for clients that ignore the `sources` field: cited ones, else all."""
    if not sources:
        return ""
    cited = {int(n) for n in _CITATION.findall(answer)}
    shown = [s for s in sources if s.index in cited] or sources
    lines = []
    for s in shown:
        lines.append(f"[{s.index}] {s.document}, {page_label(s.page, s.page_end)}")
    return "\n\nSources:\n" + "\n".join(lines)
