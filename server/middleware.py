"""ASGI middleware: CORS (outermost), request ids, logs and metrics, and API keys.

Written as plain ASGI so that preflights and 401s get CORS headers too, and auth runs
before the body is read.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec
import structlog

from ragserve.errors import (
    InvalidApiKey,
    InvalidRequest,
    PermissionDenied,
    RagserveError,
    RateLimited,
)

from .access.keys import Grant, KeyRing, Principal
from .access.policy import Limiter
from .citations import UrlSigner
from .errors import error_body
from .metrics import Metrics

log = structlog.get_logger(__name__)
audit = structlog.get_logger("ragserve.audit")

Scope = dict[str, Any]
ASGIApp = Any  # any ASGI callable (Litestar's own signature is stricter)
PUBLIC_PATHS = ("/health", "/health/ready", "/metrics")
_CONTENT = re.compile(r"/v1/files/([A-Za-z0-9_-]{1,64})/content")


class RouteTable:
    """The app's routes as it declares them (path templates and methods), so metrics
    labels, the paths clients may send without `/v1`, `OPTIONS` and CORS preflights are
    derived from the handlers instead of lists kept by hand."""

    def __init__(self, routes: Iterable[tuple[str, Iterable[str]]]) -> None:
        self.routes = [
            (template(path), re.compile(_pattern(path)), frozenset(methods))
            for path, methods in routes
        ]

    def find(self, path: str) -> tuple[str, frozenset[str]] | None:
        """The route's template (`/v1/files/{file_id}`) and methods, or None."""
        for template, pattern, methods in self.routes:
            if pattern.match(path):
                return template, methods
        return None

    def label(self, path: str) -> str:
        found = self.find(path)
        return found[0] if found else "other"

    def methods(self, path: str) -> str:
        found = self.find(path)
        return ", ".join(sorted(found[1] | {"OPTIONS"})) if found else "GET, POST, OPTIONS"

    def versioned(self, path: str) -> str:
        """A path sent without `/v1` (clients configured with such a base URL) as the app's."""
        if path.startswith("/v1/") or self.find(path) is not None:
            return path
        return "/v1" + path if self.find("/v1" + path) is not None else path


def template(path: str) -> str:
    """A route's path as OpenAPI and the metrics name it (`{file_id:str}` -> `{file_id}`)."""
    return re.sub(r"\{([^}:/]+)(:[^}]*)?\}", r"{\1}", path)


