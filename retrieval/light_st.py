"""sentence-transformers folders of the common shape, run with `transformers` alone.

Importing `sentence_transformers` costs seconds (it pulls in scikit-learn and much else),
paid at every server start before /health/ready. A folder whose `modules.json` is
Transformer -> Pooling (mean, CLS or max) [-> Normalize], as sentence-transformers 5.x or
6.x saves it, needs only the transformer, its tokenizer and the pooling, which this module
does the way the installed sentence-transformers does (stripping before 6.x, optional
lower-casing, truncation to `max_seq_length`, masked pooling, L2 norm).
Anything else (Dense layers, prompts, custom modules or arguments) returns None from
`load`, and the caller uses sentence-transformers itself. tests/retrieval/test_light_st.py
checks the vectors against sentence-transformers'.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

POOLING_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}
POOLING_MODES["pooling_mode_max_tokens"] = "max"
# sentence-transformers 6 saves a plain text encoder's Transformer module with these
TEXT_ENCODER = {
    "transformer_task": "feature-extraction",
    "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
    "module_output_name": "token_embeddings",
}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _module_class(type_name: str) -> str | None:
    """`Transformer` for sentence_transformers.models.Transformer (5.x and before) and for
    sentence_transformers.base.modules.transformer.Transformer (6.x); None for other code."""
    if not type_name.startswith("sentence_transformers."):
        return None
    return type_name.rsplit(".", 1)[-1]


def _transformer(folder: Path) -> tuple[int, bool] | None:
    """(max_seq_length, do_lower_case) of a Transformer module of either format."""
    sbert = _json(folder / "sentence_bert_config.json")
    if "max_seq_length" in sbert:  # 5.x and before
        if set(sbert) - {"max_seq_length", "do_lower_case"}:
            return None
        return int(sbert["max_seq_length"]), bool(sbert.get("do_lower_case", False))
    extra = {k: v for k, v in sbert.items() if k not in TEXT_ENCODER}
    if any(sbert.get(k) != v for k, v in TEXT_ENCODER.items() if k in sbert):
        return None
    if set(extra) - {"do_lower_case"}:
        return None
    # 6.x: the tokenizer's model_max_length, capped by the model's positions (as it does)
    limit = _json(folder / "tokenizer_config.json").get("model_max_length")
    positions = _json(folder / "config.json").get("max_position_embeddings")
    if not isinstance(limit, int) or limit > 1_000_000:  # transformers' "no limit" sentinel
        limit = positions
    if not isinstance(limit, int):
        return None
    if isinstance(positions, int) and positions > 0:
        limit = min(limit, positions)
    return limit, bool(extra.get("do_lower_case", False))


def _pooling(folder: Path) -> tuple[str, int] | None:
    """(mode, dimension) of a Pooling module that pools one way, of either format."""
    config = _json(folder / "config.json")
    if not config.get("include_prompt", True):
        return None
    if "pooling_mode" in config:  # 6.x
        mode, dim = config["pooling_mode"], config.get("embedding_dimension")
        if mode not in POOLING_MODES.values() or not isinstance(dim, int):
            return None
        return mode, dim
    on = [k for k, v in config.items() if k.startswith("pooling_mode") and v]
    if len(on) != 1 or on[0] not in POOLING_MODES:
        return None
    return POOLING_MODES[on[0]], int(config["word_embedding_dimension"])


def strips_text() -> bool:
    """Whether the installed sentence-transformers strips each text before tokenizing: 5.x
    and before did, 6.x does not. It matters where spaces are tokens (SentencePiece
    vocabularies: XLM-R, multilingual-e5); the vectors should be the ones ingest made."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("sentence-transformers").split(".")[0]) < 6
    except (PackageNotFoundError, ValueError):
        return False


def plan(folder: Path) -> dict[str, Any] | None:
    """What `load` would build from `folder`, or None when sentence-transformers must."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
        types = [_module_class(m["type"]) for m in modules]
        if types not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return None
        prompts = _json(folder / "config_sentence_transformers.json")
        if any((prompts.get("prompts") or {}).values()) or prompts.get("default_prompt_name"):
            return None
        transformer = folder / modules[0].get("path", "")
        seq = _transformer(transformer)
        pooling = _pooling(folder / modules[1]["path"])
        if seq is None or pooling is None:
            return None
        return {
            "transformer": transformer,
            "max_seq_length": seq[0],
            "lower": seq[1],
            "pooling": pooling[0],
            "dim": pooling[1],
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None


class Runner:
    """What both runners share: the subset of `SentenceTransformer` the embedder uses (encode,
    sizes), sentence-transformers' text preparation and its batching. Subclasses embed one
    batch of prepared texts into normalised float32 vectors (`_batch`)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.max_seq_length: int = spec["max_seq_length"]
        self._lower: bool = spec["lower"]
        self._pooling: str = spec["pooling"]
        self._dim: int = spec["dim"]
        self._strip = strips_text()

    def get_sentence_embedding_dimension(self) -> int:
        return self._dim

    def _batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: list[str], batch_size: int = 32, **_ignored: Any) -> np.ndarray:
        """Normalised vectors in input order; longest texts batched together, as ST does
        (stripped before 6.x, lower-cased when the folder says so)."""
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            batch = [texts[j].strip() if self._strip else texts[j] for j in idx]
            out[idx] = self._batch([t.lower() for t in batch] if self._lower else batch)
        return out


class LightModel(Runner):
    """The folder's transformer through `transformers`, pooled and normalised in torch."""

    def __init__(self, spec: dict[str, Any], device: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        super().__init__(spec)
        self._torch = torch
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(str(spec["transformer"]))
        self.model = AutoModel.from_pretrained(str(spec["transformer"])).float()
        self.model.to(device).eval()

    def _batch(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        enc = self.tokenizer(
            texts,
            padding=True,
            truncation="longest_first",
            max_length=self.max_seq_length,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if self._pooling == "cls":
                pooled = hidden[:, 0]
            elif self._pooling == "max":
                pooled = hidden.masked_fill(mask == 0, -1e9).max(dim=1).values
            else:
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled.float().cpu().numpy()


def load(folder: Path, device: str) -> LightModel | None:
    spec = plan(folder)
    return LightModel(spec, device) if spec is not None else None
