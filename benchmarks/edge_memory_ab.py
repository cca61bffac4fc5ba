"""Inference keeping against recomputing the per-edge intermediates (``fused.KEEP_EDGE_BYTES``), alternated in one
process: seconds per energy + forces + stress call of the published size (float32, diamond Si), min and median.

    python benchmarks/edge_memory_ab.py --atoms 216 --threads 2 --repeats 5 [--allocator retain]

``--allocator retain`` keeps freed memory for the next allocations, as ``geodite bench speed`` does (default: the C
library's own behaviour, as the figures of sessions 5-7 were taken).

The ratio recompute/keep is what recomputation costs in time at that size (timing needs an idle machine;
under load only the ratio of the alternated runs means anything).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from ase.calculators.calculator import all_changes

from geodite.model import fused
from geodite.registry import resolve
from geodite.tasks.speed import ALLOCATORS, crystal, retain_freed_memory

SETTINGS = {"keep": 1 << 62, "recompute": 0}
PROPERTIES = ["energy", "forces", "stress"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=216)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--allocator", choices=ALLOCATORS, default="system")
    args = parser.parse_args()
    if args.allocator == "retain":
        retain_freed_memory()
    torch.set_num_threads(args.threads)
    calculator = resolve("geodite-published").load("cpu", "float32")
    atoms = crystal("si", args.atoms)
    seconds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for name, budget in SETTINGS.items():
            fused.KEEP_EDGE_BYTES = budget
            start = time.perf_counter()
            calculator.calculate(atoms, PROPERTIES, all_changes)
            if repeat:
                seconds[name].append(time.perf_counter() - start)
    for name, values in seconds.items():
        print(f"{len(atoms)} atoms, {args.threads} threads, {name:9s}: min {min(values):.3f} s, "
              f"median {statistics.median(values):.3f} s per call")
    print(f"recompute / keep: {min(seconds['recompute']) / min(seconds['keep']):.3f} (min), "
          f"{statistics.median(seconds['recompute']) / statistics.median(seconds['keep']):.3f} (median)")


if __name__ == "__main__":
    main()
