"""The formats beside PDF (ingest/formats.py): what a file is, what each reader takes from
it (headings, tables, headers and footers, footnotes), the bounds on hostile files, and a
folder of mixed documents through `ragserve ingest`."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import docgen
import pytest
from helpers import ragserve

from ragserve.ingest import formats
from ragserve.ingest.extract import UNSUPPORTED, TextLimits, extract_document
from ragserve.retrieval.search import Retriever

OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
DOC = [
    ("h1", "계약 개요"),
    ("p", "계약번호 HX-3301 의 계약금액은 4억 원이다."),
    ("h2", "납품"),
    ("p", "납품기한은 2026년 5월 31일이다."),
    ("table", [["품목", "수량"], ["드릴", "88"]]),
    ("h1", "Annex"),
    ("p", "The annex lists the spare parts."),
]


# where DOC's sections are, written as .docx or .hwpx with a header and a footnote
OFFICE_LOCATIONS = ["계약 개요", "계약 개요 › 납품", "Annex", "headers and footers", "footnotes"]


def read(path: Path, name: str = "") -> dict[str, str]:
    """location -> text of what the extractor kept of a file."""
    result = extract_document((str(path), name or path.name))
    assert result.status == "ok", result.reason
    return dict(zip(result.locations, result.pages, strict=True))


def zipped(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_a_file_is_named_by_its_bytes(tmp_path):
    cases = {
        "a.pdf": (b"%PDF-1.7\n...", "pdf"),
        "notes.md": (b"# Title\n\ntext", "markdown"),
        "notes.txt": (b"# not markdown: a .txt", "text"),
        "no-suffix": ("평문 한 줄".encode("cp949"), "text"),
        "page.htm": (b"<p>x</p>", "html"),
        "page.txt": (b"<!-- saved -->\n<!DOCTYPE html><html><body>x</body></html>", "html"),
        "bom.txt": ("\ufeff텍스트".encode(), "text"),
        "wide.txt": ("텍스트".encode("utf-16"), "text"),
        "a.docx": (None, "docx"),
        "a.hwpx": (None, "hwpx"),
    }
    docgen.write_docx(tmp_path / "a.docx", DOC)
    docgen.write_hwpx(tmp_path / "a.hwpx", [DOC])
    for name, (data, kind) in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        assert formats.sniff(tmp_path / name, name).kind == kind, name
    assert formats.sniff(tmp_path / "bom.txt").encoding == "utf-8-sig"
    assert formats.sniff(tmp_path / "no-suffix").encoding == "cp949"
    unreadable = {
        "scan.png": (b"\x89PNG\r\n\x1a\n" + bytes(20), "PNG image"),
        "old.hwp": (OLE + b"HWP Document File", "HWPX"),
        "old.doc": (OLE, ".docx or PDF"),
        "tool.exe": (b"MZ\x90\x00", "executable"),
        "blob.bin": (bytes(range(256)) * 4, "binary data"),
    }
    for name, (data, says) in unreadable.items():
        (tmp_path / name).write_bytes(data)
        sniffed = formats.sniff(tmp_path / name, name)
        assert sniffed.kind is None and says in sniffed.description, (name, sniffed)
    sheet = zipped(tmp_path / "a.xlsx", {"xl/workbook.xml": b"<x/>"})
    assert "Excel" in formats.sniff(sheet).description
    assert formats.sniff(zipped(tmp_path / "a.zip", {"x.txt": b"x"})).description == "a ZIP archive"


def test_an_unreadable_type_is_unsupported_and_a_false_pdf_is_invalid(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    png = extract_document(str(tmp_path / "scan.png"))
    assert png.status == "skipped" and png.code == UNSUPPORTED and "PNG" in png.reason
    (tmp_path / "notes.pdf").write_text("text named as a PDF")
    false = extract_document(str(tmp_path / "notes.pdf"))
    assert false.code == "" and "not a PDF" in false.reason and "text file" in false.reason


def test_markdown_by_its_headings_with_lines_and_fences(tmp_path):
    md = tmp_path / "guide.md"
    md.write_text(
        "Intro before any heading.\n\n# Guide\n\n## Install\n\nStep one.\n\n```sh\n"
        "# a comment, not a heading\n```\n\nSetext title\n------------\n\nUnder it.\n"
    )
    got = read(md)
    assert list(got) == ["line 1", "Guide › Install, line 3", "Guide › Setext title, line 13"]
    assert "# a comment, not a heading" in got["Guide › Install, line 3"]  # the fence's
    assert got["Guide › Setext title, line 13"].endswith("Under it.")


def test_plain_text_in_sections_of_bounded_size_that_say_their_line(tmp_path):
    paragraphs = [f"Paragraph {i} " + "word " * 300 for i in range(12)]  # ~1.5k chars each
    txt = tmp_path / "long.txt"
    txt.write_text("\n\n".join(paragraphs))
    got = read(txt)
    assert len(got) > 3 and all(len(t) <= formats.SECTION_CHARS for t in got.values())
    lines = [int(k.split()[-1]) for k in got]
    assert lines[0] == 1 and lines == sorted(lines)
    for label, text in got.items():  # each label names the line its section starts on
        n = int(label.split()[-1])
        assert text.startswith(paragraphs[(n - 1) // 2].strip()[:20])
    one_line = tmp_path / "one.txt"
    one_line.write_text("x" * 10_000)  # no break anywhere: cut, nothing lost
    cut = extract_document(str(one_line))
    assert [len(p) for p in cut.pages] == [4_000, 4_000, 2_000]
    assert cut.locations == ["line 1"] * 3


def test_html_text_under_its_headings_without_scripts_or_styles(tmp_path):
    page = tmp_path / "p.html"
    page.write_text(
        "<html><head><title>Depot notes</title><style>p{}</style></head><body>"
        "<script>var secret = 'SCRIPT-77';</script><h1>Depots</h1><h2>Busan</h2>"
        "<p>Opens at <b>7 am</b>.</p><table><tr><th>bay</th><td>12</td></tr></table>"
        "<h2>Incheon</h2><ul><li>Closed</li></ul></body></html>"
    )
    got = read(page)
    assert list(got) == ["Depots › Busan", "Depots › Incheon"]
    assert "Opens at 7 am." in got["Depots › Busan"] and "bay | 12" in got["Depots › Busan"]
    assert all("SCRIPT-77" not in t and "p{}" not in t for t in got.values())
    bare = tmp_path / "bare.html"
    bare.write_bytes("<meta charset=euc-kr><p>한국어 본문</p>".encode("cp949"))
    assert read(bare) == {"start": "한국어 본문"}  # its meta charset; no heading: "start"


def test_word_headings_tables_headers_footers_and_footnotes(tmp_path):
    path = docgen.write_docx(
        tmp_path / "계약.docx", DOC, header="대외비", footer="조달팀", footnote="부가세 별도"
    )
    got = read(path)
    assert list(got) == OFFICE_LOCATIONS
    assert "계약금액은 4억 원" in got["계약 개요"]
    assert "품목 | 수량\n드릴 | 88" in got["계약 개요 › 납품"]
    assert got["headers and footers"] == "대외비\n조달팀" and got["footnotes"] == "부가세 별도"


def test_hangul_sections_outline_headings_tables_and_notes(tmp_path):
    path = docgen.write_hwpx(
        tmp_path / "보고서.hwpx", [DOC[:5], DOC[5:]], header="머리말", footnote="각주 본문"
    )
    got = read(path)
    assert list(got) == OFFICE_LOCATIONS
    assert "품목 | 수량\n드릴 | 88" in got["계약 개요 › 납품"]  # the second section follows
    assert got["headers and footers"] == "머리말" and got["footnotes"] == "각주 본문"
    # the 2024 standard's namespaces (KS X 6101:2024) read the same
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    renamed = {
        n: d.replace(b"http://www.hancom.co.kr/hwpml/2011/", b"http://www.owpml.org/owpml/2024/")
        for n, d in parts.items()
    }
    assert read(zipped(tmp_path / "2024.hwpx", renamed)) == got


def test_hostile_documents_fail_with_a_reason(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("가나다라 " * 5_000)
    small = TextLimits(document_chars=10_000)
    refused = extract_document(str(big), small)
    assert refused.status == "skipped" and "--max-document-chars" in refused.reason
    bomb = tmp_path / "bomb.docx"  # declares more unpacked bytes than any document holds
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", b"<Types/>")
        z.writestr("word/document.xml", b" " * (formats.MAX_UNPACKED_BYTES + 1))
    assert "zip bomb" in extract_document(str(bomb)).reason
    broken = zipped(
        tmp_path / "broken.hwpx",
        {"mimetype": b"application/hwp+zip", "Contents/section0.xml": b"<hs:sec><unclosed"},
    )
    result = extract_document(str(broken))
    assert result.status == "skipped" and "section0.xml cannot be read" in result.reason
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(8)
        )
        + b"]><r><p><run><t>&i;</t></run></p></r>"
    )
    boom = zipped(
        tmp_path / "laughs.hwpx",
        {"mimetype": b"application/hwp+zip", "Contents/section0.xml": laughs},
    )
    assert extract_document(str(boom)).status == "skipped"  # expat refuses the expansion


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    (root / "guide.md").write_text("# Install\n\nThe MARLIN-52 installer needs 12 GB.\n")
    (root / "notes.txt").write_bytes("부품 코드 QT-9051 의 단가는 3만 원이다.".encode("cp949"))
    (root / "site" / "depots.html").parent.mkdir()
    (root / "site" / "depots.html").write_text("<h1>Busan</h1><p>ORCA-17 opens at 7.</p>")
    docgen.write_docx(root / "계약.docx", DOC)
    docgen.write_hwpx(root / "일정.hwpx", [DOC])
    (root / "옛문서.hwp").write_bytes(OLE + b"HWP Document File")
    (root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # not a document's name: left out
    return root


def test_a_folder_of_every_format_through_the_cli(tmp_path, mixed, embedder):
    index = tmp_path / "index"
    run = ragserve("ingest", str(mixed), "--index", str(index), "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["ingested"] == 5 and summary["skipped"] == 1, summary
    [hwp] = summary["problems"]
    assert hwp["path"] == "옛문서.hwp" and hwp["code"] == UNSUPPORTED and "HWPX" in hwp["reason"]
    retriever = Retriever(index, embedder)
    try:
        for query, document, location in [
            ("MARLIN-52 installer", "guide.md", "Install, line 1"),
            ("QT-9051 단가", "notes.txt", "line 1"),
            ("ORCA-17 opens", "site/depots.html", "Busan"),
            ("HX-3301 계약금액", "계약.docx", "계약 개요"),
            ("HX-3301 계약금액", "일정.hwpx", "계약 개요"),
        ]:
            hits = [h for h in retriever.search(query, top_k=5) if h.document == document]
            assert hits and hits[0].location == location, (query, document, hits[:1])
        assert {d.path for d in retriever.version.documents()} >= {"guide.md", "계약.docx"}
    finally:
        retriever.close()
