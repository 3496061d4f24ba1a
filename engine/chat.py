"""The model's chat template, and the rule that message text is text.

Prompts are tokenized with special-token parsing on (the template's own markup must
become control tokens). So every piece of text that is not the template's markup,
whether a client's message, a retrieved passage or a document title, is neutralised first:
each control token's text gets a word joiner after its first character, so a message
containing `<|im_start|>system` reads as those characters instead of opening a turn.
Only `/v1/completions` takes a raw prompt with control tokens (FIM), as OpenAI's does.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ragserve.errors import EngineFailed

from .tool_formats import ToolFormat, detect, fallback_messages

FALLBACK_TEMPLATE = (  # ChatML, for GGUFs that carry no chat template
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORD_JOINER = "\u2060"


class ChatTemplate:
    """Renders messages with the GGUF's Jinja template (ChatML when it has none)."""

    def __init__(self, template: str | None, *, bos: str, eos: str, specials: tuple[str, ...]):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.text = template or FALLBACK_TEMPLATE
        self.bos = bos
        self._formatter = Jinja2ChatFormatter(self.text, eos, bos)
        self.tool_format: ToolFormat = detect(self.text)
        self._specials = re.compile("|".join(map(re.escape, specials))) if specials else None

    def neutralize(self, text: str) -> str:
        """Text with every control token's spelling broken up (see the module doc)."""
        if self._specials is None:
            return text
        return self._specials.sub(lambda m: m[0][0] + WORD_JOINER + m[0][1:], text)

    def render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> str:
        """The prompt for `messages` (OpenAI-shaped dicts: `tool_calls` with arguments as
        objects, `tool_call_id`), offering `tools`; all client text is neutralised here."""
        safe = [self._neutral(self._shaped(m)) for m in messages]
        safe_tools = self._neutral(tools) if tools else None
        if not self.tool_format.native and (safe_tools or _has_tool_turns(safe)):
            return self._render(fallback_messages(safe, safe_tools), None)
        return self._render(safe, safe_tools)

    def _shaped(self, message: dict[str, Any]) -> dict[str, Any]:
        """Call arguments as objects (what templates `tojson`), ids as the family wants."""
        fmt = self.tool_format
        out = dict(message)
        if message.get("tool_calls"):
            out["tool_calls"] = [
                {
                    **call,
                    "id": fmt.history_id(call.get("id") or ""),
                    "function": {**call["function"], "arguments": _object(call["function"])},
                }
                for call in message["tool_calls"]
            ]
        if message["role"] == "tool":
            out["tool_call_id"] = fmt.history_id(message.get("tool_call_id") or "")
        return out

    def _neutral(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.neutralize(value)
        if isinstance(value, dict):
            return {k: self._neutral(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._neutral(v) for v in value]
        return value

    def _render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        try:
            return self._formatter(messages=messages, tools=tools).prompt  # type: ignore[arg-type]
        except Exception as exc:
            # Templates without a system role raise: fold the system text into the first turn.
            if (
                messages
                and messages[0]["role"] == "system"
                and len(messages) > 1
                and isinstance(messages[1].get("content"), str)
            ):
                system, first, *rest = messages
                merged = {**first, "content": system["content"] + "\n\n" + first["content"]}
                return self._render([merged, *rest], tools)
            raise EngineFailed(f"the model's chat template failed: {exc}") from exc


def _object(function: dict[str, Any]) -> Any:
    """A call's arguments: the JSON object its string holds, else the string itself."""
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except ValueError:
            return arguments
        return parsed if isinstance(parsed, dict) else arguments
    return arguments


def _has_tool_turns(messages: list[dict[str, Any]]) -> bool:
    return any(m["role"] == "tool" or m.get("tool_calls") for m in messages)
