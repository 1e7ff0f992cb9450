# The README's two commands: `make book` (set up, execute the chapters, build the site) and
# `make test` (set up, run unit tests and notebook checks).  Python 3.11 on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup book test bench

$(BIN)/python:
	$(PY) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .

book: setup
	$(BIN)/python -m symlib book

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m symlib.bench
