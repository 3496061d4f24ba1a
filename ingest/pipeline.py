"""The ingest: discover PDFs, extract in worker processes, chunk, embed, publish a version."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, cast

import msgspec
import numpy as np
import structlog

from ragserve.options import Option, defaults, number, whole
from ragserve.retrieval.backend import Backend, Writer, open_backend
from ragserve.retrieval.embedder import Embedder
from ragserve.retrieval.store import (
    UPLOAD_SOURCE,
    Chunk,
    Document,
    DocumentRow,
    indexed_text,
    is_upload,
    sha256_file,
)

from .chunk import chunk_document, mark_locations, mark_ocr
from .extract import (
    TEXT_LIMIT_OPTIONS,
    ExtractResult,
    TextLimits,
    extract_document,
)
from .formats import SUFFIXES
from .ocr import OCR_OPTIONS, OcrSettings
from .pool import ExtractPool

log = structlog.get_logger(__name__)

Outcome = Literal["ingested", "unchanged", "skipped", "failed", "removed"]


INGEST_OPTIONS: tuple[Option, ...] = (
    Option(
        "workers",
        "--workers",
        whole(1, 256),
        max(1, os.cpu_count() or 1),
        "extraction processes",
        env="RAGSERVE_INGEST_WORKERS",
        default_text="number of cores",
    ),
    Option(
        "timeout_s",
        "--timeout",
        number(1),
        120.0,
        "seconds allowed per file before it is skipped",
        env="RAGSERVE_INGEST_TIMEOUT",
    ),
    Option(
        "memory_limit_mb",
        "--memory-limit-mb",
        whole(256),
        2048,
        "address-space limit per extraction process, MiB",
        env="RAGSERVE_INGEST_MEMORY_LIMIT_MB",
    ),
    *TEXT_LIMIT_OPTIONS,
    *OCR_OPTIONS,
    Option(
        "chunk_tokens",
        "--chunk-tokens",
        whole(16, 8192),
        200,
        "tokens per chunk (the embedding model's tokenizer)",
    ),
    Option(
        "chunk_overlap",
        "--chunk-overlap",
        whole(0, 8192),
        40,
        "tokens shared by neighbouring chunks (less than --chunk-tokens)",
    ),
)

_DEFAULT = defaults(INGEST_OPTIONS)


class IngestOptions(msgspec.Struct, frozen=True):
    index_dir: Path | str  # an index folder, or a postgresql:// URL (see retrieval/backend.py)
    paths: list[Path]
    collection: str = "default"  # the index's name in a database (a folder is one index)
    root: Path | None = None
    prune: bool = False
    workers: int = _DEFAULT["workers"]
    timeout_s: float = _DEFAULT["timeout_s"]
    memory_limit_mb: int = _DEFAULT["memory_limit_mb"]
    max_page_chars: int = _DEFAULT["max_page_chars"]
    max_document_chars: int = _DEFAULT["max_document_chars"]
    ocr: OcrSettings = OcrSettings()  # off unless the caller found Tesseract (ocr_settings)
    chunk_tokens: int = _DEFAULT["chunk_tokens"]
    chunk_overlap: int = _DEFAULT["chunk_overlap"]
    embed_batch_chunks: int = 256
    progress: bool = False


class FileReport(msgspec.Struct, frozen=True, omit_defaults=True):
    path: str
    status: Outcome
    reason: str = ""
    code: str = ""  # "unsupported_file": a type ragserve does not read (see `reason`)
    format: str = ""  # what the file is: pdf, text, markdown, html, docx, hwpx, unknown
    pages: int = 0  # a PDF's pages
    sections: int = 0  # a format without pages: its sections (a heading's text, ...)
    chunks: int = 0
    ocr_pages: int = 0  # pages whose text came from OCR
    ocr_failed_pages: int = 0  # scanned pages OCR could not read (timeout, error)
    ocr_skipped_pages: int = 0  # scanned pages not read because OCR is off
    unread_pages: int = 0  # pages that are not blank but gave no text (see `reason`)


class IngestSummary(msgspec.Struct):
    index_dir: str
    version: str | None = None
    published: bool = False
    ingested: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    removed: int = 0
    pages: int = 0
    chunks: int = 0
    reextracted_pages: int = 0
    garbled_pages: int = 0
    empty_pages: int = 0
    ocr_pages: int = 0
    ocr_failed_pages: int = 0
    ocr_skipped_pages: int = 0  # scanned pages not read because OCR is off
    seconds: float = 0.0
    problems: list[FileReport] = []


class _Candidate(msgspec.Struct):
    rel: str
    path: Path
    size: int
    mtime_ns: int
    sha256: str = ""
    source: str = ""  # what the index records as its origin (default: the path)


class Upload(msgspec.Struct, frozen=True):
    """One uploaded file a vector store holds, as `sync_uploads` brings it into an index."""

    document: str  # its path in the index
    file_id: str
    sha256: str
    size: int
    created_at: int


class IngestCancelled(Exception):
    """The ingest was asked to stop (the server is shutting down); nothing was published."""


class CorpusError(Exception):
    """A path given to the ingest does not exist or is unusable."""


def discover(
    paths: list[Path], root: Path | None
) -> tuple[Path, list[_Candidate], list[FileReport]]:
    """The documents under `paths` (files named as a format ragserve reads, see
    formats.SUFFIXES; a file named explicitly whatever its name), with paths relative to
    the corpus root. Never leaves the root."""
    resolved = []
    for p in paths:
        if not p.exists():
            raise CorpusError(f"no such file or directory: {p}")
        resolved.append(p.resolve())
    if root is None:
        dirs = [p if p.is_dir() else p.parent for p in resolved]
        root = Path(os.path.commonpath(dirs))
    root = root.resolve()
    found: dict[str, _Candidate] = {}
    problems: list[FileReport] = []

    def consider(file: Path, explicit: bool) -> None:
        if not explicit and file.suffix.lower() not in SUFFIXES:
            return
        real = file.resolve()
        if not real.is_relative_to(root):
            rel = os.path.relpath(file, root)
            problems.append(FileReport(rel, "skipped", "outside the corpus root (symlink?)"))
            return
        if not real.is_file():
            return
        rel = real.relative_to(root).as_posix()
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 in the name (os.fsdecode)
            shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            problems.append(
                FileReport(shown, "skipped", "file name is not valid UTF-8; rename the file")
            )
            return
        st = real.stat()
        found.setdefault(rel, _Candidate(rel, real, st.st_size, st.st_mtime_ns))

    for p in resolved:
        if p.is_file():
            consider(p, explicit=True)
            continue
        for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                consider(Path(dirpath) / name, explicit=False)
    return root, sorted(found.values(), key=lambda c: c.rel), problems


class _Batch:
    """Extracted documents waiting for one embedding call, so batches stay full."""

    def __init__(self) -> None:
        self.items: list[tuple[_Candidate, int, list[Chunk], FileReport]] = []
        self.size = 0

    def add(self, cand: _Candidate, result: ExtractResult, chunks: list[Chunk]) -> None:
        paged = not result.locations
        report = FileReport(
            cand.rel,
            "ingested",
            reason=unread_note(result),
            format=result.format,
            pages=len(result.pages) if paged else 0,
            sections=0 if paged else len(result.pages),
            chunks=len(chunks),
            ocr_pages=len(result.ocr),
            ocr_failed_pages=len(result.ocr_failed),
            ocr_skipped_pages=result.ocr_skipped_pages,
            unread_pages=result.unread_pages,
        )
        self.items.append((cand, len(result.pages), chunks, report))
        self.size += len(chunks)


def run_ingest(
    options: IngestOptions,
    embedder: Embedder,
    *,
    on_file: Callable[[FileReport], None] | None = None,
) -> IngestSummary:
    """Bring the index up to date with the files under `options.paths`."""
    started = time.perf_counter()
    root, candidates, problems = discover(options.paths, options.root)
    backend = open_backend(options.index_dir, collection=options.collection)
    try:
        summary = IngestSummary(index_dir=backend.where)
        for report in problems:
            _record(summary, report, on_file)
        with backend.lock():
            writer = _writer(backend, embedder, options)
            try:
                _apply(options, embedder, writer, candidates, summary, on_file)
                _finish(writer, summary)
            except BaseException:
                writer.abort()
                raise
    finally:
        backend.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    log.info(
        "ingest.done",
        root=str(root),
        **{k: v for k, v in msgspec.structs.asdict(summary).items() if k != "problems"},
    )
    return summary


def _record(summary: IngestSummary, report: FileReport, on_file) -> None:
    if report.status == "ingested":
        summary.ingested += 1
        summary.pages += report.pages
        summary.chunks += report.chunks
        if report.unread_pages:  # flagged: part of the document could not be read
            summary.problems.append(report)
    elif report.status == "unchanged":
        summary.unchanged += 1
    elif report.status == "removed":
        summary.removed += 1
    else:
        setattr(summary, report.status, getattr(summary, report.status) + 1)
        summary.problems.append(report)
    if on_file is not None:
        on_file(report)


def _apply(
    options,
    embedder: Embedder,
    writer: Writer,
    candidates: list[_Candidate],
    summary: IngestSummary,
    on_file,
) -> None:
    existing: dict[str, DocumentRow] = {d.path: d for d in writer.documents()}
    skipped = writer.skipped()
    todo: list[_Candidate] = []
    for cand in candidates:
        taken = existing.get(cand.rel)
        if taken is not None and is_upload(taken):
            reason = "an uploaded file (vector store vs_default) holds this path; rename the file"
            _record(summary, FileReport(cand.rel, "skipped", reason), on_file)
            continue
        known_bad = skipped.get(cand.rel)
        if known_bad is not None and known_bad[:2] == (cand.size, cand.mtime_ns):
            status: Outcome = "failed" if known_bad[2] == "failed" else "skipped"
            reason = known_bad[3] + " (file unchanged since the last ingest)"
            _record(summary, FileReport(cand.rel, status, reason), on_file)
            continue
        old = existing.get(cand.rel)
        if old is not None and old.size == cand.size and old.mtime_ns == cand.mtime_ns:
            _record(summary, FileReport(cand.rel, "unchanged"), on_file)
            continue
        cand.sha256 = sha256_file(cand.path)
        if old is not None and old.sha256 == cand.sha256:
            writer.touch_document(cand.rel, str(cand.path), cand.mtime_ns)
            _record(summary, FileReport(cand.rel, "unchanged"), on_file)
            continue
        todo.append(cand)

    _extract(options, embedder, writer, todo, existing, summary, on_file)

    if options.prune:
        present = {c.rel for c in candidates}
        for path in skipped:
            if path not in present:
                writer.clear_skipped(path)
        for doc in existing.values():
            if is_upload(doc):
                continue  # the vector store's, not the corpus folder's
            if doc.path not in present and not Path(doc.source).exists():
                writer.remove_document(doc.path)
                _record(summary, FileReport(doc.path, "removed", "file is gone"), on_file)


def _extract(
    options,
    embedder: Embedder,
    writer: Writer,
    todo: list[_Candidate],
    existing: dict[str, DocumentRow],
    summary: IngestSummary,
    on_file,
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """Extract, chunk and embed the files in worker processes, adding each document to
    the writer (a file that fails is recorded as skipped, its old version kept).
    `cancelled()` is asked after every file: True stops with IngestCancelled."""
    by_path: dict[str, list[_Candidate]] = {}
    for cand in todo:  # uploads of the same bytes share one file
        by_path.setdefault(str(cand.path), []).append(cand)
    batch = _Batch()
    progress = _progress(options.progress, len(todo))
    limits = TextLimits(options.max_page_chars, options.max_document_chars)
    extract = functools.partial(extract_document, limits=limits, ocr=options.ocr)  # to workers
    # each file with the name it goes by (an upload's bytes are kept under their hash)
    tasks = [(path, by_path[path][0].rel) for path in by_path]
    with ExtractPool(options.workers, options.timeout_s, options.memory_limit_mb, extract) as pool:
        for (path, _), result in pool.imap_unordered(tasks):
            if cancelled is not None and cancelled():
                raise IngestCancelled("the ingest was stopped before it finished")
            _account_pages(summary, result)
            chunks: list[Chunk] = []
            if result.status == "ok":
                chunks = chunk_document(
                    result.pages,
                    embedder.token_spans,
                    chunk_tokens=options.chunk_tokens,
                    overlap=options.chunk_overlap,
                    within_pages=bool(result.locations),  # sections: each chunk in one
                )
                chunks = mark_ocr(chunks, {p.page: p.confidence for p in result.ocr})
                chunks = mark_locations(chunks, result.locations)
            for cand in by_path[path]:
                if result.status != "ok":
                    kept = cand.rel in existing
                    note = " (the previously indexed version is kept)" if kept else ""
                    writer.set_skipped(
                        cand.rel, cand.size, cand.mtime_ns, result.status, result.reason
                    )
                    outcome = cast(Outcome, result.status)
                    report = FileReport(
                        cand.rel, outcome, result.reason + note, result.code, result.format
                    )
                    _record(summary, report, on_file)
                else:
                    batch.add(cand, result, chunks)
                if batch.size >= options.embed_batch_chunks:
                    _flush(batch, embedder, writer, existing, summary, on_file)
                    batch = _Batch()
                if progress is not None:
                    progress.update(1)
            if progress is not None:
                progress.set_postfix(pages=summary.pages + summary.empty_pages, refresh=False)
        if cancelled is not None and cancelled():
            raise IngestCancelled("the ingest was stopped before it finished")
        _flush(batch, embedder, writer, existing, summary, on_file)
    if progress is not None:
        progress.close()


def sync_uploads(
    backend: Backend,
    embedder: Embedder,
    uploads: list[Upload],
    locate: Callable[[str], Path | None],
    options: IngestOptions,
    *,
    shared: bool = False,
    on_file: Callable[[FileReport], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> IngestSummary:
    """Make the index hold exactly these uploads (a vector store's files): add the new and
    changed ones (their bytes found by `locate(sha256)`), remove uploads no longer listed.
    `shared`: the CLI's index, whose own documents are kept (else every document is the
    store's). One version is published, or none; the caller holds `backend.lock()`."""

    def owned(doc: DocumentRow) -> bool:
        return is_upload(doc) or not shared

    started = time.perf_counter()
    summary = IngestSummary(index_dir=backend.where)
    writer = _writer(backend, embedder, options)
    try:
        existing = {d.path: d for d in writer.documents()}
        wanted = {u.document: u for u in uploads}
        for doc in existing.values():
            if owned(doc) and doc.path not in wanted:
                writer.remove_document(doc.path)
                _record(summary, FileReport(doc.path, "removed", "detached"), on_file)
        todo: list[_Candidate] = []
        for u in uploads:
            old = existing.get(u.document)
            source = UPLOAD_SOURCE + u.file_id
            if old is not None and not owned(old):
                reason = "a document of the server's corpus has this path; rename the file"
                _record(summary, FileReport(u.document, "failed", reason), on_file)
                continue
            if old is not None and old.sha256 == u.sha256:
                if old.source != source:
                    writer.touch_document(u.document, source, old.mtime_ns)
                _record(summary, FileReport(u.document, "unchanged"), on_file)
                continue
            path = locate(u.sha256)
            if path is None:
                _record(summary, FileReport(u.document, "failed", "its bytes are gone"), on_file)
                continue
            mtime_ns = u.created_at * 1_000_000_000
            todo.append(_Candidate(u.document, path, u.size, mtime_ns, u.sha256, source))
        _extract(options, embedder, writer, todo, existing, summary, on_file, cancelled)
        if cancelled is not None and cancelled():
            raise IngestCancelled("the ingest was stopped before it finished")
        _finish(writer, summary)
    except BaseException:
        writer.abort()
        raise
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _writer(backend: Backend, embedder: Embedder, options: IngestOptions) -> Writer:
    """The next version's writer (the embedder's dimension asked only for a new index)."""
    return backend.writer(
        embedding_model=embedder.model_id,
        dim_of=lambda: embedder.dim,
        chunk_tokens=options.chunk_tokens,
        chunk_overlap=options.chunk_overlap,
    )


def _finish(writer: Writer, summary: IngestSummary) -> None:
    """Publish what changed as the next version; with no change, let the writer go."""
    if writer.changed:
        manifest = writer.publish()
        summary.version, summary.published = manifest.version, True
    else:
        writer.abort()
        summary.version = writer.base


def _account_pages(summary: IngestSummary, result: ExtractResult) -> None:
    summary.reextracted_pages += result.reextracted_pages
    summary.garbled_pages += result.garbled_pages
    summary.empty_pages += result.empty_pages
    summary.ocr_pages += len(result.ocr)
    summary.ocr_failed_pages += len(result.ocr_failed)
    summary.ocr_skipped_pages += result.ocr_skipped_pages


def unread_note(result: ExtractResult) -> str:
    """Why an ingested document lacks some pages' text ("" when it lacks none): such a
    document is listed among the problems, never silently partial."""
    parts = []
    if result.ocr_failed:
        pages = ", ".join(str(f.page) for f in result.ocr_failed[:5])
        more = "..." if len(result.ocr_failed) > 5 else ""
        parts.append(f"OCR could not read page(s) {pages}{more} ({result.ocr_failed[0].reason})")
    if result.ocr_skipped_pages:
        parts.append(
            f"{result.ocr_skipped_pages} scanned page(s) without a text layer were not read: "
            "OCR is off (--ocr auto with Tesseract installed reads them)"
        )
    if result.garbled_pages:
        parts.append(f"{result.garbled_pages} page(s) unreadable by both extractors")
    if not parts:
        return ""
    return f"ingested without {result.unread_pages} of {len(result.pages)} pages: " + "; ".join(
        parts
    )


def _flush(
    batch: _Batch,
    embedder: Embedder,
    writer: Writer,
    existing: dict[str, DocumentRow],
    summary: IngestSummary,
    on_file,
) -> None:
    if not batch.items:
        return
    texts = [indexed_text(cand.rel, c.text) for cand, _, chunks, _ in batch.items for c in chunks]
    vectors = embedder.embed_passages(texts) if texts else np.zeros((0, embedder.dim), np.float32)
    offset = 0
    for cand, pages, chunks, report in batch.items:
        if cand.rel in existing:
            writer.remove_document(cand.rel)
        writer.clear_skipped(cand.rel)
        source = cand.source or str(cand.path)
        doc = Document(cand.rel, source, cand.sha256, cand.size, cand.mtime_ns, pages)
        writer.add_document(doc, chunks, vectors[offset : offset + len(chunks)])
        offset += len(chunks)
        _record(summary, report, on_file)


def _progress(enabled: bool, total: int):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, unit="file", file=sys.stderr, dynamic_ncols=True, desc="ingest", smoothing=0.1
    )
