"""The committed OpenAPI document matches the app (`make spec` regenerates it)."""

import json

from ragserve.server.openapi import SPEC, generate


def test_committed_spec_matches_the_code():
    assert SPEC.read_text() == generate(), "openapi/openapi.json is stale: run `make spec`"


def test_spec_documents_ragserve_additions():
    spec = json.loads(SPEC.read_text())
    schemas = spec["components"]["schemas"]
    assert "rag" in schemas["ChatCompletionRequest"]["properties"]
    assert "sources" in schemas["ChatCompletion"]["properties"]
    assert {"document", "page", "score", "snippet"} <= set(schemas["Source"]["properties"])
    assert "/v1/chat/completions" in spec["paths"] and "/health/ready" in spec["paths"]


def test_the_server_serves_the_committed_spec(tmp_path):
    """An installed server has no `openapi/` folder: it serves the same document itself."""
    from litestar.testing import TestClient

    from ragserve.retrieval.config import RetrievalSettings
    from ragserve.server.app import create_app
    from ragserve.server.settings import Settings

    app = create_app(Settings(retrieval=RetrievalSettings(index_dir=tmp_path / "index")))
    with TestClient(app.litestar) as http:
        served = http.get("/openapi/openapi.json")
        assert served.status_code == 200
        assert served.json() == json.loads(SPEC.read_text())
        assert http.get("/openapi/openapi.yaml").status_code == 200


def test_version_has_one_source():
    """pyproject.toml's version is what the CLI, /health and the spec report."""
    import tomllib

    from ragserve import __version__
    from ragserve.cli import version_line

    root = SPEC.parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == declared
    assert version_line().startswith(f"ragserve {declared} (")
    assert json.loads(SPEC.read_text())["info"]["version"] == declared
