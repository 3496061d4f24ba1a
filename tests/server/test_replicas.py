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
from helpers import ROOT, ragserve
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
