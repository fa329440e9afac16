# Everything from nothing: the first target run creates .venv and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps tools demo sim test test-fast lint format bench clean

# Python with venv comes first (installed with apt-get only if missing); only `make test` needs more.
$(STAMP): pyproject.toml
	PYTHON=$(PYTHON) bash .ci/install-system-deps venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The system packages the tests run for real: Prometheus + promtool, docker-compose, Chromium (only
## those missing, with apt-get; sudo when not root).
system-deps:
	PYTHON=$(PYTHON) bash .ci/install-system-deps test

## The ecosystem's benchmark tools, guidellm and inference-perf, each in its own venv under .venv-tools/
## (never .venv: their pins fight Locust's and Ray's), and the offline Qwen3 tokenizer they load.
## Idempotent, pinned (benchmarks/tools/*.lock); ~1.5 min and ~2 GB from nothing (docs/benchmark-tools.md).
tools:
	bash benchmarks/tools/setup.sh

## The main job: the live grid under a minute of load, beside the simulator's prediction.
demo: $(STAMP)
	$(BIN)/grid demo

## An hour of the default world in virtual time.
sim: $(STAMP)
	$(BIN)/grid sim

## The whole suite (real Ray, uvicorn, Prometheus, Locust and Chromium where the tests need them).
test: system-deps $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

## The quick loop: ruff and the tests marked neither `live` (real services) nor `slow` (pyproject.toml).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not live and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python benchmarks/sim_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
