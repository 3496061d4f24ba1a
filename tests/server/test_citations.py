"""Citations frontends show and open: url_citation annotations, one source per place, and
links that serve the cited PDF at its page (signed and expiring when API keys are on)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from liveserver import LiveServer, make_settings

from ragserve.retrieval.search import Hit, merge_places
from ragserve.server.app import create_app
from ragserve.server.citations import UrlSigner, load_secret, url_citations
from ragserve.server.protocol import Source

QUESTION = "What is the budget of Project Falcon?"
TEXT = "Alpha beta gamma. Delta epsilon zeta. Eta theta iota. Kappa lambda mu."


def hit(cid: int, doc: str, start: int, end: int, page: int, page_end: int, score=1.0) -> Hit:
    return Hit(cid, doc, page, page_end, score, TEXT[start:end].strip(), start, end)


def test_overlapping_and_adjacent_chunks_of_a_document_become_one_place():
    hits = [
        hit(2, "a.pdf", 11, 38, 1, 2, 0.9),  # "gamma. Delta ...": overlaps chunk 1
        hit(9, "b.pdf", 0, 18, 4, 4, 0.8),
        hit(1, "a.pdf", 0, 18, 1, 1, 0.7),
        hit(3, "a.pdf", 38, 54, 2, 3, 0.6),  # "Eta theta iota.": right after chunk 2
        hit(5, "a.pdf", 67, 70, 5, 5, 0.5),  # further on: another place
    ]
    places = merge_places(hits)
    assert [(p.document, p.page, p.page_end) for p in places] == [
        ("a.pdf", 1, 3),
        ("b.pdf", 4, 4),
        ("a.pdf", 5, 5),
    ]
    first = places[0]
    assert first.chunk_id == 2 and first.score == 0.9  # the best chunk's rank, id and score
    assert first.text == TEXT[0:54].strip()  # each character once
    assert first.text.count("Delta") == 1


def test_signed_links_open_one_file_until_they_expire():
    signer = UrlSigner(b"secret", ttl_s=60)
    token = signer.sign("file-a", now=1000)
    assert signer.verify("file-a", token, now=1059) == "ok"
    assert signer.verify("file-a", token, now=1061) == "expired"
    assert signer.verify("file-b", token, now=1000) == "invalid"
    expires, mac = token.split(".")
    assert signer.verify("file-a", f"{int(expires) + 999}.{mac}", now=1000) == "invalid"
    assert signer.verify("file-a", "garbage", now=1000) == "invalid"
    assert UrlSigner(b"other", 60).verify("file-a", token, now=1000) == "invalid"


def test_the_generated_secret_is_kept_private_and_reused(tmp_path):
    first = load_secret(None, tmp_path)
    assert (tmp_path / ".ragserve-citation-key").stat().st_mode & 0o777 == 0o600
    assert load_secret(None, tmp_path) == first
    assert load_secret("configured", tmp_path) == b"configured"


def source(n: int, url: str | None = "http://x/f#page=1") -> Source:
    return Source(
        index=n,
        document=f"d{n}.pdf",
        page=1,
        page_end=2,
        score=1.0,
        snippet="",
        chunk_id=n,
        url=url,
    )


def test_annotations_sit_where_the_answer_cites_else_span_it():
    answer = "The budget is 4.2M [2]. Also [2] and [9]."
    [cited] = url_citations(answer, [source(1), source(2)])
    assert (cited.url_citation.start_index, cited.url_citation.end_index) == (19, 22)
    assert answer[19:22] == "[2]" and cited.url_citation.title == "d2.pdf, pp. 1-2"
    spans = url_citations("No citation here.", [source(1), source(2)])
    assert [(a.url_citation.start_index, a.url_citation.end_index) for a in spans] == [
        (0, 17),
        (0, 17),
    ]
    assert url_citations("x [1]", [source(1, url=None)]) == []


def pdf_of(http: httpx.Client, url: str, **kw) -> httpx.Response:
    path = url.split("#", 1)[0].split("/v1/", 1)[1]
    return http.get("/v1/" + path, **kw)


FALCON_ONLY = {"rag": {"documents": ["falcon.pdf"]}}  # every source is falcon.pdf's


def check_annotation(note: dict, content: str, sources: list[dict]) -> dict:
    """An annotation matches a source: its link, its title (document and pages), and where
    the answer cites it (`[n]`), or the whole answer when it cites nothing."""
    by_url = {s["url"]: s for s in sources}
    assert note["type"] == "url_citation"
    cite = note["url_citation"]
    source = by_url[cite["url"]]
    pages = (
        f"p. {source['page']}"
        if source["page"] == source["page_end"]
        else (f"pp. {source['page']}-{source['page_end']}")
    )
    assert cite["title"] == f"{source['document']}, {pages}"
    assert cite["url"].endswith(f"#page={source['page']}")
    span = content[cite["start_index"] : cite["end_index"]]
    assert span == f"[{source['index']}]" or (cite["start_index"], cite["end_index"]) == (
        0,
        len(content),
    )
    return source


def test_answers_carry_url_citations_whose_links_open_the_pdf_at_the_page(client, http):
    resp = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=30,
        extra_body=FALCON_ONLY,
    )
    message = resp.choices[0].message
    sources = resp.model_extra["sources"]
    assert sources and {s["document"] for s in sources} == {"falcon.pdf"}
    assert message.annotations
    cited = [
        check_annotation(a.model_dump(), message.content, sources) for a in message.annotations
    ]
    first = cited[0]
    assert first["file_id"].startswith("file-") and "token=" not in first["url"]
    got = pdf_of(http, first["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
    assert got.content.startswith(b"%PDF")
    assert first["file_id"][5:] == hashlib.sha256(got.content).hexdigest()[:32]


def test_streamed_annotations_come_in_one_chunk_before_the_finish(client):
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=30,
            stream=True,
            extra_body=FALCON_ONLY,
        )
    )

    def notes(c) -> list[dict]:  # the SDK keeps unknown delta fields as plain dicts
        return (c.choices[0].delta.model_extra or {}).get("annotations") or [] if c.choices else []

    carrying = [i for i, c in enumerate(chunks) if notes(c)]
    assert len(carrying) == 1
    finish = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].finish_reason)
    assert carrying[0] < finish
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    sources = chunks[0].model_extra["sources"]
    for note in notes(chunks[carrying[0]]):
        assert "/v1/files/file-" in check_annotation(note, content, sources)["url"]


def test_files_are_listed_and_described(http):
    listed = http.get("/v1/files").json()
    names = {f["filename"] for f in listed["data"]}
    assert {"falcon.pdf", "orchid.pdf", "도로보수.pdf"} <= names
    one = listed["data"][0]
    assert http.get(f"/v1/files/{one['id']}").json() == one
    missing = http.get("/v1/files/file-" + "0" * 32)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "file_id"
    assert http.get("/v1/files/../../etc/passwd/content").status_code == 404


@pytest.fixture(scope="module")
def keyed(index_dir, engine, retriever) -> Iterator[LiveServer]:
    settings = make_settings(index_dir, api_keys=("sekrit",), citation_ttl=120)
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as live:
        yield live


def test_with_keys_links_are_signed_and_open_only_their_file(keyed):
    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key="sekrit", max_retries=0)
    resp = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": QUESTION}], max_tokens=20
    )
    sources = resp.model_extra["sources"]
    falcon = next(s for s in sources if s["document"] == "falcon.pdf")
    assert "?token=" in falcon["url"]
    with httpx.Client(base_url=keyed.url) as browser:  # no Authorization header
        assert pdf_of(browser, falcon["url"]).status_code == 200
        plain = falcon["url"].split("?")[0].split("/v1/", 1)[1]
        assert browser.get("/v1/" + plain).status_code == 401
        token = falcon["url"].split("token=")[1].split("#")[0]
        expires, mac = token.split(".")
        altered = browser.get("/v1/" + plain, params={"token": f"{int(expires) + 1}.{mac}"})
        assert altered.status_code == 403
        assert altered.json()["error"]["code"] == "invalid_signature"
        other = next(s for s in sources if s["file_id"] != falcon["file_id"])
        stolen = browser.get(f"/v1/files/{other['file_id']}/content", params={"token": token})
        assert stolen.status_code == 403
        signer = keyed.app.state.signer
        old = signer.sign(falcon["file_id"], now=time.time() - 3600)
        expired = browser.get("/v1/" + plain, params={"token": old})
        assert expired.status_code == 403 and expired.json()["error"]["code"] == "link_expired"
        assert browser.get("/v1/files").status_code == 401  # the token opens content only
        for bad in ("\u00b2.x", "\u0661\u0662.x", "12.\u00e9", "."):  # not ASCII digits
            odd = browser.get("/v1/" + plain, params={"token": bad})
            assert odd.status_code == 403, (bad, odd.text)
            assert odd.json()["error"]["code"] == "invalid_signature"
