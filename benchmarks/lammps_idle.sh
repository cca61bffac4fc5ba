#!/usr/bin/env bash
# Idle-machine timings of pair_style geodite against ASE + the same package (issue #29, docs/lammps.md):
#   1. 1,000 Si atoms: ASE + package, LAMMPS 1 rank, LAMMPS 2 ranks x 1 thread, alternated twice
#   2. 10,648 Si atoms: the same, alternated twice
#   3. the published size (random weights) at 1,000 atoms: the same, once
# each with --profile (pair_style geodite's phases as fractions of the step; the timers cost microseconds).
#
#   benchmarks/lammps_idle.sh RESULTS_DIR
#
# Run from the checkout that built build/lammps/lmp_geodite (make lammps), on an idle machine: pause background
# jobs by pid (kill -STOP PID ... kill -CONT PID). Expected wall time on the 2 idle cores: about 6 minutes
# (1: ~1 min, 2: ~3 min, 3: ~2 min; from the idle figures of 2026-12-06 and the loaded runs of 2026-12-07).
# Environment: PYTHON (default /work/main/.venv/bin/python), LMP, PACKAGE (the shipped model, float32: geodite
# export geodite --dtype float32), PUBLISHED (geodite export geodite-published --dtype float32; skipped if absent).
# The 2026-12-07 checkout of branch s6-lammps has both in build/bench (geodite-f32.pt2 exported 2026-12-06 21:41,
# published-f32.pt2 2026-12-07 00:16) and lmp_geodite in build/lammps.
set -euo pipefail
RESULTS=${1:?usage: benchmarks/lammps_idle.sh RESULTS_DIR}
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/work/main/.venv/bin/python}
LMP=${LMP:-build/lammps/lmp_geodite}
PACKAGE=${PACKAGE:-build/bench/geodite-f32.pt2}
PUBLISHED=${PUBLISHED:-build/bench/published-f32.pt2}
for file in "$LMP" "$PACKAGE"; do
  [ -e "$file" ] || { echo "missing $file (make lammps; geodite export geodite --dtype float32 --out $PACKAGE)" >&2; exit 2; }
done
mkdir -p "$RESULTS"
{
  date -u
  git rev-parse HEAD
  uptime
  nproc
  ls -l "$LMP" "$PACKAGE" "$PUBLISHED" 2>&1
} > "$RESULTS/machine.txt"

bench() {  # NAME ARGS...: one lammps/bench.py run, its table in RESULTS/NAME.md, wall time and load appended
  local name=$1
  shift
  echo "== $name: lammps/bench.py $*" | tee -a "$RESULTS/commands.txt"
  local start=$SECONDS
  PYTHONPATH=. "$PYTHON" lammps/bench.py --executable "$LMP" --engines ase-exported,lammps --ranks 1,2 \
    --threads 1 --threads-per-rank 1 --profile "$@" 2>&1 | grep -v -e DeprecationWarning -e MaxwellBoltzmann \
    | tee "$RESULTS/$name.md"
  echo "wall $((SECONDS - start)) s; load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS/$name.md"
}

bench shipped-1000 --package "$PACKAGE" --sizes 1000 --steps 3 --repeats 2
bench shipped-10648 --package "$PACKAGE" --sizes 10000 --steps 3 --repeats 2
if [ -e "$PUBLISHED" ]; then
  bench published-1000 --package "$PUBLISHED" --sizes 1000 --steps 2 --repeats 1
else
  echo "no $PUBLISHED: published size skipped" | tee -a "$RESULTS/commands.txt"
fi
date -u >> "$RESULTS/machine.txt"
