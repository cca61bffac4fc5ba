"""Interaction block: attention and spatial-filter messages, density normalisation, edge update.

Conventions: edge e = (j → i) with sender j = edge_index[0] and receiver i = edge_index[1];
messages are summed on the receiver. h [N, F] scalars, X [N, 8, F] steerable features (l = 1, 2),
t [E, F] edge scalars, Y [E, 8] spherical harmonics of the edge direction, φ [E, n_rbf].
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from geodite.model.embedding import SoftDensity
from geodite.model.ops import scatter_sum
from geodite.model.fused import (
    attention_messages,
    edge_gate_update,
    interaction_messages_t,
    rejected_inner_product,
    rejected_inner_product_edges,
    steerable_messages,
)
from geodite.model.harmonics import DEGREE_SLICES
from geodite.model.norm import JointRMSNorm


class TwoLayerMLP(nn.Module):
    """Linear(d_in→d_hidden), SiLU, Linear(d_hidden→d_out), optionally SiLU; no biases."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, final_silu: bool = False):
        super().__init__()
        self.linear_in = nn.Linear(d_in, d_hidden, bias=False)
        self.linear_out = nn.Linear(d_hidden, d_out, bias=False)
        self.final_silu = final_silu

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear_out(F.silu(self.linear_in(x)))
        return F.silu(y) if self.final_silu else y


class EdgeUpdate(nn.Module):
    """t_ij += γ_t(t_ij) ⊙ W_e LayerNorm(w_ij), w_ij = Σ_{l=1,2} ⟨EQˡ_i ⊥ Yˡ, EKˡ_j ⊥ Yˡ⟩ (per channel).

    EQ = W_q' X (one matrix shared by l = 1, 2), EKˡ = W_kˡ Xˡ; ⊥ removes the component along Yˡ(r̂_ij).
    """

    def __init__(self, num_channels: int, edge_vec_dim: int, edge_mlp_dim: int):
        super().__init__()
        self.query = nn.Linear(num_channels, edge_vec_dim, bias=False)
        self.keys = nn.ModuleList([nn.Linear(num_channels, edge_vec_dim, bias=False) for _ in range(2)])
        self.norm = nn.LayerNorm(edge_vec_dim)
        self.out = nn.Linear(edge_vec_dim, num_channels, bias=False)
        self.gate = TwoLayerMLP(num_channels, edge_mlp_dim, num_channels, final_silu=True)

    def forward(self, X: Tensor, t: Tensor, Y: Tensor, edge_index: Tensor) -> Tensor:
        sender, receiver = edge_index[0], edge_index[1]
        eq = self.query(X)  # [N, 8, Fe]
        w = None
        for degree, key in zip(DEGREE_SLICES, self.keys):
            k_l = key(X[:, degree])  # [N, 2l+1, Fe]
            if self.training:
                inner = rejected_inner_product(
                    eq[:, degree].index_select(0, receiver), k_l.index_select(0, sender), Y[:, degree]
                )  # [E, Fe]
            else:
                inner = rejected_inner_product_edges(eq[:, degree], k_l, Y[:, degree], sender, receiver)
            w = inner if w is None else w + inner
        if self.training:
            return t + self.gate(t) * self.out(self.norm(w))
        return edge_gate_update(t, w, self.gate.linear_in.weight, self.gate.linear_out.weight, self.out.weight,
                                self.norm.weight, self.norm.bias, self.norm.eps)


class InteractionBlock(nn.Module):
    """One message-passing layer (joint RMS norm → messages → density-normalised residual → edge update).

    Attention (no softmax): α_ij,head = SiLU(Σ_head-channels (W_q h_i)(W_k h_j) SiLU(W_r t_ij)) / √F.
    Messages o_ij = α_ij · γ_v(h_j) + (W_s t_ij) ⊙ γ_s(h_j) ∈ R^{3F} = [o^s, o^d, o^t];
    Δh_i = Σ_j o^s_ij, ΔXˡ_i = Σ_j (o^d_ij Yˡ(r̂_ij) + o^t_ij Xˡ_j); h ← h + Δh/(1+ρ_i), X ← X + ΔX/(1+ρ_i).
    """

    def __init__(
        self,
        num_channels: int,
        num_heads: int,
        num_rbf: int,
        update_edges: bool,
        edge_vec_dim: int,
        edge_mlp_dim: int,
        epsilon: float = 1e-6,
        attn_dropout: float = 0.0,
    ):
        super().__init__()
        if num_channels % num_heads:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_heads ({num_heads})")
        self.num_channels = num_channels
        self.num_heads = num_heads
        self.attn_dropout = attn_dropout
        self.norm = JointRMSNorm(num_channels, eps=epsilon)
        self.query = nn.Linear(num_channels, num_channels, bias=False)
        self.key = nn.Linear(num_channels, num_channels, bias=False)
        self.edge_attention = nn.Linear(num_channels, num_channels, bias=False)
        self.edge_filter = nn.Linear(num_channels, 3 * num_channels, bias=False)
        self.value_mlp = TwoLayerMLP(num_channels, num_channels, 3 * num_channels)
        self.filter_mlp = TwoLayerMLP(num_channels, num_channels, 3 * num_channels)
        self.density = SoftDensity(num_rbf, scale=float(num_rbf))
        self.edge_update = EdgeUpdate(num_channels, edge_vec_dim, edge_mlp_dim) if update_edges else None

    def forward(
        self, h: Tensor, X: Tensor, t: Tensor, Y: Tensor, phi: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        h, X = self.message_passing(h, X, t, Y, phi, edge_index)
        if self.edge_update is not None:
            t = self.edge_update(X, t, Y, edge_index)
        return h, X, t

    def message_passing(
        self, h: Tensor, X: Tensor, t: Tensor, Y: Tensor, phi: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Steps 1-6 (norm, messages, density-normalised residual): the new (h, X) of every receiver. Rows of
        atoms that receive no edges (ghost copies in a LAMMPS domain) are only normalised, not updated."""
        sender, receiver = edge_index[0], edge_index[1]
        num_nodes = h.shape[0]
        h, X = self.norm(h, X)

        q = self.query(h)  # [N, F]
        k = self.key(h)  # [N, F]
        values = self.value_mlp(h)  # [N, 3F]
        filters = self.filter_mlp(h)  # [N, 3F]
        if self.training:  # plain autograd: differentiable twice (losses on forces)
            attention_in = self.edge_attention(t)  # [E, F]
            filter_in = self.edge_filter(t)  # [E, 3F]
            _, messages = attention_messages(
                attention_in, filter_in, q.index_select(0, receiver), k.index_select(0, sender),
                values.index_select(0, sender), filters.index_select(0, sender), self.num_heads,
                dropout=lambda alpha: F.dropout(alpha, p=self.attn_dropout, training=True),
            )
            o_s, o_d, o_t = messages.split(self.num_channels, dim=-1)  # [E, F] each
            dX_edges = steerable_messages(o_d, o_t, Y, X.index_select(0, sender))  # [E, 8, F]
            dh = scatter_sum(o_s, receiver, num_nodes)
            dX = scatter_sum(dX_edges, receiver, num_nodes)
        else:  # edge-chunked: no [E, 3F] or [E, 8, F] tensor kept for the force backward pass
            dh, dX = interaction_messages_t(
                t, self.edge_attention.weight, self.edge_filter.weight, Y, q, k, values, filters, X, sender, receiver,
                self.num_heads,
            )
        norm = scatter_sum(self.density(phi), receiver, num_nodes) + 1  # [N, 1]
        return h + dh / norm, X + dX / norm.unsqueeze(1)
