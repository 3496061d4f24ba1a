"""The installed hnswlib runs on this CPU.

Its sdist compiles with -march=native and pip's wheel cache is keyed by the sdist, so a wheel
built on an AVX-512 machine comes back on any other and dies with SIGILL. `.ci/hnswlib-wheel.sh`
keys host builds by the CPU's flags (and builds Docker's without the flag); these tests catch a
wheel that slipped through.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# A register of each width appears only in code of that instruction set (or later): count
# the instructions (lines) that name one.
REGISTERS = {"avx512f": re.compile(rb"(?m)^.*%zmm\d.*$"), "avx": re.compile(rb"(?m)^.*%ymm\d.*$")}


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def lacking(binary: Path, flags: set[str]) -> dict[str, int]:
    """Instructions in `binary` of each vector extension missing from `flags`."""
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(binary)],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    found = {
        flag: len(reg.findall(listing)) for flag, reg in REGISTERS.items() if flag not in flags
    }
    return {flag: n for flag, n in found.items() if n}


needs_objdump = pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils")


@needs_objdump
@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux")
def test_hnswlib_uses_no_vector_extension_this_cpu_lacks():
    import hnswlib

    found = lacking(Path(hnswlib.__file__), _cpu_flags())
    assert not found, (
        f"hnswlib holds instructions this CPU lacks {found}: it was built on another "
        "machine; run .ci/hnswlib-wheel.sh"
    )


@needs_objdump
@pytest.mark.skipif(shutil.which("as") is None, reason="needs the GNU assembler")
def test_the_scan_finds_avx512_code(tmp_path):
    """The check above would see AVX-512 code on a CPU without it."""
    source = tmp_path / "wide.s"
    source.write_text("vaddps %zmm0, %zmm1, %zmm2\nvaddps %ymm0, %ymm1, %ymm2\n")
    subprocess.run(["as", "-o", str(tmp_path / "wide.o"), str(source)], check=True)
    assert lacking(tmp_path / "wide.o", {"avx"}) == {"avx512f": 1}
    assert lacking(tmp_path / "wide.o", set()) == {"avx512f": 1, "avx": 1}
    assert lacking(tmp_path / "wide.o", {"avx", "avx512f"}) == {}


SEARCH = textwrap.dedent(
    """
    import hnswlib, numpy as np
    x = np.random.default_rng(0).standard_normal((2000, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = hnswlib.Index(space="ip", dim=384)
    index.init_index(len(x), ef_construction=100, M=16)
    index.add_items(x, num_threads=2)
    labels, _ = index.knn_query(x[:50], k=1)
    assert (labels[:, 0] == np.arange(50)).all()
    print("search ok")
    """
)


def test_an_index_builds_and_searches_in_a_subprocess():
    """A SIGILL kills only the subprocess, and shows here as a negative exit status."""
    result = subprocess.run(
        [sys.executable, "-c", SEARCH], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert "search ok" in result.stdout
