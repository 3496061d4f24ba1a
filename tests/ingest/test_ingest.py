"""Ingest against the real pypdf, pypdfium2, sentence-transformers, hnswlib and SQLite."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pdfgen
import pytest
from helpers import ROOT, ragserve

from ragserve.errors import EmbeddingModelMismatch
from ragserve.ingest.extract import TextLimits, _Pdfium, extract_pdf
from ragserve.ingest.pipeline import IngestOptions, run_ingest
from ragserve.retrieval.index import current_version, ingest_lock
from ragserve.retrieval.search import Filters, Retriever

EN_PAGES = [
    ["Project Falcon quarterly report", "This report covers the first quarter of the year."],
    ["The project manager is Alice Smith.", "The budget of Project Falcon is 4.2 million dollars."],
    ["Appendix: the steering committee meets every Tuesday in Daejeon."],
]
KO_PAGES = [
    ["서울시 도로 보수 사업 보고서", "계약번호 KR-2024-0173 의 계약금액은 5억원입니다."],
    ["담당자는 김민수 과장이며, 준공 예정일은 2025년 3월 31일입니다."],
]


def ingest(index: Path, *paths: Path, embedder, **kw):
    options = IngestOptions(index_dir=index, paths=list(paths), workers=2, timeout_s=30, **kw)
    return run_ingest(options, embedder)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    pdfgen.write_pdf(root / "en" / "falcon.pdf", EN_PAGES)
    pdfgen.write_pdf(root / "ko" / "도로보수.pdf", KO_PAGES)
    return root


def test_korean_and_english_text_survives_extraction(corpus: Path):
    ko = extract_pdf(corpus / "ko" / "도로보수.pdf")
    assert ko.status == "ok"
    assert (
        ko.pages[0]
        == "서울시 도로 보수 사업 보고서\n계약번호 KR-2024-0173 의 계약금액은 5억원입니다."
    )
    assert "김민수 과장" in ko.pages[1]
    en = extract_pdf(corpus / "en" / "falcon.pdf")
    assert len(en.pages) == 3 and "Alice Smith" in en.pages[1]


def test_cid_font_mojibake_is_reextracted_with_pdfium(tmp_path: Path):
    text = "서울시 도로 보수 공사의 발주처는 국토교통부입니다."
    result = extract_pdf(pdfgen.cid_korean_pdf(tmp_path / "cid.pdf", text))
    assert result.status == "ok"
    assert result.pages == [text]
    assert result.reextracted_pages == 1


def test_ingest_and_search_pages_and_documents(tmp_path: Path, corpus: Path, embedder):
    index = tmp_path / "index"
    summary = ingest(index, corpus, embedder=embedder)
    assert (summary.ingested, summary.skipped, summary.failed) == (2, 0, 0)
    assert summary.pages == 5 and summary.published
    retriever = Retriever(index, embedder)
    hits = retriever.search("Who is the project manager?", top_k=1)
    assert hits[0].document == "en/falcon.pdf" and "Alice Smith" in hits[0].text
    hits = retriever.search("KR-2024-0173 계약금액", top_k=1, mode="keyword")
    assert hits[0].document == "ko/도로보수.pdf" and hits[0].page == 1
    hits = retriever.search("김민수", top_k=1, mode="keyword")
    assert hits[0].document == "ko/도로보수.pdf" and hits[0].page <= 2 <= hits[0].page_end
    only_en = retriever.search("계약금액", top_k=5, filters=Filters(documents=["en/*"]))
    assert only_en and all(h.document == "en/falcon.pdf" for h in only_en)
    assert retriever.search("계약금액", filters=Filters(documents=["nope.pdf"])) == []


def test_bad_and_hostile_files_are_skipped_with_reasons(tmp_path: Path, corpus: Path, embedder):
    bad = corpus / "bad"
    bad.mkdir()
    (bad / "empty.pdf").write_bytes(b"")
    (bad / "notes.pdf").write_text("just text, not a PDF")
    pdfgen.truncated_pdf(corpus / "en" / "falcon.pdf", bad / "truncated.pdf")
    pdfgen.write_pdf(bad / "locked.pdf", [["secret"]], password="hunter2")
    pdfgen.write_pdf(
        bad / "open-encrypted.pdf", [["readable with the empty password"]], password=""
    )
    pdfgen.image_only_pdf(bad / "scan.pdf")
    pdfgen.decompression_bomb_pdf(bad / "bomb.pdf", megabytes=256)
    pdfgen.page_tree_loop_pdf(bad / "loop.pdf")
    pdfgen.deeply_nested_pdf(bad / "nested.pdf")
    (corpus / "outside.pdf").symlink_to("/etc/hostname")
    index = tmp_path / "index"
    summary = ingest(index, corpus, embedder=embedder, root=corpus)
    reasons = {p.path: p.reason for p in summary.problems}
    assert "empty file" in reasons["bad/empty.pdf"]
    assert "not a PDF" in reasons["bad/notes.pdf"]
    assert "bad/truncated.pdf" in reasons
    assert "password" in reasons["bad/locked.pdf"]
    assert "no text layer" in reasons["bad/scan.pdf"]
    assert "decompression" in reasons["bad/bomb.pdf"]
    assert "page tree" in reasons["bad/loop.pdf"]
    assert "outside the corpus root" in reasons["outside.pdf"]
    # the good files (and the PDF encrypted with an empty password) still made it in
    docs = {d.path for d in Retriever(index, embedder).version.documents()}
    assert {"en/falcon.pdf", "ko/도로보수.pdf", "bad/open-encrypted.pdf"} <= docs
    # the nested file is either read or skipped with a reason, never a crash
    assert "bad/nested.pdf" in docs or "bad/nested.pdf" in reasons
    # an unchanged bad file is not parsed again, and is still reported
    again = ingest(index, corpus, embedder=embedder, root=corpus)
    assert not again.published and again.skipped == summary.skipped


def test_incremental_add_change_remove(tmp_path: Path, corpus: Path, embedder):
    index = tmp_path / "index"
    first = ingest(index, corpus, embedder=embedder)
    assert first.ingested == 2
    again = ingest(index, corpus, embedder=embedder)
    assert (again.ingested, again.unchanged, again.published) == (0, 2, False)
    assert again.version == first.version

    pdfgen.write_pdf(corpus / "en" / "new.pdf", [["Project Orchid is led by Bob Jones."]])
    falcon = corpus / "en" / "falcon.pdf"
    pdfgen.write_pdf(falcon, [["Project Falcon was cancelled in March."]])
    os.utime(falcon, ns=(time.time_ns(), time.time_ns() + 10**9))
    (corpus / "ko" / "도로보수.pdf").unlink()
    touched = ingest(index, corpus, embedder=embedder)
    assert (touched.ingested, touched.unchanged, touched.removed) == (2, 0, 0)
    retriever = Retriever(index, embedder)
    docs = {d.path for d in retriever.version.documents()}
    assert docs == {"en/falcon.pdf", "en/new.pdf", "ko/도로보수.pdf"}  # no --prune yet
    texts = [h.text for h in retriever.search("Falcon", top_k=10, mode="keyword")]
    assert any("cancelled" in t for t in texts) and not any("Alice" in t for t in texts)

    pruned = ingest(index, corpus, embedder=embedder, prune=True)
    assert pruned.removed == 1
    retriever.refresh(force=True)
    assert {d.path for d in retriever.version.documents()} == {"en/falcon.pdf", "en/new.pdf"}
    assert retriever.search("김민수", mode="keyword") == []


def test_same_content_new_mtime_is_unchanged(tmp_path: Path, corpus: Path, embedder):
    index = tmp_path / "index"
    ingest(index, corpus, embedder=embedder)
    os.utime(corpus / "en" / "falcon.pdf", ns=(time.time_ns(), time.time_ns() + 5 * 10**9))
    again = ingest(index, corpus, embedder=embedder)
    assert (again.ingested, again.unchanged) == (0, 2)


def test_retriever_picks_up_new_version_and_reads_during_ingest(tmp_path, corpus, embedder):
    index = tmp_path / "index"
    ingest(index, corpus, embedder=embedder)
    retriever = Retriever(index, embedder, check_interval_s=0)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                assert retriever.search("Alice Smith budget", top_k=2)
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    pdfgen.write_pdf(corpus / "en" / "orchid.pdf", [["Project Orchid is led by Bob Jones."]])
    ingest(index, corpus, embedder=embedder)
    stop.set()
    thread.join()
    assert not errors
    hits = retriever.search("Who leads Project Orchid?", top_k=1)
    assert hits[0].document == "en/orchid.pdf"


def test_wrong_embedding_model_is_refused(tmp_path: Path, corpus: Path, embedder):
    index = tmp_path / "index"
    ingest(index, corpus, embedder=embedder)

    class OtherEmbedder:
        model_id = "multilingual-e5-small"
        dim = 384

    with pytest.raises(EmbeddingModelMismatch) as err:
        Retriever(index, OtherEmbedder())  # type: ignore[arg-type]
    assert "all-MiniLM-L6-v2" in str(err.value) and "multilingual-e5-small" in str(err.value)
    with pytest.raises(EmbeddingModelMismatch):
        ingest(index, corpus, embedder=OtherEmbedder())
    out = ragserve(
        "search", "budget", "--index", str(index), "--embed-model", "intfloat/multilingual-e5-small"
    )
    assert out.returncode == 1
    assert "all-MiniLM-L6-v2" in out.stderr and "multilingual-e5-small" in out.stderr


def test_second_ingest_is_refused_while_one_runs(tmp_path: Path, corpus: Path):
    index = tmp_path / "index"
    with ingest_lock(index):
        out = ragserve("ingest", str(corpus), "--index", str(index))
    assert out.returncode == 3
    assert "another ingest is running" in out.stderr


def test_killed_ingest_leaves_previous_index_usable(tmp_path: Path, corpus: Path, embedder):
    index = tmp_path / "index"
    ingest(index, corpus, embedder=embedder)
    before = current_version(index)
    for i in range(30):
        pdfgen.write_pdf(corpus / "more" / f"doc{i}.pdf", [[f"Filler document number {i}."] * 40])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ragserve.cli",
            "ingest",
            str(corpus),
            "--index",
            str(index),
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list((index / "versions").glob("*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert current_version(index) == before
    retriever = Retriever(index, embedder)
    assert retriever.search("Who is the project manager?", top_k=1)[0].document == "en/falcon.pdf"
    # the next ingest cleans up after the killed one and completes
    summary = ingest(index, corpus, embedder=embedder)
    assert summary.ingested == 30 and not list((index / "versions").glob("*.tmp"))


def test_a_text_bomb_stops_at_the_page_limit_not_after_its_text(tmp_path: Path):
    # 12 MB of text in 35 kB: pypdf alone reads all of it (seconds), then the chunker and
    # the embedder would take minutes; the count stops it at the limit
    bomb = pdfgen.text_bomb_pdf(tmp_path / "bomb.pdf", megabytes=12)
    assert bomb.stat().st_size < 100_000
    result = extract_pdf(bomb)
    assert result.status == "skipped" and not result.pages
    assert "page 1 holds" in result.reason and "--max-page-chars" in result.reason
    assert "100,000" in result.reason
    # the limits are settings: a smaller one refuses a smaller page
    limits = TextLimits(page_chars=5_000)
    small = pdfgen.text_bomb_pdf(tmp_path / "small.pdf", megabytes=0.02)
    assert extract_pdf(small).status == "ok"  # 20k characters: under the default
    assert "--max-page-chars" in extract_pdf(small, limits).reason


def test_the_pdfium_path_counts_against_the_limits_too(tmp_path: Path, monkeypatch):
    small = pdfgen.text_bomb_pdf(tmp_path / "small.pdf", megabytes=0.02)

    def unreadable(*_a, **_kw):
        raise ValueError("pypdf cannot read this one")

    monkeypatch.setattr("pypdf.PdfReader", unreadable)
    opened = _Pdfium(small)
    assert len(opened.doc()) == 1  # pdfium reads it
    opened.close()
    assert extract_pdf(small).status == "ok"
    refused = extract_pdf(small, TextLimits(page_chars=5_000))
    assert refused.status == "skipped" and "--max-page-chars" in refused.reason


def test_a_document_over_its_limit_is_skipped_saying_so(tmp_path: Path):
    # 40 pages of 20k characters: each page is fine, the document is not
    many = pdfgen.text_bomb_pdf(tmp_path / "many.pdf", megabytes=0.02, pages=40)
    assert extract_pdf(many).status == "ok"
    result = extract_pdf(many, TextLimits(document_chars=500_000))
    assert result.status == "skipped" and "--max-document-chars" in result.reason
    assert "by page 25" in result.reason  # 25 x 20,000 > 500,000: it stopped there


def test_the_cli_text_limits_skip_a_file_and_ingest_the_rest(tmp_path: Path, corpus: Path):
    pdfgen.text_bomb_pdf(corpus / "bomb.pdf", megabytes=0.05)  # 50k characters, one page
    index = tmp_path / "index"
    out = ragserve(
        "ingest", str(corpus), "--index", str(index), "--json", "--max-page-chars", "20000"
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["ingested"] == 2 and summary["skipped"] == 1
    (problem,) = summary["problems"]
    assert problem["path"] == "bomb.pdf" and "over the limit of 20,000" in problem["reason"]
    bad = ragserve("ingest", str(corpus), "--index", str(index), "--max-page-chars", "10")
    assert bad.returncode == 2 and "--max-page-chars" in bad.stderr


def test_cli_ingest_json_and_search(tmp_path: Path, corpus: Path):
    index = tmp_path / "index"
    out = ragserve("ingest", str(corpus), "--index", str(index), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["ingested"] == 2 and summary["published"]
    out = ragserve("search", "담당자 김민수", "-k", "1", "--json", "--index", str(index))
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert hits[0]["document"] == "ko/도로보수.pdf" and hits[0]["page_end"] == 2
    out = ragserve("search", "Falcon budget", "--index", str(index))
    assert "en/falcon.pdf" in out.stdout
    missing = ragserve("ingest", str(tmp_path / "nope"), "--index", str(index))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    no_index = ragserve("search", "x", "--index", str(tmp_path / "empty"))
    assert no_index.returncode == 1 and "ragserve ingest" in no_index.stderr


SAMPLES = ROOT.parent / "shared" / "pdf-samples"


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/pdf-samples is not present")
def test_real_world_samples_ingest_or_skip_with_reason(tmp_path: Path, embedder):
    corpus = tmp_path / "samples"
    shutil.copytree(SAMPLES, corpus)
    pdfs = {p.relative_to(corpus).as_posix() for p in corpus.rglob("*.pdf")}
    summary = ingest(tmp_path / "index", corpus, embedder=embedder, root=corpus)
    assert summary.failed == 0 or all(p.reason for p in summary.problems)
    problems = {p.path for p in summary.problems}
    docs = {d.path for d in Retriever(tmp_path / "index", embedder).version.documents()}
    assert {d for d in docs | problems if d.endswith(".pdf")} == pdfs  # (and its README.md)
    assert all(p.reason for p in summary.problems)
    assert summary.ingested >= len(pdfs) // 2


@pytest.mark.parametrize("algorithm", ["AES-128", "AES-256"])
def test_aes_encrypted_pdfs_open_without_a_password_and_locked_ones_are_skipped(
    tmp_path: Path, algorithm: str
):
    """Owner-password-only PDFs (no copying/printing) are common in offices: pypdf needs
    `cryptography` for AES, which the install must bring."""
    from pypdf import PdfReader, PdfWriter

    plain = pdfgen.write_pdf(tmp_path / "plain.pdf", [["The Orchid plant opens in March."]])
    for name, user in (("open.pdf", ""), ("locked.pdf", "hunter2")):
        writer = PdfWriter(clone_from=PdfReader(plain))
        writer.encrypt(user_password=user, owner_password="owner-only", algorithm=algorithm)
        writer.write(tmp_path / name)
    opened = extract_pdf(str(tmp_path / "open.pdf"))
    assert opened.status == "ok", opened.reason
    assert "Orchid" in "".join(opened.pages)
    locked = extract_pdf(str(tmp_path / "locked.pdf"))
    assert locked.status != "ok" and "encrypted with a password" in locked.reason


def test_a_file_name_that_is_not_utf8_is_skipped_and_the_rest_ingested(tmp_path: Path, embedder):
    corpus = tmp_path / "corpus"
    pdfgen.write_pdf(corpus / "good.pdf", [["Project Falcon has a budget of 4.2 million."]])
    raw = os.fsencode(corpus) + b"/bad-\xff\xfe.pdf"
    shutil.copy(corpus / "good.pdf", raw)
    summary = ingest(tmp_path / "index", corpus, embedder=embedder, root=corpus)
    assert summary.published
    reasons = {p.path: p.reason for p in summary.problems}
    assert any("not valid UTF-8" in r for r in reasons.values()), reasons
    docs = {d.path for d in Retriever(tmp_path / "index", embedder).version.documents()}
    assert docs == {"good.pdf"}


def test_a_replaced_index_version_is_closed_when_its_last_search_ends(tmp_path: Path, embedder):
    corpus = tmp_path / "corpus"
    pdfgen.write_pdf(corpus / "a.pdf", [["Project Falcon has a budget of 4.2 million."]])
    index = tmp_path / "index"
    ingest(index, corpus, embedder=embedder, root=corpus)
    retriever = Retriever(index, embedder, check_interval_s=0)
    old = retriever.version.acquire()  # a search still running on the old version
    pdfgen.write_pdf(corpus / "b.pdf", [["Project Orchid opens in March."]])
    ingest(index, corpus, embedder=embedder, root=corpus)
    assert retriever.search("Orchid", top_k=1)[0].document == "b.pdf"
    assert retriever.version is not old
    assert old.store.chunks([1]) is not None  # still usable while the search runs
    old.release()
    with pytest.raises(sqlite3.ProgrammingError):  # closed now: its file handle is gone
        old.store.chunks([1])
