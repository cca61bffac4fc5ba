"""The per-layer feature exchange (geodite.domains, the protocol of pair_style geodite) reproduces the whole
graph: energies, forces and per-atom virials of every fixture case cut into 1 and 3 domains (float64), with the
stages and their vector–Jacobian products as the export traces and splits them (uncompiled FX graphs; the
products take the tensors their stage saved)."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk

from geodite.domains import forward_exchange, run_domains, split_domains
from geodite.export import ExportableGeodite, graph_inputs, stage_graphs
from geodite.graph import build_graph

TOL = 1e-10  # eV, eV/Å


@pytest.fixture(scope="module")
def staged(small_model):
    """The stages' forward graphs and their products' graphs (kernels = ops)."""
    graphs = [stage_graphs(small_model, index) for index in range(small_model.config.num_layers + 2)]
    return [forward for forward, _ in graphs], [vjp for _, vjp in graphs]


def whole_graph(model, atoms, module=None):
    """The package function's outputs (uncompiled) on the periodic graph: the reference."""
    graph = build_graph([atoms], model.cutoff, torch.float64)
    energy, atomic, forces, _, virials = (module or ExportableGeodite(model))(*graph_inputs(graph))
    return energy.sum(), atomic, forces, virials


@pytest.fixture(scope="module")
def references(small_model, small_cases):
    module = ExportableGeodite(small_model)
    return [whole_graph(small_model, atoms, module) for atoms in small_cases]


@pytest.mark.parametrize("parts", [1, 3])
def test_domains_equal_whole_graph(small_model, small_cases, staged, references, parts):
    """Each case as ``parts`` slabs with ghost rows one cutoff deep (periodic images and other slabs' atoms);
    an empty slab (the molecules in 3 parts) takes part with zero rows."""
    for atoms, (energy, atomic, forces, virials) in zip(small_cases, references):
        result = run_domains(*staged, split_domains(atoms, small_model.cutoff, parts), len(atoms),
                             small_model.config.num_channels)
        case = atoms.info["case"]
        assert abs(result.energy - energy) < TOL, case
        assert torch.allclose(result.atomic_energies, atomic, rtol=0, atol=TOL), case
        assert torch.allclose(result.forces, forces, rtol=0, atol=TOL), case
        assert torch.allclose(result.atomic_virials, virials, rtol=0, atol=TOL), case


def test_one_domain_of_a_small_cell_is_all_images(small_model, staged):
    """An 8-atom Si cell (5.43 Å) under a 5 Å cutoff: most rows are images, and without the exchange (ghost rows
    keep their own, incomplete-neighbourhood features) the energy is wrong, so the exchange is what makes it exact."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=3)
    (domain,) = split_domains(atoms, small_model.cutoff, 1)
    assert domain.owner.shape[0] > 5 * len(atoms)
    energy, _, forces, _ = whole_graph(small_model, atoms)
    result = run_domains(*staged, [domain], len(atoms), small_model.config.num_channels)
    assert abs(result.energy - energy) < TOL
    assert torch.allclose(result.forces, forces, rtol=0, atol=TOL)

    import geodite.domains as protocol

    original = protocol.forward_exchange
    protocol.forward_exchange = lambda domains, rows, num_atoms: list(rows)
    try:
        broken = run_domains(*staged, [domain], len(atoms), small_model.config.num_channels)
    finally:
        protocol.forward_exchange = original
    assert abs(broken.energy - energy) > 1e-3


def test_vjps_do_not_compute_the_forward_pass_again(staged):
    """The products take what their stage saved: the model's forward operators (messages, rejected inner
    products) are called by the stages only, and every stage with messages hands tensors to its product."""
    forward_ops = {torch.ops.geodite.interaction_messages.default, torch.ops.geodite.rejected_inner_product.default}

    def calls(graph):
        return [node for node in graph.graph.nodes if node.target in forward_ops]

    forward, vjps = staged
    assert all(calls(stage) for stage in forward[1:-1])
    assert not any(calls(vjp) for vjp in vjps)
    for stage, vjp in zip(forward[1:-1], vjps[1:-1]):
        saved = len(stage.graph.output_node().args[0]) - 4
        assert saved > 0 and len([n for n in vjp.graph.nodes if n.op == "placeholder"]) == 10 + saved


def test_forward_exchange_copies_owner_rows():
    from geodite.domains import Domain, reverse_exchange

    left = Domain(torch.tensor([0, 1, 2]), 2, torch.ones(3, dtype=torch.long), torch.zeros((2, 0), dtype=torch.long),
                  torch.zeros((0, 3)))
    right = Domain(torch.tensor([2, 0]), 1, torch.ones(2, dtype=torch.long), torch.zeros((2, 0), dtype=torch.long),
                   torch.zeros((0, 3)))
    rows = [torch.tensor([[1.0], [2.0], [-1.0]]), torch.tensor([[3.0], [-1.0]])]
    copied = forward_exchange([left, right], rows, 3)
    assert copied[0].flatten().tolist() == [1.0, 2.0, 3.0] and copied[1].flatten().tolist() == [3.0, 1.0]
    summed = reverse_exchange([left, right], [torch.tensor([[1.0], [2.0], [5.0]]), torch.tensor([[3.0], [7.0]])], 3)
    assert summed[0].flatten().tolist() == [8.0, 2.0, 0.0] and summed[1].flatten().tolist() == [8.0, 0.0]
