"""The error hierarchy shared by retrieval, ingest and the server.

Every error a user can cause or meet is one of these; the server maps them to
OpenAI's error shape and the CLI to a message and exit code.
"""

from __future__ import annotations


class RagserveError(Exception):
    """Base class. `status` and `code` tell the HTTP layer how to answer."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None
    param: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param


class IndexNotFound(RagserveError):
    status = 503
    code = "index_not_found"


class IndexCorrupt(RagserveError):
    status = 500
    code = "index_corrupt"


class EmbeddingModelMismatch(RagserveError):
    status = 500
    code = "embedding_model_mismatch"

    def __init__(self, index_model: str, configured_model: str) -> None:
        super().__init__(
            f"the index was built with embedding model {index_model!r}, but this process "
            f"is configured with {configured_model!r}; re-ingest with the new model or "
            f"configure {index_model!r}"
        )
        self.index_model = index_model
        self.configured_model = configured_model


class IngestLocked(RagserveError):
    status = 409
    code = "ingest_locked"


class InvalidRequest(RagserveError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"
