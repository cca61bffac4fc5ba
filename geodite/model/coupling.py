"""Equivariant coupling: scalars gate steerable features through their squared norms (no tensor products)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geodite.model.interaction import TwoLayerMLP


class EquivariantCoupling(nn.Module):
    """X_p = W_u X; s = Σ_{l,m} X_p² (per channel, no square root); [m₁, m₂] = MLP([h ‖ s]);
    h ← h + m₁, X ← X + m₂ ⊙ X_p.  MLP: 2F → F → 2F with SiLU. h [N, F], X [N, 8, F].
    """

    def __init__(self, num_channels: int):
        super().__init__()
        self.num_channels = num_channels
        self.mix = nn.Linear(num_channels, num_channels, bias=False)
        self.mlp = TwoLayerMLP(2 * num_channels, num_channels, 2 * num_channels)

    def forward(self, h: Tensor, X: Tensor) -> tuple[Tensor, Tensor]:
        X_p = self.mix(X)
        squared_norm = X_p.pow(2).sum(dim=1)  # [N, F]
        m1, m2 = self.mlp(torch.cat([h, squared_norm], dim=-1)).split(self.num_channels, dim=-1)
        return h + m1, X + m2.unsqueeze(1) * X_p
