"""Text extraction from one PDF, page by page. Runs inside a worker process."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Literal

import msgspec

from ragserve.options import Option, whole

from .clean import clean_text, garbage_score, looks_garbled

Status = Literal["ok", "skipped", "failed"]
MIN_TEXT_CHARS = 1  # a page with fewer cleaned characters counts as having no text
# A larger page count is a broken or hostile page tree (a /Count that lies, a /Kids loop).
MAX_PAGES = 20_000
# Text a file may hold: a dense A4 page of 6-point type is ~15k characters, a long report
# a few hundred thousand; a few kB of compressed content stream can hold megabytes of text
# that every extractor then parses, chunks and embeds (a "text bomb").
MAX_PAGE_CHARS = 100_000
MAX_DOCUMENT_CHARS = 10_000_000


# the text one PDF may hold: the same for `ingest` and for files uploaded to `serve`
TEXT_LIMIT_OPTIONS: tuple[Option, ...] = (
    Option(
        "max_page_chars",
        "--max-page-chars",
        whole(1_000),
        MAX_PAGE_CHARS,
        "characters of text one PDF page may hold; a file with a larger page is skipped",
        env="RAGSERVE_MAX_PAGE_CHARS",
    ),
    Option(
        "max_document_chars",
        "--max-document-chars",
        whole(10_000),
        MAX_DOCUMENT_CHARS,
        "characters of text one PDF may hold; a larger file is skipped",
        env="RAGSERVE_MAX_DOCUMENT_CHARS",
    ),
)


class TextLimits(msgspec.Struct, frozen=True):
    """Characters of text one page and one document may hold (--max-page-chars,
    --max-document-chars): a file over either is skipped, saying which."""

    page_chars: int = MAX_PAGE_CHARS
    document_chars: int = MAX_DOCUMENT_CHARS


class ExtractResult(msgspec.Struct):
    status: Status
    reason: str = ""
    pages: list[str] = []
    reextracted_pages: int = 0  # garbled pypdf text replaced by pypdfium2's
    garbled_pages: int = 0  # garbled by both extractors, dropped
    empty_pages: int = 0  # no text layer (scans); OCR is out of scope
    page_errors: int = 0


def _skip(reason: str) -> ExtractResult:
    return ExtractResult(status="skipped", reason=reason)


def _check_header(path: Path) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if not head:
        return "empty file (0 bytes)"
    if b"%PDF-" not in head:
        return "not a PDF (no %PDF- header)"
    return None


class _Pdfium:
    """pypdfium2, opened lazily: the second extractor, and the fallback opener."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._doc = None

    def doc(self):
        if self._doc is None:
            import pypdfium2

            self._doc = pypdfium2.PdfDocument(str(self.path))
        return self._doc

    def page_text(self, index: int, budget: _Budget) -> str:
        page = self.doc()[index]
        textpage = page.get_textpage()
        try:
            budget.check(index, textpage.count_chars())
            return textpage.get_text_range()
        finally:
            textpage.close()
            page.close()

    def close(self) -> None:
        if self._doc is not None:
            with contextlib.suppress(Exception):
                self._doc.close()


def extract_pdf(path: str | Path, limits: TextLimits | None = None) -> ExtractResult:
    """Extract and clean every page's text; never raises for a bad file."""
    path = Path(path)
    try:
        if reason := _check_header(path):
            return _skip(reason)
        return _extract(path, limits or TextLimits())
    except _TooMuchText as exc:
        return _skip(str(exc))
    except MemoryError:
        return _skip("out of memory while parsing (decompression bomb?)")
    except RecursionError:
        return _skip("objects nested too deeply (malformed or hostile PDF)")
    except _LimitReached as exc:
        if "tokens" in str(exc):  # pypdf's parsing budget per content stream
            return _skip(f"a page's content is too long to parse (a text bomb?): {exc}")
        return _skip(f"decompression limit exceeded (decompression bomb?): {exc}")
    except Exception as exc:  # any parser failure is a property of the file
        return _skip(f"unreadable PDF: {type(exc).__name__}: {str(exc)[:200]}")


