"""`ragserve ingest PATH...`: bring the index up to date with a folder of PDFs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import msgspec

from ragserve.retrieval.config import add_retrieval_arguments, retrieval_settings

from .pipeline import IngestOptions, IngestSummary, run_ingest


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="ingest PDFs into the index",
        description="Ingest PDF files and folders into the search index. "
        "Unchanged files are skipped; changed files are re-indexed.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="PDF files or folders")
    add_retrieval_arguments(p)
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="corpus root that document paths are relative to "
        "(default: the common parent of PATH...)",
    )
    p.add_argument(
        "--prune", action="store_true", help="remove indexed documents whose files are gone"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="extraction processes (default: number of cores, %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        dest="timeout_s",
        help="seconds allowed per file before it is skipped (default %(default)s)",
    )
    p.add_argument(
        "--memory-limit-mb",
        type=int,
        default=2048,
        help="address-space limit per extraction process (default %(default)s)",
    )
    p.add_argument(
        "--chunk-tokens",
        type=int,
        default=200,
        help="tokens per chunk, embedding tokenizer (default %(default)s)",
    )
    p.add_argument(
        "--chunk-overlap",
        type=int,
        default=40,
        help="tokens shared by neighbouring chunks (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = retrieval_settings(args)
    if args.chunk_overlap >= args.chunk_tokens or args.chunk_tokens < 16:
        print(
            "ragserve ingest: --chunk-overlap must be smaller than --chunk-tokens (>= 16)",
            file=sys.stderr,
        )
        return 2
    options = IngestOptions(
        index_dir=settings.index_dir,
        paths=args.paths,
        root=args.root,
        prune=args.prune,
        workers=args.workers,
        timeout_s=args.timeout_s,
        memory_limit_mb=args.memory_limit_mb,
        chunk_tokens=args.chunk_tokens,
        chunk_overlap=args.chunk_overlap,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    summary = run_ingest(options, settings.embedder())
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    else:
        print_summary(summary)
    return 0


def print_summary(s: IngestSummary) -> None:
    state = f"published {s.version}" if s.published else f"unchanged ({s.version or 'empty'})"
    print(f"index {s.index_dir}: {state}")
    print(
        f"files: {s.ingested} ingested, {s.unchanged} unchanged, {s.skipped} skipped, "
        f"{s.failed} failed, {s.removed} removed"
    )
    print(
        f"pages: {s.pages} ({s.reextracted_pages} re-extracted with pdfium, "
        f"{s.garbled_pages} unreadable, {s.empty_pages} without text); chunks: {s.chunks}; "
        f"{s.seconds:.1f} s"
    )
    for p in s.problems:
        print(f"  {p.status}: {p.path}: {p.reason}")
