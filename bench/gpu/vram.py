"""GPU memory of ragserve's engine per setting: how many slots fit on a card.

    python bench/gpu/vram.py --model M.gguf [--json OUT] [--configs f16:8:4096,q8_0:8:4096,...]

For each KV cache type x slots x context, loads the model into the engine (all layers
on the GPU, flash attention on), reads the GPU's used memory (nvidia-smi) against the
reading before loading, and frees everything. From the f16 runs at two slot counts it
derives the cost of one more 4096-token slot, and from the weights + overhead what fits
on 24, 48 and 80 GB cards.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DEFAULT = "f16:1:4096,f16:8:4096,f16:16:4096,q8_0:8:4096,q8_0:16:4096,q4_0:8:4096,q4_0:16:4096"


def used_mib() -> float:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return float(out.split()[0])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return float("nan")  # no NVIDIA GPU (the CPU rehearsal)


def main() -> None:
    from ragserve.engine import LlamaEngine

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--configs", default=DEFAULT, help="kv:slots:ctx,...")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for spec in args.configs.split(","):
        kv, slots, ctx = spec.split(":")
        gc.collect()
        before = used_mib()
        t = time.perf_counter()
        engine = LlamaEngine(
            args.model,
            model_id="vram",
            n_ctx=int(ctx),
            parallel=int(slots),
            n_gpu_layers=-1,
            flash_attn="on",
            kv_cache_type=kv,
            warmup=True,
        )
        load_s = time.perf_counter() - t
        time.sleep(0.3)
        after = used_mib()
        engine.close()
        del engine
        row = {
            "kv": kv,
            "slots": int(slots),
            "ctx": int(ctx),
            "mib": after - before,
            "load_s": load_s,
        }
        rows.append(row)
        print(
            f"kv {kv:<5} slots {slots:>3} x {ctx:>6} tokens: {row['mib']:8.0f} MiB on the GPU "
            f"(load {load_s:.2f} s)",
            flush=True,
        )
    by = {(r["kv"], r["slots"], r["ctx"]): r["mib"] for r in rows}
    fits = {}
    # The first load also creates the CUDA context, which later loads find already there.
    context = 0.0
    one, eight, sixteen = (by.get(("f16", n, 4096)) for n in (1, 8, 16))
    if one is not None and eight is not None and sixteen is not None:
        context = max(0.0, one - (eight - 7 * (sixteen - eight) / 8))
        print(f"CUDA context and first-load overhead: {context:.0f} MiB", flush=True)
    for kv in ("f16", "q8_0", "q4_0"):
        a, b = by.get((kv, 8, 4096)), by.get((kv, 16, 4096))
        if a is None or b is None or a != a:
            continue
        per_slot = (b - a) / 8
        fixed = a - 8 * per_slot + context  # weights, compute buffers, CUDA context
        fits[kv] = {"per_slot_mib": per_slot, "fixed_mib": fixed}
        cards = ", ".join(
            f"{gb} GB: {int((gb * 1000**3 / 2**20 * 0.95 - fixed) // per_slot)}"
            for gb in (24, 48, 80)
        )
        print(
            f"{kv}: one 4096-token slot {per_slot:.0f} MiB, fixed {fixed:.0f} MiB -> slots on "
            f"{cards} (5% of each card kept free)",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "fits": fits}, indent=1))


if __name__ == "__main__":
    main()
