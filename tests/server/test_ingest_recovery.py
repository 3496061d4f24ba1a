"""A server stopped or killed in the middle of a vector-store ingest: its extraction
workers do not outlive it, nothing half-written is published, and the restarted server
takes the attach up again (a real `ragserve serve`, local files)."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import openai
import pdfgen
import pytest
from helpers import alive, extractors, ragserve
from test_replicas import poll_status, start, wait_ready


def long_contract(path):
    pages = [[f"Section {n} of the long contract: clause {n} text."] * 12 for n in range(60)]
    pages.append(["The final clause names the Kestrel depot as the place of delivery."])
    return pdfgen.write_pdf(path, pages)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_an_attach_cut_short_is_resumed_by_the_restarted_server(tmp_path, how):
    corpus = tmp_path / "corpus"
    pdfgen.write_pdf(corpus / "falcon.pdf", [["The budget of Project Falcon is 4.2 million."]])
    index, data = tmp_path / "index", tmp_path / "data"
    done = ragserve("ingest", str(corpus), "--index", str(index), "--no-progress")
    assert done.returncode == 0, done.stderr
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAGSERVE_INDEX_DIR": str(index),
        "RAGSERVE_DATA_DIR": str(data),
        "RAGSERVE_MODEL_ALIAS": "smollm2",
    }
    log = tmp_path / "first.log"
    proc, url = start(env, log)
    try:
        wait_ready(proc, url, log)
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        store = sdk.vector_stores.create(name="contracts")
        with open(long_contract(tmp_path / "long.pdf"), "rb") as fh:
            up = sdk.files.create(file=fh, purpose="assistants")
        sdk.vector_stores.files.create(vector_store_id=store.id, file_id=up.id)
        deadline = time.monotonic() + 30
        while not (workers := extractors(proc.pid)):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        proc.send_signal(how)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 30
    while any(alive(p) for p in workers):  # nothing of the server outlives it
        assert time.monotonic() < deadline
        time.sleep(0.2)
    with sqlite3.connect(data / "library.sqlite") as db:
        (status,) = db.execute(
            "SELECT status FROM store_files WHERE file_id = ?", (up.id,)
        ).fetchone()
    assert status == "in_progress"  # cut short, not finished
    versions = data / "stores" / store.id / "index" / "versions"
    assert not [p for p in versions.glob("*") if not p.name.endswith(".tmp")]  # none published
    log = tmp_path / "second.log"
    proc, url = start(env, log)
    try:
        wait_ready(proc, url, log)
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        assert poll_status(sdk, store.id, up.id) == "completed"
        hits = sdk.vector_stores.search(store.id, query="Kestrel depot delivery").data
        assert hits[0].file_id == up.id and "Kestrel" in hits[0].content[0].text
        assert not list(versions.glob("*.tmp"))  # the interrupted one was cleaned up
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
