"""Where one eager call of the published-size Geodite spends its time (issue 32): torch.profiler over one
energy + forces + stress call on diamond Si, after a warm-up call, self time per operator.

    python benchmarks/profile_eager.py --atoms 216 --threads 2 [--kernels python] [--allocator system]

``--kernels python`` profiles fused.py's Python kernels (the eager path before the C++ kernels). Prints the
operators by self time; the geodite:: rows are the C++ kernels (their autograd wrappers, named
``GeneratedBackwardFor_geodite_*``, hold the forward operators' time). Timing needs an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from ase.calculators.calculator import all_changes

from geodite.custom_ops import python_kernels
from geodite.model import fused
from geodite.registry import resolve
from geodite.tasks.speed import ALLOCATORS, crystal, retain_freed_memory

PROPERTIES = ["energy", "forces", "stress"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=216)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--kernels", choices=("auto", "python"), default="auto")
    parser.add_argument("--edge-memory", choices=("auto", "keep", "recompute"), default="auto",
                        help="keep or recompute the per-edge intermediates (fused.KEEP_EDGE_BYTES; auto: by size)")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--allocator", choices=ALLOCATORS, default="retain",
                        help="retain: keep freed memory, as `geodite bench speed` times (default); system: glibc's")
    args = parser.parse_args()
    if args.allocator == "retain":
        retain_freed_memory()
    if args.edge_memory != "auto":
        fused.KEEP_EDGE_BYTES = 0 if args.edge_memory == "recompute" else 1 << 62
    torch.set_num_threads(args.threads)
    calculator = resolve("geodite-published").load("cpu", args.dtype)
    atoms = crystal("si", args.atoms)
    with python_kernels() if args.kernels == "python" else contextlib.nullcontext():
        calculator.calculate(atoms, PROPERTIES, all_changes)  # warm-up (builds the kernels' library if needed)
        start = time.perf_counter()
        calculator.calculate(atoms, PROPERTIES, all_changes)
        seconds = time.perf_counter() - start
        with torch.profiler.profile() as profile:
            calculator.calculate(atoms, PROPERTIES, all_changes)
    print(f"{len(atoms)} atoms, {args.threads} threads, {args.dtype}, kernels={args.kernels}, edge memory={args.edge_memory}: {seconds:.3f} s per call "
          f"unprofiled ({len(atoms) / seconds:.0f} atom-steps/s)")
    print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=60))
    print(f"the interaction's messages (forward) in the model, timed without the profiler (which inflates short "
          f"operators): {1e3 * messages_seconds(calculator, atoms):.1f} ms per call")


def messages_seconds(calculator, atoms, calls: int = 5) -> float:
    """Seconds per model call spent in the interaction's forward messages operator (all layers; the edge maps that
    feed it not included), by a timing wrapper around ``fused.interaction_messages``."""
    spent = [0.0]
    original = fused.interaction_messages

    def timed(*args):
        start = time.perf_counter()
        out = original(*args)
        spent[0] += time.perf_counter() - start
        return out

    fused.interaction_messages = timed
    try:
        for _ in range(calls):
            calculator.calculate(atoms, PROPERTIES, all_changes)
    finally:
        fused.interaction_messages = original
    return spent[0] / calls


if __name__ == "__main__":
    main()
