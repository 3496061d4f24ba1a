"""ragserve in front of another server (`--llm-url`) against that server alone, one run.

    python bench/upstream_bench.py [--rounds 5] [--prompt-tokens 200] [--max-tokens 64]
        [--concurrency 1,4] [--upstreams paced,llama-cpp] [--upstream-threads N]
        [--upstream-url http://host:8000/v1 --upstream-model NAME]

Without --upstream-url two upstreams are started in turn: `paced`
(bench/paced_upstream.py, a real HTTP server that streams at a fixed pace and does no model
work, standing in for a GPU server whose decoding does not share ragserve's cores) and
`llama-cpp` (llama-cpp-python's own server, `python -m llama_cpp.server`, on the bundled
SmolLM2 or --model, on all cores but one). On a machine with a few cores the second shows
ragserve's CPU taken from a model decoding on the same cores; the first shows what ragserve
adds to the latency a client sees. ragserve runs as its
own `ragserve serve --llm-url ...` process over the sample index, and the same streamed
chat prompts (bench/load.py, distinct ticket numbers so no two share a prefix) go straight
to the upstream and through ragserve's `-norag` model, the two alternating round by round.
Prints, at each concurrency: TTFT p50 through ragserve minus straight (target <= 10 ms
median overhead) and decode tok/s through ragserve against straight (target >= 0.98x),
medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import load
from _common import ROOT, ingest_samples, median, report
from liveserver import free_port


def wait(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[:4]} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {seconds:.0f} s")


def start_upstream(kind: str, model: Path, threads: int) -> tuple[subprocess.Popen, str, str]:
    """The started upstream: its process, base URL and model id."""
    port = free_port()
    if kind == "paced":
        command = [sys.executable, str(ROOT / "bench" / "paced_upstream.py"), "--port", str(port)]
        model_id = "paced"
    else:
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            str(threads),
            "--interrupt_requests",
            "False",
        ]
        model_id = str(model)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    wait(base + "/models", proc)
    return proc, base, model_id


def compare(
    args: argparse.Namespace, label: str, upstream: str, upstream_model: str, through: str
) -> None:
    levels = [int(c) for c in args.concurrency.split(",")]
    kw = {"prompt_tokens": args.prompt_tokens, "max_tokens": args.max_tokens}
    print(f"== {label}: {upstream} ({upstream_model}) against ragserve {through}", flush=True)
    # one warm-up request each (the upstream's first decode, ragserve's first import)
    asyncio.run(load.level(upstream, upstream_model, 1, ticket_base=1, **kw))
    asyncio.run(load.level(through, "m-norag", 1, ticket_base=2, **kw))
    for c in levels:
        straight: list[load.Level] = []
        fronted: list[load.Level] = []
        for r in range(args.rounds):
            base = 100_000 * c + 1_000 * r
            straight.append(
                asyncio.run(load.level(upstream, upstream_model, c, ticket_base=base, **kw))
            )
            fronted.append(
                asyncio.run(load.level(through, "m-norag", c, ticket_base=base + 500, **kw))
            )
        failed = sum(lv.failed for lv in straight + fronted)
        ttft_a = median([lv.ttft_p50 for lv in straight]) * 1000
        ttft_b = median([lv.ttft_p50 for lv in fronted]) * 1000
        tok_a = median([lv.stream_tok_s for lv in straight])
        tok_b = median([lv.stream_tok_s for lv in fronted])
        agg_a = median([lv.aggregate_tok_s for lv in straight])
        agg_b = median([lv.aggregate_tok_s for lv in fronted])
        print(f"-- {label}, {c} client(s), {failed} failed requests")
        report(f"c={c} TTFT p50 through ragserve (ms)", ttft_b, ttft_a, "ms")
        print(f"   TTFT overhead (median of rounds): {ttft_b - ttft_a:+.1f} ms (<= 10)")
        report(f"c={c} decode tok/s per stream", tok_b, tok_a, "tok/s", ">= 0.98x")
        report(f"c={c} aggregate tok/s", agg_b, agg_a, "tok/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument(
        "--upstreams",
        default="paced,llama-cpp",
        help="which to start, in order: paced (bench/paced_upstream.py), llama-cpp",
    )
    ap.add_argument("--model", default=None, help="GGUF for the started llama-cpp upstream")
    ap.add_argument(
        "--upstream-threads",
        type=int,
        default=max(1, (os.cpu_count() or 1) - 1),
        help="threads for the started llama-cpp upstream (default: all cores but one)",
    )
    ap.add_argument("--upstream-url", default=None, help="a running upstream instead")
    ap.add_argument("--upstream-model", default=None)
    args = ap.parse_args()
    from ragserve.server.settings import bundled_model_path

    model = Path(args.model) if args.model else bundled_model_path()
    levels = [int(c) for c in args.concurrency.split(",")]
    kinds = ["given"] if args.upstream_url else args.upstreams.split(",")
    print(
        f"{args.rounds} rounds, prompts ~{args.prompt_tokens} tokens, "
        f"{args.max_tokens} generated, clients {args.concurrency}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        index = ingest_samples(Path(tmp) / "index")
        for kind in kinds:
            procs: list[subprocess.Popen] = []
            try:
                if kind == "given":
                    upstream, upstream_model = args.upstream_url, args.upstream_model or ""
                else:
                    proc, upstream, upstream_model = start_upstream(
                        kind, model, args.upstream_threads
                    )
                    procs.append(proc)
                port = free_port()
                command = [
                    sys.executable,
                    "-m",
                    "ragserve.cli",
                    "--log-level",
                    "warning",
                    "serve",
                    "--index",
                    str(index),
                    "--port",
                    str(port),
                    "--llm-url",
                    upstream,
                    "--model-alias",
                    "m",
                    "--parallel",
                    str(max(levels)),
                ]
                if upstream_model:
                    command += ["--llm-model", upstream_model]
                if args.model or kind != "given":
                    command += ["--llm-tokenizer", str(model)]
                procs.append(subprocess.Popen(command, cwd=ROOT))
                wait(f"http://127.0.0.1:{port}/health/ready", procs[-1])
                compare(args, kind, upstream, upstream_model, f"http://127.0.0.1:{port}/v1")
            finally:
                for proc in reversed(procs):
                    proc.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=15)


if __name__ == "__main__":
    main()
