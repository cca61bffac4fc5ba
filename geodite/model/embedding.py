"""Initial atom and edge features: element embeddings, soft neighbour densities, edge scalars."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from geodite.model.fused import radial_edge_product
from geodite.model.ops import scatter_sum


class SoftDensity(nn.Module):
    """Soft neighbour count per edge: tanh(SiLU(w_dᵀ φ_ij / s)²) ∈ [0, 1); summed over j it is ρ_i.

    ``scale`` s is 1 for the embedding density and n_rbf for the interaction densities.
    φ [E, n_rbf] -> [E, 1].
    """

    def __init__(self, num_rbf: int, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.weight = nn.Linear(num_rbf, 1, bias=False)

    def forward(self, phi: Tensor) -> Tensor:
        x = phi / self.scale if self.scale != 1.0 else phi
        return torch.tanh(F.silu(self.weight(x)) ** 2)


class NodeEmbedding(nn.Module):
    """h_i = MLP([A_self(Z_i) ‖ m_i / (1 + ρ⁰_i)]), m_i = Σ_j A_nbr(Z_j) ⊙ W φ_ij.

    MLP: Linear(2F→F), SiLU, Linear(F→F); no biases. Output h [N, F].
    """

    def __init__(self, num_channels: int, num_rbf: int, max_z: int):
        super().__init__()
        self.self_embedding = nn.Embedding(max_z, num_channels, padding_idx=0)
        self.neighbour_embedding = nn.Embedding(max_z, num_channels)
        self.radial_to_channels = nn.Linear(num_rbf, num_channels, bias=False)
        self.density = SoftDensity(num_rbf)
        self.mlp_in = nn.Linear(2 * num_channels, num_channels, bias=False)
        self.mlp_out = nn.Linear(num_channels, num_channels, bias=False)

    def forward(self, z: Tensor, edge_index: Tensor, phi: Tensor) -> Tensor:
        sender, receiver = edge_index[0], edge_index[1]
        num_nodes = z.shape[0]
        if self.training:
            messages = self.neighbour_embedding(z).index_select(0, sender) * self.radial_to_channels(phi)  # [E, F]
        else:
            messages = radial_edge_product(F.embedding(z, self.neighbour_embedding.weight.detach()), phi,
                                           self.radial_to_channels.weight, sender, receiver, pair=False)
        m = scatter_sum(messages, receiver, num_nodes)  # [N, F]
        rho = scatter_sum(self.density(phi), receiver, num_nodes)  # [N, 1]
        x = torch.cat([self.self_embedding(z), m / (rho + 1)], dim=-1)
        return self.mlp_out(F.silu(self.mlp_in(x)))


class EdgeEmbedding(nn.Module):
    """Edge scalars t_ij = (h_i + h_j) ⊙ W' φ_ij: [E, F]."""

    def __init__(self, num_channels: int, num_rbf: int):
        super().__init__()
        self.radial_to_channels = nn.Linear(num_rbf, num_channels, bias=False)

    def forward(self, h: Tensor, edge_index: Tensor, phi: Tensor) -> Tensor:
        if not self.training:
            return radial_edge_product(h, phi, self.radial_to_channels.weight, edge_index[0], edge_index[1], pair=True)
        return (h.index_select(0, edge_index[1]) + h.index_select(0, edge_index[0])) * self.radial_to_channels(phi)
