"""Two positions of one inference switch, alternated in one process: seconds per energy + forces + stress call of
the published size (float32, diamond Si), min and median of each and the median over pairs of their ratio.

    python benchmarks/edge_memory_ab.py --atoms 216 --threads 2 --repeats 5 [--allocator retain]
    python benchmarks/edge_memory_ab.py --switch onednn --atoms 2744 --repeats 6 --allocator retain [--force-recompute]

``--switch edge-memory`` (default): keeping against recomputing the per-edge intermediates
(``fused.KEEP_EDGE_BYTES``); the ratio recompute/keep is what recomputation costs in time at that size.
``--switch onednn``: ``torch.backends.mkldnn`` on against off, which moves the C++ operators' per-chunk float32
products (``interaction_messages_t`` beyond ``fused.KEEP_EDGE_BYTES`` or with ``--force-recompute``, and
``edge_gate_update``) between oneDNN and ATen's at::mm (fused.py's Python products follow
``fused.ONEDNN_EDGE_PRODUCTS`` and are unaffected); the ratio is at::mm/oneDNN.

``--allocator retain`` keeps freed memory for the next allocations, as ``geodite bench speed`` does (default: the C
library's own behaviour, as the figures of sessions 5-7 were taken). The pairs alternate which position runs first;
one pair warms up. Timing needs an idle machine; under load only the ratio of the alternated runs means anything.
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

PROPERTIES = ["energy", "forces", "stress"]


def _keep_edges(keep: bool) -> None:
    fused.KEEP_EDGE_BYTES = 1 << 62 if keep else 0


def _onednn(enabled: bool) -> None:
    torch._C._set_mkldnn_enabled(enabled)


#: switch -> (numerator position, denominator position, function setting a position: True = the denominator's)
SWITCHES = {"edge-memory": ("recompute", "keep", _keep_edges), "onednn": ("at::mm", "oneDNN", _onednn)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switch", choices=tuple(SWITCHES), default="edge-memory")
    parser.add_argument("--atoms", type=int, default=216)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed pairs")
    parser.add_argument("--allocator", choices=ALLOCATORS, default="system")
    parser.add_argument("--force-recompute", action="store_true",
                        help="with --switch onednn: KEEP_EDGE_BYTES = 0 (the chunked operators at any size)")
    args = parser.parse_args()
    if args.allocator == "retain":
        retain_freed_memory()
    torch.set_num_threads(args.threads)
    if args.force_recompute:
        fused.KEEP_EDGE_BYTES = 0
    numerator, denominator, set_position = SWITCHES[args.switch]
    calculator = resolve("geodite-published").load("cpu", "float32")
    atoms = crystal("si", args.atoms)
    seconds: dict[str, list[float]] = {numerator: [], denominator: []}
    for pair in range(args.repeats + 1):  # the first pair warms up
        for name in (numerator, denominator) if pair % 2 else (denominator, numerator):
            set_position(name == denominator)
            start = time.perf_counter()
            calculator.calculate(atoms, PROPERTIES, all_changes)
            if pair:
                seconds[name].append(time.perf_counter() - start)
    for name, values in seconds.items():
        print(f"{len(atoms)} atoms, {args.threads} threads, {name:9s}: min {min(values):.3f} s, "
              f"median {statistics.median(values):.3f} s per call")
    ratio = statistics.median(a / b for a, b in zip(seconds[numerator], seconds[denominator]))
    print(f"{numerator} / {denominator}: {min(seconds[numerator]) / min(seconds[denominator]):.3f} (min), "
          f"{ratio:.3f} (median of the pairs' ratios)")


if __name__ == "__main__":
    main()
