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
## Matbench Discovery's offline WBM subset (relaxations from perturbed DFT structures) and the dimer curves
bench: install
	$(BIN)/geodite eval --model tests/data/geodite_small_checkpoint.pt --data tests/data/geodite_small_cases.extxyz
	$(BIN)/geodite bench discovery --model $(MODEL) --limit $(or $(LIMIT),50)
	$(BIN)/geodite bench diatomics --model $(MODEL)

## bench-speed: Geodite and its peers side by side (CPU, 2 threads)
bench-speed: peers
	$(BIN)/geodite bench speed --sizes 64,216,1000 --threads $(JOBS)

## all-benchmarks: discovery, kappa, diatomics, MD and speed for MODEL (full data where present, else the shipped
## real subsets), resuming what is done, then CPS and results/$(MODEL)/report.md + report.html.
## LIMIT=N: quick mode (first N items, short MD, small speed sizes); MD_TIME=2ps sets the MD length
.PHONY: all-benchmarks
all-benchmarks: install
	$(BIN)/python -c 'import phono3py' 2>/dev/null || $(BIN)/pip install --quiet -e '.[test,phonons]' 'torch==2.13.0'
	$(BIN)/geodite bench all --model $(MODEL) $(if $(LIMIT),--limit $(LIMIT)) $(if $(MD_TIME),--md-time $(MD_TIME))

clean:
	rm -rf $(VENV) build *.egg-info

## lammps: build/lammps/lmp_geodite, Debian's LAMMPS + OpenMPI with pair_style geodite (libtorch of the torch
## wheel runs `geodite export` packages); apt-get needs root on first use. docs/lammps.md
.PHONY: lammps test-lammps
lammps: install
	lammps/build.sh $(BIN)/python build/lammps

## test-lammps (slow): pair_style geodite serial/MPI/NVE/small cell and the fix external driver against ASE
test-lammps: lammps
	$(BIN)/pip install --quiet -e '.[test,lammps]'
	GEODITE_REQUIRE_LAMMPS=1 $(BIN)/python -m pytest tests/export -q -p no:xdist -m 'slow or not slow'
