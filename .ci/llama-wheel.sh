#!/usr/bin/env bash
# Build llama-cpp-python once per CPU feature set, without AMX, and install it.
#
#   .ci/llama-wheel.sh PYTHON [host|portable]      (extra CMake flags: LLAMA_EXTRA_CMAKE)
#
# Why not `pip install llama-cpp-python`: pip compiles it with -march=native, which on
# Intel CPUs with AMX compiles llama.cpp's AMX kernels in; its worker threads never ask
# the kernel for AMX tile state, so the first long prompt dies with SIGILL. And pip's
# wheel cache is keyed by the sdist, not by CMAKE_ARGS, so a wheel built on another CPU
# would come back silently. Here the instruction sets are named explicitly (AMX never),
# and the wheel is kept in a folder whose name encodes them.
#
#   host      every AVX/AVX-512 extension this CPU has (the default for local use)
#   portable  AVX2/FMA/F16C/BMI2 only: any x86-64 CPU since 2013 (Docker images)
# WHEEL_OUT=DIR: copy the wheel into DIR instead of installing it.
set -euo pipefail

py=${1:?usage: llama-wheel.sh PYTHON [host|portable]}
profile=${2:-host}
version=${LLAMA_CPP_VERSION:-0.3.36}
cache=${RAGSERVE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ragserve/wheels}

# cpuinfo flag -> ggml CMake option (order matters only for the key)
pairs="sse4_2:SSE42 avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI
avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16"

case "$profile" in
  host)
    have=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    on=()
    for p in $pairs; do
      flag=${p%%:*}
      # AVX-512 in ggml means F, CD, VL, DQ and BW together
      if [ "$flag" = avx512f ]; then
        for f in avx512f avx512cd avx512vl avx512dq avx512bw; do
          [[ $have == *" $f "* ]] || continue 2
        done
      fi
      [[ $have == *" $flag "* ]] && on+=("${p#*:}")
    done
    ;;
  portable) on=(SSE42 AVX AVX2 FMA F16C BMI2) ;;
  *) echo "llama-wheel.sh: unknown profile '$profile' (host or portable)" >&2; exit 2 ;;
esac

args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
args+=" -DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF"
for p in $pairs; do
  opt=${p#*:}
  if [[ " ${on[*]} " == *" $opt "* ]]; then args+=" -DGGML_$opt=ON"; else args+=" -DGGML_$opt=OFF"; fi
done
args+=" ${LLAMA_EXTRA_CMAKE:-}"

key=$(printf '%s %s %s' "$version" "$($py -c 'import sys; print(sys.implementation.cache_tag)')" "$args" \
  | sha256sum | cut -c1-16)
dir="$cache/llama-cpp-python-$version-$key"
if ! ls "$dir"/*.whl >/dev/null 2>&1; then
  echo "llama-wheel.sh: compiling llama-cpp-python $version (${on[*]:-no SIMD}, no AMX); ~10 min on 2 cores" >&2
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$py" -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
    --wheel-dir "$tmp" "llama-cpp-python==$version"
  printf '%s\n' "$args" >"$tmp/CMAKE_ARGS"
  rm -rf "$dir"
  mv "$tmp" "$dir"   # atomic: an interrupted build leaves no half-filled folder behind
fi
if [ -n "${WHEEL_OUT:-}" ]; then  # collect the wheel (the image rehearsal) instead of installing it
  mkdir -p "$WHEEL_OUT" && cp "$dir"/*.whl "$WHEEL_OUT"/
  echo "llama-wheel.sh: llama-cpp-python $version copied to $WHEEL_OUT" >&2
  exit 0
fi
"$py" -m pip install -q --no-deps --force-reinstall "$dir"/*.whl
echo "llama-wheel.sh: llama-cpp-python $version from $dir" >&2