def _open_pypdf(path: Path):
    import pypdf

    reader = pypdf.PdfReader(str(path), strict=False)
    if reader.is_encrypted:
        try:
            decrypted = reader.decrypt("")
        except Exception as exc:
            raise _Encrypted(f"encrypted ({type(exc).__name__}: {exc})") from exc
        if decrypted == pypdf.PasswordType.NOT_DECRYPTED:
            raise _Encrypted("encrypted with a password")
    return reader


class _Encrypted(Exception):
    pass


class _LimitReached(Exception):
    pass


class _TooMuchText(Exception):
    pass


class _Budget:
    """Counts a document's text against its limits as pages are read."""

    def __init__(self, limits: TextLimits) -> None:
        self.limits = limits
        self.total = 0

    def page(self, index: int, chars: int) -> None:
        self.check(index, chars)
        self.total += chars

    def check(self, index: int, chars: int) -> None:
        """Raises once a page's `chars` so far break a limit (the extractors call it as
        they go, so a text bomb stops at the limit, not after all of its text)."""
        if chars > self.limits.page_chars:
            raise _TooMuchText(
                f"page {index + 1} holds {chars:,} characters of text, over the limit of "
                f"{self.limits.page_chars:,} per page (--max-page-chars; a text bomb?)"
            )
        if self.total + chars > self.limits.document_chars:
            raise _TooMuchText(
                f"the text passes {self.limits.document_chars:,} characters by page "
                f"{index + 1}, over the limit per document (--max-document-chars)"
            )


def _limit_error() -> type[Exception]:
    from pypdf.errors import LimitReachedError

    return LimitReachedError


def _extract(path: Path, limits: TextLimits) -> ExtractResult:
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    pdfium = _Pdfium(path)
    try:
        try:
            reader = _open_pypdf(path)
            n_pages = len(reader.pages)
        except _Encrypted as exc:
            return _skip(str(exc))
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:
            # Damaged files pypdf rejects (broken xref, truncation) may still open in pdfium.
            reader = None
            try:
                n_pages = len(pdfium.doc())
            except Exception:
                return _skip(f"unreadable PDF: {type(exc).__name__}: {str(exc)[:200]}")
        if n_pages == 0:
            return _skip("no pages")
        if n_pages > MAX_PAGES:
            return _skip(
                f"page tree declares {n_pages} pages, over the limit of {MAX_PAGES} "
                "(broken or hostile page tree)"
            )
        result = ExtractResult(status="ok")
        budget = _Budget(limits)
        for i in range(n_pages):
            text = _page_text(reader, pdfium, i, result, budget)
            budget.page(i, len(text))  # what is kept, counted exactly
            result.pages.append(text)
        if not any(result.pages):
            reason = "no text layer on any page (scanned images?; OCR is not supported)"
            if result.garbled_pages:
                reason = f"text on {result.garbled_pages} page(s) is unreadable by both extractors"
            return ExtractResult(
                status="skipped",
                reason=reason,
                empty_pages=result.empty_pages,
                garbled_pages=result.garbled_pages,
            )
        return result
    finally:
        pdfium.close()


def _page_text(reader, pdfium: _Pdfium, index: int, result: ExtractResult, budget: _Budget) -> str:
    text = ""
    if reader is not None:
        seen = 0

        def count(piece: str, *_: object) -> None:
            nonlocal seen
            seen += len(piece)
            budget.check(index, seen)

        try:
            text = clean_text(reader.pages[index].extract_text(visitor_text=count) or "")
        except (MemoryError, RecursionError, _TooMuchText):
            raise
        except Exception as exc:
            if isinstance(exc, _limit_error()):
                raise _LimitReached(str(exc)[:200]) from exc
            result.page_errors += 1
            text = ""
    garbled = looks_garbled(text)
    if reader is None or garbled or (not text and result.page_errors):
        try:
            alt = clean_text(pdfium.page_text(index, budget))
        except _TooMuchText:
            raise
        except Exception:
            alt = ""
        if text and garbled:
            if alt and garbage_score(alt) < garbage_score(text) and not looks_garbled(alt):
                result.reextracted_pages += 1
                return alt
            result.garbled_pages += 1
            return ""
        text = alt
    if len(text) < MIN_TEXT_CHARS:
        result.empty_pages += 1
        return ""
    return text
