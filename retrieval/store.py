"""The chunk store: documents, chunks and the keyword index in one SQLite file."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from .analyzer import analyze, fts_document, fts_query

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,       -- relative to the corpus root, '/'-separated
    source TEXT NOT NULL,            -- absolute path when ingested (for --prune)
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- also the vector label; never reused
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    page_start INTEGER NOT NULL,           -- 1-based
    page_end INTEGER NOT NULL,
    char_start INTEGER NOT NULL,           -- offsets into the document's cleaned text
    char_end INTEGER NOT NULL,
    text TEXT NOT NULL,
    ocr REAL,                              -- NULL: the text layer; else OCR's mean confidence
    location TEXT                          -- NULL: a PDF's pages; else where in the file
);
-- Files that could not be ingested, so an unchanged bad file is not parsed again.
CREATE TABLE IF NOT EXISTS skipped (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(body, tokenize='unicode61');
"""


# columns later versions added to `chunks`, in the order reads return them
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (("ocr", "REAL"), ("location", "TEXT"))


def sha256_file(path: Path) -> str:
    """A file's content hash: what identifies a document across index versions."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Document(msgspec.Struct, frozen=True):
    path: str
    source: str
    sha256: str
    size: int
    mtime_ns: int
    pages: int


class Chunk(msgspec.Struct, frozen=True):
    ordinal: int
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    text: str
    # None: the text layer; else the text (or some of it) came from OCR, and this is
    # Tesseract's mean confidence (0-100) over the OCR'd pages the chunk spans
    ocr_confidence: float | None = None
    # a format without pages (Markdown, Word, HWPX, ...): where in the file the chunk
    # starts, e.g. a heading path; page_start/page_end then count sections. None: a PDF
    location: str | None = None


class StoredChunk(msgspec.Struct, frozen=True):
    id: int
    document: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    text: str
    ocr_confidence: float | None = None
    location: str | None = None


class DocumentRow(Document, frozen=True):
    """A stored document: what was ingested, its row id and its number of chunks."""

    id: int
    chunks: int


class ChunkStore:
    """One SQLite database. Writers own a private copy; readers open a published one read-only."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            # Published versions never change, so SQLite may skip locking entirely.
            uri = f"file:{path}?mode=ro&immutable=1"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            self._db = sqlite3.connect(path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=DELETE")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(chunks)")}
        for name, kind in ADDED_COLUMNS:
            if name not in columns and not readonly:  # a writer's copy of an older version
                self._db.execute(f"ALTER TABLE chunks ADD COLUMN {name} {kind}")
                columns.add(name)
        # an older version read as published: PDF text from text layers (NULLs)
        self._added = ", ".join(f"c.{n}" if n in columns else "NULL" for n, _ in ADDED_COLUMNS)

    def close(self) -> None:
        self._db.close()

    # -- metadata ---------------------------------------------------------------
    def get_meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, values: dict[str, str]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    # -- documents --------------------------------------------------------------
    def documents(self) -> list[DocumentRow]:
        rows = self._db.execute(
            "SELECT path, source, sha256, size, mtime_ns, pages, id, chunks FROM documents"
        ).fetchall()
        return [DocumentRow(*r) for r in rows]

    def document(self, path: str) -> DocumentRow | None:
        row = self._db.execute(
            "SELECT path, source, sha256, size, mtime_ns, pages, id, chunks FROM documents "
            "WHERE path = ?",
            (path,),
        ).fetchone()
        return DocumentRow(*row) if row else None

    def document_by_hash(self, prefix: str) -> DocumentRow | None:
        """A document whose sha256 starts with `prefix` (hex)."""
        row = self._db.execute(
            "SELECT path, source, sha256, size, mtime_ns, pages, id, chunks FROM documents "
            "WHERE substr(sha256, 1, ?) = ? LIMIT 1",
            (len(prefix), prefix),
        ).fetchone()
        return DocumentRow(*row) if row else None

    def touch_document(self, path: str, source: str, mtime_ns: int) -> None:
        """Record a new mtime/location for a file whose content is unchanged."""
        self._db.execute(
            "UPDATE documents SET mtime_ns = ?, source = ? WHERE path = ?", (mtime_ns, source, path)
        )

    def skipped(self) -> dict[str, tuple[int, int, str, str]]:
        """path -> (size, mtime_ns, status, reason) of files that were skipped or failed."""
        rows = self._db.execute("SELECT path, size, mtime_ns, status, reason FROM skipped")
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def set_skipped(self, path: str, size: int, mtime_ns: int, status: str, reason: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, ?)",
            (path, size, mtime_ns, status, reason),
        )

    def clear_skipped(self, path: str) -> bool:
        return self._db.execute("DELETE FROM skipped WHERE path = ?", (path,)).rowcount > 0

    def remove_document(self, path: str) -> list[int]:
        """Delete a document and its chunks; returns the removed chunk ids."""
        row = self._db.execute("SELECT id FROM documents WHERE path = ?", (path,)).fetchone()
        if row is None:
            return []
        ids = [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE doc_id = ?", row)]
        self._db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", ((i,) for i in ids))
        self._db.execute("DELETE FROM chunks WHERE doc_id = ?", row)
        self._db.execute("DELETE FROM documents WHERE id = ?", row)
        return ids

    def add_document(self, doc: Document, chunks: Sequence[Chunk], now: float) -> list[int]:
        """Insert a document and its chunks; returns the new chunk ids in order."""
        cur = self._db.execute(
            "INSERT INTO documents (path, source, sha256, size, mtime_ns, pages, chunks, "
            "ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (doc.path, doc.source, doc.sha256, doc.size, doc.mtime_ns, doc.pages, len(chunks), now),
        )
        doc_id = cur.lastrowid
        ids: list[int] = []
        for c in chunks:
            cur = self._db.execute(
                "INSERT INTO chunks (doc_id, ordinal, page_start, page_end, char_start, char_end,"
                " text, ocr, location) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc_id,
                    c.ordinal,
                    c.page_start,
                    c.page_end,
                    c.char_start,
                    c.char_end,
                    c.text,
                    c.ocr_confidence,
                    c.location,
                ),
            )
            chunk_id = int(cur.lastrowid or 0)
            ids.append(chunk_id)
            self._db.execute(
                "INSERT INTO chunks_fts (rowid, body) VALUES (?, ?)",
                (chunk_id, fts_document(indexed_text(doc.path, c.text))),
            )
        return ids

    def commit(self) -> None:
        self._db.commit()

    def optimize(self) -> None:
        self._db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
        self._db.commit()
        self._db.execute("VACUUM")

    # -- reads ------------------------------------------------------------------
    def chunk_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            "SELECT c.id, d.path, c.page_start, c.page_end, c.char_start, c.char_end, c.text, "
            f"{self._added} FROM chunks c JOIN documents d ON d.id = c.doc_id "
            f"WHERE c.id IN ({marks})",
            ids,
        ).fetchall()
        return {r[0]: StoredChunk(*r) for r in rows}

    def chunk_ids_for_documents(self, patterns: Sequence[str]) -> set[int]:
        """Chunk ids of documents whose path equals or glob-matches one of the patterns."""
        clauses = " OR ".join("d.path = ? OR d.path GLOB ?" for _ in patterns)
        args = [p for pat in patterns for p in (pat, pat)]
        rows = self._db.execute(
            f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {clauses}", args
        )
        return {r[0] for r in rows}

    def keyword_search(
        self, query: str, limit: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        """BM25 over the analyzed chunks: (chunk id, score), best first, score higher = better."""
        expr = fts_query(query)
        if expr is None:
            return []
        # Over-fetch when filtering so that the filter does not starve the result.
        fetch = limit if allowed is None else max(limit * 20, 200)
        rows = self._db.execute(
            "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? "
            "ORDER BY bm25(chunks_fts) LIMIT ?",
            (expr, fetch),
        ).fetchall()
        hits = [(int(r[0]), -float(r[1])) for r in rows]
        if allowed is not None:
            hits = [h for h in hits if h[0] in allowed]
        return hits[:limit]

    def phrase_documents(self, phrase: str, limit: int) -> dict[int, int]:
        """Chunks containing `phrase` as consecutive terms: chunk id -> document id."""
        terms = analyze(phrase)
        if not terms:
            return {}
        expr = '"' + " ".join(t.replace('"', '""') for t in terms) + '"'
        rows = self._db.execute(
            "SELECT c.id, c.doc_id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "WHERE chunks_fts MATCH ? LIMIT ?",
            (expr, limit),
        ).fetchall()
        return {int(r[0]): int(r[1]) for r in rows}


def document_title(path: str) -> str:
    """Words from a document's path, indexed with each chunk so names are searchable."""
    return path.replace("/", " ").replace("_", " ").replace("-", " ").rsplit(".", 1)[0]


def indexed_text(path: str, text: str) -> str:
    """What is embedded and keyword-indexed for a chunk: its document's title, then its text."""
    return document_title(path) + "\n" + text


UPLOAD_SOURCE = "upload:"  # a document's source when it came from an upload: upload:<file id>


def is_upload(doc: DocumentRow) -> bool:
    """Whether a vector store's upload put this document in the index (not the CLI)."""
    return doc.source.startswith(UPLOAD_SOURCE)
