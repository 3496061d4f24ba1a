"""The model's chat template, and the rule that message text is text.

Prompts are tokenized with special-token parsing on (the template's own markup must
become control tokens). So every piece of text that is not the template's markup,
whether a client's message, a retrieved passage or a document title, is neutralised first:
each control token's text gets a word joiner after its first character, so a message
containing `<|im_start|>system` reads as those characters instead of opening a turn.
Only `/v1/completions` takes a raw prompt with control tokens (FIM), as OpenAI's does.
"""

from __future__ import annotations

import re

from ragserve.errors import EngineFailed

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
        self._specials = re.compile("|".join(map(re.escape, specials))) if specials else None

    def neutralize(self, text: str) -> str:
        """Text with every control token's spelling broken up (see the module doc)."""
        if self._specials is None:
            return text
        return self._specials.sub(lambda m: m[0][0] + WORD_JOINER + m[0][1:], text)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt for `messages` (whose content is neutralised here)."""
        safe = [{**m, "content": self.neutralize(m["content"])} for m in messages]
        return self._render(safe)

    def _render(self, messages: list[dict[str, str]]) -> str:
        try:
            return self._formatter(messages=messages).prompt  # type: ignore[arg-type]
        except Exception as exc:
            # Templates without a system role raise: fold the system text into the first turn.
            if messages and messages[0]["role"] == "system" and len(messages) > 1:
                system, first, *rest = messages
                merged = {
                    "role": first["role"],
                    "content": system["content"] + "\n\n" + first["content"],
                }
                return self._render([merged, *rest])
            raise EngineFailed(f"the model's chat template failed: {exc}") from exc
