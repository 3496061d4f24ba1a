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


def tensor_plan(shape: Shape) -> list[tuple[str, tuple[int, int] | tuple[int], str]]:
    """(name, numpy shape (rows = outputs, cols = inputs), role) of every tensor, in order.

    The role names the tensor's place for llama.cpp's Q4_K_M recipe: "norm" and "bias" stay
    F32, "attn_v" and "ffn_down" get Q6_K in the layers `use_more_bits` picks, "output" Q6_K.
    """
    s = shape
    kv = s.n_head_kv * (s.n_embd // s.n_head)
    plan: list[tuple[str, tuple[int, int] | tuple[int], str]] = [
        ("token_embd.weight", (s.n_vocab, s.n_embd), "weight")
    ]
    for i in range(s.n_layer):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (s.n_embd,), "norm"),
            (b + "attn_q.weight", (s.n_embd, s.n_embd), "weight"),
            (b + "attn_q.bias", (s.n_embd,), "bias"),
            (b + "attn_k.weight", (kv, s.n_embd), "weight"),
            (b + "attn_k.bias", (kv,), "bias"),
            (b + "attn_v.weight", (kv, s.n_embd), "attn_v"),
            (b + "attn_v.bias", (kv,), "bias"),
            (b + "attn_output.weight", (s.n_embd, s.n_embd), "weight"),
            (b + "ffn_norm.weight", (s.n_embd,), "norm"),
            (b + "ffn_gate.weight", (s.n_ff, s.n_embd), "weight"),
            (b + "ffn_up.weight", (s.n_ff, s.n_embd), "weight"),
            (b + "ffn_down.weight", (s.n_embd, s.n_ff), "ffn_down"),
        ]
    plan += [
        ("output_norm.weight", (s.n_embd,), "norm"),
        ("output.weight", (s.n_vocab, s.n_embd), "output"),  # untied: a tensor of its own
    ]
    return plan


def q4_k_m_type(name: str, role: str, n_layer: int) -> str:
    """The type llama.cpp's Q4_K_M recipe (src/llama-quant.cpp) gives a qwen2 tensor."""
    if role in ("norm", "bias"):
        return "F32"
    if role == "output":
        return "Q6_K"
    if role in ("attn_v", "ffn_down"):
        i = int(name.split(".")[1])
        more_bits = i < n_layer // 8 or i >= 7 * n_layer // 8 or (i - n_layer // 8) % 3 == 2
        return "Q6_K" if more_bits else "Q4_K"
    return "Q4_K"


