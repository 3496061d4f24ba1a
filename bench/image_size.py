"""Estimate the Docker image's uncompressed size without a Docker engine.

    python bench/image_size.py [--cublas-wheel PATH.whl]

Sums, from what is installed here: the runtime dependency closure of `ragserve`
(each distribution's installed files, CPU torch included), plus the unpacked size of
the cuBLAS wheel the image installs (pass the downloaded wheel: `pip download --no-deps
nvidia-cublas-cu12==12.6.4.1`), plus stated allowances for what cannot be measured here
(the CUDA base image, Python from Ubuntu, the CUDA kernels in llama-cpp-python).
"""

from __future__ import annotations

import argparse
import re
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

# Not measurable here; the figures are the published sizes and are stated in the output.
ALLOWANCES_MB = {
    "nvidia/cuda:12.6.3-base-ubuntu24.04 (Ubuntu 24.04 + cudart + compat libs)": 250,
    "python3, python3-venv, libgomp1, curl from Ubuntu": 60,
    "llama-cpp-python CUDA kernels for sm_80/86/89/90 (libggml-cuda.so)": 400,
}


def dist_size(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        p = Path(str(dist.locate_file(f)))
        if p.is_file():
            total += p.stat().st_size
    return total


def closure(root: str, extras: set[str]) -> dict[str, metadata.Distribution]:
    seen: dict[str, metadata.Distribution] = {}
    todo = [(root, extras)]
    while todo:
        name, want = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            env = {"extra": ""}
            ok = (
                req.marker is None
                or req.marker.evaluate(env)
                or any(req.marker.evaluate({"extra": e}) for e in want)
            )
            if ok:
                todo.append((req.name, set(req.extras)))
    return seen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cublas-wheel", type=Path, default=None)
    args = ap.parse_args()
    dists = closure("ragserve", set())  # the image installs no demo models
    sizes = {k: dist_size(d) for k, d in dists.items()}
    venv = sum(sizes.values())
    print(
        f"runtime Python packages (ragserve closure, {len(dists)} distributions, CPU "
        f"torch): {venv / 2**20:.0f} MiB"
    )
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {name:<28} {size / 2**20:8.0f} MiB")
    total = venv / 2**20
    if args.cublas_wheel:
        with zipfile.ZipFile(args.cublas_wheel) as z:
            cublas = sum(i.file_size for i in z.infolist() if "/include/" not in i.filename)
        print(f"cuBLAS libraries ({args.cublas_wheel.name}, unpacked): {cublas / 2**20:.0f} MiB")
        total += cublas / 2**20
    else:
        print("cuBLAS: pass --cublas-wheel to measure it (about 800 MiB unpacked)")
        total += 800
    for what, mb in ALLOWANCES_MB.items():
        print(f"allowance: {what}: {mb} MiB")
        total += mb
    print(f"estimated image size, uncompressed: {total / 1024:.2f} GiB (goal <= 4 GB)")


if __name__ == "__main__":
    main()
