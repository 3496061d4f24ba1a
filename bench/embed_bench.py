"""Embedding throughput: ragserve's Embedder against a bare `model.encode` of the same chunks.

python bench/embed_bench.py [--chunks 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import time

from _common import median, report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    args = ap.parse_args()
    from ragserve.retrieval.embedder import SentenceTransformerEmbedder

    rng = random.Random(0)
    words = [
        "budget",
        "contract",
        "schedule",
        "계약",
        "금액",
        "사업",
        "담당자",
        "report",
        "project",
        "inspection",
        "payment",
        "quarterly",
        "일정",
        "보고서",
        "설계",
        "공사",
    ]
    texts = [
        " ".join(rng.choice(words) for _ in range(rng.randint(80, 160))) for _ in range(args.chunks)
    ]
    emb = SentenceTransformerEmbedder(args.model, device="cpu")
    model = emb.load()
    ours, bare = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        model.encode(
            texts,
            batch_size=emb.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        bare.append(len(texts) / (time.perf_counter() - t))
        t = time.perf_counter()
        emb.embed_passages(texts)
        ours.append(len(texts) / (time.perf_counter() - t))
    report(
        f"embedding chunks/s ({args.model}, {args.chunks} chunks)",
        median(ours),
        median(bare),
        "chunks/s",
        "target >= 0.9x",
    )


if __name__ == "__main__":
    main()
