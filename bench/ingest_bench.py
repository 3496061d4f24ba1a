"""Ingest throughput against single-process pypdf extraction of the same files.

    python bench/ingest_bench.py [--files 900] [--pages 6] [--workers N]

Generates a corpus shaped like the real one (multi-page Korean and English office
documents), then measures, in one run: plain pypdf extraction in one process (the
baseline), ragserve's extraction pool, and the whole ingest (extract, clean, chunk,
embed, index). Medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from _common import median, report
from pdfgen import write_pdf

KO = (
    "본 사업은 지역 기반시설 개선을 목적으로 하며 계약금액과 일정은 다음과 같다. "
    "담당 부서는 분기마다 진행 상황을 점검하고 결과를 보고한다. "
)
EN = (
    "This section describes the scope of work, the schedule and the budget of the "
    "project, together with the responsibilities of each party. "
)


def make_corpus(root: Path, files: int, pages: int, seed: int = 1) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    for i in range(files):
        text = KO if i % 3 else EN  # mostly Korean, like the AI-CHAT corpus
        doc = [
            [f"Document {i} / 문서 {i}", f"ID KR-{rng.randint(1000, 9999)}-{i}"]
            + [text * 3 for _ in range(8)]
            for _ in range(pages)
        ]
        paths.append(write_pdf(root / f"sub{i % 20:02d}" / f"doc_{i:04d}.pdf", doc))
    return paths


def pypdf_single(paths: list[Path]) -> int:
    import pypdf

    n = 0
    for p in paths:
        for page in pypdf.PdfReader(str(p)).pages:
            page.extract_text()
            n += 1
    return n


def pool_extract(paths: list[Path], workers: int) -> int:
    from ragserve.ingest.pool import ExtractPool

    with ExtractPool(workers, timeout_s=120, memory_limit_mb=2048) as pool:
        return sum(len(r.pages) for _, r in pool.imap_unordered([str(p) for p in paths]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=900)
    ap.add_argument("--pages", type=int, default=6)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--full-ingest-files",
        type=int,
        default=30,
        help="files for the end-to-end ingest (embedding dominates on CPU)",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragserve-bench-"))
    try:
        t = time.perf_counter()
        paths = make_corpus(work / "corpus", args.files, args.pages)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"corpus: {len(paths)} PDFs, {args.pages} pages each, {mb:.1f} MB "
            f"(generated in {time.perf_counter() - t:.0f} s); {os.cpu_count()} cores, "
            f"{args.workers} workers"
        )
        base, pool = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            pages = pypdf_single(paths)
            base.append(pages / (time.perf_counter() - t))
            t = time.perf_counter()
            assert pool_extract(paths, args.workers) == pages
            pool.append(pages / (time.perf_counter() - t))
        report(
            "extraction pages/s (pool vs 1-process pypdf)",
            median(pool),
            median(base),
            "pages/s",
            "target >= 1.7x on 2 cores",
        )
        report("extraction MB/s", median(pool) * mb / pages, median(base) * mb / pages, "MB/s")

        if args.full_ingest_files <= 0:
            return
        from ragserve.ingest.pipeline import IngestOptions, run_ingest
        from ragserve.retrieval.embedder import SentenceTransformerEmbedder

        subset = work / "subset"
        for p in paths[: args.full_ingest_files]:
            dest = subset / p.relative_to(work / "corpus")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, dest)
        embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu")
        embedder.load()
        t = time.perf_counter()
        s = run_ingest(
            IngestOptions(index_dir=work / "index", paths=[subset], workers=args.workers), embedder
        )
        full = time.perf_counter() - t
        t = time.perf_counter()
        pypdf_single(sorted(subset.rglob("*.pdf")))
        single = time.perf_counter() - t
        print(
            f"full ingest of {s.ingested} files: {s.pages} pages, {s.chunks} chunks in "
            f"{full:.1f} s = {s.pages / full:.1f} pages/s (1-process pypdf alone: "
            f"{s.pages / single:.1f} pages/s; embedding dominates on CPU)"
        )
        t = time.perf_counter()
        again = run_ingest(
            IngestOptions(index_dir=work / "index", paths=[subset], workers=args.workers), embedder
        )
        print(
            f"re-ingest, unchanged corpus: {again.unchanged} unchanged in "
            f"{time.perf_counter() - t:.2f} s"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
