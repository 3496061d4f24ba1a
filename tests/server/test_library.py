"""The library managed over the API with the official SDK: OpenAI Files + Vector Stores,
background ingest through the real pipeline, attribute filters, chat over a store."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pdfgen
import pytest
from helpers import extractors
from liveserver import LiveServer, make_settings

from ragserve.ingest.pipeline import IngestOptions, run_ingest
from ragserve.retrieval.search import Retriever
from ragserve.server.app import create_app

CONTRACT_KO = [
    ["물품 구매 계약서"],
    ["계약번호 GX-4471 의 납품 기한은 2027년 3월 31일이며 계약금액은 7억 2천만원이다."],
]
CONTRACT_EN = [
    ["Supply agreement ZEPHYR-88"],
    ["The ZEPHYR-88 agreement covers 400 drill units, delivered to the Busan depot."],
]


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("uploads")
    return {
        "ko": pdfgen.write_pdf(root / "계약서.pdf", CONTRACT_KO),
        "en": pdfgen.write_pdf(root / "zephyr.pdf", CONTRACT_EN),
        "en2": pdfgen.write_pdf(
            root / "v2" / "zephyr.pdf",
            [["Supply agreement ZEPHYR-88, revised"], ["Now 950 pump units, to Incheon."]],
        ),
        "bomb": pdfgen.text_bomb_pdf(root / "bomb.pdf", megabytes=12),
        "hostile": pdfgen.truncated_pdf(
            pdfgen.write_pdf(root / "whole.pdf", CONTRACT_EN), root / "broken.pdf"
        ),
    }


def search(sdk, store: str, query: str, **kw) -> list:
    return list(sdk.vector_stores.search(store, query=query, **kw).data)


def ask_store(sdk, store: str, question: str, max_tokens: int) -> list[dict]:
    """A chat answer over one vector store: its `sources`."""
    resp = sdk.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        extra_body={"rag": {"vector_store_ids": [store]}},
    )
    return resp.model_extra["sources"]


def test_upload_and_poll_then_search_and_chat_cite_the_new_documents(sdk, pdfs):
    store = sdk.vector_stores.create(name="contracts", metadata={"team": "purchasing"})
    assert store.id.startswith("vs_") and store.metadata == {"team": "purchasing"}
    for key in ("ko", "en"):
        with open(pdfs[key], "rb") as fh:
            done = sdk.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=fh)
        assert done.status == "completed", done.last_error
    found = search(sdk, store.id, "GX-4471 납품 기한")
    assert found[0].filename == "계약서.pdf" and "GX-4471" in found[0].content[0].text
    assert found[0].file_id.startswith("file-")
    # ragserve's additions: where in the file, and that the text layer gave the text
    extra = found[0].model_extra
    assert extra["page"] == 1 and extra["page_end"] >= 1, extra
    assert extra["origin"] == "text" and extra["ocr_confidence"] is None, extra
    sources = ask_store(sdk, store.id, "How many drill units does ZEPHYR-88 cover?", 20)
    assert sources[0]["document"] == "zephyr.pdf"
    assert sources[0]["origin"] == "text" and sources[0]["ocr_confidence"] is None
    assert sources[0]["file_id"] and "/v1/files/" + sources[0]["file_id"] in sources[0]["url"]
    # the model id of the store does the same for frontends that can only pick a model
    assert "smollm2@contracts" in [m.id for m in sdk.models.list().data]
    by_model = sdk.chat.completions.create(
        model="smollm2@contracts",
        messages=[{"role": "user", "content": "How many drill units does ZEPHYR-88 cover?"}],
        max_tokens=5,
    )
    assert by_model.model_extra["sources"][0]["document"] == "zephyr.pdf"
    listed = sdk.vector_stores.retrieve(store.id)
    assert listed.file_counts.completed == 2 and listed.usage_bytes > 0


def test_replacing_a_file_with_the_same_name_drops_the_old_text(sdk, pdfs):
    store = sdk.vector_stores.create(name="replace")
    with open(pdfs["en"], "rb") as fh:
        first = sdk.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=fh)
    assert "drill" in search(sdk, store.id, "ZEPHYR-88 units")[0].content[0].text
    with open(pdfs["en2"], "rb") as fh:
        second = sdk.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=fh)
    assert second.status == "completed" and second.id != first.id
    texts = " ".join(r.content[0].text for r in search(sdk, store.id, "ZEPHYR-88 units"))
    assert "950 pump" in texts and "drill" not in texts
    assert [f.id for f in sdk.vector_stores.files.list(store.id)] == [second.id]
    # and deleting it empties the store's answers
    sdk.vector_stores.files.delete(file_id=second.id, vector_store_id=store.id)
    deadline = time.time() + 120
    while search(sdk, store.id, "ZEPHYR-88 units") and time.time() < deadline:
        time.sleep(0.5)
    assert search(sdk, store.id, "ZEPHYR-88 units") == []


def test_a_hostile_pdf_fails_with_its_reason_and_the_store_keeps_serving(sdk, pdfs):
    store = sdk.vector_stores.create(name="hostile")
    with open(pdfs["ko"], "rb") as fh:
        sdk.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=fh)
    with open(pdfs["hostile"], "rb") as fh:
        bad = sdk.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=fh)
    assert bad.status == "failed"
    assert bad.last_error.code == "invalid_file" and bad.last_error.message
    assert search(sdk, store.id, "GX-4471")[0].filename == "계약서.pdf"


def test_a_text_bomb_upload_fails_at_the_text_limit_and_the_store_keeps_serving(sdk, pdfs):
    store = sdk.vector_stores.create(name="text-bomb")
    with open(pdfs["ko"], "rb") as fh:
        sdk.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=fh)
    with open(pdfs["bomb"], "rb") as fh:
        bad = sdk.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=fh)
    # refused by the count, not by the per-file time limit (which would say "timed out")
    assert bad.status == "failed" and bad.last_error.code == "invalid_file"
    assert "--max-page-chars" in bad.last_error.message
    assert search(sdk, store.id, "GX-4471")[0].filename == "계약서.pdf"


def test_attribute_filters_and_or_and_numeric_ranges(sdk, pdfs):
    store = sdk.vector_stores.create(name="filters")
    batch = sdk.vector_stores.file_batches.upload_and_poll(
        vector_store_id=store.id, files=[pdfs["ko"], pdfs["en"]]
    )
    assert batch.status == "completed" and batch.file_counts.completed == 2
    files = {f.id: f for f in sdk.vector_stores.files.list(store.id)}
    names = {r.file_id: r.filename for r in search(sdk, store.id, "contract agreement")}
    ko = next(i for i, n in names.items() if n == "계약서.pdf")
    en = next(i for i, n in names.items() if n == "zephyr.pdf")
    assert set(files) == {ko, en}
    sdk.vector_stores.files.update(
        file_id=ko, vector_store_id=store.id, attributes={"dept": "construction", "year": 2027}
    )
    sdk.vector_stores.files.update(
        file_id=en, vector_store_id=store.id, attributes={"dept": "logistics", "year": 2024}
    )

    def only(filters: dict) -> set[str]:
        return {r.filename for r in search(sdk, store.id, "contract agreement", filters=filters)}

    assert only({"type": "eq", "key": "dept", "value": "logistics"}) == {"zephyr.pdf"}
    assert only({"type": "gte", "key": "year", "value": 2025}) == {"계약서.pdf"}
    assert only(
        {
            "type": "and",
            "filters": [
                {"type": "gt", "key": "year", "value": 2020},
                {"type": "lt", "key": "year", "value": 2025},
            ],
        }
    ) == {"zephyr.pdf"}
    assert only(
        {
            "type": "or",
            "filters": [
                {"type": "eq", "key": "dept", "value": "construction"},
                {"type": "eq", "key": "dept", "value": "logistics"},
            ],
        }
    ) == {"계약서.pdf", "zephyr.pdf"}
    assert only({"type": "ne", "key": "dept", "value": "construction"}) == {"zephyr.pdf"}
    # typed as in OpenAI: true is not 1, 2027 is not "2027"
    sdk.vector_stores.files.update(
        file_id=ko, vector_store_id=store.id, attributes={"flag": True, "code": "2027"}
    )
    sdk.vector_stores.files.update(
        file_id=en, vector_store_id=store.id, attributes={"flag": 1, "code": 2027}
    )
    assert only({"type": "eq", "key": "flag", "value": True}) == {"계약서.pdf"}
    assert only({"type": "eq", "key": "flag", "value": 1}) == {"zephyr.pdf"}
    assert only({"type": "ne", "key": "flag", "value": True}) == {"zephyr.pdf"}
    assert only({"type": "eq", "key": "code", "value": 2027}) == {"zephyr.pdf"}
    assert only({"type": "gte", "key": "code", "value": 2000}) == {"zephyr.pdf"}
    assert only({"type": "gte", "key": "code", "value": "2000"}) == {"계약서.pdf"}
    with pytest.raises(openai.BadRequestError) as e:
        search(sdk, store.id, "x", filters={"type": "gt", "key": "flag", "value": True})
    assert e.value.body["param"] == "filters"
    with pytest.raises(openai.BadRequestError):
        search(sdk, store.id, "x", filters={"type": "and", "filters": []})


def test_uploads_are_checked_by_size_and_kept_whatever_they_are(sdk, library, tmp_path):
    """Any file may be uploaded (as at OpenAI: what ragserve cannot read fails its attach,
    below); an empty one, a large one or one from another web page may not."""
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(b"MZ\x90\x00 definitely not a pdf")
    kept = sdk.files.create(file=fake, purpose="assistants")
    assert kept.filename == "fake.pdf" and sdk.files.content(kept.id).content == fake.read_bytes()
    store = sdk.vector_stores.create(name="fake")
    attached = sdk.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=kept.id)
    assert attached.status == "failed" and attached.last_error.code == "invalid_file"
    assert "not a PDF" in attached.last_error.message, attached.last_error
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    with pytest.raises(openai.BadRequestError) as err:
        sdk.files.create(file=empty, purpose="assistants")
    assert err.value.body["param"] == "file" and "empty" in err.value.body["message"]
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"0" * (3 * 1024 * 1024))
    with pytest.raises(openai.APIStatusError) as err:
        sdk.files.create(file=big, purpose="assistants")
    assert err.value.status_code in (400, 413)
    with httpx.Client(base_url=library.url) as http:
        evil = http.post(
            "/v1/files",
            files={"file": ("x.pdf", b"%PDF-1.4 x", "application/pdf")},
            data={"purpose": "assistants"},
            headers={"Origin": "https://evil.example"},
        )
        assert evil.status_code == 403  # a web page's form cannot upload without a key


def test_uploaded_files_are_listed_served_and_deleted(sdk, pdfs):
    with open(pdfs["en"], "rb") as fh:
        created = sdk.files.create(file=fh, purpose="assistants")
    assert created.filename == "zephyr.pdf" and created.bytes == pdfs["en"].stat().st_size
    assert created.id in [f.id for f in sdk.files.list()]
    assert sdk.files.content(created.id).content == pdfs["en"].read_bytes()
    assert sdk.files.delete(created.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(created.id)


@pytest.fixture(scope="module")
def keyed_library(tmp_path_factory, index_dir, engine, retriever) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("keyed-data")
    settings = make_settings(index_dir, data_dir=data, api_keys=("k",))
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as live:
        yield live


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/files"),
        ("GET", "/v1/files"),
        ("DELETE", "/v1/files/file-x"),
        ("POST", "/v1/vector_stores"),
        ("GET", "/v1/vector_stores"),
        ("GET", "/v1/vector_stores/vs_default"),
        ("DELETE", "/v1/vector_stores/vs_x"),
        ("POST", "/v1/vector_stores/vs_default/files"),
        ("GET", "/v1/vector_stores/vs_default/files"),
        ("POST", "/v1/vector_stores/vs_default/file_batches"),
        ("POST", "/v1/vector_stores/vs_default/search"),
    ],
)
def test_with_keys_every_library_route_refuses_a_missing_key(keyed_library, method, path):
    with httpx.Client(base_url=keyed_library.url) as http:
        assert http.request(method, path, json={}).status_code == 401


def test_chat_filters_and_score_threshold_narrow_what_is_searched(sdk, pdfs):
    store = sdk.vector_stores.create(name="chat-filters")
    sdk.vector_stores.file_batches.upload_and_poll(
        vector_store_id=store.id, files=[pdfs["ko"], pdfs["en"]]
    )
    for f in sdk.vector_stores.files.list(store.id):
        name = sdk.files.retrieve(f.id).filename
        sdk.vector_stores.files.update(
            file_id=f.id, vector_store_id=store.id, attributes={"lang": name[:2]}
        )
    ask = [{"role": "user", "content": "What does the ZEPHYR-88 agreement cover?"}]
    only_ko = {"type": "eq", "key": "lang", "value": "계약"}
    resp = sdk.chat.completions.create(
        model="smollm2",
        messages=ask,
        max_tokens=5,
        extra_body={"rag": {"vector_store_ids": [store.id], "filters": only_ko}},
    )
    assert {s["document"] for s in resp.model_extra["sources"]} == {"계약서.pdf"}
    everything = search(sdk, store.id, "ZEPHYR-88 agreement")
    top = max(r.score for r in everything)
    strict = search(sdk, store.id, "ZEPHYR-88 agreement", ranking_options={"score_threshold": top})
    assert strict and all(r.score >= top for r in strict) and len(strict) < len(everything)


def test_an_upload_name_cannot_escape_the_data_directory(sdk, pdfs, library):
    with open(pdfs["en"], "rb") as fh:
        created = sdk.files.create(file=("../../../../tmp/escaped.pdf", fh), purpose="assistants")
    assert created.filename == "escaped.pdf"
    store = sdk.vector_stores.create(name="escape")
    done = sdk.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=created.id)
    assert done.status == "completed"
    assert {r.filename for r in search(sdk, store.id, "ZEPHYR-88")} == {"escaped.pdf"}
    data = library.app.state.settings.data
    blobs = [p.name for p in (data / "files").iterdir()]
    assert all(len(name) == 64 + 4 and name.endswith(".pdf") for name in blobs)  # sha256.pdf
    assert not Path("/tmp/escaped.pdf").exists()


# -- one library, by id (each on an index of its own: they write to the default store) ----
@pytest.fixture
def own(tmp_path, index_dir, engine, embedder) -> Iterator[tuple[LiveServer, openai.OpenAI]]:
    index = tmp_path / "index"
    shutil.copytree(index_dir, index)
    retriever = Retriever(index, embedder)
    settings = make_settings(index, data_dir=tmp_path / "data")
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as live:
        yield live, openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
    retriever.close()


def upload(sdk: openai.OpenAI, path: Path, name: str | None = None):
    with open(path, "rb") as fh:
        return sdk.files.create(file=(name or path.name, fh), purpose="assistants")


def test_an_upload_to_the_default_store_never_shadows_or_removes_a_corpus_document(
    own, tmp_path, embedder
):
    live, sdk = own
    retriever = live.app.state.retriever
    before = {d.path: d.sha256 for d in retriever.documents_all()}
    corpus_ids = {f.filename: f.id for f in sdk.files.list()}
    impostor = pdfgen.write_pdf(
        tmp_path / "up" / "falcon.pdf", [["Project Falcon upload: the budget is 9 billion won."]]
    )
    up = upload(sdk, impostor)
    done = sdk.vector_stores.files.create_and_poll(vector_store_id="vs_default", file_id=up.id)
    assert done.status == "completed", done.last_error
    found = {r.file_id: r for r in search(sdk, "vs_default", "budget of Project Falcon")}
    assert corpus_ids["falcon.pdf"] in found and up.id in found  # both, side by side
    assert "4.2 million" in found[corpus_ids["falcon.pdf"]].content[0].text
    assert found[up.id].filename == "falcon.pdf"
    now = {d.path: d.sha256 for d in retriever.documents_all()}
    assert {p: h for p, h in now.items() if p in before} == before  # the corpus untouched
    assert sorted(set(now) - set(before)) == ["uploads/falcon.pdf"]
    assert {f.id for f in sdk.files.list()} == {*corpus_ids.values(), up.id}  # each once
    assert sdk.files.content(up.id).content == impostor.read_bytes()
    # the CLI's `--prune` run over its corpus folder keeps the store's upload
    other = pdfgen.write_pdf(tmp_path / "more" / "heron.pdf", [["The Heron bridge is new."]])
    options = IngestOptions(index_dir=live.app.state.settings.retrieval.index_dir,
                            paths=[other.parent], prune=True, workers=1)  # fmt: skip
    run_ingest(options, embedder)
    retriever.refresh(force=True)
    assert "uploads/falcon.pdf" in {d.path for d in retriever.documents_all()}
    # deleting the upload removes it alone
    assert sdk.files.delete(up.id).deleted
    deadline = time.time() + 60
    while "uploads/falcon.pdf" in {d.path for d in retriever.documents_all()}:
        assert time.time() < deadline
        time.sleep(0.2)
        retriever.refresh(force=True)
    paths = {d.path for d in retriever.documents_all()}
    assert set(before) <= paths
    hits = search(sdk, "vs_default", "budget of Project Falcon")
    assert corpus_ids["falcon.pdf"] in {r.file_id for r in hits}


def test_two_uploads_of_the_same_bytes_are_two_files_with_their_own_names_and_attributes(own, pdfs):
    _, sdk = own
    first, second = upload(sdk, pdfs["en"], "first.pdf"), upload(sdk, pdfs["en"], "second.pdf")
    assert first.id != second.id
    assert (sdk.files.retrieve(first.id).filename, sdk.files.retrieve(second.id).filename) == (
        "first.pdf",
        "second.pdf",
    )
    store = sdk.vector_stores.create(name="twins")
    for f, dept in ((first, "sales"), (second, "legal")):
        done = sdk.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=f.id, attributes={"dept": dept}
        )
        assert done.status == "completed", done.last_error
    for f, dept in ((first, "sales"), (second, "legal")):
        hits = search(
            sdk, store.id, "ZEPHYR-88", filters={"type": "eq", "key": "dept", "value": dept}
        )
        assert {r.file_id for r in hits} == {f.id}
        assert {r.filename for r in hits} == {f.filename}
    assert sdk.files.delete(first.id).deleted
    assert sdk.files.content(second.id).content == pdfs["en"].read_bytes()  # the bytes stay
    assert sdk.files.retrieve(second.id).filename == "second.pdf"


def test_eight_stores_attached_at_once_ingest_within_the_limit(own, pdfs):
    live, sdk = own
    f = upload(sdk, pdfs["en"])
    stores = [sdk.vector_stores.create(name=f"s{n}").id for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        attach = sdk.vector_stores.files.create
        list(pool.map(lambda sid: attach(vector_store_id=sid, file_id=f.id), stores))
    runner = live.app.library.stores.runner
    most = 0
    deadline = time.time() + 300
    while not all(
        sdk.vector_stores.files.retrieve(vector_store_id=sid, file_id=f.id).status == "completed"
        for sid in stores
    ):
        most = max(most, len(extractors(os.getpid())))
        assert time.time() < deadline
        time.sleep(0.05)
    settings = live.app.state.settings
    assert runner.peak == settings.attach_concurrency == 1
    assert most <= settings.attach_workers  # extraction processes of the one running ingest
    for sid in stores:
        assert search(sdk, sid, "ZEPHYR-88 drill units")[0].file_id == f.id


def test_an_attach_racing_a_delete_gets_a_clear_answer(own, pdfs):
    live, sdk = own
    store = sdk.vector_stores.create(name="race")
    statuses = []
    with httpx.Client(base_url=live.url) as http:
        for _ in range(12):
            f = upload(sdk, pdfs["en"])
            with ThreadPoolExecutor(2) as pool:
                attach = pool.submit(
                    http.post, f"/v1/vector_stores/{store.id}/files", json={"file_id": f.id}
                )
                delete = pool.submit(http.delete, f"/v1/files/{f.id}")
                statuses += [attach.result().status_code, delete.result().status_code]
    assert set(statuses) <= {200, 400, 404, 409}, statuses
    deadline = time.time() + 60
    while sdk.vector_stores.retrieve(store.id).file_counts.in_progress:
        assert time.time() < deadline
        time.sleep(0.2)
    left = {f.id for f in sdk.vector_stores.files.list(vector_store_id=store.id)}
    assert left <= {f.id for f in sdk.files.list()}  # no record of a deleted file remains


def test_same_named_files_in_two_stores_keep_their_own_citation_links(sdk, tmp_path):
    """Two teams each keep a `report.pdf`: a chat over both stores cites each by its own id."""
    ids = {}
    for team, text in (
        ("north", "The north depot holds 31 cranes."),
        ("south", "The south depot holds 57 cranes."),
    ):
        pdf = pdfgen.write_pdf(tmp_path / team / "report.pdf", [[f"Depot report {team}"], [text]])
        store = sdk.vector_stores.create(name=f"depots-{team}")
        with open(pdf, "rb") as fh:
            done = sdk.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=fh)
        assert done.status == "completed", done.last_error
        ids[store.id] = done.id
    resp = sdk.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "How many cranes does each depot hold?"}],
        max_tokens=10,
        extra_body={"rag": {"vector_store_ids": list(ids)}},
    )
    sources = [s for s in resp.model_extra["sources"] if s["document"].endswith("report.pdf")]
    assert {s["file_id"] for s in sources} == set(ids.values())
    assert len({s["url"] for s in sources}) == 2
    for s in sources:  # each link opens the PDF it names
        assert s["file_id"] in s["url"]


def test_a_scanned_upload_is_read_by_ocr_and_its_page_is_cited(sdk, tmp_path, tessdata):
    """A scan's image-only pages are OCR'd during the attach (real Tesseract), the file's
    status counts them, and search and chat find the scanned text and cite its page."""
    text_page = ("text", ["A cover page with a real text layer: the Heron files."])
    scan = pdfgen.scanned_pdf(
        tmp_path / "스캔-보고서.pdf", [text_page, pdfgen.SCAN_KO, pdfgen.SCAN_EN]
    )
    store = sdk.vector_stores.create(name="scans")
    with open(scan, "rb") as fh:
        done = sdk.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=fh)
    assert done.status == "completed", done.last_error
    report = done.model_extra["ingest"]
    assert report["pages"] == 3 and report["ocr_pages"] == 2 and report["chunks"] >= 1, report
    assert "unread_pages" not in report and "note" not in report  # nothing left unread
    listed = sdk.vector_stores.files.list(vector_store_id=store.id).data
    assert listed[0].model_extra["ingest"] == report  # the same in the list, kept
    found = search(sdk, store.id, "KR-2024-0173 계약금액")
    assert found and found[0].filename == "스캔-보고서.pdf"
    assert "0173" in found[0].content[0].text
    # the passage says OCR read it, and how sure Tesseract was
    assert found[0].model_extra["origin"] == "ocr", found[0].model_extra
    assert 50 < found[0].model_extra["ocr_confidence"] <= 100, found[0].model_extra
    sources = ask_store(sdk, store.id, "What is the budget of Project Heron?", 8)
    assert sources[0]["document"] == "스캔-보고서.pdf", sources
    assert sources[0]["origin"] == "ocr" and 50 < sources[0]["ocr_confidence"] <= 100
    # and the Responses API's file_search results say so in their attributes
    r = sdk.responses.create(
        model="smollm2",
        input="KR-2024-0173 계약금액은?",
        tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
        include=["file_search_call.results"],
        max_output_tokens=8,
    )
    top = r.output[0].results[0]
    assert top.filename == "스캔-보고서.pdf" and top.attributes["ragserve.origin"] == "ocr"
    assert 50 < top.attributes["ragserve.ocr_confidence"] <= 100, top.attributes
    # the short scan is one chunk: it cites the pages it spans, the link opens its first
    first = sources[0]
    assert first["page"] <= 3 <= first["page_end"], first
    assert first["url"].endswith(f"#page={first['page']}")
    assert httpx.get(first["url"]).content.startswith(b"%PDF-")
