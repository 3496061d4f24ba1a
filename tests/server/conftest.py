"""A real server: uvicorn on 127.0.0.1, the SmolLM2 GGUF, an index built from generated PDFs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pdfgen
import pytest
from liveserver import LiveServer, make_settings

from ragserve.engine import LlamaEngine
from ragserve.ingest.pipeline import IngestOptions, run_ingest
from ragserve.retrieval.search import Retriever
from ragserve.server.app import create_app
from ragserve.server.settings import bundled_model_path

FACTS = {
    "falcon.pdf": [
        ["Project Falcon status report"],
        [
            "The budget of Project Falcon is 4.2 million dollars.",
            "The project manager of Project Falcon is Alice Smith.",
        ],
    ],
    "orchid.pdf": [
        [
            "Project Orchid builds a water treatment plant in Daejeon.",
            "The Orchid plant opens on 14 March 2027.",
        ]
    ],
    "도로보수.pdf": [
        [
            "서울시 도로 보수 사업",
            "계약번호 KR-2024-0173 의 계약금액은 5억원입니다.",
            "담당자는 김민수 과장입니다.",
        ]
    ],
}


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, embedder) -> Path:
    root = tmp_path_factory.mktemp("server-corpus")
    for name, pages in FACTS.items():
        pdfgen.write_pdf(root / name, pages)
    index = tmp_path_factory.mktemp("server-index") / "index"
    run_ingest(IngestOptions(index_dir=index, paths=[root], workers=1), embedder)
    return index


@pytest.fixture(scope="session")
def engine() -> LlamaEngine:
    return LlamaEngine(bundled_model_path(), model_id="smollm2", n_ctx=2048, max_queue=8)


@pytest.fixture(scope="session")
def retriever(index_dir, embedder) -> Retriever:
    return Retriever(index_dir, embedder)


@pytest.fixture(scope="module")
def library(tmp_path_factory, index_dir, engine, retriever) -> Iterator[LiveServer]:
    """A server of the module's own, with its own library (uploads, vector stores,
    responses) in a fresh data folder; uploads up to 2 MB."""
    data = tmp_path_factory.mktemp("library-data")
    settings = make_settings(index_dir, data_dir=data, max_upload_mb=2)
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as live:
        yield live


@pytest.fixture(scope="module")
def sdk(library):
    """The official OpenAI SDK on the module's `library` server."""
    import openai

    return openai.OpenAI(base_url=library.url + "/v1", api_key="x", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def server(index_dir, engine, retriever) -> Iterator[LiveServer]:
    app = create_app(
        make_settings(index_dir, max_body_bytes=256 * 1024), engine=engine, retriever=retriever
    )
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


@pytest.fixture
def client(server):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
