"""`ragserve serve` as a user runs it: a process that is live at once and ready later."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import httpx
import openai
from helpers import ROOT
from liveserver import free_port

from ragserve.engine.scheduler import CLOSE_WAIT_S


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
            [sys.executable, "-m", "ragserve.cli", "serve", "--port", str(port)],
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
        from ragserve import __version__

        assert httpx.get(url + "/health").json() == {"status": "ok", "version": __version__}
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


def test_version_names_the_build():
    from helpers import ragserve

    from ragserve import __version__

    out = ragserve("--version", timeout=60)
    assert out.returncode == 0
    line = out.stdout.strip()
    assert line.startswith(f"ragserve {__version__} (llama-cpp-python ") and "\n" not in line


def test_bad_settings_fail_with_one_line_naming_them():
    from helpers import ragserve

    for env, name in (
        ({"RAGSERVE_PORT": "abc"}, "RAGSERVE_PORT"),
        ({"RAGSERVE_PARALLEL": "0"}, "RAGSERVE_PARALLEL"),
        ({"RAGSERVE_EMBED_DEVICE": "tpu"}, "RAGSERVE_EMBED_DEVICE"),
        ({"RAGSERVE_STREAM_INTERVAL": "soon"}, "RAGSERVE_STREAM_INTERVAL"),
        ({"RAGSERVE_KV_CACHE_TYPE": "q5"}, "RAGSERVE_KV_CACHE_TYPE"),
        ({"RAGSERVE_FLASH_ATTN": "maybe"}, "RAGSERVE_FLASH_ATTN"),
        ({"RAGSERVE_KV_CACHE_TYPE": "q4_0", "RAGSERVE_FLASH_ATTN": "off"}, "--flash-attn"),
    ):
        out = ragserve("serve", env=env, timeout=60)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in out.stderr, lines
    flag = ragserve("serve", "--n-ctx", "lots", timeout=60)
    assert flag.returncode == 2 and "--n-ctx" in flag.stderr


def _start(index_dir, tmp_path, *args: str) -> tuple[subprocess.Popen, str, object]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGSERVE_INDEX_DIR": str(index_dir)}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ragserve.cli", "serve", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "never ready"
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                return proc, url, log
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def test_slow_clients_time_out_and_sigterm_ends_streams_cleanly(index_dir, tmp_path):
    import socket

    proc, url, log = _start(
        index_dir,
        tmp_path,
        "--request-timeout",
        "1",
        "--shutdown-grace",
        "1",
        "--n-ctx",
        "4096",
        "--max-uploads",
        "1",
    )
    try:
        port = int(url.rsplit(":", 1)[1])
        # headers that never finish: the connection is closed
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            assert sock.recv(1024) == b""  # closed by the server after ~1 s
        # a body that stops arriving: 408 in OpenAI's shape
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"messages"'
            )
            reply = b""
            while b'"request_timeout"' not in reply and (part := sock.recv(4096)):
                reply += part
            assert reply.startswith(b"HTTP/1.1 408"), reply
            assert b'"request_timeout"' in reply
        # a body that trickles (a byte every 0.3 s) gets no longer: the timeout is a deadline
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            )
            sock.settimeout(0.3)
            started, reply = time.monotonic(), b""
            while b'"request_timeout"' not in reply and time.monotonic() - started < 10:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(b" ")
                with contextlib.suppress(TimeoutError):
                    reply += sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408"), reply
            assert time.monotonic() - started < 4  # 1 s, not 100 bytes x 0.3 s
        # past --max-uploads large bodies at once: 429 before reading it
        head = (
            b"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(head)
            time.sleep(0.3)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
                second.sendall(head)
                answer = b""
                while b"too_many_uploads" not in answer and (part := second.recv(4096)):
                    answer += part
            assert answer.startswith(b"HTTP/1.1 429") and b"too_many_uploads" in answer
        time.sleep(0.5)  # the first one's client went away: its place is free again
        with socket.create_connection(("127.0.0.1", port), timeout=10) as third:
            third.sendall(head)
            third.settimeout(1.0)
            with contextlib.suppress(TimeoutError):
                assert not third.recv(4096).startswith(b"HTTP/1.1 429")
        # SIGTERM while a long answer streams: it ends with an error frame, never a cut
        body = {
            "model": "x-norag",
            "messages": [{"role": "user", "content": "Count to a thousand."}],
            "max_tokens": 3000,
            "ignore_eos": True,
            "stream": True,
        }
        frames: list[str] = []
        signalled = 0.0
        with (
            httpx.Client(base_url=url, timeout=60) as http,
            http.stream("POST", "/v1/chat/completions", json=body) as resp,
        ):
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if line:
                    frames.append(line)
                if len(frames) == 3:
                    proc.send_signal(signal.SIGTERM)
                    signalled = time.monotonic()
        ended = time.monotonic() - signalled
        assert frames[-1] == "data: [DONE]" or '"error"' in frames[-1], frames[-3:]
        # the grace (1 s) bounds the stream: its error frame does not wait for a decode step
        assert ended < 1 + 5, ended
        # and the process: the grace, then at most CLOSE_WAIT_S for a decode in progress
        assert proc.wait(timeout=1 + CLOSE_WAIT_S + 10) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "server.draining" in log.read_text()


def test_a_model_that_fails_to_load_keeps_the_server_up_and_says_why(tmp_path, index_dir):
    """`ragserve serve` starts the model load before the web stack (EngineLoad): a broken
    file is reported by /health/ready and every API call, and /health stays live."""
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 32)
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGSERVE_INDEX_DIR": str(index_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragserve.cli", "serve", "--port", str(port), "--model", str(bad)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None
            assert time.monotonic() < deadline, "never reported"
            try:
                ready = httpx.get(url + "/health/ready", timeout=2)
                if ready.status_code == 503 and "failed to load" in ready.text:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert httpx.get(url + "/health", timeout=2).status_code == 200
        chat = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "x", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert chat.status_code == 503
        assert "could not load the model file" in chat.json()["error"]["message"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


STUCK_APP = """
import sys, threading, time
from ragserve.server import serve
from ragserve.retrieval.config import RetrievalSettings
from ragserve.server.settings import Settings

serve.HARD_STOP_MARGIN_S = 1.0

class Stuck:  # an app whose close never returns: what a stuck writer or thread would do
    app = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                print("started", flush=True)
            else:
                threading.Event().wait()  # blocks the loop for ever

retrieval = RetrievalSettings(index_dir="unused")
settings = Settings(retrieval, port=int(sys.argv[1]), shutdown_grace=1.0)
serve.run(Stuck(), settings)
"""


def test_a_stop_that_hangs_is_cut_with_every_threads_stack(tmp_path):
    """SIGTERM bounds the stop even when closing never returns: after the grace and the
    margin the process prints where each thread is and exits 1 (a supervisor sees it
    failed, the log says why)."""
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_APP)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(free_port())],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 1, err
    assert took >= 2.0  # the grace and the margin were given
    assert "Timeout (0:00:02)!" in err and "in __call__" in err, err
