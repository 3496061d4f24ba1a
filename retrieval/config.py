"""Retrieval settings shared by `ragserve ingest`, `ragserve search` and the server."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from ragserve.options import Option, add_options, choice, defaults, path, resolve, text, whole

from .embedder import DEFAULT_EMBED_MODEL, SentenceTransformerEmbedder, pick_device
from .index import default_index_dir
from .location import is_postgres, redact
from .rerank import Reranker


def store_url(value: str) -> str:
    if not is_postgres(value.strip()):
        raise ValueError(
            "expected a postgresql:// URL (postgresql://user:password@host:5432/dbname); "
            "leave it unset for the local index folder (--index)"
        )
    return value.strip()


store_url.__name__ = "URL"


RETRIEVAL_OPTIONS: tuple[Option, ...] = (
    Option(
        "index_dir",
        "--index",
        path,
        None,
        "index directory",
        env="RAGSERVE_INDEX_DIR",
        default_text="$XDG_DATA_HOME/ragserve/index or ~/.local/share/ragserve/index",
    ),
    Option(
        "store",
        "--store",
        store_url,
        None,
        "a PostgreSQL database (with pgvector and pg_trgm) that holds the library instead of "
        "--index, shared by replicas and ingests anywhere: postgresql://user:pass@host/db "
        "(prefer the environment variable: a password in a flag shows in `ps`)",
        default_text="none: local files under --index",
        secret=True,
    ),
    Option(
        "embed_model",
        "--embed-model",
        text,
        DEFAULT_EMBED_MODEL,
        "sentence-transformers model: hub name or local folder",
    ),
    Option(
        "embed_device",
        "--embed-device",
        choice("auto", "cpu", "cuda"),
        "auto",
        "device for embeddings",
    ),
    Option(
        "embed_batch_size", "--embed-batch-size", whole(1, 4096), 64, "texts per embedding batch"
    ),
    Option(
        "rerank_model",
        "--rerank-model",
        text,
        None,
        "cross-encoder that re-scores the fused candidates (hub name or folder, e.g. "
        "BAAI/bge-reranker-v2-m3)",
        default_text="none: no reranking",
    ),
    Option(
        "rerank_top_n",
        "--rerank-top-n",
        whole(1, 200),
        20,
        "candidates the cross-encoder re-scores",
    ),
    Option(
        "rerank_budget_ms",
        "--rerank-budget-ms",
        whole(1, 60000),
        500,
        "time the cross-encoder may take per query; candidates past it keep their order",
    ),
)

_DEFAULT = defaults(RETRIEVAL_OPTIONS)


class RetrievalSettings(msgspec.Struct, frozen=True):
    index_dir: Path
    store: str | None = _DEFAULT["store"]  # a postgresql:// URL: the library is there
    embed_model: str = _DEFAULT["embed_model"]
    embed_device: str = _DEFAULT["embed_device"]
    embed_batch_size: int = _DEFAULT["embed_batch_size"]
    rerank_model: str | None = _DEFAULT["rerank_model"]
    rerank_top_n: int = _DEFAULT["rerank_top_n"]
    rerank_budget_ms: int = _DEFAULT["rerank_budget_ms"]

    @property
    def location(self) -> Path | str:
        """Where the default index lives: the database when `store` is set, else the folder."""
        return self.store or self.index_dir

    @property
    def where(self) -> str:
        """The location for messages: the URL without its password."""
        return redact(self.store) if self.store else str(self.index_dir)

    def embedder(self, *, queries_only: bool = False) -> SentenceTransformerEmbedder:
        """queries_only (the server, `ragserve search`): a small BERT encoder on the CPU runs
        in NumPy, without importing torch (see numpy_bert.py); ingest keeps torch."""
        return SentenceTransformerEmbedder(
            self.embed_model,
            device=self.embed_device,
            batch_size=self.embed_batch_size,
            runtime="auto" if queries_only else "torch",
        )

    def reranker(self) -> Reranker | None:
        if not self.rerank_model:
            return None
        return Reranker(
            self.rerank_model,
            device=pick_device(self.embed_device),
            top_n=self.rerank_top_n,
            budget_s=self.rerank_budget_ms / 1000,
        )


def add_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, RETRIEVAL_OPTIONS)


def retrieval_settings(args: argparse.Namespace) -> RetrievalSettings:
    values = resolve(args, RETRIEVAL_OPTIONS)
    return RetrievalSettings(
        index_dir=values.pop("index_dir") or default_index_dir(),
        **values,
    )
