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
