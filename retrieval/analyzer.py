"""Keyword analyzer for the FTS5 index: words for alphabetic scripts, bigrams for CJK.

Korean nouns are mostly two syllables and carry particles (계약금액은, 계약금액이), so
neither whitespace words nor FTS5's trigram tokenizer match them: a trigram index
cannot find a two-syllable word at all. Overlapping bigrams (the approach of Lucene's
CJK analyzer) match both, and the same analysis runs on documents and queries.
"""

from __future__ import annotations

import re
import unicodedata

# Runs of CJK characters (Hangul syllables and jamo, Han, Kana) or of other word characters.
_CJK = "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+")
_CJK_RUN = re.compile(rf"[{_CJK}]+")


def analyze(text: str) -> list[str]:
    """Split text into index terms: lower-cased words, and bigrams of CJK runs."""
    text = unicodedata.normalize("NFKC", text).lower()
    terms: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if _CJK_RUN.fullmatch(token):
            if len(token) == 1:
                terms.append(token)
            else:
                terms.extend(token[i : i + 2] for i in range(len(token) - 1))
        else:
            terms.append(token)
    return terms


def fts_document(text: str) -> str:
    """The analyzed form stored in the FTS5 table (unicode61 splits it on spaces)."""
    return " ".join(analyze(text))


def fts_query(text: str, max_terms: int = 64) -> str | None:
    """An FTS5 MATCH expression that ORs the query's distinct terms; None if it has none."""
    seen: dict[str, None] = {}
    for term in analyze(text):
        seen.setdefault(term, None)
    if not seen:
        return None
    # Quoting makes every term a literal: no FTS5 operators can come from user input.
    quoted = ['"' + t.replace('"', '""') + '"' for t in list(seen)[:max_terms]]
    return " OR ".join(quoted)
