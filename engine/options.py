"""The engines' settings, declared once: the server's flags and the engine constructors'
defaults both come from these (ragserve.options)."""

from __future__ import annotations

from ragserve.options import Option, choice, defaults, number, whole

from .llama import FLASH_ATTN, KV_CACHE_TYPES
from .types import DEFAULT_N_CTX

# how the in-process engine (LlamaEngine) runs the model; --n-ctx, --parallel and
# --max-queue apply to an upstream too
ENGINE_OPTIONS: tuple[Option, ...] = (
    Option(
        "n_ctx",
        "--n-ctx",
        whole(64),
        None,
        "context window per slot, in tokens (with --llm-url: used when the upstream reports none)",
        default_text=f"the model's trained context, at most {DEFAULT_N_CTX}",
    ),
    Option(
        "n_gpu_layers",
        "--n-gpu-layers",
        whole(-1),
        None,
        "layers offloaded to the GPU, -1 for all",
        default_text="all when llama.cpp has a GPU backend, else 0",
    ),
    Option(
        "n_threads",
        "--n-threads",
        whole(1),
        None,
        "CPU threads for llama.cpp",
        default_text="all cores",
    ),
    Option(
        "parallel",
        "--parallel",
        whole(1, 256),
        4,
        "requests generated at once (continuous batching); each holds --n-ctx tokens of KV cache, "
        "so memory grows with it",
    ),
    Option(
        "flash_attn",
        "--flash-attn",
        choice(*FLASH_ATTN),
        "auto",
        "flash attention: on, off, or auto (on where the backend supports it)",
    ),
    Option(
        "kv_cache_type",
        "--kv-cache-type",
        choice(*KV_CACHE_TYPES),
        "f16",
        "element type of the KV cache (K and V): q8_0 halves its memory, q4_0 quarters it; "
        "quantized types need flash attention",
    ),
    Option(
        "mmap",
        "--mmap",
        choice("auto", "on", "off"),
        "auto",
        "map the model file (on; auto: unless a device cannot) or read it (off: less host "
        "memory while the model loads onto a GPU, a little slower)",
    ),
    Option(
        "n_batch",
        "--n-batch",
        whole(1),
        None,
        "tokens per decode step, shared by running streams and chunks of new prompts (smaller: "
        "smoother streams while long prompts are read)",
        default_text="2048 with every layer on a GPU (as llama-server), else 512",
    ),
    Option(
        "stream_interval",
        "--stream-interval",
        number(0),
        0.05,
        "seconds between text deltas of one stream after the first; tokens in between are merged "
        "(0: a delta per token)",
    ),
    Option(
        "max_queue",
        "--max-queue",
        whole(0),
        16,
        "requests that may wait for a free slot; more get 429 + Retry-After",
    ),
)

# generating through an OpenAI-compatible server (UpstreamEngine)
UPSTREAM_OPTIONS: tuple[Option, ...] = (
    Option(
        "llm_connect_timeout",
        "--llm-connect-timeout",
        number(0.1),
        5.0,
        "seconds to connect to --llm-url",
    ),
    Option(
        "llm_read_timeout",
        "--llm-read-timeout",
        number(0.1),
        120.0,
        "seconds the upstream may send nothing (before its first token, or between two)",
    ),
)

DEFAULTS = defaults(ENGINE_OPTIONS, UPSTREAM_OPTIONS)
