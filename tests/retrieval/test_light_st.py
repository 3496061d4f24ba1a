"""retrieval/light_st.py: the same vectors as sentence-transformers, without importing it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ragserve.retrieval import light_st
from ragserve.retrieval.embedder import SentenceTransformerEmbedder, resolve_model

TEXTS = [
    "What was the budget of Project Falcon in 2025, and who manages it?",
    "  총 계약금액은 5억 2천만원(부가가치세 포함)이며, 공사 기간은 2024년 4월 1일부터이다.  ",
    "short",
    "The committee reviewed the maintenance records of the northern river levees. " * 40,
    "",
    "MiXeD CaSe and punctuation!!! 1,234.56 — ünïcödé",
]


@pytest.fixture(scope="module")
def folder():
    from pathlib import Path

    return Path(resolve_model("all-MiniLM-L6-v2"))


def test_bundled_minilm_matches_sentence_transformers(folder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(folder), device="cpu")
    want = reference.encode(TEXTS, batch_size=4, normalize_embeddings=True)
    light = light_st.load(folder, "cpu")
    assert light is not None
    got = light.encode(TEXTS, batch_size=4)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-5  # truncation (the long text), strip, padding alike
    assert light.max_seq_length == reference.max_seq_length
    assert light.get_sentence_embedding_dimension() == 384


def test_the_embedder_uses_it_and_the_server_path_never_imports_sentence_transformers(folder):
    code = (
        "import sys; from ragserve.retrieval.embedder import SentenceTransformerEmbedder as E; "
        "e = E('all-MiniLM-L6-v2', device='cpu'); v = e.embed_queries(['hello']); "
        "print(v.shape, e.count_tokens('hello world'), 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.split()[-1] == "False", out.stdout + out.stderr
    assert "(1, 384) 2" in out.stdout


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "modules.json").write_text(
            json.dumps(
                [*json.loads((d / "modules.json").read_text()), {"type": "x.Dense", "path": "2"}]
            )
        ),
        lambda d: (d / "config_sentence_transformers.json").write_text(
            json.dumps({"prompts": {"query": "query: "}})
        ),
        lambda d: (d / "1_Pooling" / "config.json").write_text(
            json.dumps({"word_embedding_dimension": 384, "pooling_mode_weightedmean_tokens": True})
        ),
        lambda d: (d / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": 256, "model_args": {"trust_remote_code": True}})
        ),
    ],
    ids=["dense-layer", "prompts", "weighted-pooling", "model-args"],
)
def test_anything_unusual_goes_to_sentence_transformers(folder, tmp_path, change):
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    assert light_st.plan(copy) is not None
    change(copy)
    assert light_st.plan(copy) is None


def test_embedder_vectors_unchanged_by_the_light_path(folder):
    from sentence_transformers import SentenceTransformer

    emb = SentenceTransformerEmbedder(str(folder), device="cpu")
    want = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)
    assert np.abs(emb.embed_passages(TEXTS) - want).max() < 1e-5
