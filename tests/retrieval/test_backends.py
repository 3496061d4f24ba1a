"""The backend contract: local files and PostgreSQL (a real server, pgvector, pg_trgm)
behave the same for the search and the ingest (retrieval/backend.py)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pdfgen
import psycopg
import pytest
from helpers import ROOT, ragserve

from ragserve.errors import EmbeddingModelMismatch, IngestLocked, StoreUnavailable
from ragserve.ingest.pipeline import IngestOptions, run_ingest
from ragserve.retrieval.backend import open_backend
from ragserve.retrieval.location import redact
from ragserve.retrieval.postgres import MIGRATIONS, glob_regex, migrate
from ragserve.retrieval.search import Filters, Retriever, merge_places
from ragserve.retrieval.store import Chunk, ChunkStore, Document


@pytest.fixture(params=["local", "postgres"])
def location(request, tmp_path) -> Path | str:
    if request.param == "local":
        return tmp_path / "index"
    return request.getfixturevalue("postgres_url")


def ingest(location, corpus: Path, embedder, **kw):
    return run_ingest(
        IngestOptions(index_dir=location, paths=[corpus], root=corpus, workers=1, **kw), embedder
    )


def new_writer(backend, embedder):
    """The next version's writer, with the ingest's default chunking."""
    return backend.writer(
        embedding_model=embedder.model_id,
        dim_of=lambda: embedder.dim,
        chunk_tokens=200,
        chunk_overlap=40,
    )


def write_corpus(corpus: Path) -> None:
    pdfgen.write_pdf(
        corpus / "contracts" / "falcon.pdf",
        [
            [
                "Project Falcon has a budget of 4.2 million euros.",
                "Contract KR-2024-0917 governs it.",
            ]
        ],
    )
    pdfgen.write_pdf(corpus / "orchid.pdf", [["Project Orchid opens its first office in March."]])
    pdfgen.write_pdf(
        corpus / "korean.pdf", [["계약금액은 삼억 원이며 납품기한은 2025년 3월 31일이다."]]
    )


def test_search_modes_filters_and_phrases(location, tmp_path, embedder):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    summary = ingest(location, corpus, embedder)
    assert summary.published and summary.ingested == 3
    retriever = Retriever(location, embedder)
    try:
        for mode in ("hybrid", "dense", "keyword"):
            assert retriever.search("Falcon budget", top_k=1, mode=mode)[0].document == (
                "contracts/falcon.pdf"
            ), mode
        # Korean: the analyzer's bigrams find a word with its particle stripped
        hit = retriever.search("계약금액", top_k=1, mode="keyword")[0]
        assert hit.document == "korean.pdf" and hit.page == 1
        # an identifier names its document decisively
        assert retriever.search("KR-2024-0917", top_k=1)[0].document == "contracts/falcon.pdf"
        # document filters: exact paths and globs
        only = Filters(documents=["orchid.pdf"])
        assert {h.document for h in retriever.search("Falcon budget", 5, only)} == {"orchid.pdf"}
        glob = Filters(documents=["contracts/*"])
        assert {h.document for h in retriever.search("office", 5, glob)} == {"contracts/falcon.pdf"}
        assert retriever.search("office", 5, Filters(documents=["nothing/*"])) == []
        docs = retriever.documents_all()
        assert sorted(d.path for d in docs) == ["contracts/falcon.pdf", "korean.pdf", "orchid.pdf"]
        falcon = next(d for d in docs if d.path == "contracts/falcon.pdf")
        assert retriever.document_by_file_id("file-" + falcon.sha256[:32]).path == falcon.path
        assert retriever.document_by_file_id("file-" + "0" * 32) is None
    finally:
        retriever.close()


def test_changes_publish_atomically_and_searches_switch(location, tmp_path, embedder):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    first = ingest(location, corpus, embedder)
    retriever = Retriever(location, embedder, check_interval_s=0)
    try:
        assert retriever.version.name == first.version
        # unchanged files: nothing is published
        again = ingest(location, corpus, embedder)
        assert not again.published and again.version == first.version and again.unchanged == 3
        # a writer's changes are invisible until it publishes, and gone when it aborts
        backend = open_backend(location)
        with backend.lock():
            writer = new_writer(backend, embedder)
            writer.remove_document("orchid.pdf")
            vector = embedder.embed_passages(["Project Heron is new."])
            writer.add_document(
                Document("heron.pdf", "/x/heron.pdf", "ab" * 32, 10, 1, 1),
                [Chunk(0, 1, 1, 0, 21, "Project Heron is new.")],
                vector,
            )
            assert retriever.search("Orchid office", 1)[0].document == "orchid.pdf"
            assert all(h.document != "heron.pdf" for h in retriever.search("Heron", 3))
            writer.abort()
        backend.close()
        assert retriever.version.name == first.version
        assert retriever.search("Orchid office", 1)[0].document == "orchid.pdf"
        # a removed file is gone after the next ingest with --prune
        (corpus / "orchid.pdf").unlink()
        pruned = ingest(location, corpus, embedder, prune=True)
        assert pruned.removed == 1 and pruned.published and pruned.version != first.version
        assert all(h.document != "orchid.pdf" for h in retriever.search("Orchid office", 5))
        assert retriever.version.name == pruned.version
        assert retriever.version.manifest.documents == 2
    finally:
        retriever.close()


def test_one_writer_at_a_time(location, tmp_path, embedder):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    backend = open_backend(location)
    other = open_backend(location)
    try:
        with backend.lock():
            with pytest.raises(IngestLocked), other.lock():
                pass
            with pytest.raises(IngestLocked):
                ingest(location, corpus, embedder)
        with other.lock():  # released
            pass
    finally:
        backend.close()
        other.close()


def test_the_embedding_model_is_checked(location, tmp_path, embedder):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    ingest(location, corpus, embedder)

    class Other:
        model_id = "another-model"
        dim = 8

    with pytest.raises(EmbeddingModelMismatch):
        ingest(location, corpus, Other())
    with pytest.raises(EmbeddingModelMismatch):
        Retriever(location, Other())


def test_a_killed_ingest_leaves_the_published_version(location, tmp_path, embedder):
    """kill -9 in the middle of an ingest: the index stays at the version before it, the
    lock is free, and the next ingest completes."""
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    first = ingest(location, corpus, embedder)
    for n in range(12):
        pdfgen.write_pdf(corpus / "more" / f"doc{n:02d}.pdf", [[f"Filler document number {n}."]])
    # the child dies (SIGKILL, no clean-up) once it has written five documents
    where = repr(location) if isinstance(location, str) else f"Path({str(location)!r})"
    script = f"""
