#!/usr/bin/env bash
# The GPU figures of issue #13 in one run: llama-bench, llama-server -np 8 under
# bench/load.py, ragserve under the same client and settings, RAG TTFT, the second turn,
# start-up against a bare Llama() load, host RSS, and GPU memory per KV cache setting.
#
#   bash bench/gpu/run.sh OUT_DIR            # on the GPU machine, from the repository root
#   PRESET=tiny NGL=0 bash bench/gpu/run.sh /tmp/rehearsal   # the CPU rehearsal
#
# Needs the bundle that bench/gpu/prepare.sh writes to .gpu/ (carried to the machine):
# llama.cpp built with CUDA (llama.tar.xz), llama-cpp-python's Python files, wheels of what
# the machine lacks, the tokenizer GGUF, the carried embedder and the sample index.
# STARTUPS=N adds N alternating rounds of start-ups (bench/startup_bench.py: medians, engine
# phases). Every step writes its output under OUT_DIR as it goes (steps.log says where it got to),
# so a step that runs out of time loses nothing before it.
set -u
OUT=$(realpath -m "${1:-${OUT:-/tmp/gpu-out}}")
B=$(realpath -m "${BUNDLE:-.gpu}")
W=${WORK:-/tmp/ragserve-gpu}
PRESET=${PRESET:-qwen2.5-7b}
NGL=${NGL:-99}
SLOTS=${SLOTS:-8}
CTX_PER_SLOT=${CTX_PER_SLOT:-8192}   # llama-server -c 65536 -np 8: 8192 per slot
LEVELS=${LEVELS:-1,8,16}
PROMPT_TOKENS=${PROMPT_TOKENS:-1500}
MAX_TOKENS=${MAX_TOKENS:-256}
ROUNDS=${ROUNDS:-2}
PY=${PY:-python3}
mkdir -p "$OUT" "$W"
START=$SECONDS
log() {
  echo "[$(date +%T) +$((SECONDS - START))s] $*" | tee -a "$OUT/steps.log"
  # SNAPSHOT=FILE: everything so far in one archive after each step (the device tool
  # returns at most 8 files, and whatever a timed-out command left)
  if [ -n "${SNAPSHOT:-}" ]; then tar -czf "$SNAPSHOT.tmp" -C "$OUT" . && mv "$SNAPSHOT.tmp" "$SNAPSHOT"; fi
}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

