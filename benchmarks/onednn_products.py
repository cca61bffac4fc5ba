"""The per-edge products on oneDNN against ATen's (MKL's) (issue 32, session 10): the products alone at the shapes of
the published size, then whole energy + forces + stress calls with ``fused.ONEDNN_EDGE_PRODUCTS`` switched off and on
alternately in one process (the same model, the same structure).

    python benchmarks/onednn_products.py --atoms 216 1000 --pairs 20 8 --threads 2

Prints GFLOP/s (median of 30 products) per shape, then per size the min / median seconds per call of each position
and the median over pairs of the ratio off/on (> 1: oneDNN faster). Timing needs an idle machine; the timing
process keeps freed memory, as ``geodite bench speed`` does.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from ase.calculators.calculator import all_changes

from geodite.graph import neighbour_list
from geodite.model import fused
from geodite.registry import resolve
from geodite.tasks.speed import crystal, retain_freed_memory

PROPERTIES = ["energy", "forces", "stress"]
CHANNELS = 192  # published size


def median_seconds(call, repeats: int = 30) -> float:
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def products(num_edges: int) -> None:
    """GFLOP/s of x Wᵀ for the model's edge maps: F → F, F → 3F (forward) and 3F → F (the filter's ∂/∂t)."""
    for width_in, width_out in [(CHANNELS, CHANNELS), (CHANNELS, 3 * CHANNELS), (3 * CHANNELS, CHANNELS)]:
        x, weight = torch.randn(num_edges, width_in), torch.randn(width_out, width_in)
        out = torch.empty(num_edges, width_out)
        flop = 2 * num_edges * width_in * width_out
        row = []
        for on in (False, True):
            fused.ONEDNN_EDGE_PRODUCTS = on
            call = (lambda: fused.edge_product(x, weight)) if on else (lambda: torch.mm(x, weight.t(), out=out))
            row.append(f"{'oneDNN' if on else 'ATen'} {flop / median_seconds(call) / 1e9:.0f}")
        print(f"[{num_edges} x {width_in}] x [{width_in} x {width_out}]: GFLOP/s " + ", ".join(row))


def calls(calculator, atoms, pairs: int) -> None:
    """Whole calls with the switch alternated (order flipped every pair), after one warm-up call each."""
    for on in (False, True):
        fused.ONEDNN_EDGE_PRODUCTS = on
        calculator.calculate(atoms, PROPERTIES, all_changes)
    seconds = {False: [], True: []}
    for pair in range(pairs):
        for on in (True, False) if pair % 2 else (False, True):
            fused.ONEDNN_EDGE_PRODUCTS = on
            start = time.perf_counter()
            calculator.calculate(atoms, PROPERTIES, all_changes)
            seconds[on].append(time.perf_counter() - start)
    ratio = statistics.median(a / b for a, b in zip(seconds[False], seconds[True]))
    print(f"{len(atoms)} atoms, {pairs} pairs: ATen {min(seconds[False]):.3f} / {statistics.median(seconds[False]):.3f} s, "
          f"oneDNN {min(seconds[True]):.3f} / {statistics.median(seconds[True]):.3f} s (min / median); "
          f"per-pair ratio ATen/oneDNN {ratio:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, nargs="+", default=[216, 1000])
    parser.add_argument("--pairs", type=int, nargs="+", default=[20, 8], help="alternated pairs per size")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    retain_freed_memory()
    torch.set_num_threads(args.threads)
    calculator = resolve("geodite-published").load("cpu", "float32")
    for size, pairs in zip(args.atoms, args.pairs):
        atoms = crystal("si", size)
        products(len(neighbour_list(atoms, calculator.evaluator.cutoff)[0]))
        calls(calculator, atoms, pairs)


if __name__ == "__main__":
    main()
