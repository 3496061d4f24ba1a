"""The embedder's lock lets a chat's one-query embedding go before bulk /v1/embeddings work."""

from __future__ import annotations

import threading
import time

from ragserve.retrieval.embedder import PriorityLock


def test_urgent_holders_go_before_waiting_bulk_work():
    lock = PriorityLock()
    order: list[str] = []
    release = threading.Event()

    def hold(name: str, urgent: bool, wait: threading.Event | None = None) -> None:
        with lock.hold(urgent):
            order.append(name)
            if wait is not None:
                wait.wait(5)

    first = threading.Thread(target=hold, args=("bulk-1", False, release))
    first.start()
    while not order:
        time.sleep(0.001)
    bulk = threading.Thread(target=hold, args=("bulk-2", False))
    bulk.start()
    time.sleep(0.05)  # bulk-2 is waiting before the query arrives
    query = threading.Thread(target=hold, args=("query", True))
    query.start()
    time.sleep(0.05)
    release.set()
    for t in (first, bulk, query):
        t.join(5)
    assert order == ["bulk-1", "query", "bulk-2"]
