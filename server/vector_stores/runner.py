"""Vector-store ingests inside the server: a queue of stores to bring up to date, and a
fixed number of threads that do it.

- **Bounded**: at most `concurrency` ingests run at once, over all stores together (each
  with its own extraction processes, see ingest/pool.py); a store is queued at most once,
  however many attaches arrive while it waits, and one run takes every file waiting in it.
- **Recoverable**: the files to ingest are the catalog's `in_progress` rows, not this
  process's memory. At start and every `sweep_s` the runner queues every store that has
  some, so work a stopped or killed process (this one earlier, or another replica) left
  behind is picked up; the catalog counts the attempts and fails a file after too many.
  A store another process is ingesting (its lock is held) is simply tried again later.
- Nothing outlives the server: on shutdown a running ingest stops after its current file
  (nothing published, its files stay `in_progress` for the next start), the threads are
  daemons, the extraction workers exit when their pipe closes; a killed server's
  unfinished version is never published either.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import structlog

from ragserve.errors import IngestLocked
from ragserve.ingest.pipeline import IngestCancelled

log = structlog.get_logger(__name__)
SWEEP_S = 10.0


class IngestRunner:
    def __init__(
        self,
        sync: Callable[[str, Callable[[], bool]], None],
        pending: Callable[[], list[str]],
        *,
        concurrency: int = 1,
        sweep_s: float = SWEEP_S,
    ) -> None:
        self._sync = sync
        self._pending = pending
        self.concurrency = concurrency
        self.sweep_s = sweep_s
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._again: set[str] = set()  # changed while running: run once more after
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.active = 0  # ingests running now (for tests and metrics)
        self.peak = 0

    def start(self) -> None:
        if self._threads:
            return
        for n in range(self.concurrency):
            t = threading.Thread(target=self._work, name=f"ingest-{n}", daemon=True)
            t.start()
            self._threads.append(t)
        sweeper = threading.Thread(target=self._sweep, name="ingest-sweep", daemon=True)
        sweeper.start()
        self._threads.append(sweeper)

    def schedule(self, sid: str) -> None:
        with self._cond:
            if sid in self._running:
                self._again.add(sid)
            elif sid not in self._queued:
                self._queued.add(sid)
                self._queue.append(sid)
                self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._running

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _sweep(self) -> None:
        while not self._stopping.is_set():
            try:
                for sid in self._pending():
                    self.schedule(sid)
            except Exception as exc:  # the database may be away for a moment
                log.warning("ingest.sweep_failed", error=str(exc)[:300])
            self._stopping.wait(self.sweep_s)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping.is_set():
                    self._cond.wait()
                if self._stopping.is_set():
                    return
                sid = self._queue.popleft()
                self._queued.discard(sid)
                self._running.add(sid)
                self.active += 1
                self.peak = max(self.peak, self.active)
            try:
                self._sync(sid, self._stopping.is_set)
            except IngestCancelled:
                log.info("ingest.cancelled", store=sid)  # resumed by the next start's sweep
            except IngestLocked:
                log.info("ingest.store_busy", store=sid)  # another process has it: the sweep
            except Exception:
                log.exception("ingest.store_failed", store=sid)
            finally:
                with self._cond:
                    self._running.discard(sid)
                    self.active -= 1
                    again = sid in self._again
                    self._again.discard(sid)
                if again:
                    self.schedule(sid)
