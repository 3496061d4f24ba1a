"""The index in PostgreSQL: pgvector for dense search, ragserve's own analyzer for BM25.

Several ragserve replicas (and `ragserve ingest` anywhere) share one database. Each index
(`collection`: the default library, or one vector store) is a row of `rs_indexes`; its
documents, chunks, keyword postings and skipped files hang off that row.

- **Publishing** is one transaction: a writer holds the index's advisory lock on its own
  connection, changes rows, and commits together with the bumped version number and
  manifest. A killed writer's transaction rolls back and its lock goes with the
  connection, so nothing half-written is ever visible and nothing stays locked.
- **Reading**: each search runs in one REPEATABLE READ, READ ONLY transaction, so dense
  search, keyword search and the chunk texts come from one snapshot.
- **Dense search**: `vector` column, one HNSW index (cosine) per embedding dimension,
  built on the expression `embedding::vector(D)` for the rows of that dimension, with
  pgvector's iterative scan so filters cannot starve the result.
- **Keyword search**: PostgreSQL has no Korean parser, and `ts_rank` is not BM25. The
  analyzer of the local index (analyzer.py: words, CJK bigrams) fills a postings table
  (term, chunk, term frequency, chunk length), and the query computes FTS5's BM25
  (k1 1.2, b 0.75, the same idf) from it, so both backends rank alike (the contract
  tests compare them). Phrases (identifiers such as contract numbers) match the analyzed
  text with LIKE, served by a pg_trgm index.
- **Schema**: versioned migrations applied at connect under an advisory lock, so two
  replicas starting at once apply them once.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec
import numpy as np
import structlog

from ragserve.errors import (
    EmbeddingModelMismatch,
    IndexNotFound,
    IngestLocked,
    StoreUnavailable,
)

from .analyzer import analyze
from .index import Manifest, check_vectors, new_manifest
from .location import redact
from .store import Chunk, Document, DocumentRow, StoredChunk, indexed_text

log = structlog.get_logger(__name__)

BM25_K1 = 1.2
BM25_B = 0.75
MAX_QUERY_TERMS = 64  # as fts_query
EF_SEARCH = 128  # as vectors.py
# pgvector's defaults: m 32 / ef_construction 200 (the local hnswlib's) wrote 3.3x slower
# (302 against 1001 chunks/s, bench/backend_bench.py) for the same recall@10 at ef_search 128
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
EXACT_BELOW = 2000  # a filter this narrow is searched exactly, not through the graph

MIGRATIONS: tuple[str, ...] = (
    # 1: the index
    """
    CREATE TABLE rs_indexes (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        version bigint NOT NULL DEFAULT 0,       -- 0: nothing published yet
        manifest jsonb,
        terms bigint NOT NULL DEFAULT 0          -- analyzed terms in all chunks (BM25 avgdl)
    );
    CREATE TABLE rs_documents (
        id bigserial PRIMARY KEY,
        index_id bigint NOT NULL REFERENCES rs_indexes(id) ON DELETE CASCADE,
        path text NOT NULL,
        source text NOT NULL,
        sha256 text NOT NULL,
        size bigint NOT NULL,
        mtime_ns bigint NOT NULL,
        pages integer NOT NULL,
        chunks integer NOT NULL,
        ingested_at double precision NOT NULL,
        UNIQUE (index_id, path)
    );
    CREATE INDEX rs_documents_sha256 ON rs_documents (index_id, sha256 text_pattern_ops);
    CREATE TABLE rs_chunks (
        id bigserial PRIMARY KEY,
        index_id bigint NOT NULL,
        doc_id bigint NOT NULL REFERENCES rs_documents(id) ON DELETE CASCADE,
        ordinal integer NOT NULL,
        page_start integer NOT NULL,
        page_end integer NOT NULL,
        char_start integer NOT NULL,
        char_end integer NOT NULL,
        text text NOT NULL,
        body text NOT NULL,                      -- ' ' + analyzed terms + ' ' (phrases)
        terms integer NOT NULL,                  -- how many (BM25 document length)
        dim integer NOT NULL,
        embedding vector NOT NULL
    );
    CREATE INDEX rs_chunks_doc ON rs_chunks (doc_id);
    CREATE INDEX rs_chunks_index ON rs_chunks (index_id);
    CREATE INDEX rs_chunks_body ON rs_chunks USING gin (body gin_trgm_ops);
    CREATE TABLE rs_postings (
        index_id bigint NOT NULL,
        term text NOT NULL,
        chunk_id bigint NOT NULL REFERENCES rs_chunks(id) ON DELETE CASCADE,
        tf integer NOT NULL,
        dl integer NOT NULL,
        PRIMARY KEY (index_id, term, chunk_id)
    );
    CREATE INDEX rs_postings_chunk ON rs_postings (chunk_id);
    CREATE TABLE rs_skipped (
        index_id bigint NOT NULL REFERENCES rs_indexes(id) ON DELETE CASCADE,
        path text NOT NULL,
        size bigint NOT NULL,
        mtime_ns bigint NOT NULL,
        status text NOT NULL,
        reason text NOT NULL,
        PRIMARY KEY (index_id, path)
    );
    """,
    # 2: the library around the indexes (server/catalog_pg.py, server/responses/store.py):
    # uploads and their bytes, vector stores and their files, signing secrets, responses
    """
    CREATE TABLE rs_blobs (
        sha256 text PRIMARY KEY,
        bytes bigint NOT NULL
    );
    CREATE TABLE rs_blob_parts (
        sha256 text NOT NULL REFERENCES rs_blobs(sha256) ON DELETE CASCADE,
        seq integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (sha256, seq)
    );
    CREATE TABLE rs_files (
        id text PRIMARY KEY,
        sha256 text NOT NULL REFERENCES rs_blobs(sha256),
        filename text NOT NULL,
        bytes bigint NOT NULL,
        purpose text NOT NULL,
        created_at bigint NOT NULL
    );
    CREATE INDEX rs_files_sha256 ON rs_files (sha256);
    CREATE TABLE rs_file_owners (
        file_id text NOT NULL REFERENCES rs_files(id) ON DELETE CASCADE,
        owner text NOT NULL,
        PRIMARY KEY (file_id, owner)
    );
    CREATE TABLE rs_stores (
        id text PRIMARY KEY,
        name text NOT NULL,
        metadata jsonb NOT NULL,
        created_at bigint NOT NULL,
        owner text
    );
    CREATE TABLE rs_store_files (
        store_id text NOT NULL REFERENCES rs_stores(id) ON DELETE CASCADE,
        file_id text NOT NULL REFERENCES rs_files(id) ON DELETE CASCADE,
        status text NOT NULL,
        last_error jsonb,
        attributes jsonb NOT NULL,
        created_at bigint NOT NULL,
        document text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        PRIMARY KEY (store_id, file_id)
    );
    CREATE INDEX rs_store_files_file ON rs_store_files (file_id);
    CREATE INDEX rs_store_files_pending ON rs_store_files (store_id) WHERE status = 'in_progress';
    CREATE TABLE rs_batches (
        id text PRIMARY KEY,
        store_id text NOT NULL REFERENCES rs_stores(id) ON DELETE CASCADE,
        file_ids jsonb NOT NULL,
        created_at bigint NOT NULL
    );
    CREATE TABLE rs_secrets (
        name text PRIMARY KEY,
        value bytea NOT NULL
    );
    CREATE TABLE rs_responses (
        id text PRIMARY KEY,
        created_at bigint NOT NULL,
        body bytea NOT NULL,
        history bytea NOT NULL,
        owner text
    );
    CREATE INDEX rs_responses_created ON rs_responses (created_at);
    CREATE TABLE rs_response_items (
        response_id text NOT NULL REFERENCES rs_responses(id) ON DELETE CASCADE,
        position integer NOT NULL,
        id text NOT NULL,
        body bytea NOT NULL,
        PRIMARY KEY (response_id, position)
    );
    """,
    # 3: what the ingest of a vector store's file found (pages, chunks, OCR'd and unread pages)
    "ALTER TABLE rs_store_files ADD COLUMN report jsonb;",
    # 4: where a chunk's text came from (ocr: NULL the text layer, else OCR's mean
    # confidence) and, in a format without pages, where in the file it is (location)
    "ALTER TABLE rs_chunks ADD COLUMN ocr double precision, ADD COLUMN location text;",
)

_MIGRATE_LOCK = 0x7261677365727665  # 'ragserve'
_GLOB_SPECIAL = re.compile(r"\*|\?|\[[^\]]*\]")


def glob_regex(pattern: str) -> str:
    """SQLite's GLOB (the local backend's document filter) as an anchored POSIX regex:
    `*` any run, `?` one character, `[...]` a class (`[^...]` negated), case-sensitive."""
    out = ["^"]
    at = 0
    for m in _GLOB_SPECIAL.finditer(pattern):
        out.append(re.escape(pattern[at : m.start()]))
        token = m.group()
        if token == "*":
            out.append(".*")
        elif token == "?":
            out.append(".")
        else:
            body = token[1:-1]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\")
            out.append("[" + ("^" if negate else "") + body + "]" if body else "(?!)")
        at = m.end()
    out.append(re.escape(pattern[at:]))
    return "".join(out) + "$"


def _vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.9g}" for x in np.asarray(vector, dtype=np.float32).tolist()) + "]"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _version_name(number: int) -> str:
    return f"v{number:06d}"


# -- connections ----------------------------------------------------------------------------
class _Pools:
    """One connection pool per database URL in a process, shared by its indexes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[str, tuple[Any, int]] = {}

    def get(self, url: str, max_size: int) -> Any:
        with self._lock:
            found = self._pools.get(url)
            if found is not None:
                self._pools[url] = (found[0], found[1] + 1)
                return found[0]
            pool = _open_pool(url, max_size)
            self._pools[url] = (pool, 1)
            return pool

    def put(self, url: str) -> None:
        with self._lock:
            pool, users = self._pools[url]
            if users > 1:
                self._pools[url] = (pool, users - 1)
                return
            del self._pools[url]
        pool.close()


