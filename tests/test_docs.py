"""The README's settings table is the one the declarations generate."""

from __future__ import annotations

from helpers import ROOT

from ragserve.options import markdown_table
from ragserve.retrieval.config import RETRIEVAL_OPTIONS
from ragserve.server.settings import SERVE_OPTIONS


def test_readme_settings_table_matches_the_declarations():
    readme = (ROOT / "README.md").read_text()
    table = markdown_table((*SERVE_OPTIONS, *RETRIEVAL_OPTIONS))
    assert table in readme, (
        "README settings table is stale: run `python -m ragserve.server.settings`"
    )
