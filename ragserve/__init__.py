"""ragserve: an OpenAI-compatible chat server that answers from a private PDF library.

One import root over the folders at the top of the repository (linked here):
`ragserve.ingest` (PDFs -> chunks) writes through `ragserve.retrieval` (the index);
`ragserve.server` (HTTP) reads through `ragserve.retrieval` and streams from
`ragserve.engine` (llama.cpp). `ragserve.errors` and `ragserve.options` are shared by all.
"""

__version__ = "0.1.0"
