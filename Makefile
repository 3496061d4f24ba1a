# ragserve: `make run` serves the bundled demo, `make test` runs the tests.
# Each creates .venv on first use. llama-cpp-python and hnswlib compile once per CPU feature set
# (llama.cpp without AMX; see .ci/llama-wheel.sh and .ci/hnswlib-wheel.sh); LLAMA_CPU=portable
# builds both for any AVX2 CPU instead of this one.

VENV     ?= .venv
PY       := $(VENV)/bin/python
PIP      := $(PY) -m pip
STAMP    := $(VENV)/.installed
# A CPU torch keeps the install small. Elsewhere: make run TORCH_FLAGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH       ?= torch==2.13.0
TORCH_FLAGS ?=
LLAMA_CPU   ?= host
HOST     ?= 127.0.0.1
PORT     ?= 8000
DATA     ?= data
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test lint typecheck imports spec spec-check fuzz hadolint compose-check wheel-check \
	image-check codex-check ci bench clean

$(STAMP): pyproject.toml .ci/llama-wheel.sh .ci/hnswlib-wheel.sh .ci/ocr-deps.sh
	bash .ci/ocr-deps.sh
	python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check $(TORCH_FLAGS) "$(TORCH)"
	bash .ci/llama-wheel.sh $(PY) $(LLAMA_CPU)
	bash .ci/hnswlib-wheel.sh $(PY) $(LLAMA_CPU)
	$(PIP) install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## ingest the sample corpus (incremental) and serve it on http://$(HOST):$(PORT)/v1
	$(VENV)/bin/ragserve ingest samples --index $(DATA)/index
	$(VENV)/bin/ragserve serve --index $(DATA)/index --host $(HOST) --port $(PORT)

test: $(STAMP)  ## the test suite (real models, real server, real PDFs)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

imports: $(STAMP)  ## no import cycles; engine/retrieval/ingest never import the server
	$(PY) .ci/imports.py

spec: $(STAMP)  ## regenerate openapi/openapi.json from the app
	$(PY) -m ragserve.server.openapi write

spec-check: $(STAMP)
	$(PY) -m ragserve.server.openapi check

fuzz: $(STAMP)  ## schemathesis against a real server: the spec must tell the truth
	bash .ci/fuzz.sh $(PY)

hadolint: $(STAMP)
	$(VENV)/bin/hadolint Dockerfile

compose-check: $(STAMP)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml

codex-check: $(STAMP)  ## the Codex CLI (from npm) against ragserve over the Responses API
	$(PY) .ci/codex_check.py --python $(PY)

wheel-check: $(STAMP)  ## build the sdist + wheel, install and run them outside the tree; rehearse the image's install
	TORCH="$(TORCH)" TORCH_FLAGS="$(TORCH_FLAGS)" LLAMA_CPU=$(LLAMA_CPU) $(PY) .ci/wheel_check.py

image-check: $(STAMP)  ## needs Docker with a GPU: build the image, ingest, serve, ask one question
	bash .ci/image_check.sh $(PY)

ci: test lint typecheck imports spec-check fuzz hadolint compose-check wheel-check

bench: $(STAMP)
	$(PY) bench/ingest_bench.py
	$(PY) bench/embed_bench.py
	$(PY) bench/retrieval_bench.py
	$(PY) bench/serve_bench.py

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .ruff_cache .mypy_cache
