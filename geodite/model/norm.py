"""Joint RMS normalisation over the scalar and steerable features of each atom."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geodite.model.harmonics import DEGREE_SLICES


class JointRMSNorm(nn.Module):
    """One RMS per atom over (h, X¹, X²), each degree weighted 1/(2l+1), then a per-degree, per-channel scale.

    norm²_i = mean_c [ h_ic² + Σ_m (X¹_imc)²/3 + Σ_m (X²_imc)²/5 ];  out = x / sqrt(norm²_i + eps) · γ_l,c.
    Shapes: h [N, F], X [N, 8, F] -> same. Rotations leave norm²_i unchanged, so equivariance is kept.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(num_channels)) for _ in range(3)])

    def forward(self, h: Tensor, X: Tensor) -> tuple[Tensor, Tensor]:
        X1, X2 = X[:, DEGREE_SLICES[0]], X[:, DEGREE_SLICES[1]]
        norm2 = h.pow(2) + X1.pow(2).sum(dim=1) / 3.0 + X2.pow(2).sum(dim=1) / 5.0  # [N, F]
        inv_rms = (norm2.mean(dim=-1, keepdim=True) + self.eps).pow(-0.5)  # [N, 1]
        h = h * inv_rms * self.scales[0]
        inv_rms = inv_rms.unsqueeze(1)
        X = torch.cat([X1 * inv_rms * self.scales[1], X2 * inv_rms * self.scales[2]], dim=1)
        return h, X
