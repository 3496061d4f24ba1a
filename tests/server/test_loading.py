"""Loading: the model and the embedder load side by side; a failure in either is reported."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import generate_text

from ragserve.engine import LlamaEngine
from ragserve.retrieval.config import RetrievalSettings
from ragserve.server.settings import Settings, bundled_model_path
from ragserve.server.state import AppState


def _wait(state: AppState, seconds: float = 180) -> None:
    state.start_loading()
    deadline = time.monotonic() + seconds
    while not state.ready and state.load_error is None:
        assert time.monotonic() < deadline, "never loaded"
        time.sleep(0.05)


def test_model_and_embedder_load_together_and_serve(index_dir):
    settings = Settings(
        retrieval=RetrievalSettings(index_dir=index_dir),
        n_ctx=512,
        parallel=1,
        kv_cache_type="q8_0",
        flash_attn="on",
    )
    state = AppState(settings)
    try:
        _wait(state)
        assert state.ready and state.load_error is None
        assert state.retriever.search("Project Falcon budget", 1)
        engine = state.engine
        prompt = engine.chat_tokens([{"role": "user", "content": "Say hello."}])
        text, done = asyncio.run(generate_text(engine, prompt, max_tokens=8, ignore_eos=True))
        assert done.completion_tokens == 8 and text
    finally:
        state.close()


def test_a_model_that_fails_to_load_is_reported_and_nothing_is_left_half_loaded(
    index_dir, tmp_path
):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    state = AppState(Settings(retrieval=RetrievalSettings(index_dir=index_dir), model_path=bad))
    _wait(state)
    assert not state.ready and state.load_error
    with pytest.raises(Exception, match="failed to load"):
        _ = state.engine


def test_an_index_that_fails_to_open_is_reported_and_the_model_is_freed(tmp_path):
    missing = tmp_path / "no-index"
    state = AppState(Settings(retrieval=RetrievalSettings(index_dir=missing), n_ctx=256))
    _wait(state)
    assert not state.ready and state.load_error
    assert state._engine is None  # loaded alongside, then closed: not kept half-ready


@pytest.mark.parametrize(("kv", "mmap"), [("f16", "off"), ("q8_0", "on"), ("q4_0", "off")])
def test_kv_cache_types_generate_text(kv, mmap):
    engine = LlamaEngine(
        bundled_model_path(),
        model_id="kv",
        n_ctx=256,
        parallel=2,
        kv_cache_type=kv,
        flash_attn="on",
        mmap=mmap,
        warmup=False,
    )
    try:
        prompt = engine.chat_tokens([{"role": "user", "content": "Name three rivers."}])
        text, done = asyncio.run(
            generate_text(engine, prompt, max_tokens=12, temperature=0, ignore_eos=True)
        )
    finally:
        engine.close()
    assert done.completion_tokens == 12 and text.strip()


MAPPED = """
import sys
from ragserve.engine import LlamaEngine
from ragserve.server.settings import bundled_model_path

def mapped():
    real = str(bundled_model_path().resolve())
    return any(line.rstrip().endswith(real) for line in open("/proc/self/maps"))

before = mapped()
engine = LlamaEngine(bundled_model_path(), model_id="m", n_ctx=128, parallel=1,
                     mmap=sys.argv[1], warmup=False)
during = mapped()
engine.close()
print(before, during, mapped())
"""


@pytest.mark.parametrize(("mmap", "mapped"), [("on", True), ("auto", True), ("off", False)])
def test_mmap_setting_decides_whether_the_model_file_is_mapped(mmap, mapped):
    """`--mmap off` must read the file: llama.cpp renamed the field once and the setting was
    silently ignored (the engine now refuses parameter names its binding lacks). In a
    subprocess: other tests' engines keep the file mapped in this one."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", MAPPED, mmap], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1].split() == ["False", str(mapped), "False"]


def test_parameter_names_the_binding_lacks_are_refused():
    import llama_cpp

    from ragserve.engine.llama import BackendError, _set

    params = llama_cpp.llama_model_default_params()
    _set(params, n_gpu_layers=3)
    assert params.n_gpu_layers == 3
    with pytest.raises(BackendError, match=r"no llama_model_params\.use_mmap"):
        _set(params, use_mmap=False)


def test_unknown_kv_cache_type_is_refused_before_loading():
    with pytest.raises(ValueError, match="KV cache type"):
        LlamaEngine(bundled_model_path(), model_id="kv", n_ctx=256, kv_cache_type="q5")


def test_greedy_argmax_in_numpy_gives_llama_cpp_greedy_tokens():
    """The NumPy argmax path (plain temperature 0) picks what llama.cpp's greedy sampler picks:
    a logit bias of 0 on one token keeps the distribution and forces llama.cpp's path."""
    engine = LlamaEngine(bundled_model_path(), model_id="g", n_ctx=512, parallel=1)
    try:
        prompt = engine.chat_tokens([{"role": "user", "content": "List five rivers of Korea."}])
        fast, _ = asyncio.run(
            generate_text(engine, prompt, max_tokens=48, temperature=0, ignore_eos=True)
        )
        chain, _ = asyncio.run(
            generate_text(
                engine,
                prompt,
                max_tokens=48,
                temperature=0,
                ignore_eos=True,
                logit_bias=((5, 0.0),),
            )
        )
    finally:
        engine.close()
    assert fast == chain and len(fast) > 20


def test_engine_load_reports_its_phases_and_shares_the_gil():
    """The load is timed by phase (how #13's start-up is read), the CPU warm-up is short,
    and the GIL is handed over every 0.5 ms before the loader thread starts, so llama.cpp's
    ~2,000 log callbacks while loading do not wait 5 ms each behind the web stack's imports."""
    import sys

    from ragserve.engine import EngineLoad
    from ragserve.engine.llama_engine import SWITCH_INTERVAL_S, WARMUP_TOKENS_CPU

    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        started = time.perf_counter()
        load = EngineLoad(bundled_model_path(), model_id="m", n_ctx=128, parallel=2)
        assert sys.getswitchinterval() == SWITCH_INTERVAL_S
        engine = load.result()
        took = time.perf_counter() - started
    finally:
        sys.setswitchinterval(before)
    try:
        assert engine.warmup_tokens == WARMUP_TOKENS_CPU
        phases = engine.load_phases
        assert list(phases) == ["model_s", "context_s", "warmup_s", "setup_s"]
        # each phase is rounded to the millisecond: their sum may pass `took` by 0.5 ms each
        assert all(p >= 0 for p in phases.values())
        assert sum(phases.values()) <= took + 0.0005 * len(phases)
    finally:
        engine.close()
