"""Retrieval quality through the server is the same on both backends: the look-alike
Korean and English corpus indexed into local files and into PostgreSQL, every question
asked through the OpenAI SDK (vector store search on `vs_default`, and chat's sources)."""

from __future__ import annotations

import openai
from liveserver import LiveServer

from ragserve.ingest.pipeline import IngestOptions, run_ingest
from ragserve.retrieval.config import RetrievalSettings
from ragserve.retrieval.search import Retriever
from ragserve.server.app import create_app
from ragserve.server.settings import Settings


def served_hit_rates(location, tmp_path, fact_corpus, embedder, engine) -> dict[str, float]:
    root, facts = fact_corpus
    run_ingest(IngestOptions(index_dir=location, paths=[root], workers=2), embedder)
    retriever = Retriever(location, embedder)
    store = location if isinstance(location, str) else None
    index = location if store is None else tmp_path / "unused-index"
    settings = Settings(
        retrieval=RetrievalSettings(index_dir=index, store=store),
        model_alias="smollm2",
        data_dir=tmp_path / "data",
    )
    at1 = at5 = chat1 = 0
    try:
        app = create_app(settings, engine=engine, retriever=retriever)
        with LiveServer(app) as live:
            sdk = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
            for n, fact in enumerate(facts):
                found = sdk.vector_stores.search("vs_default", query=fact.question,
                                                 max_num_results=5).data  # fmt: skip
                names = [r.filename for r in found]
                at1 += bool(names) and names[0] == fact.document
                at5 += fact.document in names
                if n % 4 == 0:  # a quarter through chat, whose sources are the same search
                    reply = sdk.chat.completions.create(
                        model="smollm2",
                        max_tokens=1,
                        messages=[{"role": "user", "content": fact.question}],
                    )
                    docs = [s["document"] for s in reply.model_extra["sources"]]
                    chat1 += bool(docs) and docs[0] == fact.document
    finally:
        retriever.close()
    return {"hit@1": at1 / len(facts), "hit@5": at5 / len(facts), "chat hit@1": chat1}


def test_postgres_answers_as_well_as_local_files(
    tmp_path, fact_corpus, embedder, engine, postgres_url, capsys
):
    local = served_hit_rates(tmp_path / "index", tmp_path / "l", fact_corpus, embedder, engine)
    pg = served_hit_rates(postgres_url, tmp_path / "p", fact_corpus, embedder, engine)
    with capsys.disabled():
        print(f"\n  through the server, {len(fact_corpus[1])} questions: local {local}, "
              f"postgres {pg}")  # fmt: skip
    assert local["hit@5"] >= 0.9
    for key in ("hit@1", "hit@5"):
        assert abs(local[key] - pg[key]) <= 0.01, (key, local, pg)
    assert abs(local["chat hit@1"] - pg["chat hit@1"]) <= 1
