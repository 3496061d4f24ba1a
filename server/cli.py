"""The `ragserve` command: serve, ingest, search. Errors become messages and exit codes here."""

from __future__ import annotations

import argparse
import os
import sys

from ingest import cli as ingest_cli
from ingest.pipeline import CorpusError
from retrieval import cli as search_cli
from retrieval.errors import IngestLocked, RagserveError

from .logs import configure_logging

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragserve",
        description="OpenAI-compatible chat server that answers from a PDF library.",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("RAGSERVE_LOG_LEVEL", "warning"),
        help="log level [env RAGSERVE_LOG_LEVEL; default %(default)s]",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ingest_cli.add_parser(sub)
    search_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("ragserve: interrupted; the previously published index is unchanged", file=sys.stderr)
        return EXIT_INTERRUPTED
    except IngestLocked as exc:
        print(f"ragserve {args.command}: {exc.message}", file=sys.stderr)
        return EXIT_LOCKED
    except CorpusError as exc:
        print(f"ragserve {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RagserveError as exc:
        print(f"ragserve {args.command}: {exc.message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
