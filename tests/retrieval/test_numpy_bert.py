"""retrieval/numpy_bert.py: the server's query vectors without torch, equal to torch's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_light_st import TEXTS

from ragserve.retrieval import light_st, numpy_bert
from ragserve.retrieval.embedder import SentenceTransformerEmbedder, resolve_model


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


def _xlm_roberta_folder(root: Path) -> Path:
    """A small multilingual-e5-shaped sentence-transformers folder: XLM-RoBERTa (positions
    from padding_idx + 1, one token type, eps 1e-5) under a SentencePiece-style Unigram
    tokenizer trained here on English and Korean, random weights. The real checkpoints
    cannot be downloaded here; what is compared is the arithmetic, against transformers."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids 0-4
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    corpus = [t for t in TEXTS if t] * 4 + [
        "검색 결과는 출처와 함께 답변에 표시됩니다. 보고서의 예산과 담당자를 확인하십시오.",
        "River management, levees, sensors and warning systems across the northern basin.",
    ] * 8
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token="<unk>")
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    hf = root / "hf"
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    ).save_pretrained(hf)
    config = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=66,  # 64 tokens after the padding offset
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    torch.manual_seed(0)
    model = XLMRobertaModel(config, add_pooling_layer=False)
    with torch.no_grad():  # larger than the 0.02 init, so every position's vector matters
        for param in model.embeddings.parameters():
            param.normal_(0, 0.5)
    model.save_pretrained(hf, safe_serialization=True)
    transformer = models.Transformer(str(hf), max_seq_length=64)
    pooling = models.Pooling(64, pooling_mode="mean")
    folder = root / "st"
    SentenceTransformer(modules=[transformer, pooling, models.Normalize()]).save(str(folder))
    return folder


def test_xlm_roberta_vectors_match_sentence_transformers(tmp_path):
    """A folder as sentence-transformers 6 saves it (its module names, pooling_mode, the
    tokenizer's model_max_length, no stripping: leading spaces are SentencePiece tokens)."""
    from sentence_transformers import SentenceTransformer

    folder = _xlm_roberta_folder(tmp_path)
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
