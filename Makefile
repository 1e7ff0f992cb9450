# The README's two commands: `make book` (set up, execute the chapters, build the site) and
# `make test` (set up, run unit tests and notebook checks).  Python 3.11 on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup book test bench publish

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

# Publish by hand: build the site from the committed notebooks (no execution) and push
# _build/html to the gh-pages branch of origin (.nojekyll: Sphinx's _static must be served).
publish: setup
	$(BIN)/jupyter-book build . --all -W --keep-going
	$(BIN)/ghp-import --no-jekyll --push --message "site: $$(git rev-parse --short HEAD)" _build/html
