"""Shared bits for the benchmarks: paths, timing and a ratio printer."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the PDF factories live with the tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def report(name: str, value: float, baseline: float, unit: str, target: str = "") -> None:
    ratio = value / baseline if baseline else float("nan")
    print(
        f"{name:<44} {value:>10.2f} {unit:<8} baseline {baseline:>10.2f}  "
        f"ratio {ratio:5.2f}x  {target}",
        flush=True,
    )


def ingest_samples(index: Path) -> Path:
    """The bundled sample PDFs ingested into `index` with this checkout's CLI."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ragserve.cli",
            "ingest",
            str(ROOT / "samples"),
            "--index",
            str(index),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return index
