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
from typing import Any

import msgspec

from ragserve.engine import Engine
from ragserve.errors import ContextLengthExceeded
from ragserve.retrieval.search import Hit, place_label

from .protocol import Source

INSTRUCTIONS = (
    "Answer the question using the numbered sources below. Cite every source you use "
    "with its number in square brackets, like [1] or [2]. If the sources do not contain "
    "the answer, say that the documents do not say, and do not make one up."
)
# a passage an earlier question of the conversation was given: the model finds it above
REPEATED = 'the same passage as source [{n}] given above with the question "{q}"'
QUOTED_CHARS = 60  # of that question
FOLLOW_UP_WORDS = 8  # a last turn this short is probably a follow-up ("and the cost?")
MAX_QUERY_CHARS = 2000
_BACKGROUND = (
    re.compile(r"^\s*### Task:", re.S),  # Open WebUI: titles, tags, follow-ups, queries
    re.compile(r"\b(title|headline)\b.{0,80}\bconversation\b", re.I | re.S),  # LibreChat
    re.compile(r"\bconversation\b.{0,80}\btitle\b", re.I | re.S),
)
_QUESTION = re.compile(r"<user_query>|<context>")  # Open WebUI's RAG template
_USER_QUERY = re.compile(r"<user_query>(.*?)</user_query>", re.S)
_CITATION = re.compile(r"\[(\d{1,3})\]")
_MARKDOWN = re.compile(r"[\[\]\\]")  # characters that would end a link's text


class TurnMemory:
    """The augmented text (and sources) of earlier user turns, keyed by the conversation
    up to them.

    Clients send history back without the sources that were injected. Putting those
    earlier augmented turns back makes the prompt's prefix identical to what is already
    in the KV cache (only the new turn is processed), and the model still sees the
    passages a follow-up question or a tool loop's final answer refers to. The key is a
    hash of the whole conversation prefix, so only an identical conversation finds an entry.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        # key -> (the augmented turn, its sources, each source's passage fingerprint)
        self._items: OrderedDict[str, tuple[str, list[Source], list[str]]] = OrderedDict()
        self._lock = threading.Lock()
        self.namespace = ""

    def scoped(self, caller: str | None, stores: Sequence[str] | None = None) -> TurnMemory:
        """The same memory, seen by one caller asking one set of stores: another key, or
        the same conversation sent to another store (`model@other`), finds nothing (the
        passages were retrieved for the first's stores and may not be the second's)."""
        view = TurnMemory.__new__(TurnMemory)
        view.size, view._items, view._lock = self.size, self._items, self._lock
        where = ",".join(sorted(stores)) if stores is not None else ""
        view.namespace = f"{caller or ''}\x00{where}"
        return view

    def key(self, messages: Sequence[dict[str, Any]]) -> str:
        body = msgspec.json.encode([self.namespace, list(messages)])
        return hashlib.sha256(body).hexdigest()

    def remember(
        self,
        messages: Sequence[dict[str, Any]],
        augmented: str,
        sources: list[Source],
        prints: list[str],
    ) -> None:
        key = self.key(messages)
        with self._lock:
            self._items[key] = (augmented, sources, prints)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def restore(self, messages: list[dict[str, Any]]) -> Restored:
        """The history with earlier user turns replaced by their augmented form, the
        sources of the last user turn restored (what an answer after tool calls cites),
        and the passages the restored turns carry."""
        out: list[dict[str, Any]] = []
        sources: list[Source] = []
        carried: dict[str, Given] = {}
        for i, m in enumerate(messages):
            item = None
            if m["role"] == "user" and i < len(messages) - 1:
                with self._lock:
                    item = self._items.get(self.key(messages[: i + 1]))
            if item is not None:
                out.append({**m, "content": item[0]})
                sources = item[1]
                question = asked_question(m["content"])
                for print_, source in zip(item[2], item[1], strict=True):
                    # the first turn that gave a passage holds its text (later ones refer)
                    carried.setdefault(print_, Given(source.index, question))
            else:
                out.append(m)
                if m["role"] == "user":
                    sources = []
        return Restored(out, sources, carried)


class Given(msgspec.Struct, frozen=True):
    """Where an earlier turn gave the model a passage: its number, with that question."""

    index: int
    question: str


class Restored(msgspec.Struct):
    messages: list[dict[str, Any]]
    sources: list[Source]  # the last restored turn's
    carried: dict[str, Given]  # passage fingerprint -> where an earlier turn gave its text


class Packed(msgspec.Struct):
    prompt_tokens: list[int]
    max_tokens: int
    sources: list[Source]
    retrieved: int  # hits before the budget dropped some
    hits: list[Hit] = []  # the passages behind `sources`, as the model was given them
    messages: list[dict[str, Any]] = []  # the conversation the prompt renders (sources in)


def is_background_call(messages: list[dict[str, Any]]) -> bool:
    """Client housekeeping (chat titles, tags) that must not be augmented. Open WebUI's
    own RAG prompt also begins with `### Task:`, but carries the user's question."""
    users = [m for m in messages if m["role"] == "user"]
    if len(users) != 1:
        return False
    text = users[0]["content"]
    if _QUESTION.search(text):
        return False
    return any(p.search(text[:2000]) for p in _BACKGROUND)


