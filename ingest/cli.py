"""`ragserve ingest PATH...`: bring the index up to date with a folder of PDFs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from ragserve.options import SettingError, add_options, resolve
from ragserve.retrieval.config import add_retrieval_arguments, retrieval_settings

from .ocr import ocr_settings, unavailable_reason
from .pipeline import INGEST_OPTIONS, IngestOptions, IngestSummary, run_ingest


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
    add_options(p, INGEST_OPTIONS)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = retrieval_settings(args)
    values = resolve(args, INGEST_OPTIONS)
    if values["chunk_overlap"] >= values["chunk_tokens"]:
        raise SettingError("--chunk-overlap must be smaller than --chunk-tokens")
    ocr = [values.pop(k) for k in ("ocr", "ocr_lang", "ocr_dpi", "ocr_page_timeout_s")]
    try:
        values["ocr"] = ocr_settings(*ocr)
    except ValueError as exc:
        raise SettingError(str(exc)) from None
    if reason := unavailable_reason(ocr[0], ocr[1]):
        print(f"ragserve: OCR is off: {reason}", file=sys.stderr)
    options = IngestOptions(
        index_dir=settings.location,
        paths=args.paths,
        root=args.root,
        prune=args.prune,
        progress=not args.no_progress and sys.stderr.isatty(),
        **values,
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
        f"{s.garbled_pages} unreadable, {s.empty_pages} without text; {s.ocr_pages} read by "
        f"OCR, {s.ocr_failed_pages} OCR could not read, {s.ocr_skipped_pages} scanned and not "
        f"read); chunks: {s.chunks}; {s.seconds:.1f} s"
    )
    for p in s.problems:
        print(f"  {p.status}: {p.path}: {p.reason}")
