"""OCR for pages without a usable text layer: pdfium renders the page, Tesseract reads it.

Tesseract runs in-process through `tesserocr` (one engine per extraction worker, its
language data loaded once), with the language data from the system (Debian:
`tesseract-ocr`, `tesseract-ocr-kor`). `pytesseract` would start a `tesseract` process and
load the language data again for every page: see bench/ocr_bench.py.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any, Literal

import msgspec

from ragserve.options import Option, choice, defaults, number, text, whole

OcrMode = Literal["auto", "off", "force"]
OCR_MODES: tuple[OcrMode, ...] = ("auto", "off", "force")
# Where distributions put Tesseract's language data (Debian 12/13: 5, Debian 11: 4.00).
TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)
INSTALL_HINT = "apt-get install tesseract-ocr-kor tesseract-ocr-eng; pip install 'ragserve[ocr]'"

OCR_OPTIONS: tuple[Option, ...] = (
    Option(
        "ocr",
        "--ocr",
        choice(*OCR_MODES),
        "auto",
        "OCR for scanned pages: auto (pages without a usable text layer, when Tesseract is "
        "installed), off, or force (every page)",
        env="RAGSERVE_OCR",
    ),
    Option(
        "ocr_lang",
        "--ocr-lang",
        text,
        "kor+eng",
        "Tesseract languages, joined by +",
        env="RAGSERVE_OCR_LANG",
    ),
    Option("ocr_dpi", "--ocr-dpi", whole(72, 600), 300, "resolution pages are read at", env=None),
    Option(
        "ocr_page_timeout_s",
        "--ocr-page-timeout",
        number(1),
        60.0,
        "seconds Tesseract may spend on one page (a page over it is reported, the rest of "
        "the document still counts); each OCR'd page extends the file's --timeout by it",
        env="RAGSERVE_OCR_PAGE_TIMEOUT",
    ),
)


_DEFAULT = defaults(OCR_OPTIONS)


class OcrSettings(msgspec.Struct, frozen=True):
    """How pages are OCR'd; `tessdata` is found once at start (None: OCR is off)."""

    mode: OcrMode = "off"  # not --ocr's default: a run that did not look for Tesseract
    lang: str = _DEFAULT["ocr_lang"]
    dpi: int = _DEFAULT["ocr_dpi"]
    page_timeout_s: float = _DEFAULT["ocr_page_timeout_s"]
    tessdata: str | None = None

    @property
    def on(self) -> bool:
        return self.mode != "off" and self.tessdata is not None


class OcrText(msgspec.Struct, frozen=True):
    text: str
    confidence: float  # Tesseract's mean word confidence, 0-100


class OcrTimeout(Exception):
    pass


def find_tessdata(lang: str) -> tuple[str | None, str | None]:
    """(the language data folder, None) or (None, what is missing and how to install it)."""
    if importlib.util.find_spec("tesserocr") is None:  # not imported: it loads Tesseract
        return None, f"the tesserocr package is not installed ({INSTALL_HINT})"
    wanted = [part for part in lang.split("+") if part]
    if not wanted:
        return None, "no OCR language given (--ocr-lang, e.g. kor+eng)"
    folders = [os.environ.get("TESSDATA_PREFIX", ""), *TESSDATA_DIRS]
    seen: list[str] = []
    for folder in folders:
        if folder and Path(folder).is_dir():
            have = {p.stem for p in Path(folder).glob("*.traineddata")}
            if all(w in have for w in wanted):
                return folder, None
            seen.append(f"{folder} has {'+'.join(sorted(have)) or 'none'}")
    missing = "+".join(wanted)
    where = "; ".join(seen) or "no tessdata folder found"
    return None, f"no Tesseract language data for {missing} ({where}; {INSTALL_HINT})"


def ocr_settings(mode: OcrMode, lang: str, dpi: int, page_timeout_s: float) -> OcrSettings:
    """The settings a run uses, and why OCR is off if it is. `force` without Tesseract is
    an error (ValueError); `auto` without it is off, with the reason for one warning."""
    if mode == "off":
        return OcrSettings("off", lang, dpi, page_timeout_s)
    folder, problem = find_tessdata(lang)
    if folder is None:
        if mode == "force":
            raise ValueError(f"--ocr force: {problem}")
        return OcrSettings("off", lang, dpi, page_timeout_s)
    return OcrSettings(mode, lang, dpi, page_timeout_s, folder)


def unavailable_reason(mode: OcrMode, lang: str) -> str | None:
    """Why `auto` turned OCR off (for the one warning at start), or None."""
    if mode != "auto":
        return None
    return find_tessdata(lang)[1]


class PageReader:
    """One Tesseract engine per process and language set (tesserocr's API object is not
    thread-safe; an extraction worker reads one page at a time)."""

    _apis: dict[tuple[str, str], Any] = {}

    @classmethod
    def read(cls, page: Any, settings: OcrSettings) -> OcrText:
        import tesserocr

        assert settings.tessdata is not None
        key = (settings.tessdata, settings.lang)
        api = cls._apis.get(key)
        if api is None:
            api = tesserocr.PyTessBaseAPI(
                path=settings.tessdata.rstrip("/") + "/",
                lang=settings.lang,
                # one block of text, read line by line: Tesseract's automatic layout
                # (PSM 3) splits lines of Hangul into "columns" and loses half of them
                # (character accuracy 0.55 vs 1.00 on a clean page; bench/ocr_bench.py)
                psm=tesserocr.PSM.SINGLE_BLOCK,
            )
            cls._apis[key] = api
        bitmap = page.render(scale=settings.dpi / 72, grayscale=True)
        try:
            image = bitmap.to_pil()
        finally:
            bitmap.close()
        api.SetImage(image)
        started = time.monotonic()
        if not api.Recognize(timeout=int(settings.page_timeout_s * 1000)):
            elapsed = time.monotonic() - started
            raise OcrTimeout(f"Tesseract stopped after {elapsed:.0f} s (--ocr-page-timeout)")
        return OcrText(api.GetUTF8Text(), float(api.MeanTextConf()))
