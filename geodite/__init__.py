"""Geodite: a fast, tensor-product-free equivariant interatomic potential, and its benchmark suite.

    from geodite import GeoditeCalculator
    atoms.calc = GeoditeCalculator()            # the shipped model, float32, CPU
    atoms.calc = GeoditeCalculator("Geodite-MP.ckpt", device="cuda", dtype="float64")
"""

import os

# Before torch's first allocation (c10/core/alloc_cpu.cpp reads it once): CPU tensors of 2 MB and more get whole
# pages advised MADV_HUGEPAGE (transparent huge pages), so the per-edge tensors every call allocates and frees are
# faulted in up to 512 times less often (docs/speed.md: 216-atom calls after another model's were ~20 % slower without
# it). Only where geodite is imported before torch (the `geodite` command, its workers); =0 turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from geodite.calculator import Evaluator, GeoditeCalculator  # noqa: E402 (after the variable)
from geodite.checkpoints import load_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Evaluator", "GeoditeCalculator", "load_model"]
