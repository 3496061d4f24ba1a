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


def test_each_routes_statuses_come_from_its_own_declaration():
    """Every documented operation is declared once, at its handler (operations.route): the
    document's error statuses are that declaration's (with the scope/limit refusals of a
    route that needs a scope), and a documented handler without one cannot be built."""
    import pytest
    from litestar import Litestar, get

    from ragserve.retrieval.config import RetrievalSettings
    from ragserve.server.app import create_app
    from ragserve.server.settings import Settings
    from ragserve.server.spec import document, operations

    app = create_app(
        Settings(retrieval=RetrievalSettings(index_dir=SPEC.parent / "nonexistent"))
    ).litestar
    spec = json.loads(SPEC.read_text())
    declared = {(method, path): (need, op) for method, path, need, op in operations(app)}
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert set(declared) == documented
    for (method, path), (need, op) in declared.items():
        errors = {int(s) for s in spec["paths"][path][method]["responses"] if s != "200"}
        assert errors == set(op.statuses(need)), (method, path)
        if need is not None and need.scope:
            assert {403, 429} <= errors, (method, path)
    chat = declared[("post", "/v1/chat/completions")][1]
    assert chat.body == "ChatCompletionRequest" and chat.stream == "ChatCompletionChunk"
    assert (
        "text/event-stream"
        in spec["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    )

    @get("/undeclared")
    async def undeclared() -> str:
        return ""

    bare = Litestar([undeclared])
    with pytest.raises(RuntimeError, match="/undeclared: the route declares no Operation"):
        document(bare.openapi_schema.to_schema(), bare)
