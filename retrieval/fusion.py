"""Hybrid fusion that never loses to its own best list.

Reciprocal rank fusion throws magnitudes away: with k=60, rank 1 and rank 2 of a list
differ by 1.6%, so a near-random dense list (an English-only embedder reading Korean)
can reorder a keyword list whose top hit stands far above the rest. Here each chunk in
the pooled candidates gets both scores (the dense similarity and BM25 are computed for
the whole pool, not imputed), each list is scaled by its own best score, and weighted by
how much it separates its candidates. A flat list then adds almost the same amount to
every candidate and reorders nothing; a list that singles one out decides.

On top, identifiers: a query token with digits and letters or hyphens (`기술-2024-774`,
`KR-2024-0173`, `X200`) that occurs in only a few documents puts those documents first,
whatever the two lists say.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

IDENTIFIER_DOCS = 3  # an identifier matching at most this many documents is decisive
DECISIVE_BONUS = 1.0  # fused scores: [0, 1] from the lists, +1 for a decisive identifier
MAX_SCORE = 1.0 + DECISIVE_BONUS
# runs of letters/digits joined by - _ / . that contain a digit, or letter+digit words
_IDENTIFIER = re.compile(r"[^\W_]+(?:[-_/.][^\W_]+)+|[^\W\d_]+\d[^\W_]*|\d+[^\W\d_][^\W_]*", re.U)


def identifiers(query: str) -> list[str]:
    """Identifier-like tokens of a query: they must contain a digit, and not only digits."""
    found = []
    for match in _IDENTIFIER.finditer(query):
        token = match.group()
        if any(c.isdigit() for c in token) and not token.replace("-", "").isdigit():
            found.append(token)
    return found


def separation(scores: Iterable[float]) -> float:
    """How much a list's best candidate stands above the typical one (0 flat .. 1 alone),
    on scores scaled to the best."""
    values = sorted(scores, reverse=True)
    if len(values) < 2 or values[0] <= 0:
        return 0.0
    top = values[0]
    median = values[len(values) // 2]
    return max(0.0, min(1.0, (top - median) / top))


def fuse(
    dense: dict[int, float],
    keyword: dict[int, float],
    decisive: set[int] = frozenset(),  # type: ignore[assignment]
) -> list[tuple[int, float]]:
    """Chunks of the pool, best first. `dense` and `keyword` score every pooled chunk
    (0 for no keyword match); `decisive` chunks carry an identifier of the query."""
    pool = set(dense) | set(keyword)
    if not pool:
        return []
    parts = []
    for scores in (dense, keyword):
        top = max(scores.values(), default=0.0)
        if top <= 0:
            continue
        scaled = {i: max(0.0, scores.get(i, 0.0)) / top for i in pool}
        parts.append((separation(scaled.values()), scaled))
    weight = sum(w for w, _ in parts) or 1.0
    fused = {
        i: sum(w * scaled[i] for w, scaled in parts) / weight
        + (DECISIVE_BONUS if i in decisive else 0.0)
        for i in pool
    }
    return sorted(fused.items(), key=lambda kv: kv[1], reverse=True)
