"""The installed llama.cpp runs on this CPU: no AMX code, and a batched prefill survives.

llama.cpp compiled with -march=native on an Intel CPU with AMX contains AMX kernels that
die with SIGILL (its worker threads never request AMX tile state from the kernel).
.ci/llama-wheel.sh builds without them; these tests catch a build that slipped through.
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


def _cpu_libraries() -> list[Path]:
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    return sorted(p for p in lib.glob("libggml-cpu*.so*") if not p.is_symlink())


def amx_instructions(binary: Path) -> int:
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(binary)],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return len(AMX.findall(listing))


needs_objdump = pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils")


@needs_objdump
def test_the_cpu_backend_has_no_amx_instructions():
    libraries = _cpu_libraries()
    assert libraries, "llama-cpp-python has no libggml-cpu library"
    for library in libraries:
        found = amx_instructions(library)
        assert not found, f"{library.name} contains {found} AMX instructions: rebuild it"


@needs_objdump
@pytest.mark.skipif(shutil.which("as") is None, reason="needs the GNU assembler")
def test_the_scan_finds_amx_code(tmp_path):
    """The check above would see AMX code: assemble two tile instructions and scan them."""
    source = tmp_path / "amx.s"
    source.write_text("ldtilecfg (%rdi)\ntileloadd (%rsi,%rdx,1), %tmm0\n")
    subprocess.run(["as", "-o", str(tmp_path / "amx.o"), str(source)], check=True)
    assert amx_instructions(tmp_path / "amx.o") == 2


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
    """A SIGILL kills only the subprocess, and shows here as a negative exit status."""
    result = subprocess.run(
        [sys.executable, "-c", PREFILL],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert "prefill ok" in result.stdout
