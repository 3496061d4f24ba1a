"""Start `ragserve` and time it: process start -> /health, -> /health/ready; track its RSS.

    python bench/gpu/serve_timed.py --out DIR -- <ragserve arguments...>

Runs `python -m ragserve.cli <arguments>` as a child, prints the two start-up times as
soon as they are known, samples the child's resident memory every 0.2 s until it exits
(SIGINT or SIGTERM to this script reaches the server as SIGTERM), and writes
DIR/ragserve-rss.txt: RSS once ready, the largest while serving, the largest sample
(loading included: llama.cpp's mapped model file counts while it is uploaded), and
the kernel's peak (VmHWM) at the last sample.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _proc import age_s, rss_mib


def up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tag", default="", help="suffix of the files written (a variant's name)")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = [x for x in a.args if x != "--"]
    port = args[args.index("--port") + 1]
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "ragserve.cli", *args])
    tag = f"-{a.tag}" if a.tag else ""
    (a.out / f"ragserve{tag}.pid").write_text(str(proc.pid))
    # SIGTERM, not SIGINT: a background job of a script starts with SIGINT ignored, and so
    # would the server; ragserve stops on SIGTERM the way it does on Ctrl-C.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, f: proc.send_signal(signal.SIGTERM))
    live = ready = None
    ready_rss = top = serving = hwm = 0.0
    while proc.poll() is None:
        try:
            age = age_s(proc.pid)
            rss, hwm = rss_mib(proc.pid)
        except (OSError, IndexError):
            break
        top = max(top, rss)
        if ready is not None:
            serving = max(serving, rss)
        if live is None and up(base + "/health"):
            live = age
            print(f"ragserve: process start -> /health 200 after {live:.2f} s", flush=True)
        if live is not None and ready is None and up(base + "/health/ready"):
            ready, ready_rss = age, rss
            print(
                f"ragserve: process start -> /health/ready after {ready:.2f} s; RSS {rss:.0f} MiB",
                flush=True,
            )
            print(f"READY_S={ready:.3f}", flush=True)
        time.sleep(0.2 if ready is not None else 0.02)
    proc.wait()
    (a.out / f"ragserve-rss{tag}.txt").write_text(
        f"ragserve RSS once ready {ready_rss:.0f} MiB; largest while serving {serving:.0f} MiB; "
        f"largest sample (loading included) {top:.0f} MiB; VmHWM at the last sample {hwm:.0f} MiB\n"
    )


if __name__ == "__main__":
    main()
