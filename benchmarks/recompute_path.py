"""The recompute path's chunked products on oneDNN against ATen's (issue 32, session 11), alternated in one process:
whole energy + forces + stress calls of the published size (float32, diamond Si), freed memory kept as ``geodite bench
speed`` keeps it.

    python benchmarks/recompute_path.py --atoms 2744 --pairs 6 [--force-recompute]

``torch.backends.mkldnn`` on against off switches the C++ chunked operator's float32 products
(``interaction_messages_t``, beyond ``fused.KEEP_EDGE_BYTES`` or with ``--force-recompute``) between oneDNN and ATen's
at::mm (the Python products choose by ``fused.ONEDNN_EDGE_PRODUCTS`` and are unaffected). Prints min / median seconds
per call of each position and the median over pairs of the ratio at::mm/oneDNN. Keeping against recomputing:
``benchmarks/edge_memory_ab.py``. Timing needs an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from ase.calculators.calculator import all_changes

from geodite.model import fused
from geodite.registry import resolve
from geodite.tasks.speed import crystal, retain_freed_memory

PROPERTIES = ["energy", "forces", "stress"]
POSITIONS = ("at::mm", "oneDNN")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=4096)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--force-recompute", action="store_true", help="KEEP_EDGE_BYTES = 0")
    args = parser.parse_args()
    retain_freed_memory()
    torch.set_num_threads(args.threads)
    if args.force_recompute:
        fused.KEEP_EDGE_BYTES = 0
    calculator = resolve("geodite-published").load("cpu", "float32")
    atoms = crystal("si", args.atoms)
    seconds: dict[str, list[float]] = {position: [] for position in POSITIONS}
    for pair in range(args.pairs + 1):  # the first pair warms up
        for position in POSITIONS if pair % 2 else POSITIONS[::-1]:
            torch._C._set_mkldnn_enabled(position == "oneDNN")
            start = time.perf_counter()
            calculator.calculate(atoms, PROPERTIES, all_changes)
            if pair:
                seconds[position].append(time.perf_counter() - start)
    for position, samples in seconds.items():
        print(f"{len(atoms)} atoms, {position}: min {min(samples):.3f} s, median {statistics.median(samples):.3f} s, "
              f"{1e6 * statistics.median(samples) / len(atoms):.0f} us per atom-step (median)")
    ratio = statistics.median(a / b for a, b in zip(seconds["at::mm"], seconds["oneDNN"]))
    print(f"per-pair ratio at::mm/oneDNN: {ratio:.3f}")


if __name__ == "__main__":
    main()
