#!/usr/bin/env bash
# Build hnswlib once per CPU feature set (or for any x86-64 CPU) and install it.
#
#   .ci/hnswlib-wheel.sh PYTHON [host|portable]
#
# Why not `pip install hnswlib`: its sdist compiles with -march=native (built on an AVX-512
# machine, the extension holds AVX-512 code throughout, not only in the distance functions
# it picks at run time), and pip's wheel cache is keyed by the sdist, so that wheel comes
# back on the next machine, whatever its CPU, and dies there with SIGILL.
#
#   host      -march=native, kept under a folder keyed by this CPU's flags: never reused
#             on a CPU with other flags (the default for local use)
#   portable  HNSWLIB_NO_NATIVE: the x86-64 baseline, any CPU (Docker images). Searches
#             and builds ~1.7x slower (0.72 vs 1.22 ms per query over 20k vectors on an
#             AVX-512 EPYC, bench/RESULTS.md), still ~1 ms beside a model's ~100 ms.
# WHEEL_OUT=DIR: copy the wheel into DIR instead of installing it.
set -euo pipefail

py=${1:?usage: hnswlib-wheel.sh PYTHON [host|portable]}
profile=${2:-host}
version=${HNSWLIB_VERSION:-0.8.0}
cache=${RAGSERVE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ragserve/wheels}
tag=$($py -c 'import sys; print(sys.implementation.cache_tag)')
case "$profile" in
  host)
    key=$( (uname -m; grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true) | sha256sum | cut -c1-16)
    native=1 ;;
  portable) key=portable; native= ;;
  *) echo "hnswlib-wheel.sh: unknown profile '$profile' (host or portable)" >&2; exit 2 ;;
esac
dir="$cache/hnswlib-$version-$tag-$key"
if ! ls "$dir"/*.whl >/dev/null 2>&1; then
  echo "hnswlib-wheel.sh: compiling hnswlib $version ($profile; ~1 min)" >&2
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  if [ -n "$native" ]; then unset HNSWLIB_NO_NATIVE; else export HNSWLIB_NO_NATIVE=1; fi
  "$py" -m pip wheel -q --no-deps --no-cache-dir --no-binary hnswlib \
    --wheel-dir "$tmp" "hnswlib==$version"
  rm -rf "$dir"
  mv "$tmp" "$dir"   # atomic: an interrupted build leaves no half-filled folder behind
fi
if [ -n "${WHEEL_OUT:-}" ]; then  # collect the wheel (the image rehearsal) instead of installing it
  mkdir -p "$WHEEL_OUT" && cp "$dir"/*.whl "$WHEEL_OUT"/
  echo "hnswlib-wheel.sh: hnswlib $version copied to $WHEEL_OUT" >&2
  exit 0
fi
"$py" -m pip install -q --no-deps --force-reinstall "$dir"/*.whl
echo "hnswlib-wheel.sh: hnswlib $version from $dir" >&2