import os, signal, sys
from pathlib import Path
from ragserve.ingest.pipeline import IngestOptions, run_ingest
from ragserve.retrieval.embedder import SentenceTransformerEmbedder
written = []
def on_file(report):
    written.append(report.status == "ingested")
    if sum(written) == 5:
        os.kill(os.getpid(), signal.SIGKILL)
corpus = Path({str(corpus)!r})
embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu")
run_ingest(IngestOptions(index_dir={where}, paths=[corpus], root=corpus, workers=1,
                         embed_batch_chunks=1), embedder, on_file=on_file)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    child = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, timeout=300)
    assert child.returncode == -signal.SIGKILL
    retriever = Retriever(location, embedder)
    try:
        assert retriever.version.name == first.version
        assert len(retriever.documents_all()) == 3
    finally:
        retriever.close()
    done = ingest(location, corpus, embedder)
    assert done.published and done.ingested == 12


def test_the_cli_uses_the_store(tmp_path, postgres_url):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    env = {"RAGSERVE_STORE": postgres_url}
    done = ragserve("ingest", str(corpus), "--no-progress", env=env)
    assert done.returncode == 0, done.stderr
    assert "3 ingested" in done.stdout
    found = ragserve("search", "납품기한", "-k", "1", "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert '"document":"korean.pdf"' in found.stdout
    flag = ragserve("search", "Orchid", "-k", "1", "--store", postgres_url)
    assert flag.returncode == 0 and "orchid.pdf" in flag.stdout


def test_a_wrong_store_is_a_clear_error_without_the_password(tmp_path):
    wrong = "postgresql://ragserve:s3cret-pw@127.0.0.1:1/library"
    done = ragserve("search", "x", "--store", wrong, timeout=60)
    assert done.returncode == 2
    assert "cannot use the database at postgresql://ragserve:***@127.0.0.1:1/library" in (
        done.stderr
    )
    assert "s3cret" not in done.stderr + done.stdout
    assert redact(wrong) == "postgresql://ragserve:***@127.0.0.1:1/library"
    assert redact("postgresql://u@h/db?password=pw&sslmode=require") == (
        "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    bad = ragserve("search", "x", env={"RAGSERVE_STORE": "mysql://u:s3cret@h/db"}, timeout=60)
    assert bad.returncode == 2 and "RAGSERVE_STORE=<hidden>: expected a postgresql://" in (
        bad.stderr
    )
    assert "s3cret" not in bad.stderr
    with pytest.raises(StoreUnavailable):
        open_backend(wrong)


def test_migrations_are_idempotent_and_safe_to_race(postgres_url):
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                assert migrate(conn) == len(MIGRATIONS)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM rs_schema").fetchall() == [(len(MIGRATIONS),)]


def test_a_database_without_pgvector_is_refused(postgres_server, postgres_url):
    """Simulated by a role that may not create extensions in a fresh database."""
    admin = postgres_server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS plain")
        conn.execute("CREATE ROLE plain LOGIN")
        conn.execute("CREATE DATABASE plain_db OWNER plain")
    url = postgres_server.get_uri("plain_db").replace("postgres:@", "plain:@", 1)
    with pytest.raises(StoreUnavailable, match="no vector extension"):
        open_backend(url)


def test_keyword_ranking_matches_the_local_index(tmp_path, fact_corpus, embedder, postgres_url):
    """BM25 computed in SQL from the analyzer's postings ranks as FTS5 does."""
    root, facts = fact_corpus
    local = tmp_path / "index"
    for where in (local, postgres_url):
        run_ingest(IngestOptions(index_dir=where, paths=[root], workers=2), embedder)
    a, b = Retriever(local, embedder), Retriever(postgres_url, embedder)
    try:
        for fact in facts:
            x = a.search(fact.question, top_k=8, mode="keyword")
            y = b.search(fact.question, top_k=8, mode="keyword")
            # the same scores, so the same documents wherever no tie leaves the order open
            assert np.allclose([h.score for h in x], [h.score for h in y], rtol=1e-4), fact
            for i, (hx, hy) in enumerate(zip(x, y, strict=True)):
                tied = [h.document for h in x if np.isclose(h.score, hx.score, rtol=1e-4)]
                cut = np.isclose(hx.score, x[-1].score, rtol=1e-4)  # the tie may go past k
                assert cut or hy.document in tied, (fact.question, i)
            dense_x = a.search(fact.question, top_k=3, mode="dense")
            dense_y = b.search(fact.question, top_k=3, mode="dense")
            assert [h.document for h in dense_x] == [h.document for h in dense_y], fact
            assert a.search(fact.question, 1)[0].document == b.search(fact.question, 1)[0].document
    finally:
        a.close()
        b.close()


def test_glob_translation():
    import re

    cases = {
        "contracts/*": (["contracts/a.pdf", "contracts/x/y.pdf"], ["other/a.pdf", "contracts"]),
        "a?.pdf": (["ab.pdf"], ["a.pdf", "abc.pdf"]),
        "[ab]*.pdf": (["a1.pdf", "b.pdf"], ["c.pdf"]),
        "[^a]*": (["b"], ["a1"]),
        "x[*]y.pdf": (["x*y.pdf"], ["xzy.pdf"]),
        "dots.(1)+.pdf": (["dots.(1)+.pdf"], ["dotsx(1)+.pdf"]),
    }
    for pattern, (yes, no) in cases.items():
        rx = glob_regex(pattern)
        assert all(re.fullmatch(rx.strip("^$"), s) for s in yes), (pattern, rx)
        assert not any(re.fullmatch(rx.strip("^$"), s) for s in no), (pattern, rx)


def test_a_removed_document_leaves_the_rest_findable_in_a_small_index(location, tmp_path, embedder):
    """Fewer live chunks than asked for, after a removal: the dense search still answers
    (hnswlib counts deleted items, and a k it cannot fill raised: nothing was found)."""
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    ingest(location, corpus, embedder)
    (corpus / "orchid.pdf").unlink()
    assert ingest(location, corpus, embedder, prune=True).removed == 1
    retriever = Retriever(location, embedder)
    try:
        for mode in ("dense", "hybrid"):
            found = [h.document for h in retriever.search("Falcon budget", top_k=10, mode=mode)]
            assert found and found[0] == "contracts/falcon.pdf" and "orchid.pdf" not in found
    finally:
        retriever.close()


def test_where_a_chunks_text_came_from_is_kept(location, embedder):
    """A chunk OCR'd with a confidence reads back with it; a text-layer chunk reads None;
    a search hit and a merged passage carry it (the least sure of a merged run)."""
    backend = open_backend(location)
    try:
        with backend.lock():
            writer = new_writer(backend, embedder)
            texts = ["Scanned lease of the Heron depot.", "Typed annex of the Heron depot."]
            writer.add_document(
                Document("heron.pdf", "/x/heron.pdf", "cd" * 32, 10, 1, 2),
                [
                    Chunk(0, 1, 1, 0, 33, texts[0], ocr_confidence=87.5),
                    Chunk(1, 2, 2, 35, 66, texts[1]),
                ],
                embedder.embed_passages(texts),
            )
            writer.publish()
    finally:
        backend.close()
    retriever = Retriever(location, embedder)
    try:
        hits = {h.text: h for h in retriever.search("Heron depot lease annex", 5)}
        assert hits[texts[0]].ocr_confidence == 87.5 and hits[texts[0]].origin == "ocr"
        assert hits[texts[1]].ocr_confidence is None and hits[texts[1]].origin == "text"
        [merged] = merge_places(list(hits.values()))
        assert (merged.page, merged.page_end) == (1, 2)
        assert merged.ocr_confidence == 87.5 and merged.origin == "ocr"
    finally:
        retriever.close()


def test_an_index_version_from_before_ocr_reads_as_text_and_gains_the_column(tmp_path):
    """A chunk store written before chunks recorded OCR (no `ocr` column): read-only it
    reads every chunk as text; a writer's copy gains the column and keeps both kinds."""
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.execute("INSERT INTO documents VALUES (1, 'a.pdf', '/x/a.pdf', 'ab', 1, 1, 1, 1, 0)")
    old.execute("INSERT INTO chunks VALUES (1, 1, 0, 1, 1, 0, 4, 'text')")
    old.commit()
    old.close()
    readonly = ChunkStore(path, readonly=True)
    assert readonly.chunks([1])[1].ocr_confidence is None
    readonly.close()
    writer = ChunkStore(path)
    [new] = writer.add_document(
        Document("b.pdf", "/x/b.pdf", "cd", 1, 1, 1), [Chunk(0, 1, 1, 0, 4, "scan", 61.0)], 0.0
    )
    writer.commit()
    assert writer.chunks([1])[1].ocr_confidence is None
    assert writer.chunks([new])[new].ocr_confidence == 61.0
    writer.close()


OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    pages INTEGER NOT NULL, chunks INTEGER NOT NULL, ingested_at REAL NOT NULL);
CREATE TABLE chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id INTEGER NOT NULL
    REFERENCES documents(id) ON DELETE CASCADE, ordinal INTEGER NOT NULL,
    page_start INTEGER NOT NULL, page_end INTEGER NOT NULL, char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL, text TEXT NOT NULL);
CREATE TABLE skipped (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL);
CREATE VIRTUAL TABLE chunks_fts USING fts5(body, tokenize='unicode61');
"""