def _pattern(path: str) -> str:
    def one(m: re.Match) -> str:
        return ".+" if (m.group(2) or "") == ":path" else "[^/]+"

    return "^" + re.sub(r"\{([^}:/]+)(:[^}]*)?\}", one, path) + "$"


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_json(send: Callable, status: int, body: bytes, headers: Iterable = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


_LOOPBACK_ORIGIN = re.compile(
    r"^https?://(localhost|[a-z0-9-]+\.localhost|127(\.\d{1,3}){3}|\[::1\])(:\d{1,5})?$", re.I
)


def _is_loopback_host(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]  # a bracketed IPv6 literal; a lone bracket is malformed: not loopback
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class CORSMiddleware:
    """Browser access: loopback origins always (local web UIs), others only if configured."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...], table: RouteTable) -> None:
        self.app = app
        self.origins = origins
        self.table = table

    def _allowed(self, origin: str | None) -> bytes | None:
        if not origin:
            return None
        if "*" in self.origins:
            return b"*"  # never with credentials: clients send keys as headers
        if origin in self.origins or _LOOPBACK_ORIGIN.match(origin):
            return origin.encode()
        return None

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        allowed = self._allowed(_header(scope, b"origin"))
        if allowed is None:
            return await self.app(scope, receive, send)
        cors = [
            (b"access-control-allow-origin", allowed),
            (b"vary", b"Origin"),
            (b"access-control-expose-headers", b"x-request-id, retry-after"),
        ]
        requested = _header(scope, b"access-control-request-method")
        if scope["method"] == "OPTIONS" and requested:
            headers = _header(scope, b"access-control-request-headers") or (
                "authorization, content-type, openai-organization, openai-project, x-stainless-*"
            )
            extra = [
                (
                    b"access-control-allow-methods",
                    self.table.methods(self.table.versioned(scope["path"])).encode(),
                ),
                (b"access-control-allow-headers", headers.encode("latin-1")),
                (b"access-control-max-age", b"600"),
            ]
            if _header(scope, b"access-control-request-private-network"):
                extra.append((b"access-control-allow-private-network", b"true"))
            await send({"type": "http.response.start", "status": 204, "headers": cors + extra})
            await send({"type": "http.response.body", "body": b""})
            return None

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        return await self.app(scope, receive, send_with_cors)


def _split_host(value: str) -> str:
    """The name part of a Host header: `[::1]:8000` -> `::1`, `example.org:80` -> `example.org`."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class LocalGuardMiddleware:
    """Without API keys, a web page must not be able to drive the server from a browser.

    CSRF: a page can POST text/plain without a preflight, so JSON bodies must say
    `application/json`. DNS rebinding: a page's own host name can resolve to 127.0.0.1,
    so the Host header must be a loopback name, an IP address, the bound address, this
    machine's name, or one configured with --allowed-host.
    """

    def __init__(self, app: ASGIApp, bind_host: str, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.any_host = "*" in allowed
        self.names = {n.lower() for n in (*allowed, bind_host, socket.gethostname())}

    def _host_ok(self, header: str | None) -> bool:
        if self.any_host:
            return True
        if not header:
            return False
        host = _split_host(header.strip()).lower().rstrip(".")
        if host in self.names or _is_loopback_host(host):
            return True
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return False

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        if not self._host_ok(_header(scope, b"host")):
            err = InvalidRequest(
                "this server accepts requests without an API key only for its own host names; "
                "configure --allowed-host (RAGSERVE_ALLOWED_HOSTS) or API keys",
                param=None,
            )
            err.code = "host_not_allowed"
            return await _send_json(send, 421, msgspec.json.encode(error_body(err)))
        if scope["method"] in ("POST", "PUT", "PATCH"):
            kind = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if kind not in ("application/json", "multipart/form-data"):
                err = InvalidRequest(
                    "send the request body as JSON with 'Content-Type: application/json'",
                    param=None,
                )
                err.code = "unsupported_media_type"
                return await _send_json(send, 415, msgspec.json.encode(error_body(err)))
            origin = _header(scope, b"origin")
            if kind == "multipart/form-data" and origin and not self._origin_ok(origin):
                # a form on any web page can post multipart without a preflight
                err = InvalidRequest(
                    "uploads from a web page need an API key, or a page served from this "
                    "machine (--allowed-host)",
                    param=None,
                )
                err.code = "origin_not_allowed"
                return await _send_json(send, 403, msgspec.json.encode(error_body(err)))
        return await self.app(scope, receive, send)

    def _origin_ok(self, origin: str) -> bool:
        host = (urlparse(origin).hostname or "").lower().rstrip(".")
        return self.any_host or host in self.names or _is_loopback_host(host)


class RequestMiddleware:
    """Normalises paths, assigns a request id, logs the request and counts it."""

    def __init__(self, app: ASGIApp, metrics: Metrics, table: RouteTable) -> None:
        self.app = app
        self.metrics = metrics
        self.table = table

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = re.sub(r"/{2,}", "/", scope["path"])
        if len(path) > 1:
            path = path.rstrip("/")
        path = self.table.versioned(path)  # clients configured with a base URL without /v1
        scope["path"] = path
        incoming = _header(scope, b"x-request-id")
        request_id = (
            incoming
            if incoming and _REQUEST_ID.match(incoming)
            else (f"req-{uuid.uuid4().hex[:20]}")
        )
        scope.setdefault("state", {})["request_id"] = request_id
        route = self.table.label(path)  # a template: bounded label values
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                self.metrics.requests.labels(route, str(status)).inc()
                self.metrics.latency.labels(route).observe(elapsed)
                if route not in ("/health", "/health/ready", "/metrics"):
                    log.info(
                        "http.request",
                        method=scope["method"],
                        path=path,
                        status=status,
                        ms=round(elapsed * 1000, 1),
                    )
        return None


class AuthMiddleware:
    """Who is calling: an API key (`Authorization: Bearer KEY`, `x-api-key` or `api-key`),
    a signed citation link, or (trusted-header mode) a user named by a configured proxy.
    It sets the request's Principal, applies the key's rate limits before the body is
    read, and logs one audit event for each write; the route's own declaration (see
    access.policy) decides what the principal may do."""

    def __init__(
        self,
        app: ASGIApp,
        ring: KeyRing,
        signer: UrlSigner | None,
        limiter: Limiter,
        proxies: tuple[str, ...] = (),
        user_header: str = "x-forwarded-user",
        groups_header: str = "x-forwarded-groups",
    ) -> None:
        self.app = app
        self.ring = ring
        self.signer = signer
        self.limiter = limiter
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in proxies]
        self.user_header = user_header.lower().encode()
        self.groups_header = groups_header.lower().encode()

    def _signed(self, scope: Scope) -> InvalidApiKey | str | None:
        """A citation link's own token: the file id it opens, an error if it is expired or
        altered, None if the request carries none."""
        found = _CONTENT.fullmatch(scope["path"])
        if found is None or self.signer is None or scope["method"] not in ("GET", "HEAD"):
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        tokens = query.get("token")
        if not tokens:
            return None
        verdict = self.signer.verify(found[1], tokens[0])
        if verdict == "ok":
            return found[1]
        if verdict == "expired":
            return InvalidApiKey(
                "This link has expired; ask the question again for a fresh one.",
                code="link_expired",
            )
        return InvalidApiKey(
            "This link's signature is not valid for this file.", code="invalid_signature"
        )

    @staticmethod
    def _given(scope: Scope) -> str:
        auth = _header(scope, b"authorization") or ""
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        return given or _header(scope, b"x-api-key") or _header(scope, b"api-key") or ""

    def _from_proxy(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or not self.proxies:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in net for net in self.proxies)

    def _principal(self, scope: Scope) -> Principal | RagserveError:
        user = _header(scope, self.user_header) if self.proxies else None
        if user is not None:
            if not self._from_proxy(scope):
                return InvalidApiKey(
                    "user headers are accepted only from the configured proxy addresses",
                    code="untrusted_proxy",
                )
            groups = [g.strip() for g in (_header(scope, self.groups_header) or "").split(",")]
            grant = self.ring.groups([g for g in groups if g], user.strip()[:128])
            if grant is None:
                return PermissionDenied(f"no configured group grants access to {user!r}")
            return Principal(grant.name, grant)
        grant = self.ring.lookup(self._given(scope))
        if grant is not None:
            return Principal(grant.name, grant)
        signed = self._signed(scope)
        if isinstance(signed, str):
            return Principal("link", Grant("link", frozenset({"files:read"})), link_file=signed)
        if isinstance(signed, InvalidApiKey):
            return signed
        return InvalidApiKey(
            "Incorrect API key provided. Pass a key configured on the server "
            "as 'Authorization: Bearer <key>'."
        )

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if (
            scope["type"] != "http"
            or not (self.ring.enabled or self.proxies)
            or scope["method"] == "OPTIONS"
            or scope["path"] in PUBLIC_PATHS
        ):
            return await self.app(scope, receive, send)
        found = self._principal(scope)
        if isinstance(found, RagserveError):
            status = 401 if isinstance(found, InvalidApiKey) else 403
            if found.code in ("link_expired", "invalid_signature"):
                status = 403
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            return await _send_json(send, status, msgspec.json.encode(error_body(found)), extra)
        state = scope.setdefault("state", {})
        state["principal"] = found
        try:
            self.limiter.admit(found)
        except RateLimited as exc:
            retry = str(exc.retry_after_s).encode()
            return await _send_json(
                send, 429, msgspec.json.encode(error_body(exc)), [(b"retry-after", retry)]
            )
        status = 500

        async def send_seen(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        finally:
            if state.get("audit"):
                audit.info(
                    "audit",
                    key=found.name,
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    outcome="done" if status < 400 else "refused",
                )
        return None


class AllowMiddleware:
    """`OPTIONS` answers with every method of the path (RFC 9110). Litestar's own answer
    names only one handler's methods when several handlers share a path."""

    def __init__(self, app: ASGIApp, table: RouteTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            found = self.table.find(scope["path"])
            if found is not None:
                allow = ", ".join(sorted(found[1]))
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"allow", allow.encode())],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return None
        return await self.app(scope, receive, send)
