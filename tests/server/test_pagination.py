"""OpenAI's cursor pagination on the list routes, through the official SDK's auto-paging."""

from __future__ import annotations

import openai
import pdfgen
import pytest

from ragserve.server.pages import Page, paginate


def test_vector_stores_page_through_more_than_a_hundred(sdk):
    made = [sdk.vector_stores.create(name=f"s{i:03d}").id for i in range(105)]
    first = sdk.vector_stores.list(limit=20)
    assert len(first.data) == 20 and first.has_more
    assert first.first_id == first.data[0].id and first.last_id == first.data[-1].id
    seen = [s.id for s in sdk.vector_stores.list(limit=20)]  # the SDK follows `after`
    assert len(seen) == len(set(seen)) and set(made) <= set(seen)
    stamps = [s.created_at for s in sdk.vector_stores.list(limit=100)]
    assert stamps == sorted(stamps, reverse=True)  # newest first by default
    oldest = [s.id for s in sdk.vector_stores.list(limit=100, order="asc")]
    assert oldest == list(reversed(seen))[: len(oldest)]
    # `before`: the page just in front of a cursor
    page = sdk.vector_stores.list(limit=5, order="asc", after=oldest[10])
    assert [s.id for s in page.data] == oldest[11:16]
    back = sdk.vector_stores.list(limit=5, order="asc", before=oldest[11])
    assert [s.id for s in back.data] == oldest[6:11] and back.has_more
    gone = sdk.vector_stores.list(after="vs_nothing")  # a cursor naming nothing: the end
    assert gone.data == [] and not gone.has_more
    with pytest.raises(openai.BadRequestError):
        sdk.vector_stores.list(limit=101)


def test_files_page_through_more_than_a_hundred(sdk, tmp_path):
    pdf = pdfgen.write_pdf(tmp_path / "memo.pdf", [["A short memo."]])
    uploaded = set()
    for i in range(103):
        with open(pdf, "rb") as fh:
            uploaded.add(sdk.files.create(file=(f"memo-{i}.pdf", fh), purpose="assistants").id)
    everything = sdk.files.list()  # OpenAI's default page of files holds them all
    assert uploaded <= {f.id for f in everything.data} and not everything.has_more
    paged = [f.id for f in sdk.files.list(limit=25)]
    assert len(paged) == len(set(paged)) == len(everything.data)
    assert uploaded <= set(paged)
    assert sdk.files.list(purpose="batch").data == []


def test_store_files_page_and_filter_by_status(sdk, tmp_path):
    store = sdk.vector_stores.create(name="paged")
    ids = []
    for i in range(7):
        pdf = pdfgen.write_pdf(tmp_path / f"note{i}.pdf", [[f"Note number {i} about KR-{i:04d}."]])
        with open(pdf, "rb") as fh:
            fid = sdk.files.create(file=fh, purpose="assistants").id
        ids.append(fid)
    batch = sdk.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=ids)
    assert batch.file_counts.completed == 7
    seen = [f.id for f in sdk.vector_stores.files.list(store.id, limit=3)]
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    done = sdk.vector_stores.files.list(store.id, filter="completed", limit=100)
    assert len(done.data) == 7
    assert sdk.vector_stores.files.list(store.id, filter="failed").data == []


class Item:
    def __init__(self, id: str, created_at: int) -> None:
        self.id, self.created_at = id, created_at


def test_paginate_orders_ties_by_id_and_bounds_windows():
    items = [Item(f"x{i}", i // 3) for i in range(10)]  # three share each second
    asc = paginate(items, Page(limit=4, order="asc"))
    assert [x.id for x in asc["data"]] == ["x0", "x1", "x2", "x3"] and asc["has_more"]
    rest = paginate(items, Page(limit=10, order="asc", after="x3"))
    assert [x.id for x in rest["data"]] == [f"x{i}" for i in range(4, 10)]
    assert not rest["has_more"] and rest["last_id"] == "x9"
    between = paginate(items, Page(limit=10, order="desc", after="x8", before="x4"))
    assert [x.id for x in between["data"]] == ["x7", "x6", "x5"]
    empty = paginate([], Page())
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None}
