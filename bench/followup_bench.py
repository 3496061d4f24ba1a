"""Follow-up questions re-hit the passages of the question before: how often, and what
referring to them instead of repeating them saves, on the 48-document quality corpus
(tests/corpus.py: Korean and English contracts and reports, two facts each).

    python bench/followup_bench.py [--top-k 5]

Each conversation asks a document's question, gets an answer, then asks a short follow-up
about another fact of the same document ("사업 장소는 어디인가요?" / "Where is it based?"),
which the server searches together with the question before (rag.search_query). Both turns
are packed by the server's own code (rag.pack with its TurnMemory, SmolLM2's tokenizer and
template, hybrid retrieval over the real index). Prints, over all conversations:
- the share of the follow-up's passages that the first turn already gave;
- the tokens the follow-up adds to the prompt after the first turn's (what the model must
  read; the rest is in the KV cache) with passages referred to, against the same turn with
  every passage given again (the baseline, same run): medians and totals.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _common import median, report
from corpus import write_fact_corpus

FOLLOW_UP = {"ko": "사업 장소는 어디인가요?", "en": "Where is it based?"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--top-k", type=int, default=5)
    args = ap.parse_args()
    from ragserve.engine import LlamaEngine
    from ragserve.ingest.pipeline import IngestOptions, run_ingest
    from ragserve.retrieval.embedder import SentenceTransformerEmbedder
    from ragserve.retrieval.search import Retriever
    from ragserve.server import rag
    from ragserve.server.settings import bundled_model_path

    work = Path(tempfile.mkdtemp(prefix="ragserve-followup-"))
    try:
        facts = write_fact_corpus(work / "corpus", 48)
        embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu")
        embedder.load()
        run_ingest(IngestOptions(index_dir=work / "index", paths=[work / "corpus"]), embedder)
        retriever = Retriever(work / "index", embedder)
        engine = LlamaEngine(bundled_model_path(), model_id="smollm2", n_ctx=8192, parallel=1)
        memory = rag.TurnMemory()
        rehit, added, baseline = [], [], []
        for n, fact in enumerate(facts):
            view = memory.scoped(f"user{n}")
            turn1 = [{"role": "user", "content": fact.question}]
            hits1 = retriever.search(rag.search_query(turn1), top_k=args.top_k)
            first = rag.pack(engine, turn1, hits1, 64, 64, view)
            turn2 = [
                *turn1,
                {"role": "assistant", "content": f"{fact.answer} [1]"},
                {"role": "user", "content": FOLLOW_UP[fact.language]},
            ]
            hits2 = retriever.search(rag.search_query(turn2), top_k=args.top_k)
            given = {rag.fingerprint(h) for h in first.hits}
            again = rag.pack(engine, turn2, hits2, 64, 64, view, refer=False)
            referred = rag.pack(engine, turn2, hits2, 64, 64, view)
            assert referred.messages[:-1] == again.messages[:-1]  # the same cached prefix
            packed = {rag.fingerprint(h) for h in referred.hits}
            rehit.append(len(packed & given) / max(1, len(packed)))
            added.append(len(referred.prompt_tokens) - len(first.prompt_tokens))
            baseline.append(len(again.prompt_tokens) - len(first.prompt_tokens))
        engine.close()
        retriever.close()
        print(
            f"{len(facts)} conversations, top_k {args.top_k}: follow-up passages the first "
            f"turn already gave: median {median(rehit):.0%}, mean {sum(rehit) / len(rehit):.0%}"
        )
        report(
            "follow-up's new prompt tokens (refer vs repeat)",
            median(added),
            median(baseline),
            "tokens",
            "median",
        )
        report("  total over all follow-ups", sum(added), sum(baseline), "tokens")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
