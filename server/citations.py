"""Citations that frontends show and open: OpenAI `url_citation` annotations whose links
serve the cited PDF at the cited page, signed when API keys are on (browsers send none).

A link is `{base}/v1/files/{file_id}/content?token={expiry}.{hmac}#page={n}`; the token is
an HMAC over the file id and its expiry, so it opens that one file until it expires and
nothing else. The secret comes from the settings, or is generated once and kept in the
data directory (beside the index) so links survive a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Literal

import structlog

from .protocol import Annotation, Source, UrlCitation

log = structlog.get_logger(__name__)
_CITATION = re.compile(r"\[(\d{1,3})\]")
Verdict = Literal["ok", "expired", "invalid"]


class UrlSigner:
    def __init__(self, secret: bytes, ttl_s: float) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def _mac(self, file_id: str, expires: int) -> str:
        message = f"{file_id}.{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def sign(self, file_id: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        return f"{expires}.{self._mac(file_id, expires)}"

    def verify(self, file_id: str, token: str, now: float | None = None) -> Verdict:
        expires_text, _, mac = token.partition(".")
        # ASCII digits only: `str.isdigit()` also passes "²", which int() refuses
        if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 12:
            return "invalid"
        expires = int(expires_text)
        if not hmac.compare_digest(mac.encode(), self._mac(file_id, expires).encode()):
            return "invalid"
        return "ok" if (now if now is not None else time.time()) < expires else "expired"


def load_secret(configured: str | None, data_dir: Path, store: str | None = None) -> bytes:
    """The configured secret, else the library's (its catalog's): in its database when
    `store` is a `postgresql://` URL, so a link signed by one replica opens on every other,
    else kept in `data_dir` (see catalog/local.py)."""
    if configured:
        return configured.encode()
    if store:
        from .catalog import open_catalog

        catalog = open_catalog(store, data_dir)
        try:
            return catalog.secret()
        finally:
            catalog.close()
    from .catalog.local import file_secret

    return file_secret(data_dir)


def content_url(base_url: str, file_id: str, page: int | None, signer: UrlSigner | None) -> str:
    """The link that opens a file (a PDF at `page`; other formats have no pages)."""
    url = f"{base_url.rstrip('/')}/v1/files/{file_id}/content"
    if signer is not None:
        url += f"?token={signer.sign(file_id)}"
    return url if page is None else f"{url}#page={page}"


def url_citations(answer: str, sources: list[Source]) -> list[Annotation]:
    """One `url_citation` per source the answer cites, at its first `[n]`; when it cites
    none, every source, spanning the whole answer."""
    linked = {s.index: s for s in sources if s.url}
    if not linked:
        return []
    first: dict[int, tuple[int, int]] = {}
    for m in _CITATION.finditer(answer):
        n = int(m[1])
        if n in linked and n not in first:
            first[n] = m.span()
    spans = first or {n: (0, len(answer)) for n in linked}
    return [
        Annotation(
            url_citation=UrlCitation(
                url=linked[n].url or "",
                title=linked[n].title,
                start_index=start,
                end_index=end,
            )
        )
        for n, (start, end) in sorted(spans.items(), key=lambda item: item[1])
    ]
