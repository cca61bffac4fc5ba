"""The edge-chunked inference kernels of fused.py (the readable reference of the C++ operators, which
tests/export/test_custom_ops.py holds equal to them): exact gradients, and the same numbers as the plain
training path."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk

from geodite.custom_ops import compiled_kernels, python_kernels
from geodite.graph import build_graph
from geodite.model import Geodite, GeoditeConfig, fused


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of 64 edges, so that every test crosses block boundaries."""
    monkeypatch.setitem(fused.BLOCK_BYTES, "cpu", 1)


def _edges(num_nodes: int, num_edges: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(0, num_nodes, (num_edges,)), torch.randint(0, num_nodes, (num_edges,))


def test_interaction_messages_gradients(tiny_blocks):
    sender, receiver = _edges(7, 150)
    H, C = 4, 2  # a head owns 3C = 6 value columns: the F = 8 columns of o_s, o_d, o_t cross head boundaries
    shapes = [(150, H * C), (150, 3 * H * C), (150, 8), (7, H * C), (7, H * C), (7, 3 * H * C), (7, 3 * H * C), (7, 8, H * C)]
    inputs = [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in shapes]
    assert torch.autograd.gradcheck(lambda *x: fused.InteractionMessages.apply(*x, sender, receiver, H), inputs)


def test_rejected_inner_product_gradients(tiny_blocks):
    sender, receiver = _edges(7, 150)
    inputs = [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in [(7, 3, 4), (7, 3, 4), (150, 3)]]
    assert torch.autograd.gradcheck(lambda *x: fused.RejectedInnerProduct.apply(*x, sender, receiver), inputs)


def test_edge_gate_update_gradients(tiny_blocks):
    """The edge update for inference (blocks of edges, the backward pass recomputing them): finite differences of
    t and w equal its backward."""
    torch.manual_seed(0)
    t, w = (torch.randn(100, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))  # two blocks
    weights = [torch.randn(4, 4, dtype=torch.float64) for _ in range(3)]
    norm = [1 + 0.1 * torch.randn(4, dtype=torch.float64), 0.1 * torch.randn(4, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda t, w: fused.EdgeGateUpdate.apply(t, w, *weights, *norm, 1e-5), [t, w],
                                    fast_mode=True)


def test_rejected_inner_product_matches_projector_definition():
    """⟨(1 − ŷŷᵀ)q, (1 − ŷŷᵀ)k⟩ formed explicitly."""
    sender, receiver = _edges(5, 40)
    Q, K = torch.randn(5, 3, 2, dtype=torch.float64), torch.randn(5, 3, 2, dtype=torch.float64)
    y = torch.nn.functional.normalize(torch.randn(40, 3, dtype=torch.float64), dim=-1)
    projector = torch.eye(3, dtype=torch.float64) - y[:, :, None] * y[:, None, :]  # [E, 3, 3]
    q = torch.einsum("emn,enc->emc", projector, Q[receiver])
    k = torch.einsum("emn,enc->emc", projector, K[sender])
    expected = (q * k).sum(dim=1)
    assert torch.allclose(fused.RejectedInnerProduct.apply(Q, K, y, sender, receiver), expected, atol=1e-12)


@pytest.fixture(params=["keep", "recompute"])
def edge_memory(request, monkeypatch):
    """Inference keeping the per-edge intermediates (small structures), or recomputing them in the backward pass
    (large ones): every test of the eval path runs both."""
    if request.param == "recompute":
        monkeypatch.setattr(fused, "KEEP_EDGE_BYTES", 0)
    return request.param


@pytest.mark.parametrize("kernels", [python_kernels, compiled_kernels])
def test_inference_path_equals_training_path(tiny_blocks, kernels, edge_memory):
    """eval() uses the kernels (fused.py's or the C++ operators), train() plain autograd: energy, forces and
    stress agree to round-off, whether inference keeps or recomputes the per-edge intermediates."""
    model = Geodite(GeoditeConfig(num_channels=16, num_layers=3, num_heads=2, cutoff=4.0, num_rbf=6, attn_dropout=0.0))
    model = model.double()
    atoms = bulk("NaCl", "rocksalt", a=5.6).repeat((2, 1, 1))
    atoms.rattle(0.1, seed=1)
    graph = build_graph([atoms], model.cutoff)
    with kernels():
        fast = model.eval()(graph)
    plain = {key: value.detach() for key, value in model.train()(graph).items()}
    for key in ("energy", "forces", "stress"):
        assert torch.allclose(fast[key], plain[key], rtol=0, atol=1e-12), key


def test_encoder_linear_maps_start_xavier_uniform():
    """Upstream initialises every encoder linear map Xavier-uniform (the readouts keep PyTorch's default)."""
    model = Geodite(GeoditeConfig(num_channels=64, num_layers=2, num_heads=4))
    weight = model.interactions[0].query.weight
    bound = (6.0 / sum(weight.shape)) ** 0.5
    assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
    readout = model.readouts[0].weight
    assert readout.abs().max() <= 1.0 / 64**0.5


def _saved_edge_tensors(model: Geodite, graph) -> list[tuple[int, ...]]:
    """Shapes of the tensors autograd keeps for the backward pass of one eval call that have a row per edge and at
    least F columns (once per storage)."""
    num_edges, channels = graph.edge_index.shape[1], model.config.num_channels
    saved = {}

    def pack(tensor):
        if tensor.dim() >= 2 and tensor.shape[0] == num_edges and tensor[0].numel() >= channels:
            saved[tensor.untyped_storage().data_ptr()] = tuple(tensor.shape)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(graph)
    return list(saved.values())


def test_inference_beyond_the_budget_keeps_t_and_w_per_layer(monkeypatch):
    """Beyond KEEP_EDGE_BYTES, the [E, F]-sized tensors kept for the force/stress backward pass are each layer's
    edge scalars t and each edge update's w (plus the embeddings' two): 2L + 1 + 2, not the ~12 per layer of
    plain autograd, which set the peak memory of large structures (10,000 atoms ran out of 11 GB)."""
    model = Geodite(GeoditeConfig(num_channels=16, num_layers=3, num_heads=2, cutoff=4.0, num_rbf=6)).double().eval()
    atoms = bulk("NaCl", "rocksalt", a=5.6).repeat((2, 1, 1))
    atoms.rattle(0.1, seed=1)
    graph = build_graph([atoms], model.cutoff)
    keep = _saved_edge_tensors(model, graph)
    monkeypatch.setattr(fused, "KEEP_EDGE_BYTES", 0)
    with compiled_kernels():
        recompute = _saved_edge_tensors(model, graph)
    assert len(recompute) <= 2 * 3 + 1 + 2, recompute
    assert all(shape[1:] == (16,) for shape in recompute), recompute
    assert len(keep) > 2 * len(recompute)


def _ops_run(call) -> set[str]:
    """Names of the operators ``call()`` runs (torch.profiler)."""
    with torch.profiler.profile() as profile:
        call()
    return {event.key for event in profile.key_averages()}


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch without oneDNN")
def test_edge_products_run_onednn_in_float32_and_aten_in_float64():
    """float32 per-edge products (and their input gradient) with ONEDNN_MIN_ROWS rows or more run oneDNN's product
    and equal ATen's to float32 rounding; fewer rows, and float64, run ATen's exactly (the float64 equalities of the
    kernels' tests are untouched)."""
    torch.manual_seed(0)
    x, weight = torch.randn(fused.ONEDNN_MIN_ROWS, 48), torch.randn(96, 48)
    x.requires_grad_(True)
    grad = torch.randn(fused.ONEDNN_MIN_ROWS, 96)
    names = _ops_run(lambda: fused.edge_linear(x, weight).backward(grad))
    assert "mkldnn::_linear_pointwise" in names
    out = fused.edge_linear(x, weight)
    (grad_x,) = torch.autograd.grad(out, x, grad)
    assert torch.allclose(out, x.detach() @ weight.T, rtol=1e-5, atol=1e-5)
    assert torch.allclose(grad_x, grad @ weight, rtol=1e-5, atol=1e-5)
    x64, weight64 = x.detach().double(), weight.double()
    assert "mkldnn::_linear_pointwise" not in _ops_run(lambda: fused.edge_linear(x64, weight64))
    assert torch.equal(fused.edge_linear(x64, weight64), torch.nn.functional.linear(x64, weight64))
    assert torch.equal(fused.edge_product(x64, weight64), torch.nn.functional.linear(x64, weight64))
    few = x.detach()[: fused.ONEDNN_MIN_ROWS - 1]
    assert "mkldnn::_linear_pointwise" not in _ops_run(lambda: fused.edge_linear(few, weight))
    assert torch.equal(fused.edge_linear(few, weight), torch.nn.functional.linear(few, weight))


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch without oneDNN")
def test_float32_inference_with_onednn_products_equals_aten_products(edge_memory, monkeypatch):
    """The model's float32 energy, forces and stress with the per-edge products on oneDNN equal those with ATen's
    products to float32 rounding, keeping or recomputing the per-edge intermediates (every product on oneDNN: the
    structure has fewer edges than ONEDNN_MIN_ROWS). fused.py's Python kernels: the C++ operators make their
    products themselves (oneDNN's where ``torch.backends.mkldnn``, tests/export/test_custom_ops.py)."""
    monkeypatch.setattr(fused, "ONEDNN_MIN_ROWS", 1)
    monkeypatch.setenv("GEODITE_KERNELS", "python")
    torch.manual_seed(0)
    model = Geodite(GeoditeConfig(num_channels=32, num_layers=3, num_heads=4, cutoff=4.0, num_rbf=6)).float().eval()
    atoms = bulk("NaCl", "rocksalt", a=5.6).repeat((2, 2, 1))
    atoms.rattle(0.1, seed=1)
    graph = build_graph([atoms], model.cutoff, torch.float32)
    names = _ops_run(lambda: model(graph))
    assert "mkldnn::_linear_pointwise" in names
    onednn = model(graph)
    monkeypatch.setattr(fused, "ONEDNN_EDGE_PRODUCTS", False)
    assert "mkldnn::_linear_pointwise" not in _ops_run(lambda: model(graph))
    aten = model(graph)
    for key in ("energy", "forces", "stress"):
        scale = aten[key].detach().abs().max()
        assert torch.allclose(onednn[key].detach(), aten[key].detach(), rtol=0, atol=1e-5 * float(scale)), key
