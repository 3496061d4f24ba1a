"""The Codex CLI against ragserve, as a user runs it: `make codex-check`.

Installs @openai/codex from the npm registry (into ~/.cache/ragserve/codex, once), ingests
samples/, serves the bundled model with a context that holds Codex's ~9k-token prompt,
writes a config.toml with a `wire_api = "responses"` provider, runs `codex exec` and
checks that it exits 0 with an answer, that the server answered its /v1/responses
request with 200, and that nothing else reached the server. About 2 minutes on 2 cores
(most of it reading Codex's prompt on the CPU).

    python .ci/codex_check.py [--python .venv/bin/python] [--version 0.171.0]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "ragserve" / "codex"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def codex(version: str) -> Path:
    home = CACHE / version
    binary = home / "node_modules" / ".bin" / "codex"
    if not binary.exists():
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"@openai/codex@{version}"],
            cwd=home,
            check=True,
        )
    return binary


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    ap.add_argument("--version", default="0.171.0")
    ap.add_argument("--n-ctx", type=int, default=16384)
    args = ap.parse_args()
    binary = codex(args.version)
    bin_dir = Path(args.python).parent
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        subprocess.run(
            [bin_dir / "ragserve", "ingest", ROOT / "samples", "--index", work / "index"],
            check=True,
            env=env,
            capture_output=True,
        )
        port = free_port()
        log = (work / "server.log").open("w")
        server = subprocess.Popen(
            [bin_dir / "ragserve", "serve", "--index", work / "index", "--port", str(port),
             "--n-ctx", str(args.n_ctx), "--parallel", "1", "--log-json"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(240):
                try:
                    urllib.request.urlopen(url + "/health/ready", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            models = json.load(urllib.request.urlopen(url + "/v1/models"))
            model = models["data"][1]["id"]  # the -norag id: a coding agent, no retrieval
            home = work / "codex-home"
            home.mkdir()
            (home / "config.toml").write_text(
                f'model = "{model}"\nmodel_provider = "ragserve"\n\n'
                "[model_providers.ragserve]\n"
                f'name = "ragserve"\nbase_url = "{url}/v1"\nwire_api = "responses"\n'
            )
            (work / "repo").mkdir()
            started = time.perf_counter()
            run = subprocess.run(
                [binary, "exec", "--skip-git-repo-check", "Say hello in one short sentence."],
                cwd=work / "repo",
                env={**env, "CODEX_HOME": str(home)},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=540,
            )
            seconds = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(60)
            log.close()
        lines = [
            json.loads(x)
            for x in (work / "server.log").read_text().splitlines()
            if x.startswith("{")
        ]
        posts = [x for x in lines if x.get("event") == "http.request" and x["method"] == "POST"]
        done = [x for x in lines if x.get("event") == "chat.done"]
        print(run.stdout[-2000:])
        problems = []
        if run.returncode != 0:
            problems.append(f"codex exec exited {run.returncode}: {run.stderr[-2000:]}")
        if not run.stdout.strip():
            problems.append("codex printed no answer")
        if not posts or any(p["path"] != "/v1/responses" or p["status"] != 200 for p in posts):
            problems.append(f"unexpected requests: {[(p['path'], p['status']) for p in posts]}")
        if done:
            print(
                f"codex exec: {seconds:.1f} s, prompt {done[-1]['prompt_tokens']} tokens, "
                f"TTFT {done[-1]['ttft_ms'] / 1000:.1f} s, {len(posts)} request(s)"
            )
        for p in problems:
            print("codex-check:", p, file=sys.stderr)
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
