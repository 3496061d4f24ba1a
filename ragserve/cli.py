"""The `ragserve` command: serve, ingest, search. Errors become messages and exit codes here."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from ragserve import __version__
from ragserve.errors import IngestLocked, RagserveError, StoreUnavailable
from ragserve.ingest import cli as ingest_cli
from ragserve.ingest.pipeline import CorpusError
from ragserve.options import SettingError
from ragserve.retrieval import cli as search_cli
from ragserve.server.access import cli as keys_cli
from ragserve.server.logs import configure_logging
from ragserve.server.settings import (
    add_serve_arguments,
    bundled_model_path,
    engine_options,
    served_model_id,
    settings_from_args,
)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_INTERRUPTED = 130
EXIT_CODES = (  # the first match decides
    (SettingError, EXIT_USAGE),
    (CorpusError, EXIT_USAGE),
    (IngestLocked, EXIT_LOCKED),
    (StoreUnavailable, EXIT_USAGE),  # a wrong URL, a database without pgvector
    (RagserveError, EXIT_ERROR),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragserve",
        description="OpenAI-compatible chat server that answers from a PDF library.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("RAGSERVE_LOG_LEVEL"),
        help="log level [env RAGSERVE_LOG_LEVEL; default: info for serve, else warning]",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the OpenAI-compatible server",
        description="Serve the OpenAI API, answering from the index.",
    )
    add_serve_arguments(serve)
    serve.set_defaults(func=run_serve)
    ingest_cli.add_parser(sub)
    search_cli.add_parser(sub)
    keys_cli.add_parser(sub)
    return parser


class _Version(argparse.Action):
    """`--version` on one line (argparse's own action wraps it at the terminal's width)."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        print(version_line())
        parser.exit()


def version_line() -> str:
    """What a bug report needs: ragserve's version and the native pieces under it."""
    parts = []
    for dist in ("llama-cpp-python", "hnswlib", "torch"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} missing")
    parts.append(f"Python {platform.python_version()} on {platform.machine()}")
    return f"ragserve {__version__} ({', '.join(parts)})"


def run_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    configure_logging(settings.log_level, json=settings.log_json)
    model: Path | None = None
    if settings.llm_url is None:
        try:
            model = settings.model_path or bundled_model_path()
        except FileNotFoundError as exc:
            print(f"ragserve serve: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not model.is_file():
            print(f"ragserve serve: model file not found: {model}", file=sys.stderr)
            return EXIT_USAGE
    elif settings.model_path is not None:
        print("ragserve serve: --model and --llm-url exclude each other", file=sys.stderr)
        return EXIT_USAGE
    elif (tok := settings.llm_tokenizer) and tok.endswith(".gguf") and not Path(tok).is_file():
        print(f"ragserve serve: --llm-tokenizer file not found: {tok}", file=sys.stderr)
        return EXIT_USAGE
    if settings.retrieval.store:
        # a wrong URL, or a database without pgvector: say so now (exit 2), not as a server
        # that never gets ready. Migrations are applied here, before any request.
        from ragserve.retrieval.backend import open_backend

        open_backend(settings.retrieval.store).close()
    # The model loads first, on its own thread, while the web stack imports below.
    preload = None
    if model is not None:
        from ragserve.engine import EngineLoad

        preload = EngineLoad(model, **engine_options(settings))
    from ragserve.server.boot import BootApp
    from ragserve.server.serve import run

    app = BootApp(settings, preload=preload)
    auth = "API key required" if settings.api_keys or settings.api_key_file else "no API key"
    print(
        f"ragserve {__version__}: serving http://{settings.host}:{settings.port}/v1 ({auth}); "
        f"model {served_model_id(settings)}"
        + (f" through {settings.llm_url}" if settings.llm_url else "")
        + ", "
        f"index {settings.retrieval.where}",
        file=sys.stderr,
        flush=True,
    )
    run(app, settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.log_level is None:
        args.log_level = "info" if args.command == "serve" else "warning"
    configure_logging(args.log_level)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("ragserve: interrupted; the previously published index is unchanged", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (SettingError, CorpusError, RagserveError) as exc:
        print(f"ragserve {args.command}: {exc}", file=sys.stderr)
        return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


if __name__ == "__main__":
    sys.exit(main())
