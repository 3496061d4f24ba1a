"""Documents beside PDF: what a file is, and the readers of the formats ragserve reads.

`sniff` names a file's format from its bytes (its name only breaks the ties bytes cannot:
Markdown or plain text); a reader turns a file into `Section`s, each a labelled run of
text (the label is where a citation points: a heading path, a line), which the ingest
chunks as it chunks a PDF's pages. Nothing here executes, renders or fetches anything a
file names: HTML is parsed for its text, the zipped XML formats are read member by member
under a size bound, and XML entities are never expanded from outside the file.
Runs inside an extraction worker process (see pool.py), under its time and memory limits.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Literal
from xml.etree import ElementTree

import msgspec

Kind = Literal["pdf", "text", "markdown", "html", "docx", "hwpx"]
READABLE: tuple[str, ...] = ("pdf", "text", "markdown", "html", "docx", "hwpx")
# what a folder given to `ragserve ingest` is searched for (.hwp too: it is reported, with
# how to convert it, rather than silently left out)
SUFFIXES: tuple[str, ...] = (
    ".pdf",
    ".txt",
    ".md",
    ".markdown",
    ".html",
    ".htm",
    ".docx",
    ".hwpx",
    ".hwp",
)
SNIFF_BYTES = 64 * 1024
SECTION_CHARS = 4_000  # a longer stretch under one heading is cut into several sections
HEADING_SEPARATOR = " › "
# the XML a zipped document may unpack to, whatever its members declare (a zip bomb)
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
HWP5_MESSAGE = (
    "an HWP 5 (binary) document, which ragserve cannot read: in Hangul, File > Save As, "
    "and choose HWPX (.hwpx) or PDF, then upload that"
)
MEDIA_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "hwpx": "application/hwp+zip",
}


class Sniffed(msgspec.Struct, frozen=True):
    kind: Kind | None  # None: a format ragserve does not read
    description: str  # what it is, for messages ("a PNG image")
    encoding: str | None = None  # the text formats: how their bytes decode

    def media_type(self) -> str:
        """The Content-Type its bytes are served with: text formats (HTML included, never
        rendered) as plain text (in `charset`), the rest as what they are."""
        if self.kind in ("text", "markdown", "html"):
            return "text/plain"
        return MEDIA_TYPES.get(self.kind or "", "application/octet-stream")

    @property
    def charset(self) -> str:
        """The text formats' charset for a Content-Type header (a BOM names its own)."""
        return {"utf-8-sig": "utf-8"}.get(self.encoding or "utf-8", self.encoding or "utf-8")


class Section(msgspec.Struct, frozen=True):
    label: str  # where this text is in its file: a heading path, a line
    text: str


class UnreadableDocument(Exception):
    """A file of a readable kind that cannot be read (a broken archive, bad XML)."""


class TooMuchText(Exception):
    """A text file holds more characters than the document limit (only that many are read)."""


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"RIFF", "a RIFF file (audio, video or a WebP image)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"{\\rtf", "an RTF document"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "an executable"),
)
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = b"PK\x03\x04"
_MARKDOWN_SUFFIXES = (".md", ".markdown")
_HTML_SUFFIXES = (".html", ".htm")
_HTML_START = re.compile(
    rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>]|head[\s>])", re.I | re.S
)


