"""The README's settings tables, from the declarations: `python -m ragserve.docs`."""

from __future__ import annotations

from ragserve.ingest.cli import INGEST_OPTIONS
from ragserve.options import markdown_table
from ragserve.retrieval.config import RETRIEVAL_OPTIONS
from ragserve.server.settings import SERVE_OPTIONS


def settings_tables() -> str:
    return (
        "`ragserve serve` (the index and embedding rows also apply to `ingest` and `search`):\n\n"
        + markdown_table((*SERVE_OPTIONS, *RETRIEVAL_OPTIONS))
        + "\n`ragserve ingest` also takes:\n\n"
        + markdown_table(INGEST_OPTIONS)
    )


if __name__ == "__main__":
    print(settings_tables(), end="")
