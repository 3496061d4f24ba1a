"""HTTP-side errors and the one handler that shapes every error the OpenAI way."""

from __future__ import annotations

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from retrieval.errors import InvalidRequest, RagserveError

log = structlog.get_logger(__name__)

__all__ = [
    "ContextLengthExceeded",
    "EngineFailed",
    "InvalidApiKey",
    "InvalidRequest",
    "ModelNotFound",
    "NotReady",
    "QueueFull",
    "RagserveError",
    "error_response",
    "handle_exception",
]


class ContextLengthExceeded(RagserveError):
    status = 400
    type = "invalid_request_error"
    code = "context_length_exceeded"
    param = "messages"


class ModelNotFound(RagserveError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"
    param = "model"


class InvalidApiKey(RagserveError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class QueueFull(RagserveError):
    status = 429
    type = "rate_limit_error"
    code = "queue_full"
    retry_after_s = 2


class NotReady(RagserveError):
    status = 503
    type = "server_error"
    code = "not_ready"
    retry_after_s = 5


class EngineFailed(RagserveError):
    status = 500
    type = "server_error"
    code = "generation_failed"


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


def error_body(exc: RagserveError) -> ErrorResponse:
    return ErrorResponse(ErrorBody(exc.message, exc.type, exc.param, exc.code))


def error_response(exc: RagserveError) -> Response:
    headers: dict[str, str] = {}
    if retry := getattr(exc, "retry_after_s", None):
        headers["retry-after"] = str(retry)
        headers["retry-after-ms"] = str(retry * 1000)
    if exc.status >= 500 and exc.status != 503:
        headers["x-should-retry"] = "false"  # a retry replays a long generation for nothing
    return Response(error_body(exc), status_code=exc.status, headers=headers)


_HTTP_CODES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
}


def _validation_message(exc: ValidationException) -> tuple[str, str | None]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict) and item.get("message"):
            key = item.get("key")
            param = str(key) if key else None
            where = f" (at {key})" if key else ""
            return f"invalid request body: {item['message']}{where}", param
    return f"invalid request body: {exc.detail}", None


def to_ragserve_error(exc: Exception) -> RagserveError:
    """Any exception as one of ours, so there is exactly one error shape."""
    if isinstance(exc, RagserveError):
        return exc
    if isinstance(exc, ValidationException):
        message, param = _validation_message(exc)
        return InvalidRequest(message, param=param)
    if isinstance(exc, HTTPException):
        err = RagserveError(str(exc.detail))
        err.status = exc.status_code
        err.type, err.code = _HTTP_CODES.get(
            exc.status_code,
            ("server_error" if exc.status_code >= 500 else "invalid_request_error", None),
        )
        if exc.status_code == 413:
            err.message = "request body too large"
        return err
    if isinstance(exc, UnicodeDecodeError | RecursionError):  # raised decoding the body
        return InvalidRequest(
            "the request body is not valid JSON: it must be UTF-8 and nest at most a few "
            "hundred levels deep"
        )
    err = RagserveError("internal server error")
    return err


def handle_exception(request: Request, exc: Exception) -> Response:
    err = to_ragserve_error(exc)
    if err.status >= 500 and not isinstance(exc, RagserveError):
        log.exception("request.failed", path=request.url.path)
    elif err.status >= 500 and not isinstance(err, NotReady):  # 503 while loading is normal
        log.error("request.failed", path=request.url.path, error=err.message, code=err.code)
    return error_response(err)
