"""PDF factories for tests and benchmarks: real documents (reportlab) and broken/hostile ones."""

from __future__ import annotations

import os
import zlib
from functools import cache
from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas


@cache
def korean_font() -> str:
    """Register NanumGothic (shipped by the koreanize-matplotlib package) with reportlab."""
    import koreanize_matplotlib

    path = os.path.join(os.path.dirname(koreanize_matplotlib.__file__), "fonts", "NanumGothic.ttf")
    pdfmetrics.registerFont(TTFont("NanumGothic", path))
    return "NanumGothic"


def write_pdf(
    path: Path,
    pages: list[list[str]],
    *,
    font_size: int = 11,
    password: str | None = None,
    title: str | None = None,
) -> Path:
    """A text PDF: one list of lines per page, long lines wrapped. Hangul works."""
    font = korean_font()
    path.parent.mkdir(parents=True, exist_ok=True)
    c = canvas.Canvas(str(path), pagesize=A4, encrypt=password)
    if title:
        c.setTitle(title)
    width, height = A4
    for lines in pages:
        c.setFont(font, font_size)
        y = height - 60
        for line in lines:
            for piece in _wrap(line, font, font_size, width - 120):
                if y < 60:
                    c.showPage()
                    c.setFont(font, font_size)
                    y = height - 60
                c.drawString(60, y, piece)
                y -= font_size * 1.5
        c.showPage()
    c.save()
    return path


def _wrap(line: str, font: str, size: int, max_width: float) -> list[str]:
    words = line.split(" ")
    out: list[str] = []
    current = ""
    for word in words:
        trial = f"{current} {word}".strip()
        if pdfmetrics.stringWidth(trial, font, size) <= max_width or not current:
            current = trial
        else:
            out.append(current)
            current = word
    out.append(current)
    return out


def image_only_pdf(path: Path) -> Path:
    """A 'scan': a page with a drawn rectangle and no text layer."""
    c = canvas.Canvas(str(path), pagesize=A4)
    c.rect(100, 100, 300, 400, fill=1)
    c.showPage()
    c.save()
    return path


def text_image(lines: list[str], dpi: int = 300, font_pt: float = 12):
    """An A4 page of `lines` as a greyscale scan would show it (Pillow, NanumGothic)."""
    from PIL import Image, ImageDraw, ImageFont

    scale = dpi / 72
    width, height = int(A4[0] * scale), int(A4[1] * scale)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    path = os.path.join(os.path.dirname(_font_file()), "NanumGothic.ttf")
    font = ImageFont.truetype(path, int(font_pt * scale))
    y = int(60 * scale)
    for line in lines:
        draw.text((int(60 * scale), y), line, fill=0, font=font)
        y += int(font_pt * 1.8 * scale)
    return image


def _font_file() -> str:
    import koreanize_matplotlib

    return os.path.join(os.path.dirname(koreanize_matplotlib.__file__), "fonts", "NanumGothic.ttf")


SCAN_KO = [
    "서울시 도로 보수 사업 보고서",
    "계약번호 KR-2024-0173 의 계약금액은 5억원입니다.",
    "담당자는 김민수 과장이며, 준공 예정일은 2025년 3월 31일입니다.",
]
SCAN_EN = [
    "Project Heron maintenance report",
    "The budget of Project Heron is 7.9 million dollars.",
    "The steering committee meets every Thursday in Gwangju.",
]
SCAN_KO_DENSE = (
    SCAN_KO
    + [
        "본 사업은 지역 기반시설 개선을 목적으로 하며 계약금액과 일정은 다음과 같다.",
        "담당 부서는 분기마다 진행 상황을 점검하고 결과를 보고한다.",
    ]
    * 8
)


def char_accuracy(read: str, truth: str) -> float:
    """1 - character edit distance / length, whitespace ignored (OCR's spacing of Hangul
    is not the question)."""
    a, b = "".join(read.split()), "".join(truth.split())
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1 - prev[-1] / max(1, len(b))


