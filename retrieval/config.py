"""Retrieval settings shared by `ragserve ingest`, `ragserve search` and the server."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from ragserve.options import Option, add_options, choice, path, resolve, text, whole

from .embedder import DEFAULT_EMBED_MODEL, SentenceTransformerEmbedder
from .index import default_index_dir


class RetrievalSettings(msgspec.Struct, frozen=True):
    index_dir: Path
    embed_model: str = DEFAULT_EMBED_MODEL
    embed_device: str = "auto"
    embed_batch_size: int = 64

    def embedder(self) -> SentenceTransformerEmbedder:
        return SentenceTransformerEmbedder(
            self.embed_model, device=self.embed_device, batch_size=self.embed_batch_size
        )


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
)


def add_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, RETRIEVAL_OPTIONS)


def retrieval_settings(args: argparse.Namespace) -> RetrievalSettings:
    values = resolve(args, RETRIEVAL_OPTIONS)
    return RetrievalSettings(
        index_dir=values.pop("index_dir") or default_index_dir(),
        **values,
    )
