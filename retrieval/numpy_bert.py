"""BERT and (XLM-)RoBERTa sentence embedders in NumPy, without torch: all-MiniLM, bge-small,
e5-small, and the multilingual ones a Korean library wants (multilingual-e5-small/-base,
paraphrase-multilingual-MiniLM).

The server only embeds questions: a few dozen tokens through a 20 MB-1.1 GB encoder,
milliseconds of matrix products on any CPU. Importing torch and transformers for that took
12 s of a GPU server's 14.6 s start (their imports alone, on the H100 machine) and ~1 GB of
its memory. This module runs the same encoder with NumPy's BLAS: the `tokenizers` library
reads tokenizer.json (the very tokenizer transformers wraps), the weights are mapped from
the safetensors file (`read_weights`), and the forward pass is BERT's (post-LayerNorm,
exact GELU) with the folder's pooling and L2 normalisation. RoBERTa and XLM-RoBERTa are
the same encoder with positions counted from the padding id plus one. Only folders that
`light_st.plan` accepts, whose config is one of these with absolute positions and whose
weights are one safetensors file up to MAX_BYTES, qualify; anything else loads with torch
as before.
tests/retrieval/test_numpy_bert.py checks the vectors against sentence-transformers'.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import light_st

# multilingual-e5-base is 1.1 GB in float32 (a 250k-token vocabulary); a question is still a
# few dozen tokens through it. Larger encoders want torch (and maybe a GPU).
MAX_BYTES = 1200 * 1024 * 1024
# model_type -> the prefix its checkpoints may carry on every weight name
ENCODERS = {"bert": "bert.", "roberta": "roberta.", "xlm-roberta": "roberta."}


def plan(folder: Path) -> dict[str, Any] | None:
    spec = light_st.plan(folder)
    if spec is None:
        return None
    root: Path = spec["transformer"]
    weights, tokenizer = root / "model.safetensors", root / "tokenizer.json"
    try:
        config = json.loads((root / "config.json").read_text())
        if not (weights.is_file() and tokenizer.is_file()):
            return None
        if weights.stat().st_size > MAX_BYTES:
            return None
    except (OSError, ValueError):
        return None
    if (
        config.get("model_type") not in ENCODERS
        or config.get("hidden_act", "gelu") != "gelu"
        or config.get("position_embedding_type", "absolute") != "absolute"
        or config.get("is_decoder")
        or config.get("add_cross_attention")
    ):
        return None
    return {**spec, "config": config, "weights": weights, "tokenizer": tokenizer}


# safetensors dtype -> NumPy (BF16 is widened by hand: NumPy has no bfloat16)
FLOATS: dict[str, Any] = {"F64": np.float64, "F32": np.float32, "F16": np.float16}
FLOATS["BF16"] = np.uint16
INTS: dict[str, Any] = {"I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8}
INTS["U8"] = np.uint8
DTYPES = FLOATS | INTS


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file's tensors as float32, mapped rather than read: float32 tensors are
    views of the file, so a page is read when first touched (a question touches a few rows
    of a 250k-token vocabulary: most of multilingual-e5's 1.1 GB never enters memory).
    Other float types are converted (copied); integer buffers (position ids) kept as they are."""
    total = path.stat().st_size
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 0 < size <= total - 8:
            raise ValueError(f"{path} is not a safetensors file")
        header = json.loads(f.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = (int(x) for x in info["data_offsets"])
        kind = str(info["dtype"])
        width = np.dtype(DTYPES[kind]).itemsize
        if not 0 <= start <= end <= len(data) or end - start != width * math.prod(info["shape"]):
            raise ValueError(f"{path}: tensor {name} does not fit the file (truncated?)")
        if kind in INTS:
            out[name] = data[start:end].view(INTS[kind]).reshape(info["shape"])
            continue
        raw = data[start:end].view(FLOATS[kind])
        if kind == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[name] = raw.astype(np.float32, copy=False).reshape(info["shape"])
    return out


class NumpyBert(light_st.Runner):
    """The folder's BERT in NumPy (float32), pooled and normalised the same way."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from scipy.special import erf
        from tokenizers import Tokenizer

        super().__init__(spec)
        cfg = spec["config"]
        kind = cfg["model_type"]
        # RoBERTa counts positions from padding_idx + 1 (fairseq's make_positions)
        self._first_position = 0 if kind == "bert" else int(cfg.get("pad_token_id", 1)) + 1
        positions = int(cfg.get("max_position_embeddings", 512)) - self._first_position
        self.max_seq_length = min(self.max_seq_length, positions)
        self._heads = int(cfg["num_attention_heads"])
        self._layers = int(cfg["num_hidden_layers"])
        self._eps = float(cfg.get("layer_norm_eps", 1e-12))
        self._erf = erf
        self._w = {
            k.removeprefix(ENCODERS[kind]): v for k, v in read_weights(spec["weights"]).items()
        }
        tokenizer_json = spec["tokenizer"].read_text()  # one read, two configured copies
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self._plain = Tokenizer.from_str(tokenizer_json)  # counting: no limits
        self._plain.no_padding()
        self._plain.no_truncation()

    # -- tokens (for the embedder's count_tokens / token_spans) ---------------------------
    def token_ids(self, text: str) -> list[int]:
        return self._plain.encode(text, add_special_tokens=False).ids

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return [
            (int(a), int(b)) for a, b in self._plain.encode(text, add_special_tokens=False).offsets
        ]

    # -- the encoder -----------------------------------------------------------------------
    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self._eps) * self._w[name + ".weight"] + self._w[
            name + ".bias"
        ]

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        # W is (out, in) as stored and mapped; W @ x.T reads it row by row, which BLAS does
        # faster here than x @ W.T or x @ a transposed copy (739 vs 1,136 and 996 us for a
        # 20-token 768 -> 3072 layer on 2 EPYC vCPUs)
        w = self._w[name + ".weight"]
        flat = x.reshape(-1, x.shape[-1])
        y = (w @ flat.T).T.reshape(*x.shape[:-1], w.shape[0])
        return y + self._w[name + ".bias"]

    def _batch(self, texts: list[str]) -> np.ndarray:
        encs = self.tokenizer.encode_batch(texts)
        n, width = len(encs), max(len(e.ids) for e in encs)
        ids = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.float32)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            types[i, : len(e.ids)] = e.type_ids
            mask[i, : len(e.ids)] = 1.0
        w = self._w
        positions = self._first_position + np.arange(width)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions][None]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        h = self._heads
        d = x.shape[-1] // h
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for i in range(self._layers):
            p = f"encoder.layer.{i}."

            def heads(t: np.ndarray) -> np.ndarray:
                return t.reshape(n, width, h, d).transpose(0, 2, 1, 3)

            q = heads(self._linear(x, p + "attention.self.query"))
            k = heads(self._linear(x, p + "attention.self.key"))
            v = heads(self._linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, width, h * d)
            x = self._norm(
                self._linear(ctx, p + "attention.output.dense") + x,
                p + "attention.output.LayerNorm",
            )
            inner = self._linear(x, p + "intermediate.dense")
            inner = 0.5 * inner * (1.0 + self._erf(inner / math.sqrt(2.0)))
            x = self._norm(self._linear(inner, p + "output.dense") + x, p + "output.LayerNorm")
        m = mask[:, :, None]
        if self._pooling == "cls":
            pooled = x[:, 0]
        elif self._pooling == "max":
            pooled = np.where(m > 0, x, -1e9).max(axis=1)
        else:
            pooled = (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)


def load(folder: Path) -> NumpyBert | None:
    spec = plan(folder)
    return NumpyBert(spec) if spec is not None else None
