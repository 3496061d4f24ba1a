"""Settings declared once: name, type, default, environment variable and help.

The CLI flags, the environment lookup and the README's settings table all come from
these declarations. A bad value, from a flag or the environment, is one line naming
the setting (`SettingError`), which the CLI turns into exit status 2.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingError(ValueError):
    """A setting's value could not be used; the message names the setting."""


def whole(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(
                f"expected a whole number from {lo} to {hi}"
                if hi is not None
                else f"expected a whole number >= {lo}"
            )
        return value

    parse.__name__ = "integer"
    return parse


def number(lo: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if value != value or (lo is not None and value < lo):
            raise ValueError(f"expected a number >= {lo}")
        return value

    parse.__name__ = "number"
    return parse


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false (1/0, yes/no, on/off)")


def choice(*values: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in values:
            raise ValueError(f"expected one of {', '.join(values)}")
        return text

    return parse


def text(value: str) -> str:
    return value


def path(value: str) -> Path:
    if not value.strip():
        raise ValueError("expected a path")
    return Path(value).expanduser()


def items(value: str) -> tuple[str, ...]:
    """A comma-separated list (flags may also repeat)."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


@dataclass(frozen=True)
class Option:
    field: str  # the settings struct's field
    flag: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    env: str | None = None  # default: RAGSERVE_<FIELD>
    switch: bool = False  # a flag without a value: it sets `const`
    const: Any = True
    repeat: bool = False  # the flag may repeat; the environment variable is comma-separated
    default_text: str | None = None  # how the README shows a computed default
    secret: bool = False  # a password may be in it: errors never show the value

    def shown(self, value: str) -> str:
        return "<hidden>" if self.secret else repr(value)

    @property
    def env_name(self) -> str:
        return self.env or "RAGSERVE_" + self.field.upper()


def defaults(*groups: Iterable[Option]) -> dict[str, Any]:
    """Each option's default by field: the settings structs and the constructors behind
    them take their defaults from here, so a default is written once, in its Option
    (tests/test_settings_defaults.py checks every struct against its options)."""
    return {o.field: o.default for group in groups for o in group}


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    for o in options:
        shown = o.default_text or ("none" if o.default in (None, ()) else str(o.default))
        help = f"{o.help} [env {o.env_name}; default {shown}]".replace("%", "%%")
        if o.switch:
            parser.add_argument(
                o.flag, dest=o.field, action="store_const", const=o.const, default=None, help=help
            )
        elif o.repeat:
            parser.add_argument(
                o.flag, dest=o.field, action="append", default=None, type=_flag_parser(o), help=help
            )
        else:
            parser.add_argument(o.flag, dest=o.field, default=None, type=_flag_parser(o), help=help)


def _flag_parser(o: Option) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            return o.parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{o.shown(value)}: {exc}") from None

    parse.__name__ = getattr(o.parse, "__name__", "value")
    return parse


def resolve(
    args: argparse.Namespace, options: Sequence[Option], environ: dict[str, str] | None = None
) -> dict[str, Any]:
    """Each option's value: the flag, else the environment variable, else the default."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for o in options:
        given = getattr(args, o.field, None)
        if given is not None:
            out[o.field] = (
                tuple(v for g in given for v in (g if isinstance(g, tuple) else (g,)))
                if o.repeat
                else given
            )
            continue
        raw = env.get(o.env_name)
        if raw is None or (o.default is None and not raw.strip()):
            out[o.field] = o.default
            continue
        try:
            out[o.field] = boolean(raw) if o.switch else o.parse(raw)
        except ValueError as exc:
            raise SettingError(f"{o.env_name}={o.shown(raw)}: {exc}") from None
    return out


def markdown_table(options: Iterable[Option]) -> str:
    """The README's settings table."""
    rows = ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for o in options:
        shown = o.default_text or ("none" if o.default in (None, ()) else str(o.default))
        rows.append(f"| `{o.flag}` | `{o.env_name}` | {shown} | {o.help} |")
    return "\n".join(rows) + "\n"
