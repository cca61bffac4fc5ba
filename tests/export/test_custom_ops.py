"""The C++ kernels (geodite/csrc/fused_ops.cpp, the geodite:: operators) equal fused.py's Functions, forward and
backward, whatever the number of threads; eval-mode models run them by default.

Builds the library with the system compiler on first use (about a minute; cached in the geodite cache's ops/)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from geodite.custom_ops import (
    KERNELS_ENV,
    CustomOpsError,
    build_library,
    compile_command,
    compiled_kernels,
    load_library,
    python_kernels,
    use_operators,
)
from geodite.graph import build_graph
from geodite.model import Geodite, GeoditeConfig, fused


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


@pytest.mark.parametrize("heads, head_channels", [(4, 256), (8, 24), (3, 5)])
def test_interaction_op_equals_function(heads, head_channels):
    """Forward and every input's gradient (the backward operator through the registered autograd formula), to
    1e-13 relative; F = 1024 (fused.py's blocks: 64 edges), the published heads (8 × 24) and odd widths (3 × 5,
    heads cross the o_s/o_d/o_t boundaries). Attention inputs up to ±1000: silu and sigmoid saturate."""
    sender, receiver = _edges(7, 150)
    inputs = interaction_inputs(7, 150, heads=heads, head_channels=head_channels)
    with torch.no_grad():
        inputs[0][:5] *= 300.0
    python = fused.InteractionMessages.apply(*inputs, sender, receiver, heads)
    compiled = torch.ops.geodite.interaction_messages(*inputs, sender, receiver, heads)
    weights = [torch.randn_like(out) for out in python]
    grads_python = torch.autograd.grad(sum((w * out).sum() for w, out in zip(weights, python)), inputs)
    grads_compiled = torch.autograd.grad(sum((w * out).sum() for w, out in zip(weights, compiled)), inputs)
    for a, b in zip([*python, *grads_python], [*compiled, *grads_compiled]):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-12)
    assert all(g.abs().max() > 0.1 for g in grads_compiled)


def interaction_t_inputs(num_nodes: int, num_edges: int, heads: int, head_channels: int) -> list[torch.Tensor]:
    """t [E, F], W_r [F, F], W_s [3F, F] (no gradient: the operator is for inference), then Y and the node
    tensors of ``interaction_inputs``."""
    F = heads * head_channels
    inputs = interaction_inputs(num_nodes, num_edges, heads, head_channels)
    t = torch.randn(num_edges, F, dtype=torch.float64, requires_grad=True)
    weights = [torch.randn(F, F, dtype=torch.float64) / F**0.5, torch.randn(3 * F, F, dtype=torch.float64) / F**0.5]
    return [t, *weights, *inputs[2:]]


def _interaction_t_reference(t, weight_r, weight_s, *rest, sender, receiver, heads):
    return fused.InteractionMessages.apply(t @ weight_r.T, t @ weight_s.T, *rest, sender, receiver, heads)


@pytest.mark.parametrize("num_edges, heads, head_channels", [(70_000, 2, 4), (150, 8, 24)])
def test_interaction_t_op_equals_function(num_edges, heads, head_channels):
    """The operator that makes attention_in = t W_rᵀ, filter_in = t W_sᵀ chunk by chunk (forward and backward)
    against the linear maps followed by fused.py's Function: forward and the gradients of t, Y and the node
    tensors to 1e-13 relative; 70,000 edges of F = 8 cross two of its 8 MB chunks (32,768 edges)."""
    sender, receiver = _edges(300, num_edges)
    inputs = interaction_t_inputs(300, num_edges, heads, head_channels)
    differentiable = [x for x in inputs if x.requires_grad]
    python = _interaction_t_reference(*inputs, sender=sender, receiver=receiver, heads=heads)
    compiled = torch.ops.geodite.interaction_messages_t(*inputs, sender, receiver, heads)
    weights = [torch.randn_like(out) for out in python]
    grads_python = torch.autograd.grad(sum((w * out).sum() for w, out in zip(weights, python)), differentiable)
    grads_compiled = torch.autograd.grad(sum((w * out).sum() for w, out in zip(weights, compiled)), differentiable)
    for a, b in zip([*python, *grads_python], [*compiled, *grads_compiled]):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-12 * a.abs().max().item())
    assert all(g.abs().max() > 0.1 for g in grads_compiled)


def test_interaction_t_op_gradcheck_and_no_weight_gradient():
    """Finite differences of the operator = its backward (float64, heads cross o_s/o_d/o_t); weights that require
    a gradient are refused in the backward pass instead of getting none silently."""
    sender, receiver = _edges(5, 24)
    t, weight_r, weight_s, *rest = interaction_t_inputs(5, 24, heads=4, head_channels=2)
    assert torch.autograd.gradcheck(
        lambda t, *x: torch.ops.geodite.interaction_messages_t(t, weight_r, weight_s, *x, sender, receiver, 4),
        [t, *rest])
    dh, _ = torch.ops.geodite.interaction_messages_t(t, weight_r.requires_grad_(), weight_s, *rest, sender,
                                                     receiver, 4)
    with pytest.raises(RuntimeError, match="no gradient for its weights"):
        dh.sum().backward()


def gate_inputs(num_edges: int, F: int, Fh: int, Fe: int, dtype=torch.float64) -> list:
    """t [E, F], w [E, Fe] (requiring gradients), then W_in [Fh, F], W_out [F, Fh], W_e [F, Fe], the norm's
    weight and bias [Fe] and its eps; w with a few rows of near-constant entries (tiny variance)."""
    t, w = torch.randn(num_edges, F, dtype=dtype), 3.0 * torch.randn(num_edges, Fe, dtype=dtype) + 1.0
    w[:3] = 2.0 + 1e-3 * w[:3]
    weights = [torch.randn(Fh, F, dtype=dtype) / F**0.5, torch.randn(F, Fh, dtype=dtype) / Fh**0.5,
               torch.randn(F, Fe, dtype=dtype) / Fe**0.5, 1.0 + 0.3 * torch.randn(Fe, dtype=dtype),
               0.3 * torch.randn(Fe, dtype=dtype)]
    return [t.requires_grad_(), w.requires_grad_(), *weights, 1e-5]


def _gate_reference(t, w, weight_in, weight_out, weight_e, norm_weight, norm_bias, eps):
    silu = torch.nn.functional.silu
    update = torch.nn.functional.layer_norm(w, (w.shape[1],), norm_weight, norm_bias, eps) @ weight_e.T
    return t + silu(silu(t @ weight_in.T) @ weight_out.T) * update


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("num_edges, F, Fh, Fe", [(70_000, 8, 6, 5), (150, 192, 192, 192)])
def test_edge_gate_update_op_equals_function(keep, num_edges, F, Fh, Fe):
    """The edge update's operator, its intermediates kept for the backward pass or recomputed there, against the
    plain expression and fused.py's EdgeGateUpdate (which recomputes in Python): t' and the gradients of t and w
    to 1e-13 relative; 70,000 edges of F = 8 cross two of its chunks (32,768 edges), unequal widths catch a
    transposed weight."""
    inputs = gate_inputs(num_edges, F, Fh, Fe)
    compiled = torch.ops.geodite.edge_gate_update(*inputs, keep)
    kept = compiled[1:]
    assert [x.shape[0] for x in kept] == [num_edges if keep else 0] * 4
    weight = torch.randn_like(compiled[0])
    grads = torch.autograd.grad((weight * compiled[0]).sum(), inputs[:2])
    for reference in (_gate_reference(*inputs), fused.EdgeGateUpdate.apply(*inputs)):
        grads_reference = torch.autograd.grad((weight * reference).sum(), inputs[:2])
        for a, b in zip([reference, *grads_reference], [compiled[0], *grads]):
            assert torch.allclose(a, b, rtol=1e-13, atol=1e-12 * a.abs().max().item())
    assert all(g.abs().max() > 0.1 for g in grads)


def test_edge_gate_update_op_gradcheck_and_no_weight_gradient():
    """Finite differences of the operator = its backward (float64, kept and recomputed intermediates); weights that
    require a gradient are refused in the backward pass."""
    t, w, *weights, eps = gate_inputs(12, 6, 4, 5)
    for keep in (True, False):
        assert torch.autograd.gradcheck(
            lambda t, w: torch.ops.geodite.edge_gate_update(t, w, *weights, eps, keep)[0], [t, w])
    out = torch.ops.geodite.edge_gate_update(t, w, weights[0].requires_grad_(), *weights[1:], eps, True)[0]
    with pytest.raises(RuntimeError, match="no gradient for its weights"):
        out.sum().backward()


@pytest.mark.parametrize("onednn", [True, False])
def test_float32_edge_gate_update_op_follows_the_float64_reference(onednn):
    """In float32 (oneDNN's or ATen's products, the float exp polynomial), kept and recomputed, against the
    float64 reference: t' and the gradients of t and w, to 5e-5 of their largest entry (measured 1.0-1.4e-5;
    ATen's float32 expression 0.6-0.8e-5)."""
    inputs = gate_inputs(3000, 48, 40, 32)
    single = [x.detach().float().requires_grad_(x.requires_grad) if torch.is_tensor(x) else x for x in inputs]
    reference = _gate_reference(*inputs)
    weight = torch.randn_like(reference)
    grads_reference = torch.autograd.grad((weight * reference).sum(), inputs[:2])
    for keep in (True, False):
        with torch.backends.mkldnn.flags(enabled=onednn):
            out = torch.ops.geodite.edge_gate_update(*single, keep)[0]
            grads = torch.autograd.grad((weight.float() * out).sum(), single[:2])
        for a, b in zip([reference, *grads_reference], [out, *grads]):
            assert (a - b.double()).abs().max() <= 5e-5 * a.abs().max()


