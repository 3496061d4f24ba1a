"""bench/make_gguf.py: a random-weight GGUF of a given shape that llama.cpp loads and runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from helpers import bench_script, generate_text

from ragserve.engine import LlamaEngine

make_gguf = bench_script("make_gguf.py")


def test_tiny_qwen2_shape_quantizes_loads_and_streams_text(tmp_path):
    out = make_gguf.make(tmp_path / "tiny-Q4_K_M.gguf", "tiny", "Q4_K_M")
    assert not (tmp_path / "tiny-Q4_K_M.F16.gguf").exists()  # the F16 step is cleaned up
    shape = make_gguf.PRESETS["tiny"]
    engine = LlamaEngine(out, model_id="tiny", n_ctx=256, parallel=2, n_gpu_layers=0)
    try:
        meta = engine.model.metadata
        assert meta["general.architecture"] == "qwen2"
        assert meta["general.file_type"] == "15"  # Q4_K_M
        assert engine.model.n_layer == shape.n_layer
        assert engine.model.n_vocab == shape.n_vocab
        # the borrowed tokenizer and chat template work, and padded tokens print as text
        prompt = engine.chat_tokens([{"role": "user", "content": "hello"}])
        assert engine.model.piece(shape.n_vocab - 1) == b" w1023"

        text, done = asyncio.run(
            generate_text(engine, prompt, max_tokens=16, temperature=1.0, ignore_eos=True, seed=1)
        )
    finally:
        engine.close()
    assert done.completion_tokens == 16 and text


def _tensor_types(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return {t.name: (t.tensor_type.name, tuple(int(n) for n in t.shape)) for t in reader.tensors}


def test_direct_q4_k_m_matches_llama_quantize_tensor_by_tensor(tmp_path):
    """--direct (used on the GPU machine, where minutes count) writes what quantizing gives.

    Eight layers, so llama.cpp's recipe puts Q6_K on some attn_v/ffn_down and Q4_K on others.
    """
    shape = make_gguf.Shape(8, 256, 512, 4, 2, 50176, 2048)
    quantized = make_gguf.make(tmp_path / "q.gguf", shape, "Q4_K_M")
    direct = make_gguf.make(tmp_path / "d.gguf", shape, "Q4_K_M", direct=True)
    want, got = _tensor_types(quantized), _tensor_types(direct)
    assert got == want
    kinds = {kind for kind, _ in want.values()}
    assert kinds == {"F32", "Q4_K", "Q6_K"}
    assert abs(direct.stat().st_size - quantized.stat().st_size) < 4096  # header padding only

    engine = LlamaEngine(direct, model_id="d", n_ctx=256, parallel=1, n_gpu_layers=0)
    try:
        prompt = engine.chat_tokens([{"role": "user", "content": "hello"}])
        text, done = asyncio.run(
            generate_text(engine, prompt, max_tokens=16, temperature=1.0, ignore_eos=True, seed=1)
        )
    finally:
        engine.close()
    assert done.completion_tokens == 16 and text  # finite logits: sampling works


def test_tokenizer_only_gguf_stands_in_for_the_small_model(tmp_path):
    from ragserve.server.settings import bundled_model_path

    tok = make_gguf.write_tokenizer(tmp_path / "tok.gguf", bundled_model_path())
    assert tok.stat().st_size < 5_000_000
    assert make_gguf.tokenizer_fields(tok, 50176) == make_gguf.tokenizer_fields(
        bundled_model_path(), 50176
    )