def sniff(path: str | Path, name: str = "") -> Sniffed:
    """What the file at `path` is; `name` (its upload's or its own file name) decides
    between text formats only."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    suffix = PurePosixPath(name or path.name).suffix.lower()
    if b"%PDF-" in head[:1024]:
        return Sniffed("pdf", "a PDF")
    if head.startswith(_ZIP):
        return _sniff_zip(path)
    if head.startswith(_OLE):
        if b"HWP Document File" in head or suffix == ".hwp":
            return Sniffed(None, HWP5_MESSAGE)
        return Sniffed(
            None,
            "a legacy Microsoft Office file (.doc, .xls or .ppt): save it as .docx or PDF "
            "and upload that",
        )
    for magic, description in _MAGIC:
        if head.startswith(magic):
            return Sniffed(None, description)
    if not head:
        return Sniffed("text", "an empty text file", "utf-8")
    encoding = _text_encoding(head)
    if encoding is None:
        return Sniffed(None, "binary data of an unknown format")
    if suffix in _HTML_SUFFIXES or _HTML_START.match(head):
        return Sniffed("html", "an HTML page", _html_encoding(head) or encoding)
    if suffix in _MARKDOWN_SUFFIXES:
        return Sniffed("markdown", "a Markdown document", encoding)
    return Sniffed("text", "a text file", encoding)


def _sniff_zip(path: Path) -> Sniffed:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            mimetype = z.read("mimetype")[:64] if "mimetype" in names else b""
    except (zipfile.BadZipFile, OSError, KeyError, RuntimeError) as exc:
        return Sniffed(None, f"a damaged ZIP archive ({exc})")
    if "word/document.xml" in names:
        return Sniffed("docx", "a Word document (.docx)")
    if mimetype.startswith(b"application/hwp+zip") or any(
        n.startswith("Contents/section") for n in names
    ):
        return Sniffed("hwpx", "a Hangul document (.hwpx)")
    if "xl/workbook.xml" in names:
        return Sniffed(None, "an Excel workbook (.xlsx): save the sheets as PDF to upload them")
    if "ppt/presentation.xml" in names:
        return Sniffed(None, "a PowerPoint presentation (.pptx): save it as PDF and upload that")
    if mimetype.startswith(b"application/vnd.oasis.opendocument"):
        return Sniffed(None, "an OpenDocument file: save it as .docx or PDF and upload that")
    return Sniffed(None, "a ZIP archive")


def _text_encoding(head: bytes) -> str | None:
    """How text bytes decode: UTF-8 (with or without a BOM), UTF-16 with a BOM, or the
    Korean legacy code page (CP949, a superset of EUC-KR); None for binary data."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        return None
    for encoding in ("utf-8", "cp949"):
        try:
            text = _decode_head(head, encoding)
        except UnicodeDecodeError:
            continue
        controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f")
        return encoding if controls <= len(text) // 100 else None
    return None


def _decode_head(head: bytes, encoding: str) -> str:
    """The start of a file decoded, forgiving a multi-byte character cut at its end."""
    decoder = codecs.getincrementaldecoder(encoding)()
    return decoder.decode(head, final=len(head) < SNIFF_BYTES)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.I)


def _html_encoding(head: bytes) -> str | None:
    match = _META_CHARSET.search(head[:4096])
    if not match:
        return None
    name = match.group(1).decode("ascii", "replace").lower()
    try:
        codecs.lookup(name)
    except LookupError:
        return None
    return {"euc-kr": "cp949", "ks_c_5601-1987": "cp949"}.get(name, name)


def read(path: str | Path, sniffed: Sniffed, max_chars: int) -> list[Section]:
    """The sections of a readable non-PDF file, in reading order. `max_chars` bounds the
    text decoded from a text file (more is never read)."""
    path = Path(path)
    if sniffed.kind in ("text", "markdown", "html"):
        with open(path, encoding=sniffed.encoding or "utf-8", errors="replace") as fh:
            text = fh.read(max_chars + 1)
        if len(text) > max_chars:
            raise TooMuchText()
        if sniffed.kind == "html":
            return list(_split(_html_blocks(text)))
        if sniffed.kind == "markdown":
            return list(_split(_markdown_blocks(text), lines=True))
        return list(_split(((None, line, block) for line, block in _paragraphs(text)), lines=True))
    if sniffed.kind == "docx":
        return list(_split(_docx_blocks(path)))
    if sniffed.kind == "hwpx":
        return list(_split(_hwpx_blocks(path)))
    raise ValueError(f"not a format read here: {sniffed.kind}")