@pytest.mark.parametrize("channels, components", [(4096, 3), (7, 5), (7, 1), (5, 2), (5, 4), (5, 6), (5, 7), (12, 8)])
def test_rejected_inner_product_op_equals_function(channels, components):
    """Forward and gradients against fused.py's Function for every number of components M the operator compiles
    a loop for (1-8; the model's l = 1 and 2 have 3 and 5), odd channel counts (vector remainders)."""
    sender, receiver = _edges(7, 150)
    inputs = [torch.randn(shape, dtype=torch.float64, requires_grad=True)
              for shape in [(7, components, channels), (7, components, channels), (150, components)]]
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


def test_rejected_inner_product_op_refuses_more_than_eight_components():
    sender, receiver = _edges(3, 10)
    Q = torch.randn(3, 9, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="1 to 8 components M, not 9"):
        torch.ops.geodite.rejected_inner_product(Q, Q, torch.randn(10, 9, dtype=torch.float64), sender, receiver)


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


def test_rejected_inner_product_op_takes_strided_slices():
    """The model passes degree slices of [N, 8, C] features and [E, 8] harmonics (not contiguous)."""
    sender, receiver = _edges(9, 100)
    X = torch.randn(9, 8, 12, dtype=torch.float64, requires_grad=True)
    Y = torch.randn(100, 8, dtype=torch.float64, requires_grad=True)
    for degree in (slice(0, 3), slice(3, 8)):
        python = fused.RejectedInnerProduct.apply(X[:, degree], 2 * X[:, degree], Y[:, degree], sender, receiver)
        compiled = torch.ops.geodite.rejected_inner_product(X[:, degree], 2 * X[:, degree], Y[:, degree], sender,
                                                            receiver)
        grads = [torch.autograd.grad(out.sum(), [X, Y]) for out in (python, compiled)]
        for a, b in zip([python, *grads[0]], [compiled, *grads[1]]):
            assert torch.allclose(a, b, rtol=1e-13, atol=1e-12)


