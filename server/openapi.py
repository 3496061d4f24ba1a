"""The committed OpenAPI document: `python -m ragserve.server.openapi write|check`.

A tool for a source checkout (the document lives in `openapi/` at the repository's top);
an installed server serves the same document itself (`server/spec.py`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ragserve.retrieval.config import RetrievalSettings

from .app import create_app
from .settings import Settings
from .spec import document

SPEC = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def generate() -> str:
    settings = Settings(
        retrieval=RetrievalSettings(index_dir=Path("/nonexistent")), model_alias="ragserve"
    )
    app = create_app(settings).litestar
    schema = app.openapi_schema.to_schema()
    document(schema, app)
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if not SPEC.parent.is_dir():
        print(
            f"{SPEC.parent} not found: write and check need a source checkout "
            "(an installed server serves its spec at /openapi/openapi.json)",
            file=sys.stderr,
        )
        return 2
    if command == "write":
        SPEC.parent.mkdir(exist_ok=True)
        SPEC.write_text(generate())
        print(f"wrote {SPEC}")
        return 0
    if command == "check":
        if not SPEC.exists() or SPEC.read_text() != generate():
            print(
                f"{SPEC} is out of date with the code; run `make spec` and commit it",
                file=sys.stderr,
            )
            return 1
        print(f"{SPEC} is up to date")
        return 0
    print("usage: python -m ragserve.server.openapi write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
