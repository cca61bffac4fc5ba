#!/usr/bin/env bash
# Issue 32's speed figures: run on an IDLE machine (check `uptime`; pause background jobs by pid), from the
# repository root with the project's environment (peers from `make peers`). Writes only under $OUT.
#   benchmarks/kernels_speed.sh [OUT]          (~15 min on 2 cores)
set -euo pipefail
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # benchmarks/*.py import this checkout's geodite
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
echo "results under $OUT; load: $(uptime)"
$PYTHON -c 'from geodite.custom_ops import load_library; print("kernels:", load_library())'  # build once, untimed

# 1. The table: published size against its peers, 2 threads, float32, interleaved, one run
$PYTHON -m geodite bench speed --models geodite-published,mace-mp-0-medium,sevennet-0,chgnet \
  --sizes 216,1000 --repeats 3 --threads 2 --results-dir "$OUT" | tee "$OUT/peers.txt"

# 2. C++ kernels against fused.py's Python kernels (the eager path before them), and the shipped model
$PYTHON -m geodite bench speed --models geodite-published,geodite-published-python,geodite \
  --sizes 64,216,1000 --repeats 3 --threads 2 --results-dir "$OUT" | tee "$OUT/kernels.txt"

# 3. Per-atom time and peak memory from 64 to 10,000 atoms (targets: ±20 %, ≤ 1 MB/atom at 10,000; the
#    10,000-atom call peaked near 11 GB before session 5: leave the machine that much free memory)
$PYTHON -m geodite bench speed --models geodite-published --sizes 64,1000,4096,10000 --repeats 2 --threads 2 \
  --results-dir "$OUT" | tee "$OUT/scaling.txt"

# 4. What recomputing the per-edge intermediates costs (beyond fused.KEEP_EDGE_BYTES, ~1,900 atoms, inference
#    recomputes them in the backward pass): both alternated in one process at 216 and 1000 atoms
for atoms in 216 1000; do
  $PYTHON benchmarks/edge_memory_ab.py --atoms $atoms --threads 2 --repeats 3 | tee "$OUT/edge-memory-$atoms.txt"
done

# 5. Where the time goes, 216 and 1000 atoms
for atoms in 216 1000; do
  $PYTHON benchmarks/profile_eager.py --atoms $atoms --threads 2 | tee "$OUT/profile-$atoms.txt"
done
echo "load after: $(uptime)"