def asked_question(text: Any) -> str:
    """A user turn's question: inside a client's own RAG template, the question it asks."""
    if not isinstance(text, str):
        return ""
    asked = _USER_QUERY.search(text)
    return asked[1].strip() if asked else text


def search_query(messages: list[dict[str, Any]]) -> str:
    """The last user turn, with the previous one when the last reads like a follow-up."""
    users = [m["content"] for m in messages if m["role"] == "user" and m["content"].strip()]
    if not users:
        return ""
    query = asked_question(users[-1])  # a client's own RAG template: search its question
    if len(query.split()) < FOLLOW_UP_WORDS and len(users) > 1:
        query = users[-2] + "\n" + query
    return query[-MAX_QUERY_CHARS:]


def source_block(n: int, hit: Hit, earlier: Given | None = None) -> str:
    """A passage for the model; one an earlier turn of the conversation already gave it
    (`earlier`) is referred to, not repeated: its text is in the prompt already."""
    where = place_label(hit.page, hit.page_end, hit.location, short=False)
    if earlier is not None:
        q = " ".join(earlier.question.split())
        q = q if len(q) <= QUOTED_CHARS else q[: QUOTED_CHARS - 1] + "…"
        return f"[{n}] ({hit.document}, {where}): {REPEATED.format(n=earlier.index, q=q)}\n"
    return f"[{n}] ({hit.document}, {where})\n{hit.text.strip()}\n"


def fingerprint(hit: Hit) -> str:
    """What makes two passages the same for the model: the document and the text."""
    body = f"{hit.document}\x00{hit.text.strip()}".encode()
    return hashlib.blake2b(body, digest_size=12).hexdigest()


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


def explain_overflow(
    engine: Engine,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    prompt_len: int,
    requested: int | None,
) -> ContextLengthExceeded:
    """The 400 for a conversation that does not fit, saying what took the tokens and what
    to change (sources are fitted into the room left, so they are never the cause)."""
    tools_cost = prompt_len - len(engine.chat_tokens(messages)) if tools else 0
    completion = requested or 1
    turns = f"{len(messages)} message" + ("s" if len(messages) != 1 else "")
    parts = [f"{prompt_len - tools_cost} for the conversation ({turns})"]
    fixes = []
    if tools:
        parts.insert(0, f"{tools_cost} for the definitions of {len(tools)} tools")
        if tools_cost * 3 >= prompt_len:
            fixes.append(
                "send fewer tools (Open WebUI sends its builtin tools with every chat: turn "
                "off the model's Builtin Tools capability in Admin Panel > Settings > Models, "
                "or set "
                'DEFAULT_MODEL_METADATA=\'{"capabilities": {"builtin_tools": false}}\')'
            )
    fixes.append("shorten the conversation")
    if requested is not None:
        fixes.append("ask for a smaller max_tokens")
    if engine.upstream is None:
        fixes.append(f"serve with a larger --n-ctx (each slot has {engine.n_ctx} tokens now)")
    else:
        fixes.append("give the upstream model a longer context")
    return ContextLengthExceeded(
        f"This model's maximum context length is {engine.n_ctx} tokens. However, your "
        f"messages resulted in {prompt_len} tokens ({', '.join(parts)}), plus {completion} "
        "for the completion; the library's sources are fitted into what is left and took "
        f"none. To fix it: {'; '.join(fixes)}."
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


def last_user(messages: list[dict[str, Any]]) -> int:
    return max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)


