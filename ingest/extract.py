"""Text extraction from one file: a PDF page by page (OCR where a page is a scan), the other
formats through formats.py. Runs inside a worker process."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

from ragserve.options import Option, whole

from . import formats
from .clean import clean_text, garbage_score, looks_garbled
from .ocr import OcrSettings, OcrTimeout, PageReader

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
        "characters of text one document may hold; a larger file is skipped",
        env="RAGSERVE_MAX_DOCUMENT_CHARS",
    ),
)


class TextLimits(msgspec.Struct, frozen=True):
    """Characters of text one page and one document may hold (--max-page-chars,
    --max-document-chars): a file over either is skipped, saying which."""

    page_chars: int = MAX_PAGE_CHARS
    document_chars: int = MAX_DOCUMENT_CHARS


UNSUPPORTED = "unsupported_file"  # ExtractResult.code of a file of a type ragserve cannot read


class ExtractResult(msgspec.Struct):
    status: Status
    reason: str = ""
    # "" (a file that is not ok: unreadable, empty, too large) or UNSUPPORTED
    code: str = ""
    format: str = ""  # what the file is (formats.Kind): "pdf", "markdown", ...
    # the text of each page; for a format without pages, of each section (see `locations`)
    pages: list[str] = []
    # a format without pages: where each of `pages` is in the file (a heading path, a
    # line); empty for a PDF, whose pages are their numbers
    locations: list[str] = []
    reextracted_pages: int = 0  # garbled pypdf text replaced by pypdfium2's
    garbled_pages: int = 0  # garbled by both extractors, dropped
    empty_pages: int = 0  # no text in the end (a blank page, or a scan OCR could not read)
    page_errors: int = 0
    ocr: list[OcrPage] = []  # the pages whose text came from OCR
    ocr_failed: list[OcrFailure] = []  # pages OCR was tried on and could not read
    ocr_skipped_pages: int = 0  # pages that needed OCR while it was off

    @property
    def unread_pages(self) -> int:
        """Pages whose text is missing for a reason other than being blank."""
        return len(self.ocr_failed) + self.ocr_skipped_pages + self.garbled_pages


class OcrPage(msgspec.Struct, frozen=True):
    page: int  # 1-based
    confidence: float  # Tesseract's mean word confidence, 0-100


class OcrFailure(msgspec.Struct, frozen=True):
    page: int
    reason: str


# A page with less text than this whose images cover this share of it is a scan with a
# stamp or a page number in its text layer: it is OCR'd, and the longer text kept.
SPARSE_TEXT_CHARS = 200
SCAN_COVERAGE = 0.3

# Set in an extraction worker: called with the seconds a long step (a page to OCR) may
# add to the file's deadline, before it starts (ingest/pool.py).
extend_deadline: Callable[[float], None] | None = None


def _skip(reason: str, format: str = "pdf") -> ExtractResult:
    return ExtractResult(status="skipped", reason=reason, format=format)


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


def extract_document(
    task: str | Path | tuple[str, str],
    limits: TextLimits | None = None,
    ocr: OcrSettings | None = None,
) -> ExtractResult:
    """Any file the ingest is given, by what its bytes are: a PDF (`extract_pdf`), a
    format formats.py reads (sections labelled with where they are), or a result that
    names the type and says it is not read (`code` UNSUPPORTED). `task`: a path, or
    (path, the name the file goes by, whose suffix tells Markdown from plain text: an
    upload's bytes are kept under their hash). Never raises for a bad file."""
    path, name = (task, "") if isinstance(task, (str, Path)) else task
    try:
        if os.path.getsize(path) == 0:
            return _skip("empty file (0 bytes)")
        sniffed = formats.sniff(path, name)
    except OSError as exc:
        return _skip(f"unreadable file: {exc}")
    if sniffed.kind == "pdf":
        return extract_pdf(path, limits, ocr)
    if Path(name or path).suffix.lower() == ".pdf":  # named as one: say so, not "text"
        return _skip(f"not a PDF (no %PDF- header; the bytes are {sniffed.description})")
    if sniffed.kind is None:
        return ExtractResult(
            status="skipped",
            reason=f"unsupported file type: {sniffed.description}",
            code=UNSUPPORTED,
            format="unknown",
        )
    limits = limits or TextLimits()
    too_much = (
        f"the text passes {limits.document_chars:,} characters, over the limit per document "
        "(--max-document-chars)"
    )
    try:
        sections = formats.read(path, sniffed, limits.document_chars)
    except formats.TooMuchText:
        return _skip(too_much, sniffed.kind)
    except formats.UnreadableDocument as exc:
        return _skip(f"unreadable {sniffed.description}: {exc}", sniffed.kind)
    except MemoryError:
        return _skip(f"out of memory while reading {sniffed.description}", sniffed.kind)
    except RecursionError:
        return _skip(f"{sniffed.description} nested too deeply (malformed?)", sniffed.kind)
    except Exception as exc:  # a reader's failure is a property of the file
        reason = f"unreadable {sniffed.description}: {type(exc).__name__}: {str(exc)[:200]}"
        return _skip(reason, sniffed.kind)
    result = ExtractResult(status="ok", format=sniffed.kind)
    total = 0
    for section in sections:
        text = clean_text(section.text)
        if not text:
            continue
        total += len(text)
        if total > limits.document_chars:
            return _skip(too_much, sniffed.kind)
        result.pages.append(text)
        result.locations.append(section.label)
    if not result.pages:
        return _skip(f"no text in {sniffed.description}", sniffed.kind)
    return result


def extract_pdf(
    path: str | Path, limits: TextLimits | None = None, ocr: OcrSettings | None = None
) -> ExtractResult:
    """Extract and clean every page's text (OCR where the text layer is missing or
    unusable, if `ocr` is on); never raises for a bad file."""
    path = Path(path)
    try:
        if reason := _check_header(path):
            return _skip(reason)
        return _extract(path, limits or TextLimits(), ocr or OcrSettings())
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


def _extract(path: Path, limits: TextLimits, ocr: OcrSettings) -> ExtractResult:
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
        result = ExtractResult(status="ok", format="pdf")
        budget = _Budget(limits)
        for i in range(n_pages):
            text, state = _page_text(reader, pdfium, i, result, budget)
            if ocr.on and (ocr.mode == "force" or state != "ok" or _sparse(text, pdfium, i)):
                read = _ocr_page(pdfium, i, ocr, result, budget)
                if read is not None and len(read) >= len(text):
                    text, state = read, "ok" if read else state
            elif state != "ok" and not ocr.on and _scanned(pdfium, i):
                result.ocr_skipped_pages += 1
                state = "skipped"
            if state == "empty":
                result.empty_pages += 1
            elif state == "garbled":
                result.garbled_pages += 1
            text = text if state == "ok" else ""
            budget.page(i, len(text))  # what is kept, counted exactly
            result.pages.append(text)
        if not any(result.pages):
            return ExtractResult(
                status="skipped",
                format="pdf",
                reason=_nothing_read(result, ocr),
                empty_pages=result.empty_pages,
                garbled_pages=result.garbled_pages,
                ocr_failed=result.ocr_failed,
                ocr_skipped_pages=result.ocr_skipped_pages,
            )
        return result
    finally:
        pdfium.close()


def _page_text(
    reader, pdfium: _Pdfium, index: int, result: ExtractResult, budget: _Budget
) -> tuple[str, str]:
    """A page's text layer, and what it is: ok, empty or garbled."""
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
                return alt, "ok"
            return "", "garbled"
        text = alt
    if len(text) < MIN_TEXT_CHARS:
        return "", "empty"
    return text, "ok"


def _image_coverage(pdfium: _Pdfium, index: int) -> float:
    """The share of the page its images cover (0 when pdfium cannot tell)."""
    try:
        import pypdfium2.raw as pdfium_c

        page = pdfium.doc()[index]
        try:
            width, height = page.get_size()
            area = 0.0
            for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3):
                bounds = getattr(obj, "get_bounds", None) or obj.get_pos  # pypdfium2 5 / 4
                left, bottom, right, top = bounds()
                area += max(0.0, min(right, width) - max(left, 0.0)) * max(
                    0.0, min(top, height) - max(bottom, 0.0)
                )
            return min(1.0, area / (width * height)) if width * height > 0 else 0.0
        finally:
            page.close()
    except Exception:
        return 0.0


