# One command per task. Every target creates .venv and installs what it needs by itself.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
PYTEST_ARGS ?=

.PHONY: venv assets demo test lint unit cluster-tests testenv-build tools bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $@

# The dashboard's front-end libraries, fetched with npm ci from package-lock.json (never committed).
DASHBOARD := src/flotilla/updates/server/dashboard
ASSETS := $(DASHBOARD)/static/vendor/chart.umd.min.js
assets: $(ASSETS)

$(ASSETS): $(DASHBOARD)/package.json $(DASHBOARD)/package-lock.json scripts/dashboard-assets.sh
	bash scripts/dashboard-assets.sh

demo: venv assets
	bash scripts/demo.sh

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The Kubernetes binaries are built once into ~/.cache/flotilla/k8s (20-50 min cold, a no-op after);
# Tekton Pipelines once into ~/.cache/flotilla/tekton-<version> (about 4 min cold).
testenv-build: venv
	$(BIN)/flotilla testenv build --tekton --knative

# helm (reference client of the chart and operator tests), Hydra (OIDC provider) and buildx (BuildKit
# for the dev loop; Debian 12 has none) are built once into ~/.cache/flotilla/tools.
tools: venv
	$(BIN)/python tests/charts/helm_build.py
	$(BIN)/python tests/updates/oidc_provider.py
	$(BIN)/python -m tests.dev.buildx_build

test: lint testenv-build tools assets
	$(BIN)/pytest $(PYTEST_ARGS)

unit: venv assets
	$(BIN)/pytest -m "not cluster" $(PYTEST_ARGS)

bench: venv testenv-build assets
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist
