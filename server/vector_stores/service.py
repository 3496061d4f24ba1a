"""Vector stores: each is an index (what `ragserve ingest` writes), fed with uploaded files.

Attaching a file links its blob into the store's corpus folder under the file's name and
runs the ingest in the background as a child process (`ragserve ingest --prune`): the same
pipeline as the CLI (its process pool, time limits, hostile-PDF handling, lock and atomic
publish), and nothing that goes wrong there can take the server down. Searches switch to
the new version on their own. The CLI's index is the store `vs_default`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
import structlog

from ragserve.errors import Conflict, InvalidRequest, NotFound
from ragserve.retrieval.fusion import MAX_SCORE
from ragserve.retrieval.search import Filters, Hit, Retriever

from ..catalog import Catalog, StoreFileRecord, StoreRecord
from ..protocol import And, Eq, Filter, Gt, Gte, Lt, Ne, Or
from ..state import AppState

log = structlog.get_logger(__name__)
DEFAULT_STORE = "vs_default"
MAX_FILES_PER_STORE = 10_000
INGEST_TIMEOUT_S = 3600


def safe_name(filename: str) -> str:
    """A file name that stays inside the corpus folder: its last part, no control or
    separator characters, no leading dots, ending in .pdf."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    name = re.sub(r"[\x00-\x1f\x7f/]", "", name).lstrip(". ").strip()[:200] or "document"
    return name if name.lower().endswith(".pdf") else name + ".pdf"


class VectorStores:
    def __init__(self, state: AppState, catalog: Catalog) -> None:
        self.state = state
        self.catalog = catalog
        self.root = catalog.dir / "stores"
        self._retrievers: dict[str, Retriever] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._pending: set[str] = set()
        self._guard = threading.Lock()
        if catalog.store(DEFAULT_STORE) is None:
            catalog.add_store(DEFAULT_STORE, "default", {})

    # -- places ----------------------------------------------------------------------
    def corpus(self, sid: str) -> Path:
        return self.root / sid / "corpus"

    def index_dir(self, sid: str) -> Path:
        if sid == DEFAULT_STORE:
            return self.state.settings.retrieval.index_dir
        return self.root / sid / "index"

    def record(self, sid: str) -> StoreRecord:
        record = self.catalog.store(sid)
        if record is None:
            raise NotFound(f"No vector store found with id '{sid}'", param="vector_store_id")
        return record

    def retriever(self, sid: str) -> Retriever | None:
        """The store's searcher (None while it has no index yet)."""
        if sid == DEFAULT_STORE:
            return self.state.retriever
        with self._guard:
            found = self._retrievers.get(sid)
            if found is None and (self.index_dir(sid) / "CURRENT").exists():
                found = Retriever(self.index_dir(sid), self.state.embedder)
                self._retrievers[sid] = found
            return found

    # -- stores ----------------------------------------------------------------------
    def create(self, name: str, metadata: dict[str, str], owner: str | None = None) -> StoreRecord:
        sid = "vs_" + secrets.token_hex(12)
        self.corpus(sid).mkdir(parents=True, exist_ok=True)
        return self.catalog.add_store(sid, name, metadata, owner)

    def delete(self, sid: str) -> None:
        self.record(sid)
        if sid == DEFAULT_STORE:
            raise Conflict(
                "the default store is the server's own index; it cannot be deleted",
                param="vector_store_id",
            )
        self.catalog.delete_store(sid)
        with self._guard:
            retriever = self._retrievers.pop(sid, None)
        if retriever is not None:
            retriever.close()
        _remove_tree(self.root / sid)

    # -- files -----------------------------------------------------------------------
    def attach(self, sid: str, fid: str, attributes: dict[str, Any]) -> StoreFileRecord:
        """Link the file into the store (a file of the same name is replaced) and ingest
        it in the background; the record says `in_progress` until that is done."""
        self.record(sid)
        file = self.catalog.file(fid)
        if file is None:
            raise InvalidRequest(f"No such File object: {fid}", param="file_id")
        files = self.catalog.store_files(sid)
        if len(files) >= MAX_FILES_PER_STORE and all(f.file_id != fid for f in files):
            raise InvalidRequest(
                f"a vector store holds at most {MAX_FILES_PER_STORE} files", param="file_id"
            )
        name = safe_name(file.filename)
        for other in files:
            if other.document == name and other.file_id != fid:
                self.catalog.detach(sid, other.file_id)  # a revised version replaces it
        corpus = self.corpus(sid)
        corpus.mkdir(parents=True, exist_ok=True)
        link = corpus / name
        tmp = corpus / f".{name}.{secrets.token_hex(4)}"
        os.link(self.catalog.blob(file.sha256), tmp)
        os.replace(tmp, link)  # atomically: the ingest sees the old or the new file
        self.catalog.attach(sid, fid, attributes, name)
        self.schedule(sid)
        record = self.catalog.store_file(sid, fid)
        assert record is not None
        return record

    def detach(self, sid: str, fid: str) -> None:
        self.record(sid)
        record = self.catalog.store_file(sid, fid)
        if record is None:
            raise NotFound(f"No file {fid} in vector store {sid}", param="file_id")
        self.catalog.detach(sid, fid)
        still = any(f.document == record.document for f in self.catalog.store_files(sid))
        if not still:
            (self.corpus(sid) / record.document).unlink(missing_ok=True)
        self.schedule(sid)

    # -- background ingest -------------------------------------------------------------
    def schedule(self, sid: str) -> None:
        with self._guard:
            if sid in self._pending:
                return  # a run is queued and will see this change too
            self._pending.add(sid)
            lock = self._locks.setdefault(sid, threading.Lock())
        threading.Thread(
            target=self._run, args=(sid, lock), daemon=True, name=f"ingest-{sid}"
        ).start()

    def _run(self, sid: str, lock: threading.Lock) -> None:
        with lock:  # one ingest per store at a time; the CLI's own lock guards the index
            with self._guard:
                self._pending.discard(sid)
            try:
                summary = self._ingest(sid)
                problems = {p["path"]: p for p in summary.get("problems", [])}
                error = None
            except Exception as exc:  # the child failed as a whole: every waiting file did
                log.exception("vector_store.ingest_failed", store=sid)
                problems, error = {}, {"code": "server_error", "message": str(exc)[:500]}
            for f in self.catalog.store_files(sid):
                if f.status != "in_progress":
                    continue
                problem = problems.get(f.document)
                if error is not None:
                    self.catalog.set_status(sid, f.file_id, "failed", error)
                elif problem is not None and problem["status"] in ("failed", "skipped"):
                    reason = {"code": "invalid_file", "message": problem.get("reason", "")}
                    self.catalog.set_status(sid, f.file_id, "failed", reason)
                else:
                    self.catalog.set_status(sid, f.file_id, "completed")
            retriever = self.retriever(sid)
            if retriever is not None:
                retriever.refresh(force=True)

    def _ingest(self, sid: str) -> dict[str, Any]:
        r = self.state.settings.retrieval
        corpus = self.corpus(sid)
        corpus.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "ragserve.cli", "ingest", str(corpus), "--root", str(corpus),
            "--index", str(self.index_dir(sid)), "--prune", "--json", "--no-progress",
            "--embed-model", r.embed_model, "--embed-device", r.embed_device,
        ]  # fmt: skip
        for attempt in range(60):  # the CLI may hold the index's lock for a while
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=INGEST_TIMEOUT_S, check=False
            )
            if done.returncode == 0:
                line = done.stdout.strip().splitlines()[-1]
                summary: dict[str, Any] = json.loads(line)
                log.info("vector_store.ingested", store=sid, **_counts(summary))
                return summary
            if "another ingest is running" not in done.stderr:
                raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "")
            threading.Event().wait(min(30, 1 + attempt))
        raise RuntimeError("the index stayed locked by another ingest")

    # -- search ------------------------------------------------------------------------
    def search(
        self, sid: str, query: str, top_k: int, filters: Filter | None, threshold: float | None
    ) -> list[tuple[StoreFileRecord, Hit]]:
        self.record(sid)
        retriever = self.retriever(sid)
        if retriever is None:
            return []
        files = {f.document: f for f in self.catalog.store_files(sid) if f.status == "completed"}
        allowed: list[str] | None = None
        if filters is not None:
            allowed = [d for d, f in files.items() if matches(filters, f.attributes)]
            if not allowed:
                return []
        hits = retriever.search(
            query, top_k, Filters(documents=[_literal(d) for d in allowed]) if allowed else None
        )
        out = []
        for h in hits:
            record = files.get(h.document)
            if record is None and sid != DEFAULT_STORE:
                continue  # being removed
            # OpenAI's scores are 0..1: the hybrid score scaled (>= 0.5: an identifier of
            # the query named this document)
            h = msgspec.structs.replace(h, score=round(min(1.0, h.score / MAX_SCORE), 6))
            if threshold is not None and h.score < threshold:
                continue
            out.append((record or _corpus_record(sid, h.document), h))
        return out


