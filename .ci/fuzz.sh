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
# two keys: fuzz-key (admin) and a key with every other scope, limited to the store "decoy"
"$py" - "$work/keys.json" <<'PY'
import hashlib, json, sys
h = lambda k: "sha256:" + hashlib.sha256(k.encode()).hexdigest()
scopes = ["chat", "files:read", "files:write", "stores:read", "stores:write"]
json.dump({"keys": [{"name": "fuzz", "hash": h("fuzz-key"), "scopes": ["admin"]},
                    {"name": "restricted", "hash": h("restricted-key"), "scopes": scopes,
                     "stores": ["decoy"]}]}, open(sys.argv[1], "w"))
PY
"$bin/ragserve" serve --index "$work/index" --port "$port" --api-key-file "$work/keys.json" \
  --n-ctx 512 --default-max-tokens 16 --max-queue 64 --max-body-bytes 33554432 >"$work/server.log" 2>&1 &
server=$!
ready() { "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null; }
for _ in $(seq 1 240); do
  ready "http://127.0.0.1:$port/health/ready" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.5
done
ready "http://127.0.0.1:$port/health/ready" || { echo "server not ready after 120 s"; cat "$work/server.log"; exit 1; }
[ "${MAIN_PASS:-1}" = 0 ] || "$bin/schemathesis" --config-file .ci/schemathesis.toml run openapi/openapi.json --url "http://127.0.0.1:$port" \
  -H "Authorization: Bearer fuzz-key" --checks all --max-examples "${EXAMPLES:-10}" \
  --seed "${SEED:-42}" --request-timeout 120 --max-response-time 60 --workers 1

# The restricted pass (MAIN_PASS=0 runs it alone): the key may not read the store the admin
# makes here; whatever the fuzzer sends about it must be refused (no 2xx), nothing may fail
# (no 5xx), no answer may name it. Chat, responses and retrieval under scoped keys are
# tests/server/test_access.py's (the fuzzer cannot aim a body at the store's id).
read -r FORBIDDEN_STORE FORBIDDEN_FILE < <("$py" - "http://127.0.0.1:$port" samples <<'PY'
import pathlib, sys, time
import openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="fuzz-key")
store = client.vector_stores.create(name="forbidden")
pdf = sorted(pathlib.Path(sys.argv[2]).glob("*.pdf"))[0]
file = client.files.create(file=pdf.open("rb"), purpose="assistants")
client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=file.id)
print(store.id, file.id)
PY
)
export FORBIDDEN_STORE FORBIDDEN_FILE
PYTHONPATH=.ci SCHEMATHESIS_HOOKS=fuzz_hooks "$bin/schemathesis" \
  --config-file .ci/schemathesis-restricted.toml run openapi/openapi.json \
  --url "http://127.0.0.1:$port" -H "Authorization: Bearer restricted-key" \
  --include-path-regex '^/v1/(vector_stores|files|models)' --phases fuzzing \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,forbidden_store_stays_hidden \
  --max-examples "${RESTRICTED_EXAMPLES:-25}" --seed "${SEED:-42}" --request-timeout 120 --workers 1
