"""Replicas on one PostgreSQL library: two `ragserve serve` processes and a CLI ingest from
elsewhere share the index (RAGSERVE_STORE), driven through the OpenAI SDK."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pdfgen
import pytest
from helpers import ROOT, alive, extractors, ragserve
from liveserver import free_port


def start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ragserve.cli", "serve", "--port", str(port), "--n-ctx", "1024"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def sources(url: str, question: str) -> list[str]:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    resp = client.chat.completions.create(
        model="smollm2",
        max_tokens=4,
        messages=[{"role": "user", "content": question}],
    )
    return [s["document"] for s in resp.model_extra["sources"]]


def test_two_replicas_and_a_cli_ingest_share_one_library(tmp_path, postgres_url):
    corpus = tmp_path / "corpus"
    pdfgen.write_pdf(corpus / "falcon.pdf", [["The budget of Project Falcon is 4.2 million."]])
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAGSERVE_STORE": postgres_url,
        "RAGSERVE_MODEL_ALIAS": "smollm2",
    }
    # the ingest from a third place: only the URL is shared, no folder
    done = ragserve("ingest", str(corpus), "--no-progress", env={"RAGSERVE_STORE": postgres_url})
    assert done.returncode == 0, done.stderr
    replicas = []
    try:
        for name in ("a", "b"):
            own = {**env, "RAGSERVE_DATA_DIR": str(tmp_path / name)}  # nothing shared there
            replicas.append((*start(own, tmp_path / f"{name}.log"), name))
        for proc, url, name in replicas:
            wait_ready(proc, url, tmp_path / f"{name}.log")
            ready = httpx.get(url + "/health/ready").json()
            assert ready["documents"] == 1 and ready["index_version"] == "v000001"
            assert sources(url, "What is the budget of Project Falcon?")[0] == "falcon.pdf"
        # a new document from the CLI: both replicas answer from it within their refresh
        pdfgen.write_pdf(corpus / "orchid.pdf", [["The Orchid plant opens on 14 March 2027."]])
        done = ragserve(
            "ingest", str(corpus), "--no-progress", env={"RAGSERVE_STORE": postgres_url}
        )
        assert done.returncode == 0 and "1 ingested" in done.stdout, done.stdout + done.stderr
        for _, url, _ in replicas:
            deadline = time.monotonic() + 10
            while httpx.get(url + "/health/ready").json()["index_version"] != "v000002":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert sources(url, "When does the Orchid plant open?")[0] == "orchid.pdf"
    finally:
        for proc, _, _ in replicas:
            proc.send_signal(signal.SIGTERM)
        for proc, _, _ in replicas:
            proc.wait(timeout=60)


def poll_status(sdk: openai.OpenAI, store: str, fid: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = sdk.vector_stores.files.retrieve(vector_store_id=store, file_id=fid).status
        if status != "in_progress" or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def test_replicas_share_uploads_stores_links_responses_and_finish_a_killed_attach(
    tmp_path, postgres_url
):
    corpus, uploads = tmp_path / "corpus", tmp_path / "uploads"
    pdfgen.write_pdf(corpus / "falcon.pdf", [["The budget of Project Falcon is 4.2 million."]])
    zephyr = pdfgen.write_pdf(
        uploads / "zephyr.pdf",
        [["Supply agreement ZEPHYR-88"], ["The ZEPHYR-88 agreement covers 400 drill units."]],
    )
    orchid = pdfgen.write_pdf(uploads / "orchid.pdf", [["The Orchid plant opens in May 2027."]])
    heron = pdfgen.write_pdf(uploads / "heron.pdf", [["The Heron bridge spans 320 metres."]])
    pages = [[f"Section {n} of the long contract: clause {n} text."] * 12 for n in range(60)]
    pages.append(["The final clause names the Kestrel depot as the place of delivery."])
    long = pdfgen.write_pdf(uploads / "long.pdf", pages)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAGSERVE_STORE": postgres_url,
        "RAGSERVE_MODEL_ALIAS": "smollm2",
        "RAGSERVE_API_KEYS": "k",
    }
    done = ragserve("ingest", str(corpus), "--no-progress", env={"RAGSERVE_STORE": postgres_url})
    assert done.returncode == 0, done.stderr
    procs = {}
    urls = {}
    try:
        for name in ("a", "b"):
            own = {**env, "RAGSERVE_DATA_DIR": str(tmp_path / name)}  # nothing shared there
            procs[name], urls[name] = start(own, tmp_path / f"{name}.log")
        for name in ("a", "b"):
            wait_ready(procs[name], urls[name], tmp_path / f"{name}.log")
        a, b = (
            openai.OpenAI(base_url=urls[n] + "/v1", api_key="k", max_retries=0, timeout=120)
            for n in ("a", "b")
        )
        # an upload through A: described and served by B, from the database
        store = a.vector_stores.create(name="contracts")
        with open(zephyr, "rb") as fh:
            up = a.files.create(file=fh, purpose="assistants")
        assert b.files.retrieve(up.id).filename == "zephyr.pdf"
        assert b.files.content(up.id).content == zephyr.read_bytes()
        assert b.vector_stores.retrieve(store.id).name == "contracts"
        # attached through A: searchable through B once completed
        done = a.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=up.id)
        assert done.status == "completed", done.last_error
        found = b.vector_stores.search(store.id, query="ZEPHYR-88 drill units").data
        assert found and found[0].file_id == up.id and "400 drill units" in found[0].content[0].text
        print(f"\nuploaded and attached through A, found through B: {found[0].filename}")
        # a citation link signed by A opens on B without a key
        chat = a.chat.completions.create(
            model="smollm2@contracts",
            max_tokens=4,
            messages=[{"role": "user", "content": "How many drill units does ZEPHYR-88 cover?"}],
        )
        url = chat.model_extra["sources"][0]["url"]
        assert "token=" in url and url.startswith(urls["a"])
        link = httpx.get(urls["b"] + url.removeprefix(urls["a"]).split("#")[0])
        assert link.status_code == 200 and link.content == zephyr.read_bytes()
        print(f"a citation link signed by A opened on B: {link.status_code}, {len(link.content)} B")
        # a stored response made on A continues on B
        first = a.responses.create(model="smollm2", input="Hello", max_output_tokens=4)
        assert b.responses.retrieve(first.id).id == first.id
        then = b.responses.create(
            model="smollm2", input="And then?", previous_response_id=first.id, max_output_tokens=4
        )
        assert then.previous_response_id == first.id
        print(f"response {first.id} made on A continued on B as {then.id}")
        # attaches to one store from both replicas at once: both land
        with open(orchid, "rb") as fh:
            o = a.files.create(file=fh, purpose="assistants")
        with open(heron, "rb") as fh:
            h = b.files.create(file=fh, purpose="assistants")
        a.vector_stores.files.create(vector_store_id=store.id, file_id=o.id)
        b.vector_stores.files.create(vector_store_id=store.id, file_id=h.id)
        assert poll_status(a, store.id, o.id) == "completed"
        assert poll_status(b, store.id, h.id) == "completed"
        for sdk in (a, b):
            assert sdk.vector_stores.search(store.id, query="Orchid plant").data[0].file_id == o.id
            assert sdk.vector_stores.search(store.id, query="Heron bridge").data[0].file_id == h.id
        print("attaches to one store through A and B at once: both completed, both found on both")
        # a delete on A is gone on B
        assert a.files.delete(up.id).deleted
        with pytest.raises(openai.NotFoundError):
            b.files.retrieve(up.id)
        assert all(
            r.file_id != up.id for r in b.vector_stores.search(store.id, query="ZEPHYR-88").data
        )
        # A killed in the middle of an attach: B finishes it, nothing half-visible meanwhile
        with open(long, "rb") as fh:
            big = a.files.create(file=fh, purpose="assistants")
        a.vector_stores.files.create(vector_store_id=store.id, file_id=big.id)
        deadline = time.monotonic() + 30  # its extraction has begun
        while not (workers := extractors(procs["a"].pid)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        procs["a"].kill()
        procs["a"].wait(timeout=30)
        killed = time.monotonic()
        print(f"\nreplica A killed (SIGKILL) while its {len(workers)} extraction worker(s) read")
        seen = b.vector_stores.files.retrieve(vector_store_id=store.id, file_id=big.id)
        assert seen.status == "in_progress"
        searches = 0
        while (status := poll_status(b, store.id, big.id, timeout=2)) == "in_progress":
            hits = b.vector_stores.search(store.id, query="Kestrel depot delivery").data
            assert all(r.file_id != big.id for r in hits)  # not until it is whole
            searches += 1
        assert status == "completed"
        print(
            f"replica B finished the attach {time.monotonic() - killed:.1f} s after the kill: "
            f"{status}; {searches} searches through B meanwhile found none of it"
        )
        hits = b.vector_stores.search(store.id, query="Kestrel depot delivery").data
        assert hits[0].file_id == big.id and "Kestrel" in hits[0].content[0].text
        counts = b.vector_stores.retrieve(store.id).file_counts
        assert (counts.completed, counts.in_progress, counts.failed) == (3, 0, 0)
        print(f"then B finds it first ({hits[0].score:.3f}); the store's files: {counts}")
        deadline = time.monotonic() + 30  # A's extraction workers do not outlive it
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(p) for p in workers)
        print(f"A's extraction workers exited with it: {workers} gone")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=60)
