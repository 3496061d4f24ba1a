#!/usr/bin/env bash
# The OpenAPI spec tells the truth: schemathesis fuzzes a real server (SmolLM2, an index of
# samples/, an API key) against openapi/openapi.json with all checks, a fixed seed and a
# bounded number of examples per operation, and fails on any finding. The body limit is
# raised so that oversized lists meet the schema's own bounds (400), not the size cap (413).
#   .ci/fuzz.sh [PYTHON]          (EXAMPLES=10 SEED=42 to change the budget)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-.venv/bin/python}
bin=$(dirname "$py")
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1
"$bin/ragserve" ingest samples --index "$work/index" --no-progress >/dev/null
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/ragserve" serve --index "$work/index" --port "$port" --api-key fuzz-key \
  --n-ctx 512 --default-max-tokens 16 --max-queue 64 --max-body-bytes 33554432 >"$work/server.log" 2>&1 &
server=$!
ready() { "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null; }
for _ in $(seq 1 240); do
  ready "http://127.0.0.1:$port/health/ready" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.5
done
ready "http://127.0.0.1:$port/health/ready" || { echo "server not ready after 120 s"; cat "$work/server.log"; exit 1; }
"$bin/schemathesis" --config-file .ci/schemathesis.toml run openapi/openapi.json --url "http://127.0.0.1:$port" \
  -H "Authorization: Bearer fuzz-key" --checks all --max-examples "${EXAMPLES:-10}" \
  --seed "${SEED:-42}" --request-timeout 120 --max-response-time 60 --workers 1
