#!/usr/bin/env bash
# Build llama.cpp with CUDA (sm_90: H100/H200) on a machine WITHOUT a GPU or a CUDA install,
# so the GPU machine's counted minutes go to measuring, not compiling (~4.5 min there).
#
#   bash bench/gpu/build_cuda.sh [WORK_DIR] [BUILD_DIR] [ARCH]     # ~1 h on 2 cores
#   CPU_ONLY=1 bash bench/gpu/build_cuda.sh ...                   # the same tree, no CUDA
#
# The CUDA 13.0 compiler, runtime, cuBLAS headers and CCCL come from NVIDIA's PyPI wheels
# (the GPU machine's driver 580 runs CUDA 13.0; its torch brings libcublas.so.13 and
# libcudart.so.13, which the build links by soname). The wheels have no libcuda.so, which
# ggml-cuda links for its virtual-memory pool, so a stub with every cu* symbol of cuda.h
# and the soname libcuda.so.1 stands in for the link; the driver's real one loads at run time.
# llama.cpp is the copy llama-cpp-python 0.3.36 vendors (the sdist from PyPI), so the
# libraries match the Python bindings ragserve uses.
set -eu
WORK=${1:-/tmp/ragserve-cuda}
BUILD=${2:-$WORK/build}
ARCH=${3:-90}
LCP=llama_cpp_python-0.3.36
mkdir -p "$WORK"
cd "$WORK"

if [ ! -d "$LCP" ]; then
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==0.3.36" -d .
  tar -xzf "$LCP.tar.gz"
fi
SRC="$WORK/$LCP/vendor/llama.cpp"
FLAGS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TESTS=OFF
       -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF
       -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON)

if [ -z "${CPU_ONLY:-}" ]; then
  CUDA="$WORK/cuda"
  if [ ! -x "$CUDA/bin/nvcc" ]; then
    mkdir -p wheels unpacked
    python3 -m pip download -q --no-deps --only-binary=:all: -d wheels \
      --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux_2_17_x86_64 --python-version 3.11 \
      nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.0.2.14 \
      nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
    for w in wheels/*.whl; do unzip -q -o "$w" -d unpacked; done
    rm -rf "$CUDA" && cp -a unpacked/nvidia/cu13 "$CUDA"
    ln -sfn lib "$CUDA/lib64"
    for l in libcudart libcublas libcublasLt; do ln -sf "$l.so.13" "$CUDA/lib/$l.so"; done
    mkdir -p "$CUDA/lib/stubs"
    gcc -E -P "$CUDA/include/cuda.h" | grep -oE '\bcu[A-Z][A-Za-z0-9_]*\s*\(' | sed 's/\s*(//' \
      | sort -u | awk '{print "void " $1 "(void) {}"}' > cuda_stub.c
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA/lib/stubs/libcuda.so" cuda_stub.c
  fi
  export PATH="$CUDA/bin:$PATH" CUDACXX="$CUDA/bin/nvcc"
  FLAGS+=(-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DCUDAToolkit_ROOT="$CUDA")
fi

cmake -S "$SRC" -B "$BUILD" -G Ninja "${FLAGS[@]}"
ninja -C "$BUILD" llama-bench llama-server llama-batched-bench llama
ls -la "$BUILD/bin"
