# Geodite: set-up, tests and benchmarks. Every target installs what it needs first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  ?= geodite
LIMIT  ?=
JOBS   ?= 2

.PHONY: install test test-slow bench eval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

## test: the fast suite (physics, faithfulness on the small fixture, metrics, CLI)
test: install
	$(BIN)/python -m pytest -n $(JOBS) -q

## test-slow: the checks behind the `slow` marker (full-size fixture, long MD)
test-slow: install
	$(BIN)/python -m pytest -q -m slow

## bench: the main job on the embedded model and the shipped real data
bench: install
	$(BIN)/geodite eval --model tests/data/geodite_small_checkpoint.pt --data tests/data/geodite_small_cases.extxyz

clean:
	rm -rf $(VENV) build *.egg-info