POOLS = _Pools()


@contextlib.contextmanager
def pooled(pool: Any, url: str) -> Iterator[Any]:
    """A connection of `pool` (autocommit; use `conn.transaction()`), with connection
    failures raised as StoreUnavailable."""
    psycopg, psycopg_pool = _import_psycopg()
    try:
        with pool.connection(timeout=30) as conn:
            yield conn
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        raise _connect_error(url, exc) from None


def _import_psycopg():
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise StoreUnavailable(
            "a postgresql:// store needs psycopg and psycopg_pool: pip install 'ragserve[postgres]'"
        ) from None
    return psycopg, psycopg_pool


def foreign_key_violation() -> type[Exception]:
    """psycopg's error for a row that references one that is gone."""
    psycopg, _ = _import_psycopg()
    return psycopg.errors.ForeignKeyViolation


def _connect_error(url: str, exc: Exception) -> StoreUnavailable:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreUnavailable(f"cannot use the database at {redact(url)}: {detail}")


def _open_pool(url: str, max_size: int) -> Any:
    psycopg, psycopg_pool = _import_psycopg()
    try:
        first = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except (psycopg.Error, ValueError) as exc:
        raise _connect_error(url, exc) from None
    try:
        migrate(first)
    finally:
        first.close()
    pool = psycopg_pool.ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True},
        open=False,
        name="ragserve",
    )
    try:
        pool.open(wait=True, timeout=10)
    except Exception as exc:
        pool.close()
        raise _connect_error(url, exc) from None
    return pool


