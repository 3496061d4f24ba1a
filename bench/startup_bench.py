"""Start-up of `ragserve serve` against a bare `Llama()` load of the same file, in one run.

    python bench/startup_bench.py [--model PATH.gguf | --preset qwen2.5-1.5b]
        [--parallel 8] [--n-ctx 4096] [--n-gpu-layers N] [--repeat 5] [--index DIR]
        [--tree NAME=DIR ...] [-- MORE SERVE ARGUMENTS]

The baseline is `bench/gpu/bare_load.py`: process start -> `import llama_cpp` ->
`Llama(model, n_ctx=parallel x n_ctx)` returned (no decode). ragserve is timed from its
process start to `/health` and to `/health/ready` (model, context, warm-up, index and
embedder). The two alternate, so both see the same moments of a noisy machine; medians are
printed with the ratio (#13's target: ready <= 1.2x the bare load), and the engine's own
phases (`engine.loaded`: model_s, context_s, warmup_s, setup_s) show where ragserve's time
goes. `--tree NAME=DIR` also starts the server from another checkout of the project
(e.g. `git worktree add /tmp/old HEAD~3`), for before/after figures in the same run.

Without --model, the --preset's shape is written once with random weights
(`bench/make_gguf.py --direct`) under ~/.cache/ragserve-bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, ingest_samples, median
from liveserver import free_port  # tests/ is on sys.path via _common

sys.path.insert(0, str(ROOT / "bench" / "gpu"))
from _proc import age_s
from serve_timed import up

PHASES = ("model_s", "context_s", "warmup_s", "setup_s")


def bare(model: Path, ngl: int, n_ctx: int) -> float:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu/bare_load.py"), str(model), str(ngl), str(n_ctx)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(next(x for x in out.splitlines() if x.startswith("BARE_LOAD_S=")).split("=")[1])


def serve(args: argparse.Namespace, model: Path, index: Path, tree: Path) -> dict:
    """One start: {'live': s, 'ready': s, phases...}, times from the process's exec. `-m`
    puts the working directory first on sys.path: the checkout `tree` is what runs."""
    port = free_port()
    cmd = [sys.executable, "-m", "ragserve.cli", "--log-level", "info", "serve"]
    cmd += ["--port", str(port), "--model", str(model), "--index", str(index)]
    cmd += ["--model-alias", "m", "--parallel", str(args.parallel), "--n-ctx", str(args.n_ctx)]
    if args.n_gpu_layers is not None:
        cmd += ["--n-gpu-layers", str(args.n_gpu_layers)]
    cmd += [x for x in args.serve_args if x != "--"]
    with tempfile.TemporaryFile(mode="w+") as log:
        return _timed(
            subprocess.Popen(cmd, cwd=tree, stdout=subprocess.DEVNULL, stderr=log), port, log
        )


def _timed(proc: subprocess.Popen, port: int, log) -> dict:
    base = f"http://127.0.0.1:{port}"
    out: dict = {}
    try:
        deadline = time.monotonic() + 600
        while "ready" not in out:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                sys.exit(f"ragserve did not become ready:\n{log.read()[-3000:]}")
            age = age_s(proc.pid)
            if "live" not in out and up(base + "/health"):
                out["live"] = age
            if "live" in out and up(base + "/health/ready"):
                out["ready"] = age
            time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait(30)
    log.seek(0)
    for line in log:
        if '"engine.loaded"' in line:
            event = json.loads(line)
            out.update({k: float(event[k]) for k in PHASES if k in event})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--preset", default="qwen2.5-1.5b", help="shape written when no --model")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--n-ctx", type=int, default=4096, help="per slot, as the server's")
    ap.add_argument("--n-gpu-layers", type=int, default=None, help="default: all with a GPU")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--index", type=Path, default=None, help="default: the samples, ingested")
    ap.add_argument("--tree", action="append", default=[], help="NAME=DIR, another checkout")
    ap.add_argument("serve_args", nargs=argparse.REMAINDER, help="after --: more serve arguments")
    args = ap.parse_args()

    model = args.model
    if model is None:
        model = Path.home() / ".cache" / "ragserve-bench" / f"{args.preset}-q4_k_m.gguf"
        if not model.is_file():
            model.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "bench/make_gguf.py"),
                    "--preset",
                    args.preset,
                    "--direct",
                    "--out",
                    str(model),
                ],
                check=True,
            )
    work = Path(tempfile.mkdtemp(prefix="ragserve-startup-bench-"))
    index = args.index or ingest_samples(work / "index")
    trees = {"ragserve": ROOT}
    for spec in args.tree:
        name, _, path = spec.partition("=")
        trees[name] = Path(path).resolve()

    import llama_cpp

    gpu = llama_cpp.llama_supports_gpu_offload()
    ngl = args.n_gpu_layers if args.n_gpu_layers is not None else (99 if gpu else 0)
    n_ctx = args.parallel * args.n_ctx
    subprocess.run(["cat", str(model)], stdout=subprocess.DEVNULL, check=True)  # page cache
    print(
        f"model {model.name} ({model.stat().st_size / 2**30:.2f} GiB), {args.parallel} slots x "
        f"{args.n_ctx}, n_gpu_layers {ngl}, {os.cpu_count()} CPUs, {args.repeat} rounds",
        flush=True,
    )
    bares: list[float] = []
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for i in range(args.repeat):
        bares.append(bare(model, ngl, n_ctx))
        for name, tree in trees.items():
            runs[name].append(serve(args, model, index, tree))
        row = "  ".join(f"{name} {runs[name][-1]['ready']:.2f} s" for name in trees)
        print(f"round {i + 1}: bare Llama() {bares[-1]:.2f} s  {row}", flush=True)

    base = median(bares)
    print(f"\nbare Llama() load (process start -> loaded), median: {base:.2f} s")
    ready = median([s["ready"] for s in runs["ragserve"]])
    print(f"STARTUP_BARE_S={base:.3f} STARTUP_READY_S={ready:.3f}")
    for name, starts in runs.items():
        live = median([s["live"] for s in starts])
        ready = median([s["ready"] for s in starts])
        phases = "  ".join(
            f"{k} {median([s[k] for s in starts]):.3f}"
            for k in PHASES
            if all(k in s for s in starts)
        )
        print(
            f"{name:<12} /health {live:.2f} s  ready {ready:.2f} s  "
            f"ratio {ready / base:.2f}x the bare load (target <= 1.2x)\n"
            f"{'':<12} engine phases (median s): {phases}"
        )


if __name__ == "__main__":
    main()
