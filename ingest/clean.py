"""Text clean-up for extracted PDF pages, and detection of garbled (mojibake) pages."""

from __future__ import annotations

import re
import unicodedata

_LIGATURES = str.maketrans(
    {
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
        "\u00ad": "",  # soft hyphen
        "\u200b": "",  # zero-width space
        "\u200c": "",
        "\u200d": "",
        "\ufeff": "",
        "\u00a0": " ",
        "\u3000": " ",  # ideographic space
        "\t": " ",
    }
)
# "infor-\nmation" -> "information"; only between lowercase letters so "KR-\n2024" stays.
_HYPHEN_BREAK = re.compile(r"(?<=[a-z\u00e0-\u00ff])-\n(?=[a-z\u00e0-\u00ff])")
_SPACES = re.compile(r"[ \f\v\r]+")
_SPACE_AROUND_NL = re.compile(r" *\n *")
_MANY_NL = re.compile(r"\n{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Normalise one page of extracted text: NFC, ligatures, line-end hyphens, whitespace."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    text = text.translate(_LIGATURES)
    text = _CONTROL.sub("", text)
    text = _HYPHEN_BREAK.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NL.sub("\n", text)
    text = _MANY_NL.sub("\n\n", text)
    return text.strip()


# Scripts that real office documents are written in. Mojibake from a CID font read
# through the wrong CMap spreads over the whole BMP: private use, surrogates, Yi,
# enclosed CJK, and Hangul/Han interleaved inside one word.
_COMMON_RANGES = (
    (0x0000, 0x024F),  # Latin
    (0x0370, 0x04FF),  # Greek, Cyrillic
    (0x0590, 0x06FF),  # Hebrew, Arabic
    (0x0900, 0x097F),  # Devanagari
    (0x0E00, 0x0E7F),  # Thai
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2000, 0x206F),  # General punctuation
    (0x20A0, 0x20CF),  # Currency
    (0x2100, 0x22FF),  # Letterlike, number forms, arrows, math
    (0x2460, 0x24FF),  # Enclosed alphanumerics (①)
    (0x2500, 0x27BF),  # Box drawing, shapes, dingbats
    (0x3000, 0x30FF),  # CJK punctuation, Kana
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x4E00, 0x9FFF),  # CJK ideographs
    (0xAC00, 0xD7A3),  # Hangul syllables
    (0xFF00, 0xFFEF),  # Full-width forms
)


_UNCOMMON = re.compile(
    "[^\\s" + "".join(f"\\u{lo:04x}-\\u{hi:04x}" for lo, hi in _COMMON_RANGES) + "]"
)
_NON_SPACE = re.compile(r"\S")
_HANGUL_HAN_SWITCH = re.compile(
    r"(?=[\uac00-\ud7a3][\u4e00-\u9fff]|[\u4e00-\u9fff][\uac00-\ud7a3])"
)
_HAN = re.compile(r"[\u4e00-\u9fff]")
_CJK_PAIR = re.compile(r"(?=[\uac00-\ud7a3\u4e00-\u9fff]{2})")


def garbage_score(text: str) -> float:
    """Fraction of characters that look like mojibake (0 = clean, 1 = all garbage).

    Regular expressions keep this at C speed: it runs on every extracted page.
    """
    if not _UNCOMMON.search(text) and not _HAN.search(text):
        return 0.0  # the common case, one scan: nothing outside common scripts, no Han
    total = len(_NON_SPACE.findall(text))
    if not total:
        return 0.0
    bad = len(_UNCOMMON.findall(text))  # private use, surrogates, U+FFFD, rare scripts
    # Real Korean text rarely switches between Hangul and Han from one character to the
    # next; a CMap misread does so constantly, mapping code pairs to random BMP characters.
    pairs = len(_CJK_PAIR.findall(text))
    switch_rate = len(_HANGUL_HAN_SWITCH.findall(text)) / pairs if pairs >= 8 else 0.0
    return max(bad / total, switch_rate)


GARBAGE_THRESHOLD = 0.15


def looks_garbled(text: str) -> bool:
    return garbage_score(text) > GARBAGE_THRESHOLD
