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
        "Tesseract languages, joined by +, the documents' main one first (an unsure word "
        "of another is read again in it)",
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


# Tesseract reading several languages picks one per word; where it is unsure, the word is
# read again by the other languages alone and the surer reading is kept. A word of a
# language other than the first of --ocr-lang is read again below SURE: with kor+eng the
# English model otherwise "wins" some Hangul words as capitals ("결과를" read as "ADS",
# confidence 60-90 where real English words score 83-97; 0.941 -> 1.000 character
# accuracy on a dense Korean page, bench/ocr_bench.py). A word the first language read
# below UNSURE as ASCII only is read again by the others ("ISO" read by the Korean model
# as "160", confidence 67); its own letters never are (the English model reads Hangul
# syllables as "2" or "=" with confidence up to 95).
SURE = 95.0
UNSURE = 80.0


class PageReader:
    """One Tesseract engine per process, language set and layout (tesserocr's API object
    is not thread-safe; an extraction worker reads one page at a time)."""

    _apis: dict[tuple[str, str, int], Any] = {}

    @classmethod
    def _api(cls, tessdata: str, lang: str, psm: int) -> Any:
        import tesserocr

        key = (tessdata, lang, psm)
        api = cls._apis.get(key)
        if api is None:
            api = tesserocr.PyTessBaseAPI(path=tessdata.rstrip("/") + "/", lang=lang, psm=psm)
            cls._apis[key] = api
        return api

    @classmethod
    def read(cls, page: Any, settings: OcrSettings) -> OcrText:
        from tesserocr import PSM

        assert settings.tessdata is not None
        # one block of text, read line by line: Tesseract's automatic layout (PSM 3)
        # splits lines of Hangul into "columns" and loses half of them (character
        # accuracy 0.55 vs 1.00 on a clean page; bench/ocr_bench.py)
        api = cls._api(settings.tessdata, settings.lang, PSM.SINGLE_BLOCK)
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
        return cls._words(api, image, settings, started + settings.page_timeout_s)

    @classmethod
    def _words(cls, api: Any, image: Any, settings: OcrSettings, deadline: float) -> OcrText:
        """The page's text as Tesseract lays it out, with each unsure word replaced by
        a surer reading of another language (SURE, UNSURE) while the page's time lasts."""
        from tesserocr import RIL, iterate_level

        assert settings.tessdata is not None
        languages = [part for part in settings.lang.split("+") if part]
        page = api.GetUTF8Text() or ""
        out: list[str] = []
        confidences: list[float] = []
        at = 0  # words come in the order of the page's text: each is found after the last
        words = api.GetIterator()
        for word in iterate_level(words, RIL.WORD) if words is not None else ():
            try:
                text, confidence = word.GetUTF8Text(RIL.WORD), word.Confidence(RIL.WORD)
            except RuntimeError:  # no text at all: the iterator stands on nothing
                break
            found = page.find(text, at)
            if found < 0:
                continue
            end = found + len(text)
            others = _second_opinions(languages, word.WordRecognitionLanguage(), confidence, text)
            better = None
            if others and time.monotonic() < deadline:
                box = word.BoundingBox(RIL.WORD)
                better = cls._reread(image, box, others, settings.tessdata, confidence)
            if better is None:
                out.append(page[at:end])
            else:
                out += [page[at:found], better[0]]
                confidence = better[1]
            at = end
            confidences.append(confidence)
        out.append(page[at:])
        mean = sum(confidences) / len(confidences) if confidences else 0.0
        return OcrText("".join(out), mean)

    @classmethod
    def _reread(
        cls,
        image: Any,
        box: tuple[int, int, int, int],
        languages: list[str],
        tessdata: str,
        confidence: float,
    ) -> tuple[str, float] | None:
        """The surest reading of one word's box by each of `languages` alone, if any is
        surer than `confidence`."""
        from tesserocr import PSM

        x0, y0, x1, y1 = box
        pad = max(4, (y1 - y0) // 4)
        crop = image.crop((max(0, x0 - pad), max(0, y0 - pad), x1 + pad, y1 + pad))
        best: tuple[str, float] | None = None
        for lang in languages:
            api = cls._api(tessdata, lang, PSM.SINGLE_WORD)
            api.SetImage(crop)
            text, sure = (api.GetUTF8Text() or "").strip(), float(api.MeanTextConf())
            if text and sure > (best[1] if best else confidence):
                best = (text, sure)
        return best


def _second_opinions(
    languages: list[str], read_as: str | None, confidence: float, text: str
) -> list[str]:
    """The languages one word is read again in (none with a single language)."""
    if len(languages) < 2 or read_as is None:
        return []
    if read_as != languages[0]:
        return [languages[0]] if confidence < SURE else []
    return languages[1:] if confidence < UNSURE and text.isascii() else []