def scanned_pdf(path: Path, pages: list[list[str] | tuple[str, list[str]]], dpi: int = 300) -> Path:
    """A PDF of scanned pages (each an image, no text layer); a ("text", lines) item is a
    page with a real text layer instead, for mixed documents."""
    from reportlab.lib.utils import ImageReader

    font = korean_font()
    path.parent.mkdir(parents=True, exist_ok=True)
    c = canvas.Canvas(str(path), pagesize=A4)
    for item in pages:
        if isinstance(item, tuple):
            c.setFont(font, 11)
            y = A4[1] - 60
            for line in item[1]:
                c.drawString(60, y, line)
                y -= 16
        else:
            c.drawImage(ImageReader(text_image(item, dpi)), 0, 0, width=A4[0], height=A4[1])
        c.showPage()
    c.save()
    return path


# -- hand-built PDFs ------------------------------------------------------------------


def raw_pdf(objects: list[bytes], root: int = 1) -> bytes:
    """Serialize numbered objects (1-based) with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root,
        xref,
    )
    return bytes(out)


def _page_objects(content: bytes, font: bytes) -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        font,
    ]


def cid_korean_pdf(path: Path, text: str) -> Path:
    """Korean text in a non-embedded CID font with the predefined KSCms-UHC-H CMap and no
    ToUnicode map, as older Korean office software writes it. pypdf returns mojibake for
    it; pypdfium2 reads it correctly."""
    content = b"BT /F1 12 Tf 72 700 Td <" + text.encode("cp949").hex().encode() + b"> Tj ET"
    font = (
        b"<< /Type /Font /Subtype /Type0 /BaseFont /HYGoThic-Medium /Encoding /KSCms-UHC-H "
        b"/DescendantFonts [6 0 R] >>"
    )
    objects = [
        *_page_objects(content, font),
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /HYGoThic-Medium /CIDSystemInfo "
        b"<< /Registry (Adobe) /Ordering (Korea1) /Supplement 2 >> /FontDescriptor 7 0 R "
        b"/DW 1000 >>",
        b"<< /Type /FontDescriptor /FontName /HYGoThic-Medium /Flags 6 /FontBBox "
        b"[0 -148 1001 880] /ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 "
        b"/StemV 93 >>",
    ]
    path.write_bytes(raw_pdf(objects))
    return path


_HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def deeply_nested_pdf(path: Path, depth: int = 100_000) -> Path:
    """A content stream resource dictionary nested `depth` levels deep."""
    nested = b"[" * depth + b"]" * depth
    objects = _page_objects(b"BT /F1 12 Tf 72 700 Td (hello) Tj ET", _HELVETICA)
    objects[2] = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Evil "
        + nested
        + b" /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"
    )
    path.write_bytes(raw_pdf(objects))
    return path


def decompression_bomb_pdf(path: Path, megabytes: int = 1024) -> Path:
    """A content stream that inflates to `megabytes` MB from about 1 MB on disk."""
    comp = zlib.compressobj(9)
    block = b" " * (1 << 20)
    data = b"".join(comp.compress(block) for _ in range(megabytes)) + comp.flush()
    objects = _page_objects(b"", _HELVETICA)
    objects[3] = (
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    )
    path.write_bytes(raw_pdf(objects))
    return path


def text_bomb_pdf(
    path: Path, megabytes: float = 12, pages: int = 1, string_chars: int = 10_000
) -> Path:
    """`pages` pages that all show one compressed content stream holding `megabytes` MB of
    text in strings of `string_chars` characters, each on its own line of the page: a few
    kB on disk, text without end for an extractor."""
    words = b"lorem ipsum dolor sit amet "
    text = (words * (string_chars // len(words) + 1))[:string_chars]
    comp = zlib.compressobj(9)
    count = max(1, round(megabytes * 1_000_000 / string_chars))
    data = b"".join(
        comp.compress(b"BT /F1 1 Tf 10 %d Td (%s) Tj ET\n" % (10 + i % 700, text))
        for i in range(count)
    )
    data += comp.flush()
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream",
        _HELVETICA,
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 3 0 R >>"
    ] * pages
    path.write_bytes(raw_pdf(objects))
    return path


def page_tree_loop_pdf(path: Path) -> Path:
    """A page tree whose /Kids point back at itself."""
    objects = _page_objects(b"BT /F1 12 Tf 72 700 Td (loop) Tj ET", _HELVETICA)
    objects[1] = b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 1000000 >>"
    path.write_bytes(raw_pdf(objects))
    return path


def truncated_pdf(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path
