"""`ragserve search "query"`: the retriever from the command line."""

from __future__ import annotations

import argparse
import sys

import msgspec

from .config import add_retrieval_arguments, retrieval_settings
from .search import MODES, Filters, Retriever, page_label


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search the index", description="Search the index.")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, dest="top_k", help="hits (default %(default)s)")
    p.add_argument("--mode", choices=MODES, default="hybrid", help="default %(default)s")
    p.add_argument(
        "--document",
        action="append",
        default=None,
        metavar="PATH_OR_GLOB",
        help="only these documents (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print hits as JSON")
    add_retrieval_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.top_k <= 0:
        print("ragserve search: -k must be positive", file=sys.stderr)
        return 2
    settings = retrieval_settings(args)
    retriever = Retriever(
        settings.location, settings.embedder(queries_only=True), reranker=settings.reranker()
    )
    try:
        hits = retriever.search(args.query, args.top_k, Filters(documents=args.document), args.mode)
    finally:
        retriever.close()
    if args.json:
        sys.stdout.write(msgspec.json.encode(hits).decode() + "\n")
        return 0
    if not hits:
        print("no hits")
    for n, hit in enumerate(hits, 1):
        print(f"[{n}] {hit.document} ({page_label(hit.page, hit.page_end)}, score {hit.score:.4f})")
        print(f"    {hit.snippet()}")
    return 0