def _blocks(rng: np.random.Generator, rows: int, cols: int, kind: str) -> np.ndarray:
    """Random but well-formed K-quant blocks: weights of about normal(0, 0.02), no NaN/Inf.

    Q4_K (144 bytes per 256 weights): f16 d, f16 dmin, 12 bytes of 6-bit scales and mins,
    128 bytes of 4-bit values; w = d*scale*q - dmin*min. Q6_K (210 bytes): 128 + 64 bytes of
    6-bit values, 16 int8 scales, f16 d; w = d*scale*(q-32). Random bytes everywhere but the
    f16 factors, which are set so the weights' spread matches the F16 path's.
    """
    size, d_at, factors = {
        "Q4_K": (144, 0, np.array([1e-4, 7.5e-4], dtype=np.float16)),
        "Q6_K": (210, 208, np.array([1.5e-5], dtype=np.float16)),
    }[kind]
    if cols % 256:
        raise SystemExit(f"{kind} needs rows of a multiple of 256 weights, not {cols}")
    data = rng.integers(0, 256, (rows, cols // 256, size), dtype=np.uint8)
    data[:, :, d_at : d_at + 2 * len(factors)] = factors.view(np.uint8)
    return data.reshape(rows, -1)


def _writer(out: Path, shape: Shape, tokenizer: dict[str, object], ftype: str):
    import gguf

    s = shape
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
    w.add_file_type(FTYPES[ftype])
    add_fields(w, tokenizer)
    return w


def add_fields(w, fields: dict[str, object]) -> None:
    for key, value in fields.items():
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


def _finish(w) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_f16(out: Path, shape: Shape, tokenizer: dict[str, object], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    cache: dict[tuple[int, ...], np.ndarray] = {}
    w = _writer(out, shape, tokenizer, "F16")
    for name, dims, role in tensor_plan(shape):
        if role == "norm":
            w.add_tensor(name, np.ones(dims, dtype=np.float32))
        elif role == "bias":
            w.add_tensor(name, np.zeros(dims, dtype=np.float32))
        else:  # one array per shape, reused across layers: memory stays a few GB
            if dims not in cache:
                cache[dims] = (rng.standard_normal(dims, dtype=np.float32) * 0.02).astype(
                    np.float16
                )
            w.add_tensor(name, cache[dims])
    _finish(w)


def write_q4_k_m(out: Path, shape: Shape, tokenizer: dict[str, object], seed: int = 0) -> None:
    """The Q4_K_M file written directly: llama.cpp's per-tensor types, random K-quant blocks.

    Speed depends on each tensor's shape and type, not on the values, so this gives what
    quantizing the F16 file gives (tests/test_make_gguf.py compares the two tensor by
    tensor) without writing 15 GB of F16 first and quantizing it: seconds instead of
    minutes on the GPU machine, whose time is counted.
    """
    import gguf

    rng = np.random.default_rng(seed)
    cache: dict[tuple[str, int, int], np.ndarray] = {}
    w = _writer(out, shape, tokenizer, "Q4_K_M")
    for name, dims, role in tensor_plan(shape):
        kind = q4_k_m_type(name, role, shape.n_layer)
        if kind == "F32":
            fill = np.ones if role == "norm" else np.zeros
            w.add_tensor(name, fill(dims, dtype=np.float32))
            continue
        rows, cols = dims
        key = (kind, rows, cols)
        if key not in cache:
            cache[key] = _blocks(rng, rows, cols, kind)
        w.add_tensor(name, cache[key], raw_dtype=gguf.GGMLQuantizationType[kind])
    _finish(w)


def write_tokenizer(out: Path, source: Path) -> Path:
    """A GGUF holding only `source`'s tokenizer metadata (a few MB): --tokenizer-from input
    for machines that should not receive the whole small model."""
    import gguf
    from gguf import GGUFReader

    reader = GGUFReader(str(source))
    fields = {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}
    w = gguf.GGUFWriter(str(out), "qwen2")
    add_fields(w, fields)
    _finish(w)
    return out


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
    preset: str | Shape,
    ftype: str = "Q4_K_M",
    tokenizer_from: Path | None = None,
    keep_f16: bool = False,
    direct: bool = False,
) -> Path:
    shape = PRESETS[preset] if isinstance(preset, str) else preset
    if tokenizer_from is None:
        from ragserve.server.settings import bundled_model_path

        tokenizer_from = bundled_model_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer_fields(tokenizer_from, shape.n_vocab)
    if direct:
        if ftype != "Q4_K_M":
            raise SystemExit("--direct writes Q4_K_M only")
        t = time.perf_counter()
        write_q4_k_m(out, shape, tokenizer)
        print(
            f"wrote {out} ({out.stat().st_size:,} bytes, Q4_K_M written directly) in "
            f"{time.perf_counter() - t:.1f} s"
        )
        return out
    f16 = out if ftype == "F16" else out.with_name(out.stem + ".F16.gguf")
    t = time.perf_counter()
    write_f16(f16, shape, tokenizer)
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
    ap.add_argument(
        "--direct",
        action="store_true",
        help="write the Q4_K_M tensors directly (no F16 file, no quantizing): same types and "
        "shapes, seconds instead of minutes",
    )
    ap.add_argument(
        "--tokenizer-only",
        action="store_true",
        help="write only the tokenizer metadata of --tokenizer-from (default: bundled) to --out",
    )
    args = ap.parse_args()
    if args.tokenizer_only:
        from ragserve.server.settings import bundled_model_path

        src = write_tokenizer(args.out, args.tokenizer_from or bundled_model_path())
        print(f"wrote {src} ({src.stat().st_size:,} bytes)")
        return
    make(args.out, args.preset, args.type, args.tokenizer_from, args.keep_f16, args.direct)


if __name__ == "__main__":
    main()
