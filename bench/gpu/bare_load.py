"""The baseline for ragserve's start-up: a bare `Llama()` load of the same file.

    python bench/gpu/bare_load.py MODEL.gguf N_GPU_LAYERS N_CTX [no-mmap]

Prints the time from this process's start to a loaded `Llama` (what `ragserve serve` is
compared with: process start -> /health/ready), the load call alone, and the RSS after it.
"""

from __future__ import annotations

import sys
import time

from _proc import age_s, rss_mib

t0 = time.perf_counter()
import llama_cpp  # noqa: E402

imported = time.perf_counter()
mmap = len(sys.argv) < 5 or sys.argv[4] != "no-mmap"
llm = llama_cpp.Llama(
    sys.argv[1],
    n_gpu_layers=int(sys.argv[2]),
    n_ctx=int(sys.argv[3]),
    flash_attn=True,
    use_mmap=mmap,
    verbose=False,
)
loaded = time.perf_counter()
total = age_s()
rss, peak = rss_mib()
print(
    f"bare Llama({'' if mmap else 'use_mmap=False'}): process start -> loaded {total:.2f} s "
    f"(import llama_cpp "
    f"{imported - t0:.2f} s, Llama() {loaded - imported:.2f} s); RSS {rss:.0f} MiB, "
    f"peak {peak:.0f} MiB"
)
print(f"BARE_LOAD_S={total:.3f}" if mmap else f"BARE_LOAD_NO_MMAP_S={total:.3f}")