# -- sections ---------------------------------------------------------------------------
# A reader yields blocks (heading path or None, first line or None, text); `_split` groups
# consecutive blocks under one heading into sections of at most SECTION_CHARS.
Block = tuple[tuple[str, ...] | None, int | None, str]


def _split(blocks: Iterable[Block], *, lines: bool = False) -> Iterator[Section]:
    heading: tuple[str, ...] | None = None
    parts: list[str] = []
    size = 0
    first_line: int | None = None
    body = False  # whether the section holds more than headings

    def section() -> Section:
        where = HEADING_SEPARATOR.join(heading) if heading else ""
        if lines and first_line is not None:
            where = f"{where}, line {first_line}" if where else f"line {first_line}"
        return Section(where or "start", "\n\n".join(parts))

    for path, line, text in blocks:
        text = text.strip()
        # a new heading starts a section, unless the one open holds only headings (a
        # title straight above a subtitle): that one is named by the deeper heading
        if parts and body and path is not None and path != heading:
            yield section()
            parts, size, first_line, body = [], 0, None, False
        if path is not None:
            heading = path
        if not text:  # a part named without a title in the text (headers and footers)
            continue
        if path is None:
            body = True
        for piece, piece_line in _pieces(text, line):
            if parts and size + len(piece) > SECTION_CHARS:
                yield section()
                parts, size, first_line = [], 0, None
            if first_line is None:
                first_line = piece_line
            parts.append(piece)
            size += len(piece)
    if parts:
        yield section()


