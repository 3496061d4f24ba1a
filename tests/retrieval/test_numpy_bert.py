"""retrieval/numpy_bert.py: the server's query vectors without torch, equal to torch's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import bench_script
from test_light_st import TEXTS

from ragserve.retrieval import light_st, numpy_bert
from ragserve.retrieval.embedder import SentenceTransformerEmbedder, resolve_model

make_encoder = bench_script("make_encoder.py")


@pytest.fixture(scope="module")
def folder() -> Path:
    return Path(resolve_model("all-MiniLM-L6-v2"))


def test_vectors_match_sentence_transformers(folder):
    from sentence_transformers import SentenceTransformer

    want = SentenceTransformer(str(folder), device="cpu").encode(
        TEXTS, batch_size=4, normalize_embeddings=True
    )
    model = numpy_bert.load(folder)
    assert model is not None
    got = model.encode(TEXTS, batch_size=4)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() < 2e-5  # long (truncated), Korean, empty, padded alike
    assert model.max_seq_length == 256


def test_token_counts_and_spans_match_the_transformers_tokenizer(folder):
    torch_side = SentenceTransformerEmbedder(str(folder), device="cpu")
    numpy_side = SentenceTransformerEmbedder(str(folder), device="cpu", runtime="auto")
    for text in TEXTS:
        assert numpy_side.count_tokens(text) == torch_side.count_tokens(text)
        assert numpy_side.token_spans(text) == torch_side.token_spans(text)
    assert numpy_side.max_tokens == torch_side.max_tokens
    assert numpy_side.device == "cpu" and numpy_side.dim == 384


def test_the_server_and_search_never_import_torch(tmp_path):
    from helpers import ROOT, ragserve

    index_dir = tmp_path / "index"
    assert ragserve("ingest", str(ROOT / "samples"), "--index", str(index_dir)).returncode == 0
    code = (
        "import sys; from pathlib import Path; "
        "from ragserve.retrieval.config import RetrievalSettings; "
        "from ragserve.retrieval.search import Retriever; "
        f"s = RetrievalSettings(index_dir=Path({str(index_dir)!r})); "
        "hits = Retriever(s.index_dir, s.embedder(queries_only=True)).search('Falcon budget', 3); "
        "print(len(hits), hits[0].document, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.split()[-2:] == ["False", "False"], out.stdout + out.stderr
    assert "falcon" in out.stdout.lower()


@pytest.mark.parametrize(
    "change",
    [
        lambda d: _edit(d / "config.json", model_type="deberta-v2"),
        lambda d: _edit(d / "config.json", hidden_act="relu"),
        lambda d: _edit(d / "config.json", position_embedding_type="relative_key"),
        lambda d: (d / "tokenizer.json").unlink(),
    ],
    ids=["not-bert", "other-activation", "relative-positions", "no-tokenizer-json"],
)
def test_other_encoders_load_with_torch(folder, tmp_path, change):
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    assert numpy_bert.plan(copy) is not None
    change(copy)
    assert numpy_bert.plan(copy) is None
    emb = SentenceTransformerEmbedder(str(copy), device="cpu", runtime="auto")
    if (copy / "tokenizer.json").exists():
        assert emb.embed_queries(["hello"]).shape == (1, 384)  # torch took over


def _edit(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_xlm_roberta_vectors_match_sentence_transformers(tmp_path):
    """A folder as sentence-transformers 6 saves it (its module names, pooling_mode, the
    tokenizer's model_max_length, no stripping: leading spaces are SentencePiece tokens)."""
    from sentence_transformers import SentenceTransformer

    folder = make_encoder.write(tmp_path, "tiny")  # XLM-R with a Unigram tokenizer, random
    assert json.loads((folder / "config.json").read_text())["model_type"] == "xlm-roberta"
    want = SentenceTransformer(str(folder), device="cpu").encode(
        TEXTS, batch_size=4, normalize_embeddings=True
    )
    model = numpy_bert.load(folder)
    assert model is not None
    assert model.max_seq_length == 64
    got = model.encode(TEXTS, batch_size=4)
    assert got.shape == want.shape == (len(TEXTS), 64)
    assert np.abs(got - want).max() < 2e-5  # Korean, truncated, empty, padded alike
    light = light_st.load(folder, "cpu")  # the transformers-only runner reads it too
    assert light is not None
    assert np.abs(light.encode(TEXTS, batch_size=4) - want).max() < 2e-5
    torch_side = SentenceTransformerEmbedder(str(folder), device="cpu")
    numpy_side = SentenceTransformerEmbedder(str(folder), device="cpu", runtime="auto")
    for text in TEXTS:
        assert numpy_side.count_tokens(text) == torch_side.count_tokens(text)
        assert numpy_side.token_spans(text) == torch_side.token_spans(text)


def test_weights_are_mapped_and_widened_to_float32(tmp_path):
    """read_weights maps float32 tensors from the file (no copy) and widens f16 and bf16
    the way torch does; integer buffers (old checkpoints' position_ids) are kept."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 5, generator=g),
        "f16": torch.randn(4, 2, generator=g).half(),
        "bf16": torch.randn(2, 6, generator=g).bfloat16(),
        "ids": torch.arange(7, dtype=torch.int64)[None],
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    got = numpy_bert.read_weights(path)
    for name, tensor in tensors.items():
        want = tensor.numpy() if name == "ids" else tensor.float().numpy()
        assert got[name].dtype == want.dtype and got[name].shape == want.shape
        assert np.array_equal(got[name], want), name
    assert isinstance(got["f32"].base, np.memmap) or isinstance(got["f32"], np.memmap)
    cut = tmp_path / "cut.safetensors"  # a download that stopped early: a clear error
    cut.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="does not fit the file"):
        numpy_bert.read_weights(cut)
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="not a safetensors file"):
        numpy_bert.read_weights(tmp_path / "junk.safetensors")
