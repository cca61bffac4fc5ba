"""The C++ custom operators (geodite/csrc/fused_ops.cpp) equal fused.py's Functions, forward and backward.

Builds the library with the system compiler on first use (seconds; cached in the geodite cache's ops/)."""

from __future__ import annotations

import pytest
import torch

from geodite.custom_ops import CustomOpsError, build_library, compile_command, compiled_kernels, load_library
from geodite.model import fused


@pytest.fixture(scope="module", autouse=True)
def library():
    return load_library()


def _edges(num_nodes: int, num_edges: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(0, num_nodes, (num_edges,)), torch.randint(0, num_nodes, (num_edges,))


def interaction_inputs(num_nodes: int, num_edges: int, heads: int, head_channels: int) -> list[torch.Tensor]:
    F = heads * head_channels
    shapes = [(num_edges, F), (num_edges, 3 * F), (num_edges, 8), (num_nodes, F), (num_nodes, F),
              (num_nodes, 3 * F), (num_nodes, 3 * F), (num_nodes, 8, F)]
    return [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in shapes]


def test_interaction_op_equals_function_across_blocks():
    """F = 1024: 64-edge blocks in both (2 MB / (8 F × 8 bytes)), so 150 edges span three; forward and every
    input's gradient (the backward operator through the registered autograd formula)."""
    sender, receiver = _edges(7, 150)
    inputs = interaction_inputs(7, 150, heads=4, head_channels=256)
    python = fused.InteractionMessages.apply(*inputs, sender, receiver, 4)
    compiled = torch.ops.geodite.interaction_messages(*inputs, sender, receiver, 4)
    weights = [torch.randn_like(out) for out in python]
    grads_python = torch.autograd.grad(sum((w * out).sum() for w, out in zip(weights, python)), inputs)
    grads_compiled = torch.autograd.grad(sum((w * out).sum() for w, out in zip(weights, compiled)), inputs)
    for a, b in zip([*python, *grads_python], [*compiled, *grads_compiled]):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-12)
    assert all(g.abs().max() > 0.1 for g in grads_compiled)


def test_rejected_inner_product_op_equals_function_across_blocks():
    sender, receiver = _edges(7, 150)
    inputs = [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in [(7, 3, 4096), (7, 3, 4096),
                                                                                         (150, 3)]]
    python = fused.RejectedInnerProduct.apply(*inputs, sender, receiver)
    compiled = torch.ops.geodite.rejected_inner_product(*inputs, sender, receiver)
    weight = torch.randn_like(python)
    grads_python = torch.autograd.grad((weight * python).sum(), inputs)
    grads_compiled = torch.autograd.grad((weight * compiled).sum(), inputs)
    for a, b in zip([python, *grads_python], [compiled, *grads_compiled]):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-10)


def test_interaction_op_gradcheck():
    """Finite differences of the compiled forward = the compiled backward (float64); heads cross o_s/o_d/o_t."""
    sender, receiver = _edges(5, 24)
    inputs = interaction_inputs(5, 24, heads=4, head_channels=2)
    assert torch.autograd.gradcheck(lambda *x: torch.ops.geodite.interaction_messages(*x, sender, receiver, 4), inputs)


def test_rejected_inner_product_op_gradcheck():
    sender, receiver = _edges(7, 40)
    inputs = [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in [(7, 5, 4), (7, 5, 4), (40, 5)]]
    assert torch.autograd.gradcheck(lambda *x: torch.ops.geodite.rejected_inner_product(*x, sender, receiver), inputs)


def test_ops_take_empty_graphs():
    """No edges (an isolated atom): zero messages, zero gradients."""
    sender = receiver = torch.zeros(0, dtype=torch.long)
    inputs = interaction_inputs(3, 0, heads=2, head_channels=2)
    dh, dX = torch.ops.geodite.interaction_messages(*inputs, sender, receiver, 2)
    assert dh.shape == (3, 4) and dX.shape == (3, 8, 4) and not dh.any() and not dX.any()
    assert torch.ops.geodite.rejected_inner_product(inputs[-1], inputs[-1], inputs[2], sender, receiver).shape == (0, 4)


def test_compiled_kernels_switch_the_model(small_model, small_cases):
    """Inside compiled_kernels() the model runs the operators, with the Python kernels' numbers."""
    from geodite.graph import build_graph

    graph = build_graph(small_cases, small_model.cutoff, torch.float64)
    python = small_model(graph)
    with compiled_kernels():
        compiled = small_model(graph)
    for key in ("energy", "forces", "stress"):
        assert torch.allclose(compiled[key], python[key], rtol=0, atol=1e-12), key


def test_build_errors_name_the_cause(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(CustomOpsError, match="no C.. compiler 'no-such-compiler'"):
        compile_command(tmp_path / "lib.so")
    monkeypatch.setenv("CXX", "false")  # a "compiler" that fails
    with pytest.raises(CustomOpsError, match="compiling fused_ops.cpp failed"):
        build_library(tmp_path)