def _all_outputs(num_threads: int, inputs: list[torch.Tensor], sender, receiver, heads: int) -> list[torch.Tensor]:
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        outputs = torch.ops.geodite.interaction_messages(*inputs, sender, receiver, heads)
        grads = torch.autograd.grad(sum(out.square().sum() for out in outputs), inputs)
        F = inputs[0].shape[1]  # t = attention_in's values, weights cut from filter_in's
        weight_r, weight_s = inputs[1][:F, :F].detach(), inputs[1][F : 4 * F, :F].detach()
        outputs_t = torch.ops.geodite.interaction_messages_t(inputs[0], weight_r, weight_s, *inputs[2:], sender,
                                                             receiver, heads)
        grads_t = torch.autograd.grad(sum(out.square().sum() for out in outputs_t), [inputs[0], *inputs[2:]])
        w = torch.ops.geodite.rejected_inner_product(inputs[-1], inputs[-1], inputs[2], sender, receiver)
        grads_w = torch.autograd.grad(w.square().sum(), [inputs[-1], inputs[2]])
    finally:
        torch.set_num_threads(previous)
    return [*outputs, *grads, *outputs_t, *grads_t, w, *grads_w]


def test_ops_do_not_depend_on_the_number_of_threads():
    """Each atom's sums run on one thread in edge order: 1, 2 and 3 threads give bit-identical results."""
    sender, receiver = _edges(300, 4000)
    inputs = interaction_inputs(300, 4000, heads=2, head_channels=4)
    one = _all_outputs(1, inputs, sender, receiver, 2)
    for threads in (2, 3):
        assert all(torch.equal(a, b) for a, b in zip(one, _all_outputs(threads, inputs, sender, receiver, 2)))


