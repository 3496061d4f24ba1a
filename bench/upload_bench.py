"""Does a large upload hold the server's event loop? /health latency during uploads vs idle.

    python bench/upload_bench.py --base-url http://127.0.0.1:8000 [--size-mb 95] [--repeat 3]
        [--api-key KEY]

Uploads a --size-mb file that starts like a PDF (random bytes after the header) to /v1/files
with curl, a separate process (so building the request does not hold this script's loop),
while this script asks /health every 5 ms. Prints the median and largest /health latency
during the uploads against the same measured while idle, in the same run. The uploads stay
in the library (delete them, or point the server at a scratch --data-dir).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time

import httpx
from _common import median, report


async def measure(base: str, path: str, repeat: int, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    idle: list[float] = []
    busy: list[float] = []
    sink = idle
    stop = asyncio.Event()

    async def ping() -> None:
        async with httpx.AsyncClient() as client:
            await client.get(base + "/health")  # the connection, not counted
            while not stop.is_set():
                t = time.perf_counter()
                await client.get(base + "/health")
                sink.append(time.perf_counter() - t)
                await asyncio.sleep(0.005)

    pinger = asyncio.create_task(ping())
    for _ in range(repeat):
        sink = idle
        await asyncio.sleep(0.5)
        sink = busy
        auth = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
        proc = await asyncio.create_subprocess_exec(
            *["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", *auth],
            *["-F", "purpose=assistants", "-F", f"file=@{path};type=application/pdf"],
            base + "/v1/files",
            stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        print(f"upload: HTTP {out.decode()} s", flush=True)
    stop.set()
    await pinger
    report("/health latency during uploads, median", median(busy) * 1e3, median(idle) * 1e3, "ms")
    report("/health latency during uploads, largest", max(busy) * 1e3, max(idle) * 1e3, "ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True, help="the server, without /v1")
    ap.add_argument("--size-mb", type=int, default=95)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--api-key", default=os.environ.get("RAGSERVE_API_KEY"))
    a = ap.parse_args()
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(b"%PDF-1.4\n" + os.urandom(a.size_mb * 1024 * 1024 - 9))
        f.flush()
        asyncio.run(measure(a.base_url.rstrip("/"), f.name, a.repeat, a.api_key))


if __name__ == "__main__":
    main()
