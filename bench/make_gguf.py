"""Write a GGUF of a real model's exact shape with random weights, then quantize it.

    python bench/make_gguf.py --preset qwen2.5-7b --out /tmp/qwen7b-shape-Q4_K_M.gguf

No 7B weights can be downloaded where the benchmarks run, and speed depends on the shape
(layers, widths, heads, vocabulary), not on the values. The tokenizer (and chat
template) comes from a small GGUF (default: the bundled SmolLM2), padded with visible
tokens ("Ġw123" -> " w123") to the preset's vocabulary size, so sampled tokens still
stream as text. Weights are normal(0, 0.02); one array per tensor shape is reused across
layers, so memory stays a few GB. Quantization uses llama.cpp's own
`llama_model_quantize` through llama-cpp-python (no separate tool binary).

The qwen2.5-7b preset: 28 layers, n_embd 3584, n_ff 18944, 28 heads, 4 KV heads,
vocab 152064, context 32768, rope base 1e6, rms eps 1e-6, q/k/v biases, untied output.
It writes a 15.2 GB F16 file (deleted after quantizing unless --keep-f16) and a 4.7 GB
Q4_K_M one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Shape(NamedTuple):
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    n_ctx: int
    rope_base: float = 1_000_000.0
    rms_eps: float = 1e-6


PRESETS = {
    "qwen2.5-7b": Shape(28, 3584, 18944, 28, 4, 152064, 32768),
    "qwen2.5-1.5b": Shape(28, 1536, 8960, 12, 2, 151936, 32768),
    "tiny": Shape(2, 256, 512, 4, 2, 50176, 2048),  # tests: loads and runs in a second
}
FTYPES = {"F16": 1, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}


def tokenizer_fields(source: Path, n_vocab: int) -> dict[str, object]:
    """The `tokenizer.*` metadata of `source`, with the vocabulary padded to n_vocab."""
    from gguf import GGUFReader

    reader = GGUFReader(str(source))
    fields = {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}
    tokens = list(fields["tokenizer.ggml.tokens"])  # type: ignore[call-overload]
    types = list(fields["tokenizer.ggml.token_type"])  # type: ignore[call-overload]
    if len(tokens) > n_vocab:
        raise SystemExit(f"{source} has {len(tokens)} tokens, more than the preset's {n_vocab}")
    pad = n_vocab - len(tokens)
    tokens += [f"Ġw{i}" for i in range(pad)]  # byte-level BPE: Ġ is a space
    types += [1] * pad  # NORMAL
    fields["tokenizer.ggml.tokens"] = tokens
    fields["tokenizer.ggml.token_type"] = types
    return fields


def write_f16(out: Path, shape: Shape, tokenizer: dict[str, object], seed: int = 0) -> None:
    import gguf

    s = shape
    head_dim = s.n_embd // s.n_head
    kv = s.n_head_kv * head_dim
    rng = np.random.default_rng(seed)
    cache: dict[tuple[int, ...], np.ndarray] = {}

    def weight(*dims: int) -> np.ndarray:  # numpy order: (rows = outputs, cols = inputs)
        if dims not in cache:
            cache[dims] = (rng.standard_normal(dims, dtype=np.float32) * 0.02).astype(np.float16)
        return cache[dims]

    ones = np.ones(s.n_embd, dtype=np.float32)
    w = gguf.GGUFWriter(str(out), "qwen2")
    w.add_name(f"random-{out.stem}")
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layer)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    w.add_rope_freq_base(s.rope_base)
    w.add_layer_norm_rms_eps(s.rms_eps)
    w.add_file_type(FTYPES["F16"])
    for key, value in tokenizer.items():
        if isinstance(value, list):
            w.add_array(key, value)
        elif isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        else:
            w.add_string(key, str(value))
    w.add_tensor("token_embd.weight", weight(s.n_vocab, s.n_embd))
    for i in range(s.n_layer):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", ones)
        w.add_tensor(b + "attn_q.weight", weight(s.n_embd, s.n_embd))
        w.add_tensor(b + "attn_q.bias", np.zeros(s.n_embd, dtype=np.float32))
        w.add_tensor(b + "attn_k.weight", weight(kv, s.n_embd))
        w.add_tensor(b + "attn_k.bias", np.zeros(kv, dtype=np.float32))
        w.add_tensor(b + "attn_v.weight", weight(kv, s.n_embd))
        w.add_tensor(b + "attn_v.bias", np.zeros(kv, dtype=np.float32))
        w.add_tensor(b + "attn_output.weight", weight(s.n_embd, s.n_embd))
        w.add_tensor(b + "ffn_norm.weight", ones)
        w.add_tensor(b + "ffn_gate.weight", weight(s.n_ff, s.n_embd))
        w.add_tensor(b + "ffn_up.weight", weight(s.n_ff, s.n_embd))
        w.add_tensor(b + "ffn_down.weight", weight(s.n_embd, s.n_ff))
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", weight(s.n_vocab, s.n_embd))  # untied: a tensor of its own
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src: Path, dst: Path, ftype: str, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed with code {rc}")


def make(
    out: Path,
    preset: str,
    ftype: str = "Q4_K_M",
    tokenizer_from: Path | None = None,
    keep_f16: bool = False,
) -> Path:
    shape = PRESETS[preset]
    if tokenizer_from is None:
        from ragserve.server.settings import bundled_model_path

        tokenizer_from = bundled_model_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    f16 = out if ftype == "F16" else out.with_name(out.stem + ".F16.gguf")
    t = time.perf_counter()
    write_f16(f16, shape, tokenizer_fields(tokenizer_from, shape.n_vocab))
    print(f"wrote {f16} ({f16.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s")
    if ftype != "F16":
        t = time.perf_counter()
        quantize(f16, out, ftype, os.cpu_count() or 1)
        print(
            f"quantized to {ftype}: {out} ({out.stat().st_size:,} bytes) in "
            f"{time.perf_counter() - t:.0f} s"
        )
        if not keep_f16:
            f16.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="qwen2.5-7b")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--type", choices=sorted(FTYPES), default="Q4_K_M")
    ap.add_argument("--tokenizer-from", type=Path, default=None, help="a small GGUF")
    ap.add_argument("--keep-f16", action="store_true")
    args = ap.parse_args()
    make(args.out, args.preset, args.type, args.tokenizer_from, args.keep_f16)


if __name__ == "__main__":
    main()
