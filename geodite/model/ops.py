"""Graph operations shared by the blocks: no physics of their own."""

from __future__ import annotations

import torch
from torch import Tensor


def scatter_sum(src: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Sum rows of ``src`` [E, ...] into ``num_nodes`` bins given by ``index`` [E] -> [num_nodes, ...]."""
    out = src.new_zeros((num_nodes, *src.shape[1:]))
    return out.index_add_(0, index, src)


def edge_vectors(positions: Tensor, cell: Tensor, batch: Tensor, edge_index: Tensor, shifts: Tensor) -> Tensor:
    """r_e = x_sender − x_receiver + shift · cell [E, 3] Å: from the receiver to the sender's periodic image."""
    sender, receiver = edge_index
    return (positions.index_select(0, sender) - positions.index_select(0, receiver)
            + torch.einsum("ei,eij->ej", shifts, cell[batch[receiver]]))
