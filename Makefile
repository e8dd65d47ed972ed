# Two commands for a newcomer (see README.md):
#   make demo   create .venv, install swiftnas, run the main job
#   make test   install the test dependencies, run lint, type checks and the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/python
	# torch first, from the local CPU wheel (see pyproject.toml); nothing may replace it.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e .

install-dev: $(BIN)/python
	$(BIN)/pip install torch==2.13.0
	# coreml: the tests convert a small candidate to a real Core ML package
	$(BIN)/pip install -e ".[dev,coreml]"

demo: install
	$(BIN)/swiftnas space presets
	$(BIN)/swiftnas space sample --n 5 --seed 0

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

test: install-dev lint pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