def _cpu_ticks_per_thread() -> dict[int, int]:
    """utime + stime (clock ticks) of each thread of this process (/proc/self/task/*/stat, fields 14 and 15)."""
    ticks = {}
    for task in Path("/proc/self/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        ticks[int(task.name)] = int(fields[11]) + int(fields[12])
    return ticks


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_ops_run_on_torchs_threads():
    """With two threads, a second thread works inside the operators (at::parallel_for is a header template: built
    without an OpenMP runtime, the library ran every loop on the calling thread whatever torch said)."""
    sender, receiver = _edges(2000, 60000)
    inputs = [x.detach().float().requires_grad_() for x in interaction_inputs(2000, 60000, heads=4, head_channels=16)]
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        outputs = torch.ops.geodite.interaction_messages(*inputs, sender, receiver, 4)  # the team exists now
        caller, before = threading.get_native_id(), _cpu_ticks_per_thread()
        for _ in range(4):
            outputs = torch.ops.geodite.interaction_messages(*inputs, sender, receiver, 4)
            torch.ops.geodite.interaction_messages_backward(*outputs, *inputs, sender, receiver, 4)
        after = _cpu_ticks_per_thread()
    finally:
        torch.set_num_threads(previous)
    others = max((after[tid] - before.get(tid, 0) for tid in after if tid != caller), default=0)
    own = after[caller] - before[caller]
    # the split is ~1:1 with the team at work; without it the other thread only spin-waits after ATen's fills
    # (~1:6 measured), and both spin at barriers while the other works, so the share is a bound, not an equality
    assert others >= 0.25 * (others + own), f"another thread did {others} of {others + own} clock ticks"


def test_float32_ops_follow_the_float64_reference():
    """The float32 loops (their own exp polynomial) against fused.py in float64."""
    sender, receiver = _edges(7, 150)
    inputs = interaction_inputs(7, 150, heads=4, head_channels=6)
    reference = fused.InteractionMessages.apply(*inputs, sender, receiver, 4)
    single = torch.ops.geodite.interaction_messages(*[x.float() for x in inputs], sender, receiver, 4)
    for a, b in zip(reference, single):
        assert torch.allclose(a, b.double(), rtol=1e-5, atol=1e-5 * a.abs().max().item())


@pytest.mark.parametrize("onednn", [True, False])
def test_float32_interaction_t_op_follows_the_float64_reference(onednn):
    """The chunked operator in float32, whose per-chunk products run oneDNN's matrix product where torch has oneDNN
    (``torch.backends.mkldnn`` on) and ATen's otherwise: forward and the gradients of t, Y and the node tensors
    against the float64 reference. 70,000 edges of F = 8 cross two float32 chunks (65,536 edges), and ∂/∂t sums
    the products of both edge maps (one written, one accumulated)."""
    sender, receiver = _edges(300, 70_000)
    inputs = interaction_t_inputs(300, 70_000, heads=2, head_channels=4)
    differentiable = [i for i, x in enumerate(inputs) if x.requires_grad]
    single = [x.detach().float().requires_grad_(x.requires_grad) for x in inputs]
    reference = _interaction_t_reference(*inputs, sender=sender, receiver=receiver, heads=2)
    with torch.backends.mkldnn.flags(enabled=onednn):
        outputs = torch.ops.geodite.interaction_messages_t(*single, sender, receiver, 2)
        weights = [torch.randn_like(out, dtype=torch.float64) for out in reference]
        grads = torch.autograd.grad(sum((w.float() * out).sum() for w, out in zip(weights, outputs)),
                                    [single[i] for i in differentiable])
    grads_reference = torch.autograd.grad(sum((w * out).sum() for w, out in zip(weights, reference)),
                                          [inputs[i] for i in differentiable])
    for a, b in zip([*reference, *grads_reference], [*outputs, *grads]):
        assert torch.allclose(a, b.double(), rtol=1e-4, atol=1e-5 * a.abs().max().item())


def test_ops_take_int32_indices_and_refuse_out_of_range_ones():
    sender, receiver = _edges(7, 40)
    inputs = interaction_inputs(7, 40, heads=2, head_channels=2)
    expected = torch.ops.geodite.interaction_messages(*inputs, sender, receiver, 2)
    narrow = torch.ops.geodite.interaction_messages(*inputs, sender.int(), receiver.int(), 2)
    assert all(torch.equal(a, b) for a, b in zip(expected, narrow))
    with pytest.raises(RuntimeError, match="edge index 7 out of range for 7 atoms"):
        torch.ops.geodite.interaction_messages(*inputs, sender, torch.full_like(receiver, 7), 2)


def _random_model() -> Geodite:
    torch.manual_seed(3)
    model = Geodite(GeoditeConfig(num_channels=24, num_layers=3, num_heads=4, cutoff=4.5, num_rbf=8)).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def _random_structures() -> list:
    from ase.build import bulk

    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 1, 1))
    nacl.rattle(0.1, seed=4)
    sio = bulk("Si", "diamond", a=5.43, cubic=True)
    sio.symbols[[1, 5]] = "O"
    sio.rattle(0.15, seed=5)
    return [nacl, sio]


