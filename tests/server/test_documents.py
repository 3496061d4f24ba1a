"""Documents beside PDF through the real server and the official SDK: each format is
uploaded, attached (read by the real pipeline in its worker processes), found by search
with where in the file it is, cited in a chat answer and in a Responses answer, and
served back safely; a type ragserve cannot read fails its attach with `unsupported_file`."""

from __future__ import annotations

from pathlib import Path

import docgen
import httpx
import pytest

# one fact per file, each with a code only that file holds: (file name, question, code,
# the location its passage must name)
MARKDOWN = """# Field guide

Read this before the first visit.

## 설치

The MARLIN-52 installer needs 12 GB of free disk and a wired network.

## Support

Call the help desk.
"""
HTML = """<!doctype html><html><head><title>Depot notes</title>
<script>document.write("SCRIPT-TEXT-77")</script><style>p {color: red}</style></head>
<body><h1>Depots</h1><h2>Busan</h2><p>The ORCA-17 depot opens at 7 am on weekdays.</p>
<table><tr><th>bay</th><td>12</td></tr></table></body></html>
"""
TEXT_KO = "부품 목록\n\n부품 코드 QT-9051 의 단가는 3만 원이며 재고는 40개다.\n"
DOCX = [
    ("h1", "계약 개요"),
    ("p", "계약번호 HX-3301 의 계약금액은 4억 원이며 부가세는 별도다."),
    ("h2", "납품"),
    ("table", [["품목", "수량"], ["드릴 HX-3301-D", "88"]]),
]
HWPX = [
    [("h1", "납품 일정"), ("p", "품목 PX-7720 의 납품기한은 2026년 5월 31일이다.")],
    [("h1", "검수"), ("p", "검수는 납품 후 열흘 안에 끝낸다.")],
]
CASES = [
    ("guide.md", "markdown", "MARLIN-52 installer disk", "MARLIN-52", "Field guide › 설치, line 5"),
    ("depots.html", "html", "ORCA-17 depot opening hours", "ORCA-17", "Depots › Busan"),
    ("부품.txt", "text", "QT-9051 단가", "QT-9051", "line 1"),
    ("계약.docx", "docx", "HX-3301 계약금액", "HX-3301", "계약 개요"),
    ("일정.hwpx", "hwpx", "PX-7720 납품기한", "PX-7720", "납품 일정"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    (root / "guide.md").write_text(MARKDOWN, encoding="utf-8")
    (root / "depots.html").write_text(HTML, encoding="utf-8")
    (root / "부품.txt").write_bytes(TEXT_KO.encode("cp949"))  # the Korean legacy code page
    docgen.write_docx(root / "계약.docx", DOCX, header="대외비", footnote="부가세 10%")
    docgen.write_hwpx(root / "일정.hwpx", HWPX, footer="조달팀")
    return {p.name: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def store(sdk, files) -> str:
    """One vector store holding a file of each format, all attached and read."""
    store = sdk.vector_stores.create(name="formats")
    for name, kind, *_ in CASES:
        with open(files[name], "rb") as fh:
            done = sdk.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=fh)
        assert done.status == "completed", (name, done.last_error)
        report = done.model_extra["ingest"]
        assert report["format"] == kind and report["sections"] >= 1 and report["chunks"] >= 1
        assert "pages" not in report, report  # no pages in these formats: sections
    return store.id


@pytest.mark.parametrize(("name", "kind", "query", "code", "location"), CASES)
def test_each_format_is_found_with_where_in_the_file_it_is(
    sdk, store, name, kind, query, code, location
):
    found = sdk.vector_stores.search(store, query=query).data
    assert found and found[0].filename == name, [(r.filename, r.score) for r in found]
    assert code in found[0].content[0].text
    extra = found[0].model_extra
    assert extra["location"] == location and extra["page"] is None, extra
    assert extra["origin"] == "text"


@pytest.mark.parametrize(("name", "kind", "query", "code", "location"), CASES)
def test_a_chat_answer_cites_each_format_where_its_passage_is(
    sdk, store, files, name, kind, query, code, location
):
    """A question about each file's fact is answered from that file: its passage is the
    first source, named by where it is in the file, and the answer's url_citation opens the
    file itself (no #page: these formats have none). Half are streamed, half not."""
    ask = dict(
        model="smollm2",
        messages=[{"role": "user", "content": f"{query}?"}],
        max_tokens=8,
        extra_body={"rag": {"vector_store_ids": [store]}},
    )
    if kind in ("markdown", "text", "hwpx"):
        resp = sdk.chat.completions.create(**ask)
        sources, annotations = resp.model_extra["sources"], resp.choices[0].message.annotations
    else:
        sources, annotations = [], []
        for chunk in sdk.chat.completions.create(**ask, stream=True):
            sources += (chunk.model_extra or {}).get("sources") or []
            for choice in chunk.choices:
                annotations += getattr(choice.delta, "annotations", None) or []
    first = sources[0]
    assert first["document"] == name and first["location"] == location, first
    assert code in first["snippet"] and first["page"] is None and first["origin"] == "text"
    assert first["url"] and "#page" not in first["url"]
    cited = [a for a in annotations if _url(a) == first["url"]]
    assert cited, annotations
    assert _title(cited[0]) == f"{name}, {location}"
    got = httpx.get(first["url"])
    assert got.status_code == 200 and got.content == files[name].read_bytes()
    if kind in ("docx", "hwpx"):  # an office file is downloaded, not shown in the browser
        assert got.headers["content-disposition"].startswith("attachment")


def _url(annotation) -> str:
    a = annotation if isinstance(annotation, dict) else annotation.model_dump()
    return a["url_citation"]["url"]


def _title(annotation) -> str:
    a = annotation if isinstance(annotation, dict) else annotation.model_dump()
    return a["url_citation"]["title"]


def test_a_responses_answer_cites_a_hangul_document(sdk, store):
    r = sdk.responses.create(
        model="smollm2",
        input="품목 PX-7720 의 납품기한은?",
        tools=[{"type": "file_search", "vector_store_ids": [store]}],
        include=["file_search_call.results"],
        max_output_tokens=8,
    )
    top = r.output[0].results[0]
    assert top.filename == "일정.hwpx" and "PX-7720" in top.text
    assert top.attributes["ragserve.location"] == "납품 일정"
    assert "ragserve.page" not in top.attributes


def test_text_formats_are_served_as_plain_text_never_as_a_page(sdk, store, files, library):
    """An uploaded HTML file comes back as text/plain, sandboxed, never sniffed: a citation
    link cannot run a script on the server's origin. Its script text was not indexed."""
    ids = {f.filename: f.id for f in sdk.files.list().data}
    with httpx.Client(base_url=library.url) as http:
        page = http.get(f"/v1/files/{ids['depots.html']}/content")
        assert page.headers["content-type"].startswith("text/plain")
        assert page.headers["content-security-policy"] == "sandbox"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.content == files["depots.html"].read_bytes()
        text = http.get(f"/v1/files/{ids['부품.txt']}/content")
        assert text.headers["content-type"] == "text/plain; charset=cp949"
        assert text.content.decode("cp949") == TEXT_KO
        pdf_like = http.get(f"/v1/files/{ids['guide.md']}/content")
        assert pdf_like.headers["content-disposition"].startswith("inline")
    found = sdk.vector_stores.search(store, query="SCRIPT-TEXT-77 document.write").data
    assert all("SCRIPT-TEXT-77" not in r.content[0].text for r in found)


def test_a_type_ragserve_cannot_read_fails_its_attach_with_unsupported_file(sdk, store, tmp_path):
    png = tmp_path / "scan.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    hwp = tmp_path / "옛문서.hwp"  # an HWP 5 file: an OLE compound file with its signature
    hwp.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + b"HWP Document File")
    for path, says in ((png, "PNG image"), (hwp, "HWPX")):
        with open(path, "rb") as fh:
            bad = sdk.vector_stores.files.upload_and_poll(vector_store_id=store, file=fh)
        assert bad.status == "failed" and bad.last_error.code == "unsupported_file", bad
        assert says in bad.last_error.message, bad.last_error.message
    # the store keeps serving what it holds
    assert sdk.vector_stores.search(store, query="MARLIN-52").data[0].filename == "guide.md"
