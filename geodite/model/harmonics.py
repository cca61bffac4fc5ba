"""Real spherical harmonics of degree 1 and 2 of a unit vector, unit-normalised per degree.

For a unit vector (x, y, z): Y¹ = (x, y, z) and
Y² = (√3 xz, √3 xy, y² − (x² + z²)/2, √3 yz, √3/2 (z² − x²)), so |Y¹| = |Y²| = 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SQRT3 = math.sqrt(3.0)

#: number of steerable components per atom: 3 (l = 1) + 5 (l = 2)
NUM_STEERABLE = 8
#: slices of the l = 1 and l = 2 blocks inside the 8 steerable components
DEGREE_SLICES = (slice(0, 3), slice(3, 8))


def spherical_harmonics_l12(unit_vectors: Tensor) -> Tensor:
    """[E, 3] unit vectors -> [E, 8]: the 3 components of Y¹ then the 5 of Y²."""
    x, y, z = unit_vectors.unbind(-1)
    y2 = y.pow(2)
    x2z2 = x.pow(2) + z.pow(2)
    return torch.stack(
        [
            x,
            y,
            z,
            SQRT3 * x * z,
            SQRT3 * x * y,
            y2 - 0.5 * x2z2,
            SQRT3 * y * z,
            SQRT3 / 2.0 * (z.pow(2) - x.pow(2)),
        ],
        dim=-1,
    )