log "start: preset $PRESET, ngl $NGL, $SLOTS slots x $CTX_PER_SLOT, levels $LEVELS"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  nproc; $PY --version; uname -r; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# --- 1. software: wheels, llama.cpp, llama-cpp-python's Python files --------------------
if [ -d "$B/wheels" ] && [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$W/site" "$B"/wheels/*.whl > "$OUT/pip.log" 2>&1 || { log "pip failed"; cat "$OUT/pip.log"; exit 1; }
  export PYTHONPATH="$W/site:${PYTHONPATH:-}"
fi
rm -rf "$W/llama" && mkdir -p "$W/llama" && tar -xJf "$B/llama.tar.xz" -C "$W/llama" || { log "no llama build"; exit 1; }
LIB="$W/llama/bin"
# libcudart.so.13 and libcublas.so.13: torch's own copies first (so torch and llama.cpp load
# the same ones), else the CUDA toolkit's; libcuda.so.1 is the driver's.
CUDA_LIBS=$($PY -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null)
[ -e "$CUDA_LIBS/libcublas.so.13" ] || CUDA_LIBS=/usr/local/cuda/lib64
LD_LIBRARY_PATH="$CUDA_LIBS:${LD_LIBRARY_PATH:-}"
ldconfig -p 2>/dev/null | grep -q "libcuda.so.1 " || LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/usr/local/nvidia/lib64"
echo "CUDA libraries from $CUDA_LIBS" | tee -a "$OUT/machine.txt"
export LD_LIBRARY_PATH="$LIB:${LD_LIBRARY_PATH:-}" LLAMA_CPP_LIB_PATH="$LIB"
export PYTHONPATH="$PWD:$B/py:${PYTHONPATH:-}"
"$LIB/llama-bench" --list-devices > "$OUT/devices.txt" 2>&1; cat "$OUT/devices.txt"
if [ "$NGL" != 0 ] && ! grep -q CUDA0 "$OUT/devices.txt"; then
  log "no CUDA device in llama.cpp: stopping here rather than measuring the CPU"
  ldd "$LIB/libggml-cuda.so" > "$OUT/ldd.txt" 2>&1; grep -i "not found" "$OUT/ldd.txt"; exit 1
fi
$PY -c "import llama_cpp, litestar, msgspec, structlog, hnswlib, sentence_transformers; \
print('llama_cpp', llama_cpp.__version__, 'gpu offload', llama_cpp.llama_supports_gpu_offload())" \
  > "$OUT/imports.txt" 2>&1 || { log "imports failed"; tail -5 "$OUT/imports.txt"; exit 1; }
cat "$OUT/imports.txt"
log "software ready"

# --- 2. the model (Q4_K_M written directly) and the embedder ---------------------------
MODEL="$W/model-$PRESET.gguf"
[ -f "$MODEL" ] || $PY bench/make_gguf.py --preset "$PRESET" --direct --tokenizer-from "$B/tok.gguf" \
  --out "$MODEL" 2>&1 | tee "$OUT/model.txt"
$PY bench/gpu/embedder_pack.py unpack "$B/minilm.npz" "$W/all-MiniLM-L6-v2" > /dev/null
cat "$MODEL" > /dev/null  # into the page cache, as for every load below
log "model ready: $(stat -c %s "$MODEL") bytes"

# --- 3. llama-bench ------------------------------------------------------------------
[ -n "${SKIP_BENCH:-}" ] || "$LIB/llama-bench" -m "$MODEL" -ngl "$NGL" -fa 1,0 -p 512 -n 128 -r 5 -o md 2>&1 | tee "$OUT/llama-bench.md"
log "llama-bench done"

# --- 4. llama-server -np 8 under bench/load.py -----------------------------------------
wait_http() {  # url pid seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do
    kill -0 "$2" 2>/dev/null || return 1
    $PY -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
if [ -z "${SKIP_LLAMA_SERVER:-}" ]; then
"$LIB/llama-server" -m "$MODEL" -ngl "$NGL" -fa on -np "$SLOTS" -c $((SLOTS * CTX_PER_SLOT)) \
  --port 8080 --host 127.0.0.1 > "$OUT/llama-server.log" 2>&1 &
LS=$!
if wait_http http://127.0.0.1:8080/health $LS 120; then
  timeout "${STEP_S:-180}" $PY bench/load.py --base-url http://127.0.0.1:8080/v1 --model q7 --concurrency "$LEVELS" \
    --rounds "$ROUNDS" --prompt-tokens "$PROMPT_TOKENS" --max-tokens "$MAX_TOKENS" \
    --json "$OUT/load-llama-server.json" 2>&1 | tee "$OUT/load-llama-server.txt"
else
  log "llama-server did not start"; tail -20 "$OUT/llama-server.log"
fi
kill $LS 2>/dev/null; sleep 1; kill -9 $LS 2>/dev/null; wait $LS 2>/dev/null
log "llama-server done"
fi

# --- 5. a bare Llama() load of the same file, then ragserve ----------------------------
$PY bench/gpu/bare_load.py "$MODEL" "$NGL" $((SLOTS * CTX_PER_SLOT)) 2>&1 | tee "$OUT/bare-load.txt"
$PY bench/gpu/bare_load.py "$MODEL" "$NGL" $((SLOTS * CTX_PER_SLOT)) no-mmap 2>&1 | grep -v "^llama_context" \
  | tee -a "$OUT/bare-load.txt"

serve() {  # port, tag, extra args...
  local port=$1 tag=$2; shift 2
  $PY bench/gpu/serve_timed.py --out "$OUT" --tag "$tag" -- --log-level info serve --port "$port" \
    --model "$MODEL" --model-alias m --parallel "$SLOTS" --n-ctx "$CTX_PER_SLOT" \
    $([ "$NGL" = 99 ] || echo --n-gpu-layers "$NGL") --max-queue 64 --index "$B/index" \
    --embed-model "$W/all-MiniLM-L6-v2" --rag-top-k "${RAG_TOP_K:-6}" "$@"
}
serve 8090 "" --flash-attn on --embed-device "${EMBED_DEVICE:-cpu}" > "$OUT/ragserve-start.txt" 2>&1 &
RS=$!
if wait_http http://127.0.0.1:8090/health/ready $RS 180; then
  cat "$OUT/ragserve-start.txt"
  SPY="$W/site/bin/py-spy"
  if [ -x "$SPY" ]; then  # where the time goes at 8-16 clients, in case a target is missed
    ( sleep "${SPY_DELAY:-6}"; "$SPY" record --nonblocking --threads -r 200 -d "${SPY_SECONDS:-20}" -f speedscope \
        -o "$OUT/pyspy-ragserve.json" -p "$(cat "$OUT/ragserve.pid")" > "$OUT/pyspy.log" 2>&1 ) &
  fi
  timeout "${STEP_S:-180}" $PY bench/load.py --base-url http://127.0.0.1:8090/v1 --model m-norag --concurrency "$LEVELS" \
    --rounds "$ROUNDS" --prompt-tokens "$PROMPT_TOKENS" --max-tokens "$MAX_TOKENS" \
    --json "$OUT/load-ragserve.json" 2>&1 | tee "$OUT/load-ragserve.txt"
  log "ragserve load done"
  [ -n "${SKIP_PROBE:-}" ] || timeout "${STEP_S:-180}" $PY bench/gpu/probe.py --base-url http://127.0.0.1:8090 --model m --json "$OUT/probe.json" \
    2>&1 | tee "$OUT/probe.txt"
  $PY -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8090/metrics').read().decode())" \
    > "$OUT/ragserve-metrics.txt" 2>&1
  nvidia-smi --query-gpu=memory.used --format=csv > "$OUT/ragserve-vram.txt" 2>&1
else
  log "ragserve did not get ready"; cat "$OUT/ragserve-start.txt"
fi
kill $RS 2>/dev/null
for _ in $(seq 100); do kill -0 $RS 2>/dev/null || break; sleep 0.2; done
kill -9 $RS "$(cat "$OUT/ragserve.pid" 2>/dev/null)" 2>/dev/null; wait $RS 2>/dev/null
cat "$OUT/ragserve-rss.txt" 2>/dev/null
grep -E "loaded|ready|warmup" "$OUT/ragserve-start.txt" | cut -c1-300
# what start-up imports cost on this machine, each in a fresh process: the CLI before the
# loader starts, llama_cpp (its dlopen of the CUDA libraries holds the GIL), the web stack
for m in ragserve.cli llama_cpp "litestar, ragserve.server.app"; do
  $PY -c "import time; t = time.perf_counter(); import $m; print(f'IMPORT $m {time.perf_counter() - t:.2f} s')"
done 2>/dev/null | tee -a "$OUT/bare-load.txt"
$PY -X importtime -c "import ragserve.cli, llama_cpp, ragserve.server.app" 2> "$OUT/importtime.txt"
log "ragserve done"

# --- 5b. variants of the server's settings (VARIANTS="name:--flag value;name2:--flag"),
# the same load levels against each, with start-up time and RSS ---------------------------
IFS=';' read -r -a VARS <<< "${VARIANTS:-}"
for v in "${VARS[@]}"; do
  [ -n "$v" ] || continue
  name=${v%%:*}; read -r -a extra <<< "${v#*:}"
  serve 8091 "$name" --flash-attn on --embed-device "${EMBED_DEVICE:-cpu}" "${extra[@]}" \
    > "$OUT/ragserve-start-$name.txt" 2>&1 &
  VS=$!
  if wait_http http://127.0.0.1:8091/health/ready $VS 180; then
    grep -E "^ragserve: process start" "$OUT/ragserve-start-$name.txt"
    timeout "${STEP_S:-180}" $PY bench/load.py --base-url http://127.0.0.1:8091/v1 --model m-norag \
      --concurrency "${VARIANT_LEVELS:-8,16}" --rounds "$ROUNDS" --prompt-tokens "$PROMPT_TOKENS" \
      --max-tokens "$MAX_TOKENS" --json "$OUT/load-ragserve-$name.json" 2>&1 | tee "$OUT/load-ragserve-$name.txt"
  else
    log "variant $name did not get ready"; tail -5 "$OUT/ragserve-start-$name.txt"
  fi
  kill $VS 2>/dev/null
  for _ in $(seq 100); do kill -0 $VS 2>/dev/null || break; sleep 0.2; done
  kill -9 $VS "$(cat "$OUT/ragserve-$name.pid" 2>/dev/null)" 2>/dev/null; wait $VS 2>/dev/null
  cat "$OUT/ragserve-rss-$name.txt" 2>/dev/null
  log "variant $name done"
done

# --- 5c. start-up: STARTUPS rounds of a bare Llama() load and ragserve, alternating -------
if [ "${STARTUPS:-0}" -gt 0 ]; then
  # NGL 99 = every layer: ragserve's default then (n_batch 2048, as in the runs above)
  timeout "${STEP_S:-180}" $PY bench/startup_bench.py --model "$MODEL" --parallel "$SLOTS" \
    --n-ctx "$CTX_PER_SLOT" $([ "$NGL" = 99 ] || echo --n-gpu-layers "$NGL") --index "$B/index" --repeat "$STARTUPS" \
    -- --embed-model "$W/all-MiniLM-L6-v2" --flash-attn on 2>&1 | tee "$OUT/startup.txt"
  log "start-up rounds done"
fi

# --- 6. memory settings: llama-bench per KV cache type at depth, GPU memory per slot -----
if [ -z "${SKIP_MEMORY:-}" ]; then
for kv in f16 q8_0 q4_0; do
  timeout "${STEP_S:-180}" "$LIB/llama-bench" -m "$MODEL" -ngl "$NGL" -fa 1 -ctk $kv -ctv $kv -d 0,4096 -p 512 -n 128 -r 3 \
    -o md 2>&1 | tee -a "$OUT/llama-bench-kv.md"
done
log "kv bench done"
timeout "${STEP_S:-180}" $PY bench/gpu/vram.py --model "$MODEL" --json "$OUT/vram.json" 2>&1 | grep -v "^llama\|^load\|^print_info" \
  | tee "$OUT/vram.txt"
fi
log "all done"
$PY bench/gpu/summary.py "$OUT" | tee "$OUT/summary.txt"
log "summary written"
