# Everything from nothing: the first target run creates .venv and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps tools demo sim test test-fast lint format bench clean native test-native clean-native

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

## The compiled core: grid/ copied to build/native/grid/ and the simulator's hot modules compiled there with
## mypyc (native/setup.py; ≈40 s on 2 cores). `PYTHONPATH=build/native` selects it; grid/ stays interpreted.
NATIVE := build/native
$(NATIVE)/.built: $(STAMP) native/setup.py native/mypy.ini $(shell find grid -name '*.py' -o -name '*.html' -o -name '*.json')
	nice -n 10 $(BIN)/python native/setup.py
	touch $@

native: $(NATIVE)/.built

## The quick loop on the compiled build (PYTHONSAFEPATH, --import-mode=append: build/native first on sys.path, then
## the repository for tests.* and user plug-ins).
test-native: native
	PYTHONSAFEPATH=1 PYTHONPATH=$(NATIVE):$(CURDIR) $(BIN)/python -m pytest -q -m "not live and not slow" --import-mode=append

clean-native:
	rm -rf $(NATIVE)

clean: clean-native
	rm -rf $(VENV) .pytest_cache .ruff_cache
