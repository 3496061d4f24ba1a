"""Small helpers for tests: functions for the extraction pool, CLI runners."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from ragserve.ingest.extract import ExtractResult, extract_pdf

ROOT = Path(__file__).resolve().parents[1]


def bench_script(relative: str) -> ModuleType:
    """A tool under bench/ (make_gguf.py, gpu/embedder_pack.py), loaded from its file for
    the test of it. bench/ is never put on sys.path: the dependency runs one way, bench
    scripts using the tests' generators (bench/_common.py), so no module is importable
    under two names."""
    path = ROOT / "bench" / relative
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def hang_or_crash(path: str) -> ExtractResult:
    """Extraction that hangs on files named *hang* and dies on files named *crash*."""
    name = Path(path).name
    if "hang" in name:
        time.sleep(3600)
    if "crash" in name:
        os._exit(7)
    return extract_pdf(path)


def ragserve(*args: str, timeout: float = 300, env: dict | None = None):
    """Run the real `ragserve` console command."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ragserve.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=full_env,
    )


async def generate_text(engine, tokens: list[int], **params):
    """Run one request on a real engine: (all its text, its Finished event)."""
    from ragserve.engine import GenerationRequest, SamplingParams
    from ragserve.server.generation import collect

    return await collect(engine.generate(GenerationRequest(tokens, SamplingParams(**params))))


def children(pid: int) -> set[int]:
    """The processes `pid` started (from /proc: no psutil needed)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def extractors(pid: int) -> set[int]:
    """`pid`'s extraction workers (spawned multiprocessing children)."""
    found = set()
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
            found.add(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
