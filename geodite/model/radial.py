"""Radial embedding of interatomic distances.

phi_ij = B(r_ij) * w(t_ij) * f_cut(r_ij), with

* B: Bessel functions sqrt(2/r_c) sin(n pi r / r_c) / (r + 1e-6), n = 1..n_rbf (fixed frequencies);
* f_cut: the DimeNet polynomial envelope (p = 6), smooth to second order at r_c;
* w: a learnable weighting of the covalent-radius-scaled distance t = r / (R_cov(Z_i) + R_cov(Z_j))
  that makes learned features vanish as atoms overlap.

Distances are in Å.
"""

from __future__ import annotations

import math

import torch
from ase.data import covalent_radii
from torch import Tensor, nn
from torch.nn import functional as F


def polynomial_envelope(x: Tensor, p: float) -> Tensor:
    """DimeNet envelope u(x) = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2) for x < 1, else 0.

    ``x`` is a dimensionless distance r / r_max; u(0) = 1 and u, u', u'' vanish at x = 1.
    """
    u = 1.0
    u = u - ((p + 1.0) * (p + 2.0) / 2.0) * torch.pow(x, p)
    u = u + (p * (p + 2.0)) * torch.pow(x, p + 1.0)
    u = u - (p * (p + 1.0) / 2.0) * torch.pow(x, p + 2.0)
    return (u * (x < 1.0).to(x.dtype)).clamp(min=0.0)


class BesselBasis(nn.Module):
    """sqrt(2/r_c) sin(n pi r / r_c) / (r + eps) for n = 1..num_rbf: [E] Å -> [E, num_rbf]."""

    def __init__(self, cutoff: float, num_rbf: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.register_buffer("freqs", math.pi * torch.arange(1, num_rbf + 1, dtype=torch.float64) / cutoff)
        self.register_buffer("prefactor", torch.tensor(math.sqrt(2.0 / cutoff), dtype=torch.float64))

    def forward(self, r: Tensor) -> Tensor:
        x = r.unsqueeze(-1)
        return self.prefactor * (torch.sin(self.freqs * x) / (x + self.eps))


class CovalentDistanceWeighting(nn.Module):
    """w(t) = a t^q / (1 + t^(q−p) + a t^q) on t = r / (R_cov(Z_i) + R_cov(Z_j)) (ASE covalent radii).

    p = softplus_{β=0.5}(p̃) + 1, q = softplus_{β=0.5}(q̃) + 1 and a = (4pq − 2p − 2q)/(p² + p + q² + q),
    so w → 1 for t → ∞ and w → 0 as atoms overlap (w(0.3) ≈ 0.001, w(1) ≈ 0.115 at the initial p̃, q̃).
    """

    def __init__(self, p_raw: float = -15.2013, q_raw: float = 3.2139):
        super().__init__()
        self.register_buffer("covalent_radii", torch.tensor(covalent_radii, dtype=torch.float64))
        self.p_raw = nn.Parameter(torch.tensor(p_raw, dtype=torch.float64))
        self.q_raw = nn.Parameter(torch.tensor(q_raw, dtype=torch.float64))

    def forward(self, z: Tensor, r: Tensor, edge_index: Tensor) -> Tensor:
        """z [N] atomic numbers, r [E] Å, edge_index [2, E] -> w [E] (dimensionless)."""
        radii_sum = self.covalent_radii[z[edge_index[0]]] + self.covalent_radii[z[edge_index[1]]]
        t = r / radii_sum
        p = F.softplus(self.p_raw, 0.5) + 1
        q = F.softplus(self.q_raw, 0.5) + 1
        a = -2 * (p + q - 2 * q * p) / (p**2 + p + q**2 + q)
        return (a * t.pow(q)) / (1.0 + t.pow(q - p) + a * t.pow(q))


class RadialEmbedding(nn.Module):
    """phi_ij = B(r) · (w(t) · f_cut(r)): [E] Å -> [E, num_rbf]."""

    def __init__(self, cutoff: float, num_rbf: int, envelope_p: int = 6):
        super().__init__()
        self.cutoff = cutoff
        self.envelope_p = float(envelope_p)
        self.basis = BesselBasis(cutoff, num_rbf)
        self.distance_weighting = CovalentDistanceWeighting()

    def forward(self, z: Tensor, r: Tensor, edge_index: Tensor) -> Tensor:
        envelope = polynomial_envelope(r / self.cutoff, self.envelope_p)
        weight = self.distance_weighting(z, r, edge_index) * envelope  # [E]
        return self.basis(r) * weight.unsqueeze(-1)
