# syntax=docker/dockerfile:1
# ragserve: llama.cpp on CUDA for chat, CPU torch for embeddings (unless TORCH_CUDA=1).
# No model weights inside: the GGUF comes from the /models volume (RAGSERVE_MODEL), the
# embedding model from the hub into /data/hf on first start, or from a mounted folder.
#   docker build -t ragserve .
#   docker run --gpus all -p 8000:8000 -v ./models:/models -v ragserve-data:/data ragserve
ARG CUDA_VERSION=12.6.3
ARG UBUNTU=ubuntu24.04
# cuBLAS from PyPI, matching CUDA_VERSION's major.minor
ARG CUBLAS_SPEC="nvidia-cublas-cu12==12.6.4.1"

# --- builder: compile llama-cpp-python against CUDA, collect every wheel -------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS builder
ARG CUDA_ARCHITECTURES="80;86;89;90"
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
ARG TORCH_CUDA=0
ARG CUBLAS_SPEC
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake ninja-build git \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# link against the driver stub at build time; the real libcuda comes from the host at run time
RUN ln -s /usr/local/cuda/lib64/stubs/libcuda.so /usr/local/cuda/lib64/stubs/libcuda.so.1
ENV LD_LIBRARY_PATH=/usr/local/cuda/lib64/stubs
# CPU code for any AVX2 machine and never AMX (it dies with SIGILL on Intel CPUs with AMX)
COPY .ci/llama-wheel.sh /tmp/llama-wheel.sh
RUN LLAMA_CPP_VERSION=${LLAMA_CPP_PYTHON_VERSION} RAGSERVE_WHEEL_CACHE=/tmp/llama \
    LLAMA_EXTRA_CMAKE="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
    CMAKE_BUILD_PARALLEL_LEVEL=8 bash /tmp/llama-wheel.sh python portable \
 && mkdir -p /wheels && cp /tmp/llama/*/*.whl /wheels/
RUN if [ "$TORCH_CUDA" = "1" ]; then pip wheel --wheel-dir /wheels torch; \
    else pip wheel --wheel-dir /wheels --index-url https://download.pytorch.org/whl/cpu torch; fi
COPY pyproject.toml README.md ./
COPY ragserve ./ragserve
COPY engine ./engine
COPY server ./server
COPY retrieval ./retrieval
COPY ingest ./ingest
# hnswlib's sdist compiles with -march=native (the build machine's CPU) unless told not to
# [postgres]: psycopg for a library in PostgreSQL (--store), a few MB; [ocr]: tesserocr (5.6 MB)
RUN HNSWLIB_NO_NATIVE=1 pip wheel --wheel-dir /wheels --find-links /wheels ".[postgres,ocr]" "${CUBLAS_SPEC}"

# --- runtime: CUDA base (driver glue only) + cuBLAS + the wheels --------------------
FROM nvidia/cuda:${CUDA_VERSION}-base-${UBUNTU} AS runtime
ARG CUBLAS_SPEC
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 HF_HOME=/data/hf \
    RAGSERVE_HOST=0.0.0.0 RAGSERVE_PORT=8000 RAGSERVE_INDEX_DIR=/data/index
# tesseract-ocr-kor/-eng: OCR's language data (5.8 MB; the engine is in the tesserocr wheel)
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libgomp1 curl \
    tesseract-ocr-eng tesseract-ocr-kor \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels "ragserve[postgres,ocr]" "${CUBLAS_SPEC}"
# llama.cpp finds cuBLAS in the pip wheel; libcuda itself is mounted by the NVIDIA runtime
ENV PATH=/opt/venv/bin:$PATH \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.12/site-packages/nvidia/cublas/lib
COPY samples /opt/ragserve/samples
RUN useradd --create-home --uid 10001 ragserve && mkdir -p /data /models && chown ragserve /data /models
USER 10001
WORKDIR /home/ragserve
VOLUME ["/data", "/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8000/health/ready"]
ENTRYPOINT ["ragserve"]
CMD ["serve"]
