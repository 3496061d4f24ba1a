"""A process pool for PDF extraction that survives workers which hang or die.

concurrent.futures cannot kill one stuck task, and one dead worker breaks the whole
ProcessPoolExecutor. Here every worker has its own pipe and deadline: a worker past
its deadline is killed and replaced, a dead one is replaced, and its file is
reported as failed while the others carry on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, NamedTuple, TypeVar, cast

import structlog

from ragserve.errors import RagserveError

from .extract import ExtractResult, extract_pdf

log = structlog.get_logger(__name__)
Task = TypeVar("Task")  # what a worker is given: a path, or (path, name) for extract_document


class Extend(NamedTuple):
    """From a worker: add `seconds` to its file's deadline (a page to OCR is next)."""

    seconds: float


def _worker_main(
    conn: Connection, memory_limit_mb: int, fn: Callable[[Any], ExtractResult]
) -> None:
    if memory_limit_mb > 0:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from . import extract

    # a page to OCR may take longer than a text page: the parent extends the file's deadline
    extract.extend_deadline = lambda seconds: conn.send(Extend(seconds))
    conn.send("ready")  # deadlines start once the interpreter is up, not at spawn
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(fn(task))


class _Worker:
    def __init__(self, ctx, memory_limit_mb: int, fn: Callable[[Any], ExtractResult]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, memory_limit_mb, fn), daemon=True)
        self.proc.start()
        child.close()
        self.task: Any = None
        self.started = 0.0
        self.deadline = 0.0
        self.ready = False

    def wait_ready(self, timeout: float = 120.0) -> None:
        if self.ready:
            return
        try:
            if self.conn.poll(timeout):
                self.ready = self.conn.recv() == "ready"
        except (EOFError, OSError):
            pass
        if not self.ready:
            raise RagserveError(
                f"an extraction worker did not start (exit code {self.proc.exitcode})"
            )

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class ExtractPool(Generic[Task]):
    """Extract files in `workers` processes, each file limited to `timeout_s` seconds."""

    def __init__(
        self,
        workers: int,
        timeout_s: float,
        memory_limit_mb: int,
        fn: Callable[[Task], ExtractResult] = extract_pdf,  # type: ignore[assignment]
    ) -> None:
        self.fn = fn  # a module-level function: it travels to the workers by name
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        # spawn: the parent holds torch and its threads, which must not be forked.
        self._ctx = mp.get_context("spawn")
        self._pool: list[_Worker] = []

    def __enter__(self) -> ExtractPool[Task]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for w in self._pool:
            w.kill()
        self._pool.clear()

    def imap_unordered(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, ExtractResult]]:
        todo = deque(tasks)
        while len(self._pool) < min(self.workers, len(todo)):
            self._pool.append(_Worker(self._ctx, self.memory_limit_mb, self.fn))
        busy: dict[Connection, _Worker] = {}
        while todo or busy:
            for w in self._pool:
                if w.task is None and todo:
                    w.wait_ready()
                    w.task = todo.popleft()
                    w.started = time.monotonic()
                    w.deadline = w.started + self.timeout_s
                    w.conn.send(w.task)
                    busy[w.conn] = w
            timeout = max(0.0, min(w.deadline for w in busy.values()) - time.monotonic())
            ready = wait(list(busy), timeout=timeout)
            for conn in ready:
                w = busy[cast(Connection, conn)]
                try:
                    result = w.conn.recv()
                except (EOFError, OSError):
                    result = None
                if isinstance(result, Extend):
                    w.deadline += result.seconds
                    continue
                del busy[cast(Connection, conn)]
                task, w.task = w.task, None
                assert task is not None
                if result is None:
                    w.proc.join(timeout=1)
                    code = w.proc.exitcode
                    result = ExtractResult(
                        status="failed", reason=f"extractor process died (exit code {code})"
                    )
                    self._replace(w)
                yield task, result
            now = time.monotonic()
            for conn, w in list(busy.items()):
                if w.deadline <= now:
                    del busy[conn]
                    task, w.task = w.task, None
                    assert task is not None
                    took = now - w.started
                    log.warning("ingest.timeout", task=str(task), seconds=round(took, 1))
                    self._replace(w)
                    reason = f"timed out after {took:.0f} s (--timeout {self.timeout_s:g} s"
                    if took > self.timeout_s + 1:
                        reason += ", with --ocr-page-timeout for each page read by OCR"
                    yield task, ExtractResult(status="failed", reason=reason + ")")

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        index = self._pool.index(worker)
        self._pool[index] = _Worker(self._ctx, self.memory_limit_mb, self.fn)
