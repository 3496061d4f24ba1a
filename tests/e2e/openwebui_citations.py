"""End to end in a real browser: Open WebUI shows ragserve's citations as source chips, and a
chip's link returns the cited PDF (no API key: a signed link).

Not part of CI (Open WebUI and its dependencies are ~3 GB). Run it by hand:

    python3 -m venv /tmp/owui && /tmp/owui/bin/pip install torch==2.13.0 open-webui==0.12.4
    apt-get install -y chromium                     # Debian's Chromium
    .venv/bin/pip install playwright                # the Python driver; no browser download
    .venv/bin/python tests/e2e/openwebui_citations.py --open-webui /tmp/owui/bin/open-webui \
        [--settings defaults|compose]

It starts ragserve as `make run` does (the bundled SmolLM2 at the default context, an index
of samples/; plus an API key, so links must be signed) and Open WebUI (no login, wired to
ragserve) either at its own defaults (builtin tools offered to every model: ~7,000 tokens
of tool definitions per request) or with the environment compose.yaml's `ui` profile
gives it (read from compose.yaml), asks a question in the chat page
with Chromium, waits for the answer, checks the source chips Open WebUI drew from the
stream's `delta.annotations`, and fetches a chip's URL without credentials: it must be the
PDF. Screenshots go to --out. Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What was the budget of Project Falcon in 2025?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            time.sleep(1)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--open-webui", default="open-webui", help="the open-webui command")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "owui-e2e")
    ap.add_argument(
        "--settings",
        choices=["defaults", "compose"],
        default="defaults",
        help="Open WebUI at its defaults, or with compose.yaml's settings for it",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="owui-e2e-"))
    rag_port, ui_port = free_port(), free_port()
    rag_url = f"http://127.0.0.1:{rag_port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    ragserve = Path(sys.executable).parent / "ragserve"
    subprocess.run(
        [ragserve, "ingest", ROOT / "samples", "--index", work / "index", "--no-progress"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    with contextlib.ExitStack() as stack:
        rag_log = stack.enter_context(open(args.out / "ragserve.log", "w"))
        ui_log = stack.enter_context(open(args.out / "open-webui.log", "w"))
        serve = [ragserve, "serve", "--index", work / "index", "--port", str(rag_port)]
        serve += ["--api-key", "e2e-key", "--public-url", rag_url, "--model-alias", "smollm2"]
        ui_env = {
            **env,
            "DATA_DIR": str(work / "owui"),
            "WEBUI_AUTH": "False",
            "WEBUI_SECRET_KEY": "e2e",
            "OFFLINE_MODE": "True",
            "ENABLE_OLLAMA_API": "False",
            "OPENAI_API_BASE_URL": rag_url + "/v1",
            "OPENAI_API_KEY": "e2e-key",
            "DEFAULT_MODELS": "smollm2",
            "ENABLE_TITLE_GENERATION": "False",
            "ENABLE_TAGS_GENERATION": "False",
            "ENABLE_FOLLOW_UP_GENERATION": "False",
        }
        if args.settings == "compose":
            ui_env.update(compose_settings())
        print("Open WebUI settings:", args.settings, {k: ui_env[k] for k in sorted(ui_env)
              if k.startswith(("DEFAULT_", "ENABLE_"))})  # fmt: skip
        ui = [args.open_webui, "serve", "--host", "127.0.0.1", "--port", str(ui_port)]
        procs = [
            subprocess.Popen(serve, env=env, stdout=rag_log, stderr=subprocess.STDOUT),
            subprocess.Popen(ui, env=ui_env, stdout=ui_log, stderr=subprocess.STDOUT),
        ]
        try:
            wait_for(rag_url + "/health/ready", 180, procs[0])
            wait_for(f"http://127.0.0.1:{ui_port}/health", 600, procs[1])
            return browse(f"http://127.0.0.1:{ui_port}", args)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)


def compose_settings() -> dict[str, str]:
    """What compose.yaml's open-webui service sets, but for its wiring (URLs, keys, auth)."""
    import yaml

    service = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["open-webui"]
    wiring = {"OPENAI_API_BASE_URL", "OPENAI_API_KEY", "WEBUI_AUTH"}
    return {k: str(v) for k, v in service["environment"].items() if k not in wiring}


def dismiss_dialogs(page) -> None:
    """Close the dialogs Open WebUI opens on a first visit."""
    for _ in range(20):
        page.wait_for_timeout(500)
        dialog = page.locator("div[role=dialog]")
        if not dialog.count() or not dialog.first.is_visible():
            return
        for label in ("Okay, Let's Go!", "Let's Go!", "Get started", "Close", "Dismiss"):
            button = dialog.first.get_by_role("button", name=label)
            if button.count():
                button.first.click()
                break
        else:
            page.keyboard.press("Escape")


def browse(ui: str, args: argparse.Namespace) -> int:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=args.chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(ui, wait_until="load", timeout=120_000)
        box = page.locator("#chat-input")
        box.wait_for(timeout=120_000)
        dismiss_dialogs(page)  # first-run notes ("what's new")
        page.screenshot(path=str(args.out / "start.png"))
        box.click()
        page.keyboard.type(QUESTION)
        page.keyboard.press("Enter")
        # the answer, then the sources Open WebUI drew from the annotations
        page.wait_for_timeout(20_000)  # SmolLM2 on a CPU: the answer takes a few seconds
        page.screenshot(path=str(args.out / "answer.png"), full_page=True)
        # Open WebUI turns each url_citation into a source: "N Sources" under the answer,
        # and a chip where the answer cites it
        sources = page.locator("button", has_text="Sources")
        sources.first.wait_for(timeout=300_000)
        print("sources button:", sources.first.inner_text().strip())
        sources.first.click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(args.out / "sources.png"), full_page=True)
        names = page.get_by_text("falcon-annual-report-2025.pdf", exact=False)
        print("falcon entries shown:", names.count())
        if not names.count():
            print("FAIL: no source names falcon-annual-report-2025.pdf")
            return 1
        # the expanded list shows each source's link (the url of its url_citation)
        html = page.content().replace("&amp;", "&")
        links = sorted(
            set(
                re.findall(r"https?://[^\s\"'<>]+/v1/files/file-[0-9a-f]+/content[^\s\"'<>]*", html)
            )
        )
        print("links:", links)
        if not links:
            print("FAIL: no link to a PDF among the sources")
            return 1
        ok = True
        for link in links:  # no Authorization header: each signed link opens its PDF alone
            pdf = page.request.get(link)
            kind = pdf.headers.get("content-type", "")
            body = pdf.body()
            print("GET", link.split("?")[0], "->", pdf.status, kind, len(body), "bytes")
            ok &= pdf.status == 200 and kind == "application/pdf" and body.startswith(b"%PDF")
            ok &= "token=" in link and "#page=" in link
            bare = page.request.get(link.split("?")[0])
            print("   without its token ->", bare.status)
            ok &= bare.status == 401
        print("PASS" if ok else "FAIL")
        browser.close()
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
