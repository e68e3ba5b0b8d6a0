# litefleet — every target installs and starts what it needs (fresh Debian 12, root).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUILD := build

.PHONY: setup engine images postgres browser test test-fast demo demo-runtime bench chaos lint typecheck check clean dist

# .venv with the project in editable mode and its dev dependencies.
setup: $(VENV)/.stamp-setup
$(VENV)/.stamp-setup: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# A Docker engine that answers (installs and starts Debian's docker.io if needed).
engine:
	@bash images/engine.sh

# litefleet/tenant and litefleet/s3 images, built offline from a host wheelhouse.
images: setup engine
	@bash images/build.sh

# Local PostgreSQL server on its own port, data under build/.
postgres:
	@bash images/postgres.sh start

# Debian's chromium + chromium-driver for the web console's browser tests.
browser:
	@bash images/browser.sh

test: setup engine images postgres browser
	$(BIN)/pytest -q

# Unit tests only: no Docker, no PostgreSQL.
test-fast: setup
	$(BIN)/pytest -q -m "not docker and not postgres"

# The fleet story on the embedded object store (see fleet/demo.py).
demo: setup engine images
	$(BIN)/python -m fleet.demo

# The runtime alone: serve the examples, drive a run, kill -9, resume.
demo-runtime: setup
	$(BIN)/python -m agent_runtime.examples.demo

bench: setup engine images postgres
	$(BIN)/pip install -q -e '.[bench]'
	LITEFLEET_BENCH_PG="$$(bash images/postgres.sh url)" $(BIN)/python bench/runtime_bench.py
	LITEFLEET_BENCH_PG="$$(bash images/postgres.sh url)" $(BIN)/python bench/pydantic_ai_bench.py
	$(BIN)/python bench/responsiveness_bench.py

# Faults against tenants under a steady load of runs and what each costs (bench/chaos.py):
# store partition, kill -9 of each process kind, docker kill, full volume, engine restart on
# an engine of its own. Root, ~4 min; not part of `make test`. Exits 1 if an acknowledged
# run is lost. CHAOS_ARGS=--long-partition adds a 5-minute partition (~8 min in all).
chaos: setup engine images
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS)

lint: setup
	$(BIN)/ruff check agent_runtime fleet tests bench images
	$(BIN)/ruff format --check agent_runtime fleet tests bench images

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test-fast

# The wheel and sdist (with the image build contexts: setup.py, MANIFEST.in) into dist/.
dist: setup
	rm -rf dist
	$(BIN)/python -m build --outdir dist . >/dev/null
	@ls -1 dist

clean:
	rm -rf $(BUILD) dist .pytest_cache .mypy_cache .ruff_cache
