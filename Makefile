# Geodite: set-up, tests and benchmarks. Every target installs what it needs first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  ?= geodite
LIMIT  ?=
JOBS   ?= 2

.PHONY: install peers test test-slow bench bench-speed clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

## peers: the comparison models (SevenNet-0, CHGNet with bundled weights; MACE built in-process)
peers: install
	$(BIN)/pip install --quiet -e '.[test,sevenn,chgnet,mace]' 'torch==2.13.0'
	$(BIN)/pip install --quiet --no-deps 'mace-torch==0.3.16'

## test: the fast suite (physics, faithfulness on the small fixture, metrics, CLI)
test: install
	$(BIN)/python -m pytest -n $(JOBS) -q

## test-slow: the checks behind the `slow` marker (full-size fixture, long MD)
test-slow: install
	$(BIN)/python -m pytest -q -m slow

## bench: the main job on the embedded model and the shipped real data: the golden-fixture check, then
## Matbench Discovery's offline WBM subset (relaxations from perturbed DFT structures) and the dimer curves.
## Writes only under results/ (git-ignored): the tree stays clean
bench: install
	$(BIN)/geodite eval --model tests/data/geodite_small_checkpoint.pt --data tests/data/geodite_small_cases.extxyz
	$(BIN)/geodite bench discovery --model $(MODEL) --limit $(or $(LIMIT),50)
	$(BIN)/geodite bench diatomics --model $(MODEL)

## bench-speed: Geodite and its peers side by side (CPU, 2 threads)
bench-speed: peers
	$(BIN)/geodite bench speed --sizes 64,216,1000 --threads $(JOBS)

## all-benchmarks: discovery, kappa, diatomics, MD and speed for MODEL (full data where present, else the shipped
## real subsets), resuming what is done, then CPS and results/$(MODEL)/report.md + report.html (results/ is git-ignored).
## LIMIT=N: quick mode (first N items, short MD, small speed sizes); MD_TIME=2ps sets the MD length
.PHONY: all-benchmarks
all-benchmarks: install
	$(BIN)/python -c 'import phono3py' 2>/dev/null || $(BIN)/pip install --quiet -e '.[test,phonons]' 'torch==2.13.0'
	$(BIN)/geodite bench all --model $(MODEL) $(if $(LIMIT),--limit $(LIMIT)) $(if $(MD_TIME),--md-time $(MD_TIME))

## reference-results: regenerate the committed reference runs of the shipped model in reference-results/ (the
## only target that writes tracked files), with the commands docs/ quotes: discovery (first 50), kappa (4
## offline materials), diatomics, 2 ps MD, speed beside the peers, then the report. Takes about half an hour
REF := reference-results
.PHONY: reference-results
reference-results: peers
	$(BIN)/geodite bench discovery --model geodite --limit 50 --results-dir $(REF)
	$(BIN)/geodite bench kappa --model geodite --workers 2 --limit 4 --results-dir $(REF)
	$(BIN)/geodite bench diatomics --model geodite --results-dir $(REF)
	$(BIN)/geodite bench md --model geodite --time 2ps --systems Li6PS5Cl_0p,Li6PS5I_0p --results-dir $(REF)
	$(BIN)/geodite bench speed --sizes 64,216,1000 --repeats 3 --threads 2 --results-dir $(REF)
	$(BIN)/geodite report --model geodite --results-dir $(REF)

clean:
	rm -rf $(VENV) build *.egg-info
