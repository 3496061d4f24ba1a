"""The README's settings tables are the ones the declarations generate."""

from __future__ import annotations

from helpers import ROOT

from ragserve.docs import settings_tables


def test_readme_settings_tables_match_the_declarations():
    readme = (ROOT / "README.md").read_text()
    stale = "README settings tables are stale: run `python -m ragserve.docs`"
    assert settings_tables() in readme, stale
