"""Graph operations shared by the blocks: no physics of their own."""

from __future__ import annotations

from torch import Tensor


def scatter_sum(src: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Sum rows of ``src`` [E, ...] into ``num_nodes`` bins given by ``index`` [E] -> [num_nodes, ...]."""
    out = src.new_zeros((num_nodes, *src.shape[1:]))
    return out.index_add_(0, index, src)
