"""The one error hierarchy of ragserve: the engine, retrieval, ingest and the server raise these.

They carry what went wrong (`message`), a machine-readable `code`, the request field at
fault (`param`) and, for transient conditions, `retry_after_s`. How they become HTTP
statuses is decided in one place, `ragserve.server.errors`; the CLI turns them into
messages and exit codes.
"""

from __future__ import annotations


class RagserveError(Exception):
    code: str | None = None
    param: str | None = None
    retry_after_s: int | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param
        if code is not None:
            self.code = code


# -- the client's request -------------------------------------------------------------------
class InvalidRequest(RagserveError):
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"
    param = "messages"


class NotFound(RagserveError):
    code = "not_found"


class Conflict(RagserveError):
    """The request is valid but the resource's state does not allow it."""

    code = "conflict"


class ModelNotFound(NotFound):
    code = "model_not_found"
    param = "model"


class InvalidApiKey(RagserveError):
    code = "invalid_api_key"


class PermissionDenied(RagserveError):
    code = "insufficient_scope"


class RateLimited(RagserveError):
    code = "rate_limit_exceeded"
    retry_after_s = 1

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeout(RagserveError):
    code = "request_timeout"


class ClientGone(RagserveError):
    code = "client_closed_request"


# -- capacity and state ----------------------------------------------------------------------
class QueueFull(RagserveError):
    code = "queue_full"
    retry_after_s = 2


class NotReady(RagserveError):
    code = "not_ready"
    retry_after_s = 5


class EngineFailed(RagserveError):
    code = "generation_failed"


class UpstreamUnavailable(NotReady):
    """The server ragserve generates through (`--llm-url`) does not answer, or is busy."""

    code = "upstream_unavailable"

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class UpstreamFailed(EngineFailed):
    """The upstream answered, but not as an OpenAI-compatible server should (or refused
    ragserve itself: its key or model id is wrong): a gateway error, not the client's."""

    code = "upstream_error"


# -- the index ---------------------------------------------------------------------------------
class IndexNotFound(NotReady):
    code = "index_not_found"
    retry_after_s = 60


class IndexCorrupt(RagserveError):
    code = "index_corrupt"


class EmbeddingModelMismatch(RagserveError):
    code = "embedding_model_mismatch"

    def __init__(self, index_model: str, configured_model: str) -> None:
        super().__init__(
            f"the index was built with embedding model {index_model!r}, but this process "
            f"is configured with {configured_model!r}; re-ingest with the new model or "
            f"configure {index_model!r}"
        )
        self.index_model = index_model
        self.configured_model = configured_model


class StoreUnavailable(RagserveError):
    """The configured store (a database) cannot be reached or used: a setting to fix."""

    code = "store_unavailable"


class IngestLocked(RagserveError):
    code = "ingest_locked"
