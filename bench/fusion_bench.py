"""Hybrid fusion: the new score fusion against the confidence-weighted RRF it replaced.

    python bench/fusion_bench.py [--docs 110] [--latency-docs 600]

Quality: look-alike Korean and English purchase requests (tests/lookalike.py), one
question each of five kinds; hit@1 / hit@5 by document for keyword, dense, the old RRF
fusion and the new fusion, in one run over the same index. Latency: p50 / p95 of
`Retriever.search` in hybrid mode (query embedding included) against the old path (the
same two lists fused by RRF), on an index of `--latency-docs` Korean documents.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import median, percentile
from lookalike import KINDS, hit_rates, write_lookalike_corpus

from ragserve.ingest.pipeline import IngestOptions, run_ingest
from ragserve.retrieval.embedder import SentenceTransformerEmbedder
from ragserve.retrieval.search import Retriever
from ragserve.server.logs import configure_logging

RRF_K = 60


def rrf(rankings: list[list[int]], weights: list[float]) -> list[tuple[int, float]]:
    """The fusion this project used before: weighted reciprocal rank fusion."""
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + weight / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)


def confidence(scores: list[float]) -> float:
    if not scores:
        return 0.0
    if len(scores) == 1:
        return 0.5
    rest = scores[1:5]
    return min(1.0, max(0.0, (scores[0] - sum(rest) / len(rest)) / (abs(scores[0]) or 1.0)))


def old_hybrid(retriever: Retriever, query: str, k: int) -> list[str]:
    version = retriever.version.acquire()
    vector = retriever.embedder.embed_queries([query])[0]
    dense = version.dense(vector, 20, None)
    keyword = version.keyword(query, 20, None)
    fused = rrf(
        [[i for i, _ in dense], [i for i, _ in keyword]],
        [confidence([s for _, s in dense]), confidence([s for _, s in keyword])],
    )[:k]
    chunks = version.chunks(i for i, _ in fused)
    retriever.version.release(version)
    return [chunks[i].document for i, _ in fused if i in chunks]


def documents(retriever: Retriever, query: str, mode: str) -> list[str]:
    if mode == "rrf (before)":
        return old_hybrid(retriever, query, 15)
    return [h.document for h in retriever.search(query, top_k=15, mode=mode)]


def build(root: Path, per_language: int, languages: tuple[str, ...], embedder):
    questions = [q for lang in languages for q in write_lookalike_corpus(root, per_language, lang)]
    index = root.parent / (root.name + "-index")
    run_ingest(IngestOptions(index_dir=index, paths=[root], workers=2), embedder)
    return Retriever(index, embedder), questions


def quality(retriever: Retriever, questions) -> None:
    modes = ("keyword", "dense", "rrf (before)", "hybrid")
    for lang in ("ko", "en"):
        asked = [q for q in questions if q.language == lang]
        print(f"\n{lang}: {len(asked)} questions, hit@1 / hit@5 by document")
        print(f"| mode | all | {' | '.join(KINDS)} |")
        print("| --- " * (len(KINDS) + 2) + "|")
        for mode in modes:
            table = hit_rates(lambda q, m=mode: documents(retriever, q, m), asked)
            cells = [f"{table[k][0]:.2f} / {table[k][1]:.2f}" for k in ("all", *KINDS)]
            print(f"| {mode} | {' | '.join(cells)} |")


def latency(retriever: Retriever, questions, repeat: int = 3) -> None:
    chunks = retriever.version.manifest.chunks
    new, old = [], []

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000

    for n in range(repeat):
        for i, q in enumerate(questions):
            now = lambda q=q: retriever.search(q.question, top_k=5, mode="hybrid")  # noqa: E731
            before = lambda q=q: old_hybrid(retriever, q.question, 5)  # noqa: E731
            if (i + n) % 2:  # alternate which runs first: the second finds warmer caches
                new.append(timed(now))
                old.append(timed(before))
            else:
                old.append(timed(before))
                new.append(timed(now))
    print(
        f"\nhybrid search, {chunks} chunks, {len(new)} queries: p50 {median(new):.1f} ms "
        f"(p95 {percentile(new, 95):.1f}); before: p50 {median(old):.1f} ms "
        f"(p95 {percentile(old, 95):.1f}); ratio {median(new) / median(old):.2f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=110, help="documents per language")
    ap.add_argument("--latency-docs", type=int, default=600)
    args = ap.parse_args()
    configure_logging("warning", json=False)
    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        retriever, questions = build(Path(tmp) / "q", args.docs, ("ko", "en"), embedder)
        quality(retriever, questions)
        if args.latency_docs:
            big, asked = build(Path(tmp) / "l", args.latency_docs, ("ko",), embedder)
            latency(big, asked[:100])


if __name__ == "__main__":
    main()
