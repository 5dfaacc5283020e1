# One command per task. Every target creates .venv and installs what it needs by itself.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
PYTEST_ARGS ?=

.PHONY: venv demo test lint unit cluster-tests testenv-build bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $@

demo: venv
	bash scripts/demo.sh

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The Kubernetes binaries are built once into ~/.cache/flotilla/k8s (20-50 min cold, a no-op after).
testenv-build: venv
	$(BIN)/flotilla testenv build

test: lint testenv-build
	$(BIN)/pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest -m "not cluster" $(PYTEST_ARGS)

bench: venv testenv-build
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist
