"""What a llama.cpp CPU build costs: prompt and decode speed of one build against another.

    python bench/cpu_build_bench.py --build portable=/path/to/llama_cpp/lib [--repeat 5]

The baseline is the installed build (the venv's llama_cpp/lib); each --build NAME=DIR is a
folder of libllama/libggml libraries (e.g. a `LLAMA_CPU=portable` build) loaded through
LLAMA_CPP_LIB_PATH. Each build runs in its own subprocess, alternating, on the bundled
SmolLM2 (or --model): prefill of 512 tokens in one sequence, a batched prefill of 4 x 128,
64 decode steps of one sequence, and 64 steps of 4 sequences at once. Medians of --repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import ROOT, median, report

PROBE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from ragserve.engine.llama import Context, Model
model = Model(sys.argv[2], n_gpu_layers=0)
ctx = Context(model, n_ctx=1024, n_seq=4, n_batch=512, n_threads=int(sys.argv[3]),
              flash_attn=True)
tokens = (model.tokenize("The quick brown fox jumps over the lazy dog. " * 60, add_bos=False)
          * 2)[:512]
out = {}

def clear():
    for s in range(4):
        ctx.truncate(s, 0)

def prefill(seqs, n):
    ctx.clear_batch()
    for s in range(seqs):
        for p in range(n):
            ctx.add(tokens[p], p, s, p == n - 1)
    t = time.perf_counter(); ctx.decode(); return seqs * n / (time.perf_counter() - t)

def decode(seqs, start, steps=64):
    t = time.perf_counter()
    for i in range(steps):
        ctx.clear_batch()
        for s in range(seqs):
            ctx.add(tokens[i], start + i, s, True)
        ctx.decode()
    return seqs * steps / (time.perf_counter() - t)

clear(); prefill(1, 64)  # warm up
clear(); out["pp512"] = prefill(1, 512)
clear(); out["pp4x128"] = prefill(4, 128)
out["tg x4"] = decode(4, 128)
clear(); prefill(1, 128); out["tg x1"] = decode(1, 128)
print(json.dumps(out))
"""


def run(lib: str | None, model: str, threads: int) -> dict[str, float]:
    env = {**os.environ}
    if lib:
        env["LLAMA_CPP_LIB_PATH"] = lib
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT), model, str(threads)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", action="append", default=[], help="NAME=LIBDIR")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    from ragserve.server.settings import bundled_model_path

    model = args.model or str(bundled_model_path())
    builds = {"installed": None, **dict(b.split("=", 1) for b in args.build)}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    for _ in range(args.repeat):  # alternate, so drift on a shared machine hits all alike
        for name, lib in builds.items():
            results[name].append(run(lib, model, args.threads))
    base = results["installed"]
    for name in builds:
        if name == "installed":
            continue
        for metric in base[0]:
            value = median([r[metric] for r in results[name]])
            baseline = median([r[metric] for r in base])
            report(f"{name} / installed: {metric}", value, baseline, "tok/s")


if __name__ == "__main__":
    main()
