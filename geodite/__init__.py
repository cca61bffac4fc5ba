"""Geodite: a fast, tensor-product-free equivariant interatomic potential, and its benchmark suite.

    from geodite import GeoditeCalculator
    atoms.calc = GeoditeCalculator()            # the shipped model, float32, CPU
    atoms.calc = GeoditeCalculator("Geodite-MP.ckpt", device="cuda", dtype="float64")
"""

from geodite.calculator import Evaluator, GeoditeCalculator
from geodite.checkpoints import load_model

__version__ = "0.1.0"
__all__ = ["Evaluator", "GeoditeCalculator", "load_model"]
