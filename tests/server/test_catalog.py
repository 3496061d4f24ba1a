"""The library's records behind one interface: the same contract for the SQLite catalog in
the data directory and the PostgreSQL one replicas share (a real PostgreSQL, pgserver);
the stored responses likewise."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from ragserve.server.catalog import (
    INTERRUPTED,
    MAX_ATTEMPTS,
    Catalog,
    LocalCatalog,
    open_catalog,
)
from ragserve.server.responses.protocol import ResponseObject
from ragserve.server.responses.store import StoredResponses, open_response_store

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 9000  # a little over 2 MiB: three parts


@pytest.fixture(params=["local", "postgres"])
def where(request, tmp_path) -> tuple[str | None, Path]:
    if request.param == "local":
        return None, tmp_path / "data"
    return request.getfixturevalue("postgres_url"), tmp_path / "data"


@pytest.fixture
def catalog(where) -> Catalog:
    made = open_catalog(*where)
    yield made
    made.close()


def upload(catalog: Catalog, data: bytes = PDF, name: str = "a.pdf", owner=None):
    return catalog.add_file(iter([data[i : i + 65536] for i in range(0, len(data), 65536)]),
                            name, "assistants", owner)  # fmt: skip


def test_every_upload_is_its_own_file_and_the_bytes_are_kept_once(catalog):
    first = upload(catalog, name="a.pdf", owner="alice")
    second = upload(catalog, name="b.pdf", owner="bob")
    assert first.id != second.id and first.id.startswith("file-") and len(first.id) == 37
    assert first.sha256 == second.sha256 == hashlib.sha256(PDF).hexdigest()
    assert (catalog.file(first.id).filename, catalog.file(second.id).filename) == ("a.pdf", "b.pdf")
    assert {f.id for f in catalog.files()} == {first.id, second.id}
    assert catalog.owners() == {first.id: {"alice"}, second.id: {"bob"}}
    assert catalog.blob_path(first.sha256).read_bytes() == PDF
    assert catalog.delete_file(first.id)
    assert catalog.blob_path(second.sha256).read_bytes() == PDF  # still shared by the second
    assert catalog.delete_file(second.id) and not catalog.delete_file(second.id)
    assert catalog.blob_path(second.sha256) is None and catalog.file(second.id) is None


def test_a_failed_upload_leaves_nothing(catalog):
    def broken():
        yield PDF[:100_000]
        raise OSError("the client went away")

    with pytest.raises(OSError):
        catalog.add_file(broken(), "x.pdf", "assistants")
    assert catalog.files() == []


def test_stores_and_their_files(catalog):
    catalog.ensure_store("vs_default", "default")
    catalog.ensure_store("vs_default", "default")  # two replicas starting: once
    catalog.add_store("vs_a", "contracts", {"dept": "legal"}, owner="alice")
    assert {s.id for s in catalog.stores()} == {"vs_default", "vs_a"}
    assert catalog.store("vs_a").owner == "alice" and catalog.store("vs_a").metadata == {
        "dept": "legal"
    }
    catalog.update_store("vs_a", "contracts-2", {"dept": "ops"})
    renamed = catalog.store("vs_a")
    assert (renamed.name, renamed.metadata) == ("contracts-2", {"dept": "ops"})
    f = upload(catalog)
    catalog.attach("vs_a", f.id, {"year": 2027, "flag": True}, "a.pdf")
    got = catalog.store_file("vs_a", f.id)
    assert got.status == "in_progress" and got.document == "a.pdf"
    assert got.attributes == {"year": 2027, "flag": True}
    assert catalog.pending_stores() == ["vs_a"]
    catalog.set_status("vs_a", f.id, "failed", {"code": "invalid_file", "message": "bad"})
    assert catalog.store_file("vs_a", f.id).last_error == {"code": "invalid_file", "message": "bad"}
    # what the ingest found is kept; a later status without a report keeps it; a new
    # attach of the file starts without one
    catalog.set_status("vs_a", f.id, "completed", report={"pages": 3, "ocr_pages": 2})
    catalog.set_status("vs_a", f.id, "completed")
    done = catalog.store_file("vs_a", f.id)
    assert done.report == {"pages": 3, "ocr_pages": 2} and done.last_error is None
    assert catalog.store_files("vs_a")[0].report == {"pages": 3, "ocr_pages": 2}
    catalog.attach("vs_a", f.id, {"year": 2027, "flag": True}, "a.pdf")
    assert catalog.store_file("vs_a", f.id).report is None
    catalog.set_attributes("vs_a", f.id, {"year": 2028})
    assert catalog.store_files("vs_a")[0].attributes == {"year": 2028}
    assert catalog.stores_of(f.id) == ["vs_a"] and catalog.file_stores() == {f.id: ["vs_a"]}
    batch = catalog.add_batch("vsfb_1", "vs_a", [f.id])
    assert (
        catalog.batch("vs_a", "vsfb_1") == batch and catalog.batch("vs_default", "vsfb_1") is None
    )
    assert catalog.detach("vs_a", f.id) and not catalog.detach("vs_a", f.id)
    catalog.attach("vs_a", f.id, {}, "a.pdf")
    catalog.delete_store("vs_a")
    assert catalog.store("vs_a") is None and catalog.store_files("vs_a") == []
    assert catalog.batch("vs_a", "vsfb_1") is None
    assert catalog.pending_stores() == []


def test_an_attach_interrupted_too_often_fails_with_a_reason(catalog):
    catalog.add_store("vs_a", "a", {})
    f = upload(catalog)
    catalog.attach("vs_a", f.id, {}, "a.pdf")
    for _ in range(MAX_ATTEMPTS):  # each: an ingest began, then its process died
        assert [r.file_id for r in catalog.begin_sync("vs_a")] == [f.id]
    assert catalog.begin_sync("vs_a") == []
    record = catalog.store_file("vs_a", f.id)
    assert record.status == "failed" and record.last_error == INTERRUPTED
    catalog.attach("vs_a", f.id, {}, "a.pdf")  # attached again: a fresh start
    assert [r.file_id for r in catalog.begin_sync("vs_a")] == [f.id]


def test_the_citation_secret_is_made_once_and_shared(where):
    first, second = open_catalog(*where), open_catalog(*where)
    try:
        secrets = []
        threads = [threading.Thread(target=lambda c=c: secrets.append(c.secret()))
                   for c in (first, second, first)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(secrets)) == 1 and len(secrets[0]) >= 32
    finally:
        first.close()
        second.close()


def test_two_processes_see_each_others_records(where):
    """Two catalogs on the same place (replicas, or a restart) agree."""
    a, b = open_catalog(*where), open_catalog(*where)
    try:
        f = upload(a, name="shared.pdf")
        assert b.file(f.id).filename == "shared.pdf"
        a.add_store("vs_x", "x", {})
        b.attach("vs_x", f.id, {}, "shared.pdf")
        assert a.store_file("vs_x", f.id).status == "in_progress"
        assert b.delete_file(f.id) and a.file(f.id) is None and a.store_files("vs_x") == []
    finally:
        a.close()
        b.close()


def test_the_local_catalog_keeps_blobs_by_hash_in_the_data_directory(tmp_path):
    catalog = LocalCatalog(tmp_path)
    f = upload(catalog, name="../../escape.pdf")
    assert [p.name for p in (tmp_path / "files").iterdir()] == [f.sha256 + ".pdf"]
    catalog.close()


def response(rid: str, created: int) -> ResponseObject:
    return ResponseObject(id=rid, created_at=created, model="m", output=[], status="completed")


@pytest.fixture
def responses(where) -> StoredResponses:
    made = open_response_store(where[0], where[1], retention_s=3600)
    yield made
    made.close()


def test_stored_responses_with_their_items_and_retention(responses):
    now = int(time.time())
    items = [{"id": f"msg_{i}", "type": "message", "n": i} for i in range(5)]
    responses.put(response("resp_1", now), items, [{"role": "user", "content": "hi"}], "alice")
    got = responses.get("resp_1")
    assert got.response.id == "resp_1" and got.history[0]["content"] == "hi"
    assert got.owner == "alice"
    page, more = responses.items("resp_1", None, 2, "asc")
    assert [i["n"] for i in page] == [0, 1] and more
    page, more = responses.items("resp_1", "msg_1", 10, "asc")
    assert [i["n"] for i in page] == [2, 3, 4] and not more
    page, _ = responses.items("resp_1", "msg_3", 10, "desc")
    assert [i["n"] for i in page] == [2, 1, 0]
    responses.put(response("resp_old", now - 7200), [], [])
    assert responses.get("resp_old") is None  # past the retention
    assert responses.purge() == 1
    assert responses.delete("resp_1") and not responses.delete("resp_1")
    assert responses.get("resp_1") is None and responses.items("resp_1", None, 5, "asc")[0] == []
