"""Vector search: hnswlib (ragserve's VectorIndex) against exact brute-force search.

    python bench/retrieval_bench.py [--vectors 100000] [--dim 384] [--queries 500]

Vectors have the low intrinsic dimension of sentence embeddings (sparse topic mixtures in
a --latent-dimensional space, projected to --dim, plus noise), L2-normalised. Uniformly
random vectors, which no real embedding model produces, are HNSW's worst case.
Prints recall@10 against exact search over the same vectors, query latency p50/p99 of
both, and the hybrid Retriever's end-to-end latency on a small real index is in
bench/serve_bench.py.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import median, percentile, report


def embeddings_like(n: int, dim: int, rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    """Vectors with the low intrinsic dimension of sentence embeddings: topic mixtures in a
    `latent`-dimensional space, projected to `dim` dimensions, plus isotropic noise."""
    latent = basis.shape[0]
    topics = rng.dirichlet(np.full(latent, 0.1), n).astype(np.float32)
    x = topics @ basis + rng.normal(0, 0.02, (n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--latent", type=int, default=64, help="intrinsic dimension of the data")
    args = ap.parse_args()
    from ragserve.retrieval.vectors import EF_SEARCH, M, VectorIndex

    rng = np.random.default_rng(0)
    basis = rng.normal(0, 1, (args.latent, args.dim)).astype(np.float32)
    data = embeddings_like(args.vectors, args.dim, rng, basis)
    queries = embeddings_like(args.queries, args.dim, rng, basis)
    index = VectorIndex(args.dim, capacity=args.vectors)
    t = time.perf_counter()
    index.add(list(range(args.vectors)), data)
    print(
        f"{args.vectors} vectors, dim {args.dim}: hnswlib build (M={M}) "
        f"{time.perf_counter() - t:.1f} s; ef_search={EF_SEARCH}",
        flush=True,
    )
    hnsw_ms, exact_ms, recalls = [], [], []
    for q in queries:
        t = time.perf_counter()
        got = [i for i, _ in index.search(q, args.k)]
        hnsw_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        scores = data @ q
        truth = np.argpartition(-scores, args.k)[: args.k]
        exact_ms.append((time.perf_counter() - t) * 1000)
        recalls.append(len(set(got) & set(truth.tolist())) / args.k)
    print(
        f"recall@{args.k} vs exact search: {np.mean(recalls):.4f} "
        f"(target >= 0.98; min per query {min(recalls):.1f})"
    )
    report(
        "query latency p50 (exact / hnswlib = speed-up)", median(exact_ms), median(hnsw_ms), "ms"
    )
    print(
        f"hnswlib p50 {median(hnsw_ms):.3f} ms, p99 {percentile(hnsw_ms, 99):.3f} ms; "
        f"exact p50 {median(exact_ms):.3f} ms, p99 {percentile(exact_ms, 99):.3f} ms"
    )


if __name__ == "__main__":
    main()