def _pieces(text: str, line: int | None) -> Iterator[tuple[str, int | None]]:
    """A block cut at lines or spaces into pieces of at most SECTION_CHARS, with the line
    each starts on."""
    while len(text) > SECTION_CHARS:
        cut = SECTION_CHARS
        for mark in ("\n", " "):
            at = text.rfind(mark, SECTION_CHARS // 2, SECTION_CHARS)
            if at > 0:
                cut = at
                break
        yield text[:cut], line
        rest = text[cut:].lstrip()
        if line is not None:  # the lines the piece and the space after it took
            line += text[: len(text) - len(rest)].count("\n")
        text = rest
    yield text, line


def _paragraphs(text: str, start_line: int = 1) -> Iterator[tuple[int, str]]:
    """Blank-line separated paragraphs with the line each starts on."""
    line = start_line
    for block in re.split(r"(\n[ \t]*\n)", text):
        if block.strip() and not block.isspace():
            leading = len(block) - len(block.lstrip("\n"))
            yield line + leading, block
        line += block.count("\n")


# -- Markdown ---------------------------------------------------------------------------
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def _markdown_blocks(text: str) -> Iterator[Block]:
    """Markdown by headings (ATX `#` and setext underlines; not inside code fences): each
    heading starts a block, the text under it follows in paragraphs. The text is kept as
    written: the model reads Markdown well, and a citation's words are the file's."""
    path: list[str] = []
    lines = text.split("\n")
    fence: str | None = None
    buffer: list[str] = []
    buffer_line = 1

    def flush() -> Iterator[Block]:
        body = "\n".join(buffer)
        for line, block in _paragraphs(body, buffer_line):
            yield None, line, block

    i = 0
    while i < len(lines):
        line = lines[i]
        heading: tuple[int, str] | None = None
        if fence is None and (m := _FENCE.match(line)):
            fence = m.group(1)[0]
        elif fence is not None and line.lstrip().startswith(fence * 3):
            fence = None
        elif fence is None and (m := _ATX.match(line)):
            heading = (len(m.group(1)), m.group(2).strip())
        elif (
            fence is None
            and i + 1 < len(lines)
            and line.strip()
            and (m := _SETEXT.match(lines[i + 1]))
            and not (buffer and buffer[-1].strip())  # a paragraph's last line is not a title
        ):
            heading = (1 if m.group(1)[0] == "=" else 2, line.strip())
        if heading is None:
            if not buffer:
                buffer_line = i + 1
            buffer.append(line)
            i += 1
            continue
        yield from flush()
        buffer = []
        level, title = heading
        del path[level - 1 :]
        path.extend([""] * (level - 1 - len(path)))
        path.append(title)
        yield tuple(p for p in path if p), i + 1, line if _ATX.match(line) else title
        i += 1 if _ATX.match(line) else 2
    yield from flush()


# -- HTML -------------------------------------------------------------------------------
_SKIPPED_TAGS = {"script", "style", "template", "noscript", "svg", "math", "iframe", "title"}
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "header", "footer", "aside", "nav", "li",
    "ul", "ol", "dl", "dt", "dd", "blockquote", "pre", "table", "figure", "figcaption",
    "form", "address", "br", "hr", "caption",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


class _HtmlText(HTMLParser):
    """An HTML page's visible text as blocks under its h1-h6 headings; tables as rows of
    cells joined by ` | `; scripts, styles and the head left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.path: list[str] = []
        self.skip = 0
        self.text: list[str] = []
        self.heading: int | None = None
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.title = ""
        self.in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self.in_title = True
        if tag in _SKIPPED_TAGS:
            self.skip += 1
        elif self.skip:
            return
        elif tag in _HEADINGS:
            self._end_block()
            self.heading = _HEADINGS[tag]
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
        elif tag in _BLOCK_TAGS and self.row is None:
            self._end_block()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _SKIPPED_TAGS:
            self.skip = max(0, self.skip - 1)
        elif self.skip:
            return
        elif tag in _HEADINGS and self.heading is not None:
            title = " ".join("".join(self.text).split())
            self.text = []
            level, self.heading = self.heading, None
            if title:
                del self.path[level - 1 :]
                self.path.append(title)
                self.blocks.append((tuple(self.path), None, title))
        elif tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if any(self.row):
                self.text.append(" | ".join(self.row) + "\n")
            self.row = None
        elif tag in _BLOCK_TAGS and self.row is None:
            self._end_block()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        if self.skip:
            return
        (self.cell if self.cell is not None else self.text).append(data)

    def _end_block(self) -> None:
        text = "".join(self.text)
        self.text = []
        if text.strip() and self.heading is None:
            self.blocks.append((None, None, re.sub(r"[ \t\r\f\v]+", " ", text)))

    def close(self) -> None:
        super().close()
        self._end_block()


def _html_blocks(text: str) -> list[Block]:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    title = " ".join(parser.title.split())
    if title and not any(path for path, _, _ in parser.blocks):
        return [((title,), None, title), *parser.blocks]
    return parser.blocks


# -- zipped XML (DOCX, HWPX) ------------------------------------------------------------
def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableDocument(f"a damaged archive: {exc}") from exc
    unpacked = sum(i.file_size for i in z.infolist())
    if unpacked > MAX_UNPACKED_BYTES:
        z.close()
        raise UnreadableDocument(
            f"it unpacks to {unpacked:,} bytes, over the limit of {MAX_UNPACKED_BYTES:,} "
            "(a zip bomb?)"
        )
    return z


def _xml(z: zipfile.ZipFile, name: str) -> ElementTree.Element:
    """One member parsed (expat: no external entities are fetched, and entity expansion
    is bounded by its billion-laughs protection)."""
    try:
        with z.open(name) as fh:
            return ElementTree.parse(fh).getroot()
    except (ElementTree.ParseError, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise UnreadableDocument(f"{name} cannot be read: {exc}") from exc


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


_HEADING_STYLE = re.compile(
    r"^(?:heading|제목|개요|outline)\s*(\d)$|^(title|제목)$", re.I
)  # Word's "Heading 2", Korean Word's "제목 2", Hangul's "개요 2" (outline levels)


def _heading_level(style_name: str) -> int | None:
    m = _HEADING_STYLE.match(style_name.strip())
    if m is None:
        return None
    return int(m.group(1)) if m.group(1) else 1


class _Headings:
    """Turns paragraphs with heading levels into blocks with heading paths."""

    def __init__(self) -> None:
        self.path: list[str] = []

    def block(self, level: int | None, text: str) -> Block:
        if level is None or not text.strip():
            return None, None, text
        title = " ".join(text.split())
        del self.path[level - 1 :]
        self.path.append(title)
        return tuple(self.path), None, title


def _docx_blocks(path: Path) -> Iterator[Block]:
    """A Word document's body in order: paragraphs (headings by their style: Heading N,
    Title, the Korean 제목 N), tables as rows of ` | `-joined cells; then the distinct
    header and footer texts and the footnotes, each as a section of their own."""
    import docx
    from docx.oxml.ns import qn

    with _open_zip(path) as z:  # the unpacked-size bound, before python-docx reads it all
        # python-docx reads no footnotes: they come from their part, read while it is open
        notes = [
            " ".join(_xml_text(n).split())
            for n in (_xml(z, "word/footnotes.xml") if "word/footnotes.xml" in z.namelist() else ())
            if _local(n.tag) == "footnote" and int(n.get(qn("w:id"), "0")) > 0
        ]
    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx raises many kinds for a broken package
        raise UnreadableDocument(f"a damaged Word document: {type(exc).__name__}: {exc}") from exc
    headings = _Headings()
    styles = {s.style_id: s.name or "" for s in document.styles}
    body = document.element.body
    for child in body.iterchildren():
        tag = _local(child.tag)
        if tag == "p":
            style = child.find(f"{qn('w:pPr')}/{qn('w:pStyle')}")
            name = styles.get(style.get(qn("w:val")), "") if style is not None else ""
            yield headings.block(_heading_level(name), _docx_text(child))
        elif tag == "tbl":
            yield None, None, _docx_table(child)
    seen: set[str] = set()
    extra: list[str] = []
    for section in document.sections:
        for part in (section.header, section.footer):
            text = "\n".join(p.text for p in part.paragraphs if p.text.strip())
            if text and text not in seen:
                seen.add(text)
                extra.append(text)
    if extra:
        yield ("headers and footers",), None, ""
        yield None, None, "\n".join(extra)
    if any(notes):
        yield ("footnotes",), None, ""
        yield None, None, "\n".join(n for n in notes if n)


def _docx_text(paragraph) -> str:
    from docx.oxml.ns import qn

    breaks = {qn("w:tab"): " ", qn("w:br"): "\n", qn("w:cr"): "\n"}
    out: list[str] = []
    for el in paragraph.iter(qn("w:t"), *breaks):
        out.append(breaks.get(el.tag, el.text or ""))
    return "".join(out)


def _docx_table(table) -> str:
    """Rows of ` | `-joined cells; a table inside a cell reads as that cell's text."""
    from docx.oxml.ns import qn

    rows = []
    for tr in table.findall(qn("w:tr")):
        cells = [
            " ".join(" ".join(_docx_text(p) for p in tc.iter(qn("w:p"))).split())
            for tc in tr.findall(qn("w:tc"))
        ]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _xml_text(element) -> str:
    return "".join(t.text or "" for t in element.iter() if _local(t.tag) == "t")


