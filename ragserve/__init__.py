"""ragserve: an OpenAI-compatible chat server that answers from a private PDF library.

One import root over the folders at the top of the repository (linked here):
`ragserve.ingest` (PDFs -> chunks) writes through `ragserve.retrieval` (the index);
`ragserve.server` (HTTP) reads through `ragserve.retrieval` and streams from
`ragserve.engine` (llama.cpp). `ragserve.errors` and `ragserve.options` are shared by all.
"""

from importlib import metadata as _metadata


def _version() -> str:
    """pyproject.toml's version, as the installed distribution records it (the one source)."""
    try:
        return _metadata.version("ragserve")
    except _metadata.PackageNotFoundError:  # imported from a tree that was never installed
        return "0+unknown"


__version__ = _version()