def migrate(conn: Any) -> int:
    """Bring the schema up to date (idempotent; replicas starting together wait for each
    other on an advisory lock). Returns the schema version."""
    psycopg, _ = _import_psycopg()
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            for ext, package in (("vector", "pgvector"), ("pg_trgm", "pg_trgm (contrib)")):
                try:
                    with conn.transaction():
                        conn.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")
                except psycopg.Error as exc:
                    raise StoreUnavailable(
                        f"the database has no {ext} extension ({exc.diag.message_primary}); "
                        f"install {package} on the server, or let a superuser run "
                        f"CREATE EXTENSION {ext}"
                    ) from None
            conn.execute("CREATE TABLE IF NOT EXISTS rs_schema (version integer NOT NULL)")
            row = conn.execute("SELECT version FROM rs_schema").fetchone()
            have = row[0] if row else 0
            if have > len(MIGRATIONS):
                raise StoreUnavailable(
                    f"the database schema is version {have}, newer than this ragserve knows "
                    f"({len(MIGRATIONS)}); upgrade ragserve"
                )
            for number in range(have + 1, len(MIGRATIONS) + 1):
                conn.execute(MIGRATIONS[number - 1])
                log.info("postgres.migrated", schema=number)
            if row is None:
                conn.execute("INSERT INTO rs_schema VALUES (%s)", (len(MIGRATIONS),))
            else:
                conn.execute("UPDATE rs_schema SET version = %s", (len(MIGRATIONS),))
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot prepare the database schema: {exc}") from None
    return len(MIGRATIONS)