def test_model_with_ops_equals_python_kernels():
    """Energies, forces and stresses (float64) of a random model on random structures: the operators against
    fused.py's Functions, 1e-12 relative."""
    model = _random_model()
    graph = build_graph(_random_structures(), model.cutoff, torch.float64)
    with python_kernels():
        python = model(graph)
    with compiled_kernels():
        compiled = model(graph)
    for key in ("energy", "forces", "stress"):
        scale = python[key].abs().max()
        assert (compiled[key] - python[key]).abs().max() <= 1e-12 * scale, key


def test_eval_models_run_the_operators_by_default(monkeypatch):
    """No context, no $GEODITE_KERNELS: an eval-mode model on the CPU calls the geodite:: operators; with
    GEODITE_KERNELS=python it does not."""
    model = _random_model()
    graph = build_graph(_random_structures()[:1], model.cutoff, torch.float64)
    monkeypatch.delenv(KERNELS_ENV, raising=False)

    def operator_calls() -> int:
        with torch.profiler.profile() as profile:
            model(graph)
        return sum(event.count for event in profile.key_averages() if event.key.startswith("geodite::"))

    assert use_operators(torch.device("cpu")) and operator_calls() > 0
    monkeypatch.setenv(KERNELS_ENV, "python")
    assert not use_operators(torch.device("cpu")) and operator_calls() == 0
    monkeypatch.setenv(KERNELS_ENV, "fast")
    with pytest.raises(ValueError, match="GEODITE_KERNELS must be one of auto, ops, python"):
        use_operators(torch.device("cpu"))
