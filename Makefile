# Two commands do all the set-up on a fresh machine:
#   make quickstart   install into .venv, then run the main job (embedded Ray, local store)
#   make test         install into .venv (with dev tools), then lint and run the tests
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install quickstart test test-cluster lint bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -e ".[dev]"
	touch $@

# byte-compiled as a regular (non-editable) install is: a command then reads the package's
# code from its cache instead of compiling it (about 0.06 s a command where
# PYTHONDONTWRITEBYTECODE is set); files changed since are compiled again here
install: $(BIN)/.installed
	$(BIN)/python -m compileall -q clul_ray >/dev/null

quickstart: install
	RAY_USAGE_STATS_ENABLED=0 $(BIN)/clul-ray quickstart

lint: install
	$(BIN)/ruff check clul_ray tests benchmarks examples

# the `cluster` tests start and stop a two-node Ray cluster of their own: a session apart
test: lint
	RAY_USAGE_STATS_ENABLED=0 $(BIN)/pytest -q -m "not cluster"
	RAY_USAGE_STATS_ENABLED=0 $(BIN)/pytest -q -m cluster

test-cluster: install
	RAY_USAGE_STATS_ENABLED=0 $(BIN)/pytest -q -m cluster

bench: install
	RAY_USAGE_STATS_ENABLED=0 $(BIN)/python benchmarks/sisa_deletion.py