def _ensure_hnsw(conn: Any, dim: int) -> None:
    """The HNSW index for one embedding dimension (autocommit: built once, by whichever
    writer first needs it; a concurrent builder's duplicate is harmless)."""
    name = f"rs_chunks_hnsw_{dim}"
    if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None:
        return
    psycopg, _ = _import_psycopg()
    with contextlib.suppress(psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON rs_chunks USING hnsw "
            f"((embedding::vector({dim})) vector_cosine_ops) "
            f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE dim = {dim}"
        )


# -- reading --------------------------------------------------------------------------------
_DOC_COLUMNS = "path, source, sha256, size, mtime_ns, pages, id, chunks"


class PostgresReader:
    """One search's view: a pooled connection in a REPEATABLE READ, READ ONLY transaction."""

    def __init__(self, conn: Any, index_id: int, dim: int, terms: int, chunks: int) -> None:
        self.conn = conn
        self.index_id = index_id
        self.dim = dim
        self._terms = terms
        self._chunks = chunks

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        return self.conn.execute(sql, args).fetchall()

    def dense(
        self, vector: np.ndarray, k: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        if k <= 0:
            return []
        d = self.dim
        q = _vector_text(vector)
        if allowed is not None and len(allowed) <= EXACT_BELOW:
            rows = self._rows(
                f"SELECT id, 1 - (embedding::vector({d}) <=> %s::vector({d})) FROM rs_chunks "
                f"WHERE id = ANY(%s) AND index_id = %s AND dim = {d} "
                f"ORDER BY embedding::vector({d}) <=> %s::vector({d}) LIMIT %s",
                (q, list(allowed), self.index_id, q, k),
            )
        else:
            self.conn.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, min(k, 1000))}")
            self.conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            extra = "" if allowed is None else "AND id = ANY(%s) "
            args: list[Any] = [q, self.index_id]
            if allowed is not None:
                args.append(list(allowed))
            rows = self._rows(
                f"SELECT id, 1 - (embedding::vector({d}) <=> %s::vector({d})) FROM rs_chunks "
                f"WHERE index_id = %s AND dim = {d} {extra}"
                f"ORDER BY embedding::vector({d}) <=> %s::vector({d}) LIMIT %s",
                (*args, q, k),
            )
        return [(int(i), float(s)) for i, s in rows]

    def similarity(self, vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        ids = list(ids)
        if not ids:
            return {}
        d = self.dim
        rows = self._rows(
            f"SELECT id, 1 - (embedding::vector({d}) <=> %s::vector({d})) FROM rs_chunks "
            "WHERE id = ANY(%s) AND index_id = %s",
            (_vector_text(vector), ids, self.index_id),
        )
        return {int(i): float(s) for i, s in rows}

    def keyword(
        self, query: str, limit: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        """FTS5's BM25 over the same analyzed terms (see the module's docstring)."""
        terms = list(dict.fromkeys(analyze(query)))[:MAX_QUERY_TERMS]
        if not terms or limit <= 0 or self._chunks == 0:
            return []
        counts = dict(
            self._rows(
                "SELECT term, count(*) FROM rs_postings WHERE index_id = %s AND term = ANY(%s) "
                "GROUP BY term",
                (self.index_id, terms),
            )
        )
        n = self._chunks
        weights = {
            t: max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6) for t, df in counts.items() if df
        }
        if not weights:
            return []
        avgdl = self._terms / n if n else 1.0
        filt = "" if allowed is None else "AND p.chunk_id = ANY(%s) "
        args: list[Any] = [list(weights), list(weights.values()), self.index_id]
        if allowed is not None:
            args.append(list(allowed))
        rows = self._rows(
            "SELECT p.chunk_id, sum(w.idf * p.tf * %s / (p.tf + %s * (1 - %s + %s * p.dl / %s))) "
            "AS score FROM rs_postings p "
            "JOIN unnest(%s::text[], %s::float8[]) AS w(term, idf) ON p.term = w.term "
            f"WHERE p.index_id = %s {filt}"
            "GROUP BY p.chunk_id ORDER BY score DESC, p.chunk_id LIMIT %s",
            (BM25_K1 + 1, BM25_K1, BM25_B, BM25_B, avgdl, *args, limit),
        )
        return [(int(i), float(s)) for i, s in rows]

    def phrase_documents(self, phrase: str, limit: int) -> dict[int, int]:
        terms = analyze(phrase)
        if not terms:
            return {}
        pattern = "% " + _like_escape(" ".join(terms)) + " %"
        rows = self._rows(
            "SELECT id, doc_id FROM rs_chunks WHERE index_id = %s AND body LIKE %s LIMIT %s",
            (self.index_id, pattern, limit),
        )
        return {int(c): int(d) for c, d in rows}

    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = list(ids)
        if not ids:
            return {}
        rows = self._rows(
            "SELECT c.id, d.path, c.page_start, c.page_end, c.char_start, c.char_end, c.text, "
            "c.ocr, c.location FROM rs_chunks c JOIN rs_documents d ON d.id = c.doc_id "
            "WHERE c.id = ANY(%s) AND c.index_id = %s",
            (ids, self.index_id),
        )
        return {int(r[0]): StoredChunk(*r) for r in rows}

    def chunk_ids_for_documents(self, patterns: Sequence[str]) -> set[int]:
        if not patterns:
            return set()
        rows = self._rows(
            "SELECT c.id FROM rs_chunks c JOIN rs_documents d ON d.id = c.doc_id "
            "WHERE d.index_id = %s AND (d.path = ANY(%s) OR d.path ~ ANY(%s))",
            (self.index_id, list(patterns), [glob_regex(p) for p in patterns]),
        )
        return {int(r[0]) for r in rows}

    def documents(self) -> list[DocumentRow]:
        rows = self._rows(
            f"SELECT {_DOC_COLUMNS} FROM rs_documents WHERE index_id = %s ORDER BY id",
            (self.index_id,),
        )
        return [DocumentRow(*r) for r in rows]

    def document(self, path: str) -> DocumentRow | None:
        rows = self._rows(
            f"SELECT {_DOC_COLUMNS} FROM rs_documents WHERE index_id = %s AND path = %s",
            (self.index_id, path),
        )
        return DocumentRow(*rows[0]) if rows else None

    def document_by_hash(self, prefix: str) -> DocumentRow | None:
        rows = self._rows(
            f"SELECT {_DOC_COLUMNS} FROM rs_documents WHERE index_id = %s AND sha256 LIKE %s "
            "ORDER BY id LIMIT 1",
            (self.index_id, _like_escape(prefix) + "%"),
        )
        return DocumentRow(*rows[0]) if rows else None

    def skipped(self) -> dict[str, tuple[int, int, str, str]]:
        rows = self._rows(
            "SELECT path, size, mtime_ns, status, reason FROM rs_skipped WHERE index_id = %s",
            (self.index_id,),
        )
        return {r[0]: (int(r[1]), int(r[2]), r[3], r[4]) for r in rows}


class PostgresVersion:
    """A published version of one index: its number and manifest. Readers take a fresh
    snapshot each (a later publish may be what they see: its rows are complete too)."""

    def __init__(self, backend: PostgresBackend, number: int, manifest: Manifest) -> None:
        self.backend = backend
        self.name = _version_name(number)
        self.manifest = manifest

    def acquire(self) -> PostgresReader:
        return self.backend._reader()

    def release(self, reader: Any = None) -> None:
        if isinstance(reader, PostgresReader):
            self.backend._release(reader)

    def retire(self) -> None:
        pass  # nothing is held between searches


# -- writing --------------------------------------------------------------------------------
class PostgresWriter:
    """The next version, built in one transaction on the locked connection."""

    def __init__(
        self,
        backend: PostgresBackend,
        conn: Any,
        *,
        embedding_model: str,
        dim_of,
        chunk_tokens: int,
        chunk_overlap: int,
    ) -> None:
        self.backend = backend
        self.conn = conn
        self.embedding_model = embedding_model
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.changed = False
        self._done = False
        # Under the index's lock nothing else changes its row: read the base, make sure the
        # dimension's HNSW index exists (outside the transaction: CREATE INDEX locks the
        # table), then write everything in one transaction.
        row = conn.execute(
            "SELECT version, manifest FROM rs_indexes WHERE name = %s", (backend.collection,)
        ).fetchone()
        number = int(row[0]) if row else 0
        self.base = _version_name(number) if number else None
        self.number = number + 1
        if number and row[1] is not None:
            base = msgspec.convert(row[1], Manifest)
            if base.embedding_model != embedding_model:
                raise EmbeddingModelMismatch(base.embedding_model, embedding_model)
            self.dim = base.dim
        else:
            self.dim = int(dim_of())  # a new index: only now is the model needed
        _ensure_hnsw(conn, self.dim)
        conn.execute("BEGIN")
        try:
            conn.execute(
                "INSERT INTO rs_indexes (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                (backend.collection,),
            )
            self.index_id = int(
                conn.execute(
                    "SELECT id FROM rs_indexes WHERE name = %s FOR UPDATE", (backend.collection,)
                ).fetchone()[0]
            )
        except BaseException:
            self.abort()
            raise

    def documents(self) -> list[DocumentRow]:
        rows = self.conn.execute(
            f"SELECT {_DOC_COLUMNS} FROM rs_documents WHERE index_id = %s ORDER BY id",
            (self.index_id,),
        ).fetchall()
        return [DocumentRow(*r) for r in rows]

    def skipped(self) -> dict[str, tuple[int, int, str, str]]:
        rows = self.conn.execute(
            "SELECT path, size, mtime_ns, status, reason FROM rs_skipped WHERE index_id = %s",
            (self.index_id,),
        ).fetchall()
        return {r[0]: (int(r[1]), int(r[2]), r[3], r[4]) for r in rows}

    def remove_document(self, path: str) -> None:
        self.conn.execute(
            "DELETE FROM rs_documents WHERE index_id = %s AND path = %s", (self.index_id, path)
        )
        self.changed = True

    def add_document(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> None:
        check_vectors(chunks, vectors, self.dim)
        (doc_id,) = self.conn.execute(
            "INSERT INTO rs_documents (index_id, path, source, sha256, size, mtime_ns, pages, "
            "chunks, ingested_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                self.index_id,
                doc.path,
                doc.source,
                doc.sha256,
                doc.size,
                doc.mtime_ns,
                doc.pages,
                len(chunks),
                time.time(),
            ),
        ).fetchone()
        if not chunks:
            self.changed = True
            return
        ids = [
            int(r[0])
            for r in self.conn.execute(
                "SELECT nextval(pg_get_serial_sequence('rs_chunks', 'id')) "
                "FROM generate_series(1, %s)",
                (len(chunks),),
            ).fetchall()
        ]
        added = 0
        with self.conn.cursor() as cur:
            with cur.copy(
                "COPY rs_chunks (id, index_id, doc_id, ordinal, page_start, page_end, "
                "char_start, char_end, text, ocr, location, body, terms, dim, embedding) FROM STDIN"
            ) as copy:
                postings: list[tuple[int, str, int, int]] = []
                for chunk_id, c, v in zip(ids, chunks, vectors, strict=True):
                    terms = analyze(indexed_text(doc.path, c.text))
                    copy.write_row(
                        (
                            chunk_id,
                            self.index_id,
                            doc_id,
                            c.ordinal,
                            c.page_start,
                            c.page_end,
                            c.char_start,
                            c.char_end,
                            c.text,
                            c.ocr_confidence,
                            c.location,
                            " " + " ".join(terms) + " ",
                            len(terms),
                            self.dim,
                            _vector_text(v),
                        )
                    )
                    added += len(terms)
                    tf: dict[str, int] = {}
                    for t in terms:
                        tf[t] = tf.get(t, 0) + 1
                    postings.extend((chunk_id, t, n, len(terms)) for t, n in tf.items())
            with cur.copy("COPY rs_postings (index_id, term, chunk_id, tf, dl) FROM STDIN") as copy:
                for chunk_id, t, n, dl in postings:
                    copy.write_row((self.index_id, t, chunk_id, n, dl))
        self.changed = True

    def set_skipped(self, path: str, size: int, mtime_ns: int, status: str, reason: str) -> None:
        self.conn.execute(
            "INSERT INTO rs_skipped VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (index_id, path) "
            "DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "status = excluded.status, reason = excluded.reason",
            (self.index_id, path, size, mtime_ns, status, reason),
        )
        self.changed = True

    def clear_skipped(self, path: str) -> None:
        cur = self.conn.execute(
            "DELETE FROM rs_skipped WHERE index_id = %s AND path = %s", (self.index_id, path)
        )
        if cur.rowcount:
            self.changed = True

    def touch_document(self, path: str, source: str, mtime_ns: int) -> None:
        self.conn.execute(
            "UPDATE rs_documents SET mtime_ns = %s, source = %s WHERE index_id = %s AND path = %s",
            (mtime_ns, source, self.index_id, path),
        )
        self.changed = True

    def publish(self) -> Manifest:
        """Commit: the new rows and the new version number become visible together."""
        documents, chunks, terms = self.conn.execute(
            "SELECT (SELECT count(*) FROM rs_documents WHERE index_id = %s), "
            "count(*), coalesce(sum(terms), 0) FROM rs_chunks WHERE index_id = %s",
            (self.index_id, self.index_id),
        ).fetchone()
        manifest = new_manifest(
            _version_name(self.number),
            embedding_model=self.embedding_model,
            dim=self.dim,
            chunk_tokens=self.chunk_tokens,
            chunk_overlap=self.chunk_overlap,
            documents=int(documents),
            chunks=int(chunks),
        )
        self.conn.execute(
            "UPDATE rs_indexes SET version = %s, manifest = %s::jsonb, terms = %s WHERE id = %s",
            (self.number, msgspec.json.encode(manifest).decode(), int(terms), self.index_id),
        )
        self.conn.execute("COMMIT")
        self._done = True
        return manifest

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(Exception):
            self.conn.execute("ROLLBACK")


# -- the backend ----------------------------------------------------------------------------
class PostgresBackend:
    """One index (`collection`) in a PostgreSQL database with pgvector and pg_trgm."""

    def __init__(self, url: str, collection: str, pool: Any) -> None:
        self.url = url
        self.collection = collection
        self.where = f"{redact(url)} ({collection})"
        self._pool = pool
        self._locked: Any = None
        self._closed = False

    @classmethod
    def connect(cls, url: str, collection: str = "default", *, pool_size: int = 8):
        return cls(url, collection, POOLS.get(url, pool_size))

    def _state(self, conn: Any) -> tuple[int, int, Manifest | None, int]:
        row = conn.execute(
            "SELECT id, version, manifest, terms FROM rs_indexes WHERE name = %s",
            (self.collection,),
        ).fetchone()
        if row is None or not row[1]:
            return 0, 0, None, 0
        return int(row[0]), int(row[1]), msgspec.convert(row[2], Manifest), int(row[3])

    def current(self) -> str | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT version FROM rs_indexes WHERE name = %s", (self.collection,)
            ).fetchone()
        return _version_name(row[0]) if row and row[0] else None

    def open(self) -> PostgresVersion:
        with self._connection() as conn:
            _, number, manifest, _ = self._state(conn)
        if manifest is None:
            raise IndexNotFound(f"no index {self.collection!r} in {redact(self.url)}")
        return PostgresVersion(self, number, manifest)

    def _connection(self) -> contextlib.AbstractContextManager[Any]:
        return pooled(self._pool, self.url)

    def _reader(self) -> PostgresReader:
        psycopg, psycopg_pool = _import_psycopg()
        try:
            conn = self._pool.getconn(timeout=30)
        except psycopg_pool.PoolTimeout as exc:
            raise _connect_error(self.url, exc) from None
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            index_id, _, manifest, terms = self._state(conn)
            if manifest is None:
                raise IndexNotFound(f"no index {self.collection!r} in {redact(self.url)}")
            return PostgresReader(conn, index_id, manifest.dim, terms, manifest.chunks)
        except BaseException as exc:
            self._pool.putconn(conn)
            if isinstance(exc, psycopg.OperationalError):
                raise _connect_error(self.url, exc) from None
            raise

    def _release(self, reader: PostgresReader) -> None:
        with contextlib.suppress(Exception):
            reader.conn.execute("COMMIT")
        self._pool.putconn(reader.conn)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The index's ingest lock: a session advisory lock on a connection of its own, so
        it ends with the connection if the process dies."""
        psycopg, _ = _import_psycopg()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise _connect_error(self.url, exc) from None
        try:
            key = conn.execute(
                "SELECT hashtextextended('ragserve:ingest:' || %s, 0)", (self.collection,)
            ).fetchone()[0]
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                raise IngestLocked(f"another ingest is writing {self.where}; wait for it to finish")
            self._locked = conn
            yield
        finally:
            self._locked = None
            conn.close()  # ends the session: its lock and any open transaction go with it

    def writer(
        self, *, embedding_model: str, dim_of, chunk_tokens: int, chunk_overlap: int
    ) -> PostgresWriter:
        if self._locked is None:
            raise RuntimeError("PostgresBackend.writer() is used under lock()")
        return PostgresWriter(
            self,
            self._locked,
            embedding_model=embedding_model,
            dim_of=dim_of,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
        )

    def drop(self) -> None:
        """Delete the index and everything in it (a deleted vector store)."""
        with self._connection() as conn:
            conn.execute("DELETE FROM rs_indexes WHERE name = %s", (self.collection,))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            POOLS.put(self.url)