_SECTION_MEMBER = re.compile(r"^Contents/section(\d+)\.xml$")


def _hwpx_blocks(path: Path) -> Iterator[Block]:
    """A Hangul (HWPX, OWPML) document: its sections in order, paragraphs (headings by
    their style: 개요 N / Outline N, 제목), tables as rows of ` | `-joined cells; text
    boxes where they stand; the distinct header and footer texts, and the footnotes and
    endnotes, each gathered into a section of their own at the end. Element names are
    matched without their namespace, so the 2011 and the KS X 6101:2024 files both read."""
    with _open_zip(path) as z:
        members = sorted(
            (int(m.group(1)), n) for n in z.namelist() if (m := _SECTION_MEMBER.match(n))
        )
        if not members:
            raise UnreadableDocument("no Contents/section*.xml in the archive")
        styles: dict[str, str] = {}
        if "Contents/header.xml" in z.namelist():
            for el in _xml(z, "Contents/header.xml").iter():
                if _local(el.tag) == "style":
                    styles[el.get("id", "")] = el.get("name", "") or el.get("engName", "")
        reader = _HwpxReader(styles)
        for _, name in members:
            yield from reader.section(_xml(z, name))
        if reader.margins:
            yield ("headers and footers",), None, ""
            yield None, None, "\n".join(dict.fromkeys(reader.margins))
        if reader.notes:
            yield ("footnotes",), None, ""
            yield None, None, "\n".join(reader.notes)


