"""Upload-to-searchable latency of a 20-page PDF through the documents API, against the
CLI ingest of the same file, in one run on this machine.

    python bench/library_bench.py [--pages 20] [--repeat 3]

API: `vector_stores.files.upload_and_poll` into a fresh store, then the first search that
finds the PDF's marker text (what a user waits for). Baseline: `ragserve ingest FILE
--index NEW` as a process, from start to exit (what an operator waits for). Medians.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
from _common import median, report  # puts tests/ on sys.path (pdfgen, liveserver)
from liveserver import LiveServer, make_settings
from pdfgen import write_pdf

from ragserve.engine import LlamaEngine
from ragserve.server.app import create_app
from ragserve.server.settings import bundled_model_path

MARKER = "QX-7781"


def document(path: Path, pages: int) -> Path:
    body = [
        [f"Section {p}: maintenance schedule for pump station {p}."]
        + [
            f"Line {i}: inspection of valve {p}-{i}, pressure logged, seals replaced."
            for i in range(30)
        ]
        for p in range(1, pages + 1)
    ]
    body[-1].append(f"The final acceptance certificate number is {MARKER}.")
    return write_pdf(path, body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="library-bench-"))
    pdf = document(work / "manual.pdf", args.pages)
    cli, api = [], []
    engine = LlamaEngine(bundled_model_path(), model_id="smollm2", n_ctx=1024, parallel=1)
    # the server's own index: one ingest of an unrelated file, so the default store exists
    seed = write_pdf(work / "seed" / "seed.pdf", [["seed"]])
    subprocess.run(
        [sys.executable, "-m", "ragserve.cli", "ingest", str(seed.parent), "--index",
         str(work / "data" / "index"), "--no-progress"],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = make_settings(work / "data" / "index", data_dir=work / "data")
    with LiveServer(create_app(settings, engine=engine)) as live:
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0, timeout=600)
        for r in range(args.repeat):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "ragserve.cli", "ingest", str(pdf), "--index",
                 str(work / f"cli-{r}"), "--no-progress"],
                check=True, capture_output=True,
            )  # fmt: skip
            cli.append(time.perf_counter() - started)

            started = time.perf_counter()
            store = client.vector_stores.create(name=f"bench-{r}")
            with open(pdf, "rb") as fh:
                done = client.vector_stores.files.upload_and_poll(
                    vector_store_id=store.id, file=fh, poll_interval_ms=100
                )
            assert done.status == "completed", done.last_error
            while not any(
                MARKER in hit.content[0].text
                for hit in client.vector_stores.search(store.id, query=MARKER).data
            ):
                time.sleep(0.05)
            api.append(time.perf_counter() - started)
            print(f"run {r + 1}: CLI {cli[-1]:.2f} s, API {api[-1]:.2f} s", flush=True)
    engine.close()
    print()
    report(
        f"upload -> searchable, {args.pages}-page PDF",
        median(api),
        median(cli),
        "s",
        "(baseline: `ragserve ingest` of the same file)",
    )


if __name__ == "__main__":
    main()
