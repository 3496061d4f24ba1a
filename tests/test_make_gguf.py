"""bench/make_gguf.py: a random-weight GGUF of a given shape that llama.cpp loads and runs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from helpers import generate_text

from ragserve.engine import LlamaEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import make_gguf


def test_tiny_qwen2_shape_quantizes_loads_and_streams_text(tmp_path):
    out = make_gguf.make(tmp_path / "tiny-Q4_K_M.gguf", "tiny", "Q4_K_M")
    assert not (tmp_path / "tiny-Q4_K_M.F16.gguf").exists()  # the F16 step is cleaned up
    shape = make_gguf.PRESETS["tiny"]
    engine = LlamaEngine(out, model_id="tiny", n_ctx=256, parallel=2, n_gpu_layers=0)
    try:
        meta = engine._model.metadata
        assert meta["general.architecture"] == "qwen2"
        assert meta["general.file_type"] == "15"  # Q4_K_M
        assert engine._model.n_layer == shape.n_layer
        assert engine._model.n_vocab == shape.n_vocab
        # the borrowed tokenizer and chat template work, and padded tokens print as text
        prompt = engine.chat_tokens([{"role": "user", "content": "hello"}])
        assert engine._model.piece(shape.n_vocab - 1) == b" w1023"

        text, done = asyncio.run(
            generate_text(engine, prompt, max_tokens=16, temperature=1.0, ignore_eos=True, seed=1)
        )
    finally:
        engine.close()
    assert done.completion_tokens == 16 and text
