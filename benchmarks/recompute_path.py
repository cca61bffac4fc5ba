"""The recompute path of inference (issue 32, session 11): two A/B switches alternated in one process, whole energy +
forces + stress calls of the published size (float32, diamond Si), freed memory kept as ``geodite bench speed`` keeps it.

    python benchmarks/recompute_path.py keep --atoms 4096 --pairs 2
    python benchmarks/recompute_path.py onednn --atoms 2744 --pairs 6 [--force-recompute]

``keep``: per-edge intermediates kept for the backward pass against recomputed (``fused.KEEP_EDGE_BYTES`` huge or 0).
``onednn``: ``torch.backends.mkldnn`` on against off, which switches the C++ chunked operator's float32 products
(``interaction_messages_t``, beyond KEEP_EDGE_BYTES or with ``--force-recompute``) between oneDNN and ATen's at::mm
(the Python products choose by ``fused.ONEDNN_EDGE_PRODUCTS`` and are unaffected). Prints min / median seconds per
call of each position and the median over pairs of the ratio first/second. Timing needs an idle machine.
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


def keep(position: str) -> None:
    fused.KEEP_EDGE_BYTES = 1 << 62 if position == "keep" else 0


def onednn(position: str) -> None:
    torch._C._set_mkldnn_enabled(position == "oneDNN")


SWITCHES = {"keep": (keep, ("recompute", "keep")), "onednn": (onednn, ("at::mm", "oneDNN"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("switch", choices=sorted(SWITCHES))
    parser.add_argument("--atoms", type=int, default=4096)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--force-recompute", action="store_true", help="KEEP_EDGE_BYTES = 0 (for the onednn switch)")
    args = parser.parse_args()
    retain_freed_memory()
    torch.set_num_threads(args.threads)
    if args.force_recompute:
        fused.KEEP_EDGE_BYTES = 0
    calculator = resolve("geodite-published").load("cpu", "float32")
    atoms = crystal("si", args.atoms)
    apply, positions = SWITCHES[args.switch]
    seconds: dict[str, list[float]] = {position: [] for position in positions}
    for pair in range(args.pairs + 1):  # the first pair warms up
        for position in positions if pair % 2 else positions[::-1]:
            apply(position)
            start = time.perf_counter()
            calculator.calculate(atoms, PROPERTIES, all_changes)
            if pair:
                seconds[position].append(time.perf_counter() - start)
    for position, samples in seconds.items():
        print(f"{len(atoms)} atoms, {position}: min {min(samples):.3f} s, median {statistics.median(samples):.3f} s, "
              f"{1e6 * statistics.median(samples) / len(atoms):.0f} us per atom-step (median)")
    first, second = positions
    ratio = statistics.median(a / b for a, b in zip(seconds[first], seconds[second]))
    print(f"per-pair ratio {first}/{second}: {ratio:.3f}")


if __name__ == "__main__":
    main()
