# Two commands for a newcomer (see README.md):
#   make demo   create .venv, install swiftnas, run a small search study
#   make test   install the test dependencies, run lint, type checks and the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev system-deps lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/python
	# torch first, from the local CPU wheel (see pyproject.toml); nothing may replace it.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e .

# Debian packages the tests use: a real PostgreSQL server, Chromium for the dashboard test,
# Fashion-MNIST (the one real image dataset offline) for `swiftnas train`.
SYSTEM_PACKAGES := postgresql chromium dataset-fashion-mnist
system-deps:
	@if ! dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && \
	  $$SUDO apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES); \
	fi

install-dev: $(BIN)/python system-deps
	$(BIN)/pip install torch==2.13.0
	# coreml: real Core ML conversions; distributed: Ray workers; postgres: the psycopg driver
	$(BIN)/pip install -e ".[dev,coreml,distributed,postgres,dashboard]"

demo: install
	$(BIN)/swiftnas space presets
	# a real (small) search on the shipped proxy and predictor; prints its Pareto front
	$(BIN)/swiftnas search --study demo --storage sqlite:///demo.db --device "iPhone 14" \
	  --latency-budget-ms 1.2 --trials 30

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest:
	$(BIN)/pytest

test: install-dev lint pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