def _scanned(pdfium: _Pdfium, index: int) -> bool:
    return _image_coverage(pdfium, index) >= SCAN_COVERAGE


def _sparse(text: str, pdfium: _Pdfium, index: int) -> bool:
    return len(text) < SPARSE_TEXT_CHARS and _scanned(pdfium, index)


def _ocr_page(
    pdfium: _Pdfium, index: int, ocr: OcrSettings, result: ExtractResult, budget: _Budget
) -> str | None:
    """The page read by Tesseract ("" when it found no text), or None when it failed."""
    if extend_deadline is not None:
        extend_deadline(ocr.page_timeout_s)
    try:
        page = pdfium.doc()[index]
        try:
            read = PageReader.read(page, ocr)
        finally:
            page.close()
    except OcrTimeout as exc:
        result.ocr_failed.append(OcrFailure(index + 1, str(exc)))
        return None
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:
        result.ocr_failed.append(OcrFailure(index + 1, f"{type(exc).__name__}: {exc}"[:200]))
        return None
    text = clean_text(read.text)
    budget.check(index, len(text))
    if len(text) >= MIN_TEXT_CHARS:
        result.ocr.append(OcrPage(index + 1, round(read.confidence, 1)))
        return text
    return ""


def _nothing_read(result: ExtractResult, ocr: OcrSettings) -> str:
    if result.ocr_failed:
        first = result.ocr_failed[0]
        n = len(result.ocr_failed)
        return f"OCR could not read {n} page(s): page {first.page}: {first.reason}"
    if result.ocr_skipped_pages:
        return (
            f"no text layer on {result.ocr_skipped_pages} scanned page(s), and OCR is off "
            "(--ocr auto with Tesseract installed reads them)"
        )
    if result.garbled_pages:
        return f"text on {result.garbled_pages} page(s) is unreadable by both extractors"
    if ocr.on:
        return "no text on any page, from the text layer or OCR"
    return "no text layer on any page"
