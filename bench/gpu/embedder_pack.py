"""Carry all-MiniLM-L6-v2 to the GPU machine within its 64 MiB transfer limit.

    python bench/gpu/embedder_pack.py pack SRC_DIR OUT.npz     # here: 91 MB -> ~22 MB
    python bench/gpu/embedder_pack.py unpack OUT.npz DEST_DIR  # there: a normal model folder
    python bench/gpu/embedder_pack.py check SRC_DIR DEST_DIR   # cosine of the two models' vectors

Each weight matrix travels as int8 with one float16 scale per 32 weights of a row (absmax); vectors
(biases, LayerNorm) travel as float32. Unpacked, the model is float32 again, the same
architecture and the same compute as the original, so its speed is the original's; its
query vectors are within cosine 0.999 of the original's (`check`), so it searches the
index built here with the original weights and finds the same passages.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

WEIGHTS = "model.safetensors"
GROUP = 32  # weights per int8 scale


def pack(src: Path, out: Path) -> None:
    from safetensors.numpy import load_file

    arrays: dict[str, np.ndarray] = {}
    for name, w in load_file(str(src / WEIGHTS)).items():
        if w.ndim == 2 and w.shape[1] % GROUP == 0:
            groups = w.reshape(w.shape[0], -1, GROUP)
            scale = np.abs(groups).max(axis=2, keepdims=True).astype(np.float32) / 127.0
            scale[scale == 0] = 1.0
            arrays["q:" + name] = np.round(groups / scale).astype(np.int8)
            arrays["s:" + name] = scale.astype(np.float16)
        else:
            arrays["f:" + name] = w.astype(np.float32)
    files = {
        str(p.relative_to(src)): p.read_text()
        for p in src.rglob("*")
        if p.is_file() and p.name != WEIGHTS and p.suffix in (".json", ".txt")
    }
    arrays["files"] = np.frombuffer(json.dumps(files).encode(), dtype=np.uint8)
    np.savez_compressed(out, **arrays)
    print(f"packed {src} -> {out} ({out.stat().st_size:,} bytes)")


def unpack(packed: Path, dest: Path) -> None:
    from safetensors.numpy import save_file

    data = np.load(packed)
    weights: dict[str, np.ndarray] = {}
    for key in data.files:
        kind, _, name = key.partition(":")
        if kind == "q":
            q = data[key].astype(np.float32) * data["s:" + name].astype(np.float32)
            weights[name] = q.reshape(q.shape[0], -1)
        elif kind == "f":
            weights[name] = data[key]
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel, text in json.loads(data["files"].tobytes()).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    save_file(weights, str(dest / WEIGHTS), metadata={"format": "pt"})
    print(f"unpacked {packed} -> {dest}")


def check(src: Path, dest: Path) -> float:
    from sentence_transformers import SentenceTransformer

    texts = [
        "What was the budget of Project Falcon in 2025, and who manages it?",
        "하천 제방 유지보수 계약은 누가 담당하나요?",
        "pumping stations and warning sirens inspection schedule",
        "The committee reviewed the maintenance records of the northern river levees.",
    ]
    a = SentenceTransformer(str(src), device="cpu").encode(texts, normalize_embeddings=True)
    b = SentenceTransformer(str(dest), device="cpu").encode(texts, normalize_embeddings=True)
    worst = float((a * b).sum(axis=1).min())
    print(f"lowest cosine between original and carried vectors: {worst:.5f}")
    return worst


if __name__ == "__main__":
    verb, x, y = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    {"pack": pack, "unpack": unpack, "check": check}[verb](x, y)
