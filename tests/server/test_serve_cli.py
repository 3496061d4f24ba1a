"""`ragserve serve` as a user runs it: a process that is live at once and ready later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import openai
from helpers import ROOT
from liveserver import free_port


def test_serve_is_live_before_ready_then_serves(index_dir, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAGSERVE_API_KEYS": "s3cret",
        "RAGSERVE_INDEX_DIR": str(index_dir),
        "RAGSERVE_N_CTX": "1024",
    }
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "never live"
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        first_ready = httpx.get(url + "/health/ready")
        assert first_ready.status_code == 503  # loading happens in the background
        assert first_ready.json()["error"]["code"] == "not_ready"
        while httpx.get(url + "/health/ready").status_code != 200:
            assert time.monotonic() < deadline + 120, log.read_text()
            time.sleep(0.2)
        client = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        resp = client.chat.completions.create(
            model=client.models.list().data[0].id,
            max_tokens=5,
            messages=[{"role": "user", "content": "What is the budget of Project Falcon?"}],
        )
        assert resp.model_extra["sources"][0]["document"] == "falcon.pdf"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text()
    assert "layers_offloaded" in text and "s3cret" not in text
    assert f"http://127.0.0.1:{port}/v1" in text


def test_serve_with_a_missing_model_exits_with_a_message():
    from helpers import ragserve

    out = ragserve("serve", "--model", "/nonexistent/model.gguf", timeout=60)
    assert out.returncode == 2 and "model file not found" in out.stderr
