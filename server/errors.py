"""The one place errors become HTTP: status and OpenAI error type per error class, and the
handler that shapes every error as `{"error": {message, type, param, code}}`."""

from __future__ import annotations

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from ragserve.errors import (
    ClientGone,
    Conflict,
    EmbeddingModelMismatch,
    IndexCorrupt,
    IngestLocked,
    InvalidApiKey,
    InvalidRequest,
    NotFound,
    NotReady,
    PermissionDenied,
    QueueFull,
    RagserveError,
    RateLimited,
    RequestTimeout,
    UpstreamFailed,
)

log = structlog.get_logger(__name__)

INVALID, SERVER = "invalid_request_error", "server_error"
# status and OpenAI error type; the nearest class in an error's MRO decides
HTTP: dict[type[RagserveError], tuple[int, str]] = {
    InvalidRequest: (400, INVALID),
    InvalidApiKey: (401, INVALID),
    PermissionDenied: (403, INVALID),
    RateLimited: (429, "rate_limit_error"),
    NotFound: (404, INVALID),
    Conflict: (409, INVALID),
    RequestTimeout: (408, INVALID),
    IngestLocked: (409, INVALID),
    QueueFull: (429, "rate_limit_error"),
    ClientGone: (499, INVALID),
    NotReady: (503, SERVER),
    UpstreamFailed: (502, SERVER),
    IndexCorrupt: (500, SERVER),
    EmbeddingModelMismatch: (500, SERVER),
    RagserveError: (500, SERVER),
}


class HTTPError(RagserveError):
    """An error Litestar raised with its own status (unknown route, 405, 413)."""

    def __init__(
        self, message: str, status: int, code: str | None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.headers = headers or {}  # e.g. Allow on 405


def http_of(exc: RagserveError) -> tuple[int, str]:
    if isinstance(exc, HTTPError):
        return exc.status, SERVER if exc.status >= 500 else INVALID
    for cls in type(exc).__mro__:
        if cls in HTTP:
            return HTTP[cls]  # type: ignore[index]
    return 500, SERVER


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


def error_body(exc: RagserveError) -> ErrorResponse:
    return ErrorResponse(ErrorBody(exc.message, http_of(exc)[1], exc.param, exc.code))


def error_response(exc: RagserveError) -> Response:
    status, _ = http_of(exc)
    headers: dict[str, str] = dict(exc.headers) if isinstance(exc, HTTPError) else {}
    if retry := exc.retry_after_s:
        headers["retry-after"] = str(retry)
        headers["retry-after-ms"] = str(retry * 1000)
    if status >= 500 and status != 503:
        headers["x-should-retry"] = "false"  # a retry replays a long generation for nothing
    return Response(error_body(exc), status_code=status, headers=headers)


_HTTP_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


def _validation_message(exc: ValidationException) -> tuple[str, str | None]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict) and item.get("message"):
            key = item.get("key")
            param = str(key) if key else None
            where = f" (at {key})" if key else ""
            message = str(item["message"])
            if message.startswith("Expected `array` of length >= 1"):
                message = "must contain at least one item"
            return f"invalid request body: {message}{where}", param
    return f"invalid request body: {exc.detail}", None


def to_ragserve_error(exc: Exception) -> RagserveError:
    """Any exception as one of ours, so there is exactly one error shape."""
    if isinstance(exc, RagserveError):
        return exc
    if isinstance(exc, ValidationException):
        message, param = _validation_message(exc)
        return InvalidRequest(message, param=param)
    if isinstance(exc, HTTPException) and exc.detail == "client disconnected prematurely":
        return ClientGone("the client closed the connection while sending the body")
    if isinstance(exc, HTTPException):
        message = "request body too large" if exc.status_code == 413 else str(exc.detail)
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        return HTTPError(message, exc.status_code, _HTTP_CODES.get(exc.status_code), headers)
    if isinstance(exc, UnicodeDecodeError | LookupError) and _raised_reading_form(exc):
        # a multipart part in bytes that are not its charset, or in a charset nobody knows
        return InvalidRequest(f"a multipart field could not be decoded: {exc}")
    return RagserveError("internal server error")


def _raised_reading_form(exc: BaseException) -> bool:
    """Whether Litestar's multipart parser raised it (the client's body, not our code)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("litestar/_multipart.py"):
            return True
        tb = tb.tb_next
    return False


def handle_exception(request: Request, exc: Exception) -> Response:
    err = to_ragserve_error(exc)
    status, _ = http_of(err)
    if status >= 500 and not isinstance(exc, RagserveError):
        log.exception("request.failed", path=request.url.path)
    elif status >= 500 and not isinstance(err, NotReady):  # 503 while loading is normal
        log.error("request.failed", path=request.url.path, error=err.message, code=err.code)
    return error_response(err)
