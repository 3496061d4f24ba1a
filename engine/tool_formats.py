"""How a model family is offered tools and writes its calls: detection, ids, grammars.

A GGUF's own chat template decides the prompt. Three families are recognised by their
template: Hermes-style (Qwen2.5, Hermes 2/3: `<tool_call>{json}</tool_call>`), Llama 3.x
(bare `{"name": ..., "parameters": ...}` or after `<|python_tag|>`, one call per turn) and
Mistral (`[TOOL_CALLS][{...}, ...]`, 9-character call ids). A template that knows nothing of
tools (SmolLM2's) gets the tools described in a system message and the Hermes call format
(`fallback_messages`), so every model can call tools; the grammar makes even small ones
write calls whose arguments follow the schema.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from ragserve.errors import InvalidRequest

from .grammar import check_gbnf, check_schema, tighten
from .tools import CLOSERS, OPENERS, Family, ToolCallParser

Choice = Literal["auto", "required"] | str  # or the name of the one function to call
WS = "tc-ws ::= [ \\t\\n]{0,4}"  # between markers and calls; bounded, so no endless blank lines
MISTRAL_ID = 9
_ALNUM = string.ascii_letters + string.digits

FALLBACK_INSTRUCTIONS = (
    "# Tools\n\nYou can call functions to help answer the user. Their signatures, as JSON, "
    "are inside <tools></tools>:\n<tools>\n{tools}\n</tools>\n\n"
    "To call a function, answer with one JSON object per call, each inside "
    "<tool_call></tool_call> tags, and nothing else:\n<tool_call>\n"
    '{{"name": <function name>, "arguments": <arguments as a JSON object>}}\n</tool_call>\n'
    "Function results come back inside <tool_response></tool_response> tags."
)


class Trigger(msgspec.Struct, frozen=True):
    """Text that switches a lazy grammar on (`at_start`: only as the first non-space text)."""

    text: str
    at_start: bool = False


@dataclass(frozen=True)
class ToolFormat:
    family: Family
    native: bool  # the template renders tools and tool history itself

    @property
    def parallel(self) -> bool:
        return self.family != "llama3"  # Llama 3.x templates accept one call per turn

    def call_id(self) -> str:
        if self.family == "mistral":
            return "".join(secrets.choice(_ALNUM) for _ in range(MISTRAL_ID))
        return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))

    def history_id(self, call_id: str) -> str:
        """A client's call id as the template accepts it (Mistral's insist on 9 characters)."""
        if self.family != "mistral" or (len(call_id) == MISTRAL_ID and call_id.isalnum()):
            return call_id
        digest = hashlib.sha256(call_id.encode()).digest()
        return "".join(_ALNUM[b % len(_ALNUM)] for b in digest[:MISTRAL_ID])

    def parser(self) -> ToolCallParser:
        return ToolCallParser(self.family)

    def preserved(self) -> tuple[str, ...]:
        """Markers that are control tokens in some vocabularies but must reach the parser."""
        return (OPENERS[self.family],) + ((CLOSERS[self.family],) if CLOSERS[self.family] else ())

    def grammar(
        self,
        tools: list[dict[str, Any]],
        choice: Choice,
        parallel: bool,
        response_schema: dict[str, Any] | None = None,
    ) -> tuple[str, tuple[Trigger, ...]]:
        """GBNF for the calls `choice` allows, and its triggers (`auto`: lazy, unless a
        response format must be followed otherwise; then root is calls | response)."""
        from llama_cpp.llama_grammar import SchemaConverter

        key = "parameters" if self.family == "llama3" else "arguments"
        converter = SchemaConverter(
            prop_order={"name": 0, key: 1}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        alternatives = []
        for i, tool in enumerate(tools):
            function = tool["function"]
            if choice not in ("auto", "required") and function["name"] != choice:
                continue
            param = f"tools[{i}].function.parameters"
            parameters = function.get("parameters") or {"type": "object", "properties": {}}
            check_schema(parameters, param)
            try:
                parameters = converter.resolve_refs(parameters, f"tool{i}")
            except Exception as exc:
                raise InvalidRequest(f"unsupported JSON schema: {exc}", param=param) from exc
            alternatives.append(
                {
                    "type": "object",
                    "properties": {"name": {"const": function["name"]}, key: parameters},
                    "required": ["name", key],
                    "additionalProperties": False,
                }
            )
        schema = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
        rules = [_visit(converter, schema, "call", "tools")]
        if response_schema is not None and choice == "auto":
            rules.append(_visit(converter, response_schema, "response", "response_format"))
        # a named function is called once; `required` and `auto` may call several
        many = parallel and self.parallel and choice in ("auto", "required")
        calls = self._calls_rule(many)
        root = "root ::= calls | response" if len(rules) == 2 else "root ::= calls"
        gbnf = "\n".join([root, calls, WS, tighten(converter.format_grammar())])
        check_gbnf(gbnf, "tools")
        lazy = choice == "auto" and len(rules) == 1
        return gbnf, self._triggers() if lazy else ()

    def _calls_rule(self, parallel: bool) -> str:
        if self.family == "hermes":
            one = '"<tool_call>" tc-ws call tc-ws "</tool_call>"'
            return f"calls ::= {one}" + (f" (tc-ws {one})*" if parallel else "")
        if self.family == "mistral":
            more = ' (tc-ws "," tc-ws call)*' if parallel else ""
            return f'calls ::= "[TOOL_CALLS]" tc-ws "[" tc-ws call{more} tc-ws "]"'
        return 'calls ::= "<|python_tag|>"? call'

    def _triggers(self) -> tuple[Trigger, ...]:
        if self.family == "llama3":
            return (Trigger("<|python_tag|>"), Trigger("{", at_start=True))
        return (Trigger(OPENERS[self.family]),)


def _visit(converter: Any, schema: dict[str, Any], name: str, param: str) -> str:
    try:
        return str(converter.visit(schema, name))
    except RecursionError as exc:
        raise InvalidRequest("the JSON schema is too deeply nested", param=param) from exc
    except Exception as exc:
        raise InvalidRequest(f"unsupported JSON schema: {exc}", param=param) from exc


def detect(template: str) -> ToolFormat:
    """The family a chat template belongs to, and whether it renders tools itself."""
    knows_tools = re.search(r"\btools\b", template) is not None
    if "[TOOL_CALLS]" in template:
        return ToolFormat("mistral", knows_tools)
    if "<tool_call>" in template:
        return ToolFormat("hermes", knows_tools)
    if "<|python_tag|>" in template or ('"parameters": ' in template and "ipython" in template):
        return ToolFormat("llama3", knows_tools)
    return ToolFormat("hermes", False)  # our own description, in the Hermes call format


def fallback_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """A tool conversation as plain turns, for templates that know nothing of tools: the
    tools in the system message, calls as <tool_call> text, results as user turns."""
    out: list[dict[str, Any]] = []
    if tools:
        listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        instructions = FALLBACK_INSTRUCTIONS.format(tools=listing)
        if messages and messages[0]["role"] == "system":
            first, *messages = messages
            instructions = f"{first['content']}\n\n{instructions}"
        out.append({"role": "system", "content": instructions})
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = [
                "<tool_call>\n"
                + json.dumps(
                    {"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                    ensure_ascii=False,
                )
                + "\n</tool_call>"
                for c in m["tool_calls"]
            ]
            text = "\n".join([m["content"], *calls] if m.get("content") else calls)
            out.append({"role": "assistant", "content": text})
        elif m["role"] == "tool":
            result = f"<tool_response>\n{m['content']}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + result
            else:
                out.append({"role": "user", "content": result, "tool_results": True})
        else:
            out.append(m)
    return [{k: v for k, v in m.items() if k != "tool_results"} for m in out]
