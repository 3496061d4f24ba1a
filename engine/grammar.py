"""Grammars for constrained sampling: JSON schema -> GBNF, bounded before llama.cpp sees it.

llama.cpp's grammar parser recurses once per nesting level and expands `{m,n}`
repetitions into rules, so a 237-byte schema (`maxLength: 20000`) overflows the stack and
kills the process. Everything here is checked first: schema size, depth, node count,
repetition bounds, and the GBNF's own size and nesting, with a 400 naming the limit.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ragserve.errors import InvalidRequest

MAX_SCHEMA_BYTES = 32 * 1024
MAX_SCHEMA_DEPTH = 24
MAX_SCHEMA_NODES = 1024  # objects and lists in the schema, properties included
MAX_REPEAT = 1000  # minLength/maxLength/minItems/maxItems/... and {m,n} in patterns
MAX_GBNF_BYTES = 64 * 1024
MAX_GBNF_NESTING = 1100  # maxLength 1000 nests 1000 groups; 20000 crashes llama.cpp
_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_REPEAT = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def _walk(schema: Any, param: str) -> None:
    """Depth, size, empty enums and repetition bounds of a JSON schema."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise InvalidRequest(
                f"the JSON schema nests deeper than {MAX_SCHEMA_DEPTH}", param=param
            )
        if isinstance(node, dict):
            nodes += 1 + len(node)
            for key in _BOUNDS:
                value = node.get(key)
                if isinstance(value, int | float) and not 0 <= value <= MAX_REPEAT:
                    raise InvalidRequest(
                        f"the JSON schema's {key} is {value}; at most {MAX_REPEAT} is supported",
                        param=param,
                    )
            if "enum" in node and (not isinstance(node["enum"], list) or not node["enum"]):
                raise InvalidRequest("the JSON schema has an empty enum", param=param)
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                _check_repeats(pattern, "pattern", param)
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            nodes += 1
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
        if nodes > MAX_SCHEMA_NODES:
            raise InvalidRequest(
                f"the JSON schema has more than {MAX_SCHEMA_NODES} nodes", param=param
            )


def _check_repeats(text: str, what: str, param: str) -> None:
    for m in _REPEAT.finditer(text):
        for number in m.groups():
            if number and int(number) > MAX_REPEAT:
                raise InvalidRequest(
                    f"the {what} repeats {number} times; at most {MAX_REPEAT} is supported",
                    param=param,
                )


def check_gbnf(gbnf: str, param: str = "response_format") -> None:
    """Size, repetition and nesting bounds of a GBNF text (outside literals and classes)."""
    if len(gbnf.encode()) > MAX_GBNF_BYTES:
        raise InvalidRequest(
            f"the grammar is larger than {MAX_GBNF_BYTES} bytes; simplify the schema", param=param
        )
    depth = deepest = 0
    quote: str | None = None
    escaped = False
    outside: list[str] = []
    for ch in gbnf:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in '"[':
            quote = '"' if ch == '"' else "]"
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
        else:
            outside.append(ch)
    if deepest > MAX_GBNF_NESTING:
        raise InvalidRequest(
            f"the grammar nests {deepest} groups deep; at most {MAX_GBNF_NESTING} is supported",
            param=param,
        )
    _check_repeats("".join(outside), "grammar", param)


def check_schema(schema: Any, param: str) -> None:
    """A JSON schema within the bounds the converter and llama.cpp can take, else 400."""
    if not isinstance(schema, dict):
        raise InvalidRequest("the JSON schema must be an object", param=param)
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(
            f"the JSON schema is larger than {MAX_SCHEMA_BYTES} bytes", param=param
        )
    _walk(schema, param)


def tighten(gbnf: str) -> str:
    """JSON strings without raw control characters (the converter's `char` allows them,
    and `json.loads` rejects what it then generates)."""
    return gbnf.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |')


def schema_to_gbnf(schema: Any, param: str = "response_format") -> str:
    """GBNF for a JSON schema, or InvalidRequest saying which bound it breaks."""
    check_schema(schema, param)
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        gbnf = tighten(json_schema_to_gbnf(json.dumps(schema)))
    except RecursionError as exc:
        raise InvalidRequest("the JSON schema is too deeply nested", param=param) from exc
    except Exception as exc:
        raise InvalidRequest(f"unsupported JSON schema: {exc}", param=param) from exc
    check_gbnf(gbnf, param)
    return gbnf


class GrammarCache:
    """Compiled grammars by GBNF text, least recently used out past a size budget.

    Holds pristine llama.cpp grammar samplers; requests get clones (`clone`), so an
    evicted entry never frees memory a running request uses.
    """

    def __init__(
        self,
        compile: Callable[[str], Any],
        *,
        max_entries: int = 16,
        max_bytes: int = 512 * 1024,
    ) -> None:
        self._compile = compile
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def clone(self, gbnf: str) -> Any:
        """A fresh copy of the compiled grammar (compiling it first if needed)."""
        with self._lock:
            grammar = self._entries.get(gbnf)
            if grammar is None:
                grammar = self._compile(gbnf)
                self._entries[gbnf] = grammar
                self._bytes += len(gbnf)
                self._evict()
            else:
                self._entries.move_to_end(gbnf)
            return grammar.clone()

    def _evict(self) -> None:
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            gbnf, grammar = self._entries.popitem(last=False)
            self._bytes -= len(gbnf)
            grammar.close()

    def close(self) -> None:
        with self._lock:
            for grammar in self._entries.values():
                grammar.close()
            self._entries.clear()
            self._bytes = 0
