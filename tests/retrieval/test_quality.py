"""Retrieval quality on look-alike documents: hit@1 and hit@5 per search mode."""

from __future__ import annotations

import pytest

from ragserve.ingest.pipeline import IngestOptions, run_ingest
from ragserve.retrieval.search import Retriever


@pytest.fixture(scope="module")
def retriever(tmp_path_factory, fact_corpus, embedder) -> Retriever:
    root, _ = fact_corpus
    index = tmp_path_factory.mktemp("quality") / "index"
    run_ingest(IngestOptions(index_dir=index, paths=[root], workers=2), embedder)
    return Retriever(index, embedder)


def hit_rates(retriever: Retriever, facts, mode: str) -> tuple[float, float]:
    at1 = at5 = 0
    for fact in facts:
        docs = [h.document for h in retriever.search(fact.question, top_k=5, mode=mode)]
        at1 += bool(docs) and docs[0] == fact.document
        at5 += fact.document in docs
    return at1 / len(facts), at5 / len(facts)


def test_hybrid_finds_the_right_document(retriever: Retriever, fact_corpus, capsys):
    _, facts = fact_corpus
    assert len(facts) >= 40
    rates = {mode: hit_rates(retriever, facts, mode) for mode in ("dense", "keyword", "hybrid")}
    with capsys.disabled():
        print()
        for mode, (h1, h5) in rates.items():
            print(
                f"  retrieval quality ({len(facts)} questions) {mode:8s} "
                f"hit@1 {h1:.2f}  hit@5 {h5:.2f}"
            )
    assert rates["hybrid"][1] >= 0.9
    # the dense model knows no Korean: keyword search is what carries those questions
    assert rates["hybrid"][1] >= rates["dense"][1]