def pack(
    engine: Engine,
    messages: list[dict[str, Any]],
    hits: Sequence[Hit],
    requested_max_tokens: int | None,
    default_max_tokens: int,
    memory: TurnMemory | None = None,
    tools: list[dict[str, Any]] | None = None,
    *,
    refer: bool = True,
) -> Packed:
    """Fit as many hits as the context allows into the last user turn, best first; a
    passage an earlier turn restored from `memory` already holds is referred to, not
    repeated (`refer`, on unless a benchmark measures the difference).

    Without hits (a turn that carries tool results), earlier augmented turns come back
    from `memory`, and so do the sources the answer is built on."""
    plain = messages
    base: list[int] | None = None
    remembered: list[Source] = []
    carried: dict[str, Given] = {}  # passages the prompt already holds, from earlier turns
    if memory is not None:
        restored = memory.restore(messages)
        if restored.messages != messages:
            tokens = engine.chat_tokens(restored.messages, tools)
            if len(tokens) + (requested_max_tokens or 1) <= engine.n_ctx:
                messages, base = restored.messages, tokens  # keep the cached prefix
                remembered = restored.sources
                carried = restored.carried if refer else {}
    if base is None:
        base = engine.chat_tokens(messages, tools)
    try:
        max_tokens = plan_max_tokens(engine, len(base), requested_max_tokens, default_max_tokens)
    except ContextLengthExceeded:
        raise explain_overflow(engine, messages, tools, len(base), requested_max_tokens) from None
    at = last_user(messages)
    if not hits or at < 0:
        return Packed(base, max_tokens, remembered, len(hits), messages=messages)
    question = plain[at]["content"]

    def with_sources(blocks: list[str]) -> tuple[list[dict[str, Any]], list[int]]:
        turn = {**messages[at], "content": augmented_turn(question, blocks)}
        augmented = [*messages[:at], turn, *messages[at + 1 :]]
        return augmented, engine.chat_tokens(augmented, tools)

    # The usual case: every hit fits, and the prompt is tokenized once.
    # passages are third-party text: no chat markup from them
    hits = [msgspec.structs.replace(h, text=engine.neutralize(h.text)) for h in hits]
    used = list(hits)
    prints = {id(h): fingerprint(h) for h in hits}  # each passage's, hashed once

    def block(n: int, hit: Hit) -> str:
        return source_block(n, hit, carried.get(prints[id(hit)]))

    blocks = [block(n, hit) for n, hit in enumerate(used, 1)]
    augmented, tokens = with_sources(blocks)
    if len(tokens) + max_tokens > engine.n_ctx:
        # Too long: price each block, keep the best ones that fit, then check the result.
        frame = with_sources([])[1]
        budget = engine.n_ctx - max_tokens - len(frame) - 8  # 8: merges at block edges
        blocks, used = [], []
        for hit in hits:
            text = block(len(blocks) + 1, hit)
            cost = len(engine.tokenize(text)) + 1
            if cost > budget:
                continue  # a shorter hit further down may still fit
            budget -= cost
            blocks.append(text)
            used.append(hit)
        while True:
            augmented, tokens = with_sources(blocks) if blocks else (messages, base)
            if len(tokens) + max_tokens <= engine.n_ctx or not blocks:
                break
            blocks.pop()
            used.pop()
    sources = [
        Source(
            index=i,
            document=h.document,
            page=h.pages[0],
            page_end=h.pages[1],
            location=h.location,
            score=h.score,
            snippet=h.snippet(),
            chunk_id=h.chunk_id,
            file_id=h.file_id,
            origin=h.origin,
            ocr_confidence=h.ocr_confidence,
        )
        for i, h in enumerate(used, 1)
    ]
    if memory is not None and blocks:
        memory.remember(
            plain[: at + 1],
            augmented[at]["content"],
            sources,
            [prints[id(h)] for h in used],
        )
    return Packed(tokens, max_tokens, sources, len(hits), used, augmented)


def sources_footer(answer: str, sources: list[Source]) -> str:
    """A plain-text list for clients that ignore the `sources` field: cited ones, else all."""
    if not sources:
        return ""
    cited = {int(n) for n in _CITATION.findall(answer)}
    shown = [s for s in sources if s.index in cited] or sources
    lines = []
    for s in shown:
        label = s.title
        if s.url:  # a markdown link: LibreChat and Open WebUI render it clickable
            label = "[" + _MARKDOWN.sub(r"\\\g<0>", label) + f"]({s.url})"
        lines.append(f"[{s.index}] {label}")
    return "\n\nSources:\n" + "\n".join(lines)