def _literal(path: str) -> str:
    """A document path as a glob that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def _corpus_record(sid: str, document: str) -> StoreFileRecord:
    return StoreFileRecord(sid, "", "completed", None, {}, 0, document)


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("ingested", "unchanged", "failed", "skipped", "removed", "seconds", "version")
    return {k: summary.get(k) for k in keys}


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _kind(value: Any) -> str:
    """The JSON type an attribute compares as: `true` is not `1` (Python says it is)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def matches(f: Filter, attributes: dict[str, Any]) -> bool:
    """OpenAI's attribute filters: comparisons (eq ne gt gte lt lte) and and/or."""
    if isinstance(f, And):
        return all(matches(sub, attributes) for sub in f.filters)
    if isinstance(f, Or):
        return any(matches(sub, attributes) for sub in f.filters)
    value = attributes.get(f.key)
    if isinstance(f, Eq):
        return value is not None and _kind(value) == _kind(f.value) and value == f.value
    if isinstance(f, Ne):
        return not (_kind(value) == _kind(f.value) and value == f.value)
    if value is None or _kind(value) != _kind(f.value) or isinstance(value, bool):
        return False  # a missing value, a boolean, or another type: no order to compare
    try:
        if isinstance(f, Gt):
            return bool(value > f.value)
        if isinstance(f, Gte):
            return bool(value >= f.value)
        if isinstance(f, Lt):
            return bool(value < f.value)
        return bool(value <= f.value)
    except TypeError:
        return False  # a number against a string
