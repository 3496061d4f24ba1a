"""The Engine for a GGUF model: llama.cpp as the scheduler's Backend, plus tokens and templates."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from ragserve.errors import InvalidRequest

from .chat import ChatTemplate
from .grammar import GrammarCache, check_gbnf
from .llama import Candidates, Context, Grammar, Model, Sampler, flash_attn_type, load_mode
from .llama import kv_cache_type as kv_cache_type_id
from .options import DEFAULTS
from .scheduler import Scheduler
from .tool_formats import ToolFormat
from .types import DEFAULT_N_CTX, BackendError, SamplingParams

log = structlog.get_logger(__name__)
# A GPU's first batched prompt initialises cuBLAS and loads its GEMM kernels: 48 tokens take
# that path. A CPU only needs to show it can run this build's kernels, and pays for every
# token: 2 x 8 rows already take ggml's matrix-matrix kernels (its AMX path for more than one
# row, the repacked GEMMs for more than three), where a bad build dies.
WARMUP_TOKENS_GPU = 48
WARMUP_TOKENS_CPU = 8
# llama.cpp logs through a Python callback (llama-cpp-python's), ~1,100 lines while it reads a
# 7B model and ~900 while it sets up 8 slots. Each needs the GIL; with Python's default 5 ms
# switch interval, a busy thread beside the loader (the web stack importing, the index
# loading) made each line wait for it: a 7B-shaped CPU load here took 7.0-7.5 s, not 3.3-5.0.
# The worker needs the GIL between decode steps for the same reason while serving.
SWITCH_INTERVAL_S = 0.0005


def share_the_gil() -> None:
    """Hand the GIL over every 0.5 ms instead of 5 ms (see SWITCH_INTERVAL_S)."""
    if sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)


def default_gpu_layers() -> int:
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


class _LlamaSampler:
    def __init__(self, backend: LlamaBackend, sampler: Sampler) -> None:
        self._backend = backend
        self._sampler = sampler

    def sample(self, index: int) -> int:
        candidates = self._backend.candidates() if self._sampler.constrained else None
        return self._sampler.sample(self._backend.ctx, index, candidates)

    def close(self) -> None:
        self._sampler.close()


class LlamaBackend:
    """One llama.cpp context of `n_seq` sequences over a loaded model."""

    def __init__(self, model: Model, ctx: Context) -> None:
        self.model = model
        self.ctx = ctx
        self.n_ctx = ctx.n_ctx
        self.n_batch = ctx.n_batch
        self.grammars = GrammarCache(lambda gbnf: Grammar(model, gbnf))
        self._candidates: Candidates | None = None  # built on the first grammar request

    def piece(self, token: int, *, special: bool = False) -> bytes:
        return self.model.piece(token, special=special)

    def is_eog(self, token: int) -> bool:
        return self.model.is_eog(token)

    def clear_batch(self) -> None:
        self.ctx.clear_batch()

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        return self.ctx.add(token, pos, seq, logits)

    def decode(self) -> None:
        self.ctx.decode()

    def truncate(self, seq: int, keep: int) -> bool:
        return self.ctx.truncate(seq, keep)

    def candidates(self) -> Candidates:
        if self._candidates is None:
            self._candidates = Candidates(self.model)
        return self._candidates

    def sampler(self, p: SamplingParams) -> _LlamaSampler:
        grammar = self.grammars.clone(p.grammar) if p.grammar else None
        seed = p.seed if p.seed is not None else random.getrandbits(32)
        try:
            return _LlamaSampler(self, Sampler(self.model, p, seed, grammar))
        except Exception:
            if grammar is not None:
                grammar.close()
            raise

    def warmup(self, sequences: int, n_tokens: int = WARMUP_TOKENS_GPU) -> int:
        """One batched prefill and one decode step before reporting ready: a CPU that cannot
        run this build's kernels fails here, at start-up, not on a user's first question,
        and a GPU's first request does not pay for loading its kernels."""
        ctx, bos = self.ctx, self.model.bos
        seqs = range(min(2, sequences))
        n = max(1, min(n_tokens, ctx.n_batch // len(seqs)))
        log.info("engine.warmup", tokens=n, sequences=len(seqs))
        tokens = [bos if bos >= 0 else 0] * n
        ctx.clear_batch()
        for seq in seqs:
            for pos, token in enumerate(tokens):
                ctx.add(token, pos, seq, pos == n - 1)
        ctx.decode()
        ctx.clear_batch()
        for seq in seqs:
            ctx.add(tokens[0], n, seq, True)
        ctx.decode()
        ctx.clear_batch()
        for seq in seqs:
            ctx.truncate(seq, 0)
        return n

    def close(self) -> None:
        self.grammars.close()
        self.ctx.close()
        self.model.close()


class GgufTokens:
    """A GGUF's prompt side: its tokenizer and chat template (thread-safe). The engine's,
    and, over a vocabulary-only load, an upstream engine's token counter."""

    def __init__(self, model: Model) -> None:
        meta = model.metadata
        self.model = model
        self.n_vocab = model.n_vocab
        self._add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
        self.template = ChatTemplate(
            meta.get("tokenizer.chat_template"),
            bos=model.piece(model.bos, special=True).decode(errors="replace"),
            eos=model.piece(model.eos, special=True).decode(errors="replace"),
            specials=model.special_texts(),
        )
        self._fim = tuple(
            int(meta[k])
            for k in (f"tokenizer.ggml.fim_{p}_token_id" for p in ("pre", "suf", "mid"))
            if k in meta
        )

    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        return self.model.tokenize(text, add_bos=add_bos)

    def render_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> str:
        return self.template.render(messages, tools)

    def neutralize(self, text: str) -> str:
        return self.template.neutralize(text)

    @property
    def tool_format(self) -> ToolFormat:
        return self.template.tool_format

    def chat_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        prompt = self.render_chat(messages, tools)
        bos = self.template.bos
        add_bos = self._add_bos and not (bos and prompt.startswith(bos))
        return self.tokenize(prompt, add_bos=add_bos)

    def fim_tokens(self) -> tuple[int, int, int] | None:
        return self._fim if len(self._fim) == 3 else None  # type: ignore[return-value]


class LlamaEngine(GgufTokens, Scheduler):
    """A GGUF model served with continuous batching: the `Engine` the server uses (its
    tokens and template are GgufTokens')."""

    def __init__(
        self,
        model_path: Path,
        *,
        model_id: str,
        n_ctx: int | None = DEFAULTS["n_ctx"],
        parallel: int = DEFAULTS["parallel"],
        n_gpu_layers: int | None = DEFAULTS["n_gpu_layers"],
        n_threads: int | None = DEFAULTS["n_threads"],
        n_batch: int | None = DEFAULTS["n_batch"],
        max_queue: int = DEFAULTS["max_queue"],
        flash_attn: bool | str = DEFAULTS["flash_attn"],
        kv_cache_type: str = DEFAULTS["kv_cache_type"],
        mmap: str = DEFAULTS["mmap"],
        stream_interval: float = DEFAULTS["stream_interval"],
        warmup: bool = True,
    ) -> None:
        # Bad names fail before the model is read.
        kv_cache_type_id(kv_cache_type)
        flash_attn_type(flash_attn)
        load_mode(mmap)
        gpu = default_gpu_layers() < 0
        if n_gpu_layers is None:
            n_gpu_layers = -1 if gpu else 0
        offload_all = gpu and n_gpu_layers < 0
        # llama.cpp defaults to half the cores; prompt processing wants all of them.
        n_threads = n_threads or os.cpu_count() or 1
        parallel = max(1, parallel)
        share_the_gil()
        started = time.perf_counter()
        phases: dict[str, float] = {}

        def lap(name: str) -> None:
            phases[name] = round(time.perf_counter() - started - sum(phases.values()), 3)

        # A GPU reads a 2048-token prompt chunk in ~0.2 s, so larger steps cost running
        # streams little and cut per-step overhead (H100, 8 clients: TTFT p95 1.51 -> 1.32 s,
        # bench/RESULTS.md); a CPU takes seconds per chunk, so it keeps 512.
        if n_batch is None:
            n_batch = 2048 if offload_all else 512
        # Mapping the file (llama.cpp's default) counts its pages in the process's RSS while
        # the weights are copied to the GPU: a bare Llama() of a 7B Q4_K_M peaked at 4.8 GB,
        # 0.7 GB when reading instead (H100, bench/RESULTS.md), for 0.3 s more load time.
        model = Model(model_path, n_gpu_layers=n_gpu_layers, mmap=mmap)
        lap("model_s")
        if n_ctx is None:  # what the model was trained for, within a memory-friendly cap
            n_ctx = min(DEFAULT_N_CTX, model.n_ctx_train or DEFAULT_N_CTX)
        try:
            ctx = Context(
                model,
                n_ctx=n_ctx,
                n_seq=parallel,
                n_batch=max(n_batch, parallel),
                n_threads=n_threads,
                flash_attn=flash_attn,
                kv_type=kv_cache_type,
            )
        except Exception:
            model.close()
            raise
        lap("context_s")
        self.backend = LlamaBackend(model, ctx)
        self.warmup_tokens = 0
        if warmup:
            n = WARMUP_TOKENS_GPU if gpu else WARMUP_TOKENS_CPU
            self.warmup_tokens = self.backend.warmup(parallel, n)
            lap("warmup_s")
        self.model_id = model_id
        GgufTokens.__init__(self, model)
        Scheduler.__init__(
            self,
            self.backend,
            parallel=parallel,
            max_queue=max_queue,
            stream_interval=stream_interval,
            name="llama-worker",
        )
        lap("setup_s")
        self.load_phases = phases  # seconds by phase, as logged in engine.loaded
        n_layer = model.n_layer
        offloaded = n_layer if n_gpu_layers < 0 else min(n_gpu_layers, n_layer)
        import llama_cpp

        log.info(
            "engine.loaded",
            model=model_id,
            path=str(model_path),
            n_ctx=self.n_ctx,
            parallel=parallel,
            gpu_offload_supported=bool(llama_cpp.llama_supports_gpu_offload()),
            layers_offloaded=f"{offloaded}/{n_layer}" if n_gpu_layers else f"0/{n_layer}",
            seconds=round(time.perf_counter() - started, 2),
            **phases,
        )

    def check_grammar(self, gbnf: str, param: str = "response_format") -> None:
        check_gbnf(gbnf, param)
        try:
            self.backend.grammars.clone(gbnf).close()
        except BackendError as exc:
            raise InvalidRequest(
                f"the grammar for {param} was rejected: {exc}", param=param
            ) from exc

    def close(self) -> bool:
        """Stop the worker (running requests end as cancelled) and free llama.cpp memory."""
        stopped = super().close()
        if stopped:
            self.backend.close()
        return stopped


class EngineLoad:
    """A LlamaEngine built on its own thread, begun as early as possible (`ragserve serve`
    starts it before importing the web stack): llama.cpp reads and uploads the file with the
    GIL released while the rest of the server imports. `result()` waits for it."""

    def __init__(self, model_path: Path, **options: Any) -> None:
        share_the_gil()  # before the thread starts: the web stack imports beside it
        self._engine: LlamaEngine | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(model_path, options), name="model-loader", daemon=True
        )
        self._thread.start()

    def _run(self, model_path: Path, options: dict[str, Any]) -> None:
        try:
            self._engine = LlamaEngine(model_path, **options)
        except BaseException as exc:  # raised by result(), in the app's loader
            self._error = exc

    def result(self) -> LlamaEngine:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._engine is not None
        return self._engine