_HWPX_OWN = {"tbl", "header", "footer", "footNote", "endNote"}  # read by their handlers


class _HwpxReader:
    def __init__(self, styles: dict[str, str]) -> None:
        self.styles = styles
        self.headings = _Headings()
        self.margins: list[str] = []  # header and footer texts
        self.notes: list[str] = []  # footnotes and endnotes

    def section(self, root: ElementTree.Element) -> Iterator[Block]:
        for el in root:
            if _local(el.tag) == "p":
                yield from self.paragraph(el)

    def paragraph(self, p: ElementTree.Element) -> Iterator[Block]:
        """The paragraph's own text (and its text boxes'), then its tables; headers,
        footers and notes set aside for the end."""
        text: list[str] = []
        tables: list[Block] = []
        for run in p:
            if _local(run.tag) != "run":
                continue
            for item in _walk(run):
                tag = _local(item.tag)
                if tag == "t":
                    text.append(_hwpx_t(item))
                elif tag == "tbl":
                    tables.append((None, None, self.table(item)))
                elif tag in ("header", "footer"):
                    self.margins.append(_hwpx_lines(item))
                elif tag in ("footNote", "endNote"):
                    self.notes.append(_hwpx_lines(item))
                elif tag == "p":  # a text box's paragraph, where the box stands
                    text.append("\n")
        level = _heading_level(self.styles.get(p.get("styleIDRef", ""), ""))
        yield self.headings.block(level, "".join(text))
        yield from tables

    def table(self, tbl: ElementTree.Element) -> str:
        rows = []
        for tr in tbl:
            if _local(tr.tag) != "tr":
                continue
            cells = [" ".join(_hwpx_lines(tc).split()) for tc in tr if _local(tc.tag) == "tc"]
            if any(cells):
                rows.append(" | ".join(cells))
        return "\n".join(rows)


def _walk(element: ElementTree.Element) -> Iterator[ElementTree.Element]:
    """The element's descendants in document order, not descending into the parts that
    are read on their own (tables, headers, footers, notes)."""
    for child in element:
        yield child
        if _local(child.tag) not in _HWPX_OWN and _local(child.tag) != "t":
            yield from _walk(child)


def _hwpx_lines(element: ElementTree.Element) -> str:
    """All the text inside an element (a table cell, a header, a note), a line per
    paragraph."""
    lines = []
    for p in element.iter():
        if _local(p.tag) == "p":
            line = "".join(
                _hwpx_t(t)
                for run in p
                if _local(run.tag) == "run"
                for t in run
                if _local(t.tag) == "t"
            )
            if line.strip():
                lines.append(line.strip())
    return "\n".join(lines)


def _hwpx_t(t: ElementTree.Element) -> str:
    """An `hp:t`'s text: its characters, with tabs and line breaks inside it as spaces and
    newlines."""
    out = [t.text or ""]
    for child in t:
        tag = _local(child.tag)
        out.append(
            "\n" if tag == "lineBreak" else " " if tag in ("tab", "nbSpace", "fwSpace") else ""
        )
        out.append(child.tail or "")
    return "".join(out)
