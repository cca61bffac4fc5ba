"""What autograd keeps for the force/stress backward pass of one eval-mode call (issue 32's memory): every tensor
saved for backward, once per storage, with the module that saved it, its shape and size, and the per-atom total.

    python benchmarks/saved_tensors.py --atoms 216 [--kernels python] [--min-mb 1]

Published size, float32, diamond Si (``geodite.tasks.speed``). Rows with E rows (one per edge) and F or more
columns are the [E, F]-sized tensors that set the peak memory of large structures.
"""

from __future__ import annotations

import argparse
import collections
import contextlib

import torch
from ase.calculators.calculator import all_changes

from geodite.custom_ops import python_kernels
from geodite.model import fused
from geodite.registry import resolve
from geodite.tasks.speed import crystal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=216)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--kernels", choices=("auto", "python"), default="auto")
    parser.add_argument("--edge-memory", choices=("auto", "keep", "recompute"), default="auto",
                        help="keep or recompute the per-edge intermediates (fused.KEEP_EDGE_BYTES; auto: by size)")
    parser.add_argument("--min-mb", type=float, default=0.5, help="list saved tensors of at least this size")
    args = parser.parse_args()
    if args.edge_memory != "auto":
        fused.KEEP_EDGE_BYTES = 0 if args.edge_memory == "recompute" else 1 << 62
    calculator = resolve("geodite-published").load("cpu", args.dtype)
    atoms = crystal("si", args.atoms)
    modules: list[str] = []  # the modules being run, innermost last

    def enter(name: str):
        return lambda module, args: modules.append(name or "model")

    def leave(module, args, output) -> None:
        modules.pop()

    for name, module in calculator.evaluator.model.named_modules():
        module.register_forward_pre_hook(enter(name))
        module.register_forward_hook(leave)
    saved: dict[int, tuple[str, tuple[int, ...], int]] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved.setdefault(storage.data_ptr(), (modules[-1] if modules else "-", tuple(tensor.shape), storage.nbytes()))
        return tensor

    with python_kernels() if args.kernels == "python" else contextlib.nullcontext():
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            calculator.calculate(atoms, ["energy", "forces", "stress"], all_changes)
    by_module: collections.Counter[str] = collections.Counter()
    for module, shape, nbytes in saved.values():
        by_module[module] += nbytes
        if nbytes >= args.min_mb * 1e6:
            print(f"{module:48s} {str(list(shape)):18s} {nbytes / 1e6:9.1f} MB")
    total = sum(by_module.values())
    print(f"{len(atoms)} atoms, kernels={args.kernels}, edge memory={args.edge_memory}: {len(saved)} saved storages, {total / 1e6:.1f} MB "
          f"({total / len(atoms) / 1e3:.0f} kB per atom); by module (MB):")
    for module, nbytes in by_module.most_common(12):
        print(f"  {module:46s} {nbytes / 1e6:9.1f}")


if __name__ == "__main__":
    main()
