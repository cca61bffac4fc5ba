"""Edge-chunked kernels for the two steerable edge operations, for inference (energy, forces, stress).

Written with plain autograd, the steerable messages and the edge update's rejected inner products form
[E, 2l+1, F] tensors (gathered node features, per-edge products) that autograd keeps for the backward
pass: at 1000 atoms and the published size each is ~280 MB, so time per atom grows with N (memory
bandwidth) and memory reaches GBs. These functions compute the same sums in blocks of edges that stay in
cache, in the forward and the backward pass, and keep only the [N, ·] and [E, F] inputs for backward.

They are differentiable once (forces and stress); training, which differentiates the forces again, uses
the plain path (``Geodite.train()`` switches it). Both paths give the same numbers up to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: bytes of one block's [edges, 8, F] temporary: fits the L2/L3 cache of a CPU core; large on GPUs, where
#: the blocks only bound memory.
BLOCK_BYTES = {"cpu": 2 << 20, "cuda": 512 << 20}


def edge_blocks(num_edges: int, row_bytes: int, device: torch.device) -> list[slice]:
    """Contiguous slices of the edges such that one block's [edges, row] temporary is ~BLOCK_BYTES."""
    size = max(64, BLOCK_BYTES.get(device.type, BLOCK_BYTES["cuda"]) // max(1, row_bytes))
    return [slice(start, min(start + size, num_edges)) for start in range(0, num_edges, size)]


class SteerableMessages(torch.autograd.Function):
    """ΔX_i = Σ_{e=(j→i)} (o^d_e ⊗ Y_e + o^t_e ⊙ X_j): o_d, o_t [E, F], Y [E, M], X [N, M, F] -> [N, M, F]."""

    @staticmethod
    def forward(ctx, o_d: Tensor, o_t: Tensor, Y: Tensor, X: Tensor, sender: Tensor, receiver: Tensor) -> Tensor:
        ctx.save_for_backward(o_d, o_t, Y, X, sender, receiver)
        out = torch.zeros_like(X)
        for block in edge_blocks(o_d.shape[0], X[0].numel() * X.element_size(), X.device):
            messages = Y[block].unsqueeze(-1) * o_d[block].unsqueeze(1)  # [b, M, F]
            messages.addcmul_(X.index_select(0, sender[block]), o_t[block].unsqueeze(1))
            out.index_add_(0, receiver[block], messages)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        o_d, o_t, Y, X, sender, receiver = ctx.saved_tensors
        need_d, need_t, need_y, need_x = ctx.needs_input_grad[:4]
        grad_d = torch.empty_like(o_d) if need_d else None
        grad_t = torch.empty_like(o_t) if need_t else None
        grad_y = torch.empty_like(Y) if need_y else None
        grad_x = torch.zeros_like(X) if need_x else None
        for block in edge_blocks(o_d.shape[0], X[0].numel() * X.element_size(), X.device):
            g = grad.index_select(0, receiver[block])  # [b, M, F]
            if need_d:
                grad_d[block] = torch.bmm(Y[block].unsqueeze(1), g).squeeze(1)
            if need_y:
                grad_y[block] = (g * o_d[block].unsqueeze(1)).sum(dim=-1)  # (bmm is slow for [b,M,F]·[b,F,1] on CPU)
            if need_t:
                grad_t[block] = (g * X.index_select(0, sender[block])).sum(dim=1)
            if need_x:
                grad_x.index_add_(0, sender[block], g.mul_(o_t[block].unsqueeze(1)))
        return grad_d, grad_t, grad_y, grad_x, None, None


class RejectedInnerProduct(torch.autograd.Function):
    """w_e = ⟨Q_i ⊥ ŷ_e, K_j ⊥ ŷ_e⟩ = Σ_m Q_im K_jm − (Q_i·ŷ_e)(K_j·ŷ_e) per channel, e = (j → i).

    Q, K [N, M, C] node features, Y [E, M] unit direction harmonics -> w [E, C].
    """

    @staticmethod
    def forward(ctx, Q: Tensor, K: Tensor, Y: Tensor, sender: Tensor, receiver: Tensor) -> Tensor:
        ctx.save_for_backward(Q, K, Y, sender, receiver)
        out = Q.new_empty((Y.shape[0], Q.shape[-1]))
        for block in edge_blocks(Y.shape[0], Q[0].numel() * Q.element_size(), Q.device):
            q = Q.index_select(0, receiver[block])  # [b, M, C]
            k = K.index_select(0, sender[block])
            y = Y[block].unsqueeze(1)  # [b, 1, M]
            out[block] = (q * k).sum(dim=1) - torch.bmm(y, q).squeeze(1) * torch.bmm(y, k).squeeze(1)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        Q, K, Y, sender, receiver = ctx.saved_tensors
        need_q, need_k, need_y = ctx.needs_input_grad[:3]
        grad_q = torch.zeros_like(Q) if need_q else None
        grad_k = torch.zeros_like(K) if need_k else None
        grad_y = torch.empty_like(Y) if need_y else None
        for block in edge_blocks(Y.shape[0], Q[0].numel() * Q.element_size(), Q.device):
            q = Q.index_select(0, receiver[block])  # [b, M, C]
            k = K.index_select(0, sender[block])
            y = Y[block]  # [b, M]
            g = grad[block]  # [b, C]
            qy = torch.bmm(y.unsqueeze(1), q).squeeze(1)  # [b, C]
            ky = torch.bmm(y.unsqueeze(1), k).squeeze(1)
            if need_y:
                # ∂w/∂y_m = −(Q_m (K·ŷ) + K_m (Q·ŷ)), contracted with g over channels
                grad_y[block] = -(q * (g * ky).unsqueeze(1) + k * (g * qy).unsqueeze(1)).sum(dim=-1)
            g = g.unsqueeze(1)
            if need_q:
                # ∂w/∂Q_m = K_m − ŷ_m (K·ŷ)
                grad_q.index_add_(0, receiver[block], g * (k - y.unsqueeze(-1) * ky.unsqueeze(1)))
            if need_k:
                grad_k.index_add_(0, sender[block], g * (q - y.unsqueeze(-1) * qy.unsqueeze(1)))
        return grad_q, grad_k, grad_y, None, None


def steerable_messages(o_d: Tensor, o_t: Tensor, Y: Tensor, X: Tensor, sender: Tensor, receiver: Tensor) -> Tensor:
    """Σ over incoming edges of o^d ⊗ Y + o^t ⊙ X_sender, edge-chunked: [N, M, F]."""
    return SteerableMessages.apply(o_d, o_t, Y, X, sender, receiver)


def rejected_inner_product_edges(Q: Tensor, K: Tensor, Y: Tensor, sender: Tensor, receiver: Tensor) -> Tensor:
    """⟨Q_receiver ⊥ Y, K_sender ⊥ Y⟩ per edge and channel, edge-chunked: [E, C]."""
    return RejectedInnerProduct.apply(Q, K, Y, sender, receiver)
