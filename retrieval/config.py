"""Retrieval settings shared by `ragserve ingest`, `ragserve search` and the server."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import msgspec

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


def add_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--index",
        dest="index_dir",
        type=Path,
        default=None,
        help="index directory [env RAGSERVE_INDEX_DIR; default "
        "$XDG_DATA_HOME/ragserve/index or ~/.local/share/ragserve/index]",
    )
    parser.add_argument(
        "--embed-model",
        default=env("RAGSERVE_EMBED_MODEL", DEFAULT_EMBED_MODEL),
        help="sentence-transformers model: hub name or local folder "
        "[env RAGSERVE_EMBED_MODEL; default %(default)s]",
    )
    parser.add_argument(
        "--embed-device",
        choices=("auto", "cpu", "cuda"),
        default=env("RAGSERVE_EMBED_DEVICE", "auto"),
        help="device for embeddings [env RAGSERVE_EMBED_DEVICE; default %(default)s]",
    )
    parser.add_argument(
        "--embed-batch-size",
        type=int,
        default=int(env("RAGSERVE_EMBED_BATCH_SIZE", "64")),
        help="texts per embedding batch [env RAGSERVE_EMBED_BATCH_SIZE; default %(default)s]",
    )


def retrieval_settings(args: argparse.Namespace) -> RetrievalSettings:
    return RetrievalSettings(
        index_dir=args.index_dir or default_index_dir(),
        embed_model=args.embed_model,
        embed_device=args.embed_device,
        embed_batch_size=args.embed_batch_size,
    )
