"""The exported model equals the eager one: its pieces (fast) and the compiled package (slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from geodite.calculator import Evaluator, GeoditeCalculator
from geodite.domains import run_domains, split_domains
from geodite.export import (KERNELS, OUTPUT_NAMES, PACKAGE_FORMAT, ExportableGeodite, ExportedGeodite, ExportError,
                             export_model, graph_inputs, load_exported, load_stages, stored_metadata, trace)
from geodite.graph import build_graph
from geodite.registry import resolve
from tests.export.conftest import ROOT

FLOAT64_ENERGY_TOL = 1e-10  # eV


def test_vacuum_table_equals_vacuum_atoms(small_model, small_cases):
    """The precomputed [max_z, L, F] table gives the energies of the torch.unique vacuum atoms."""
    graph = build_graph(small_cases, small_model.cutoff, torch.float64)
    reference = small_model(graph)
    with torch.no_grad():
        table = small_model.vacuum_features()
    assert table.shape == (small_model.config.max_z, small_model.config.num_layers, small_model.config.num_channels)
    out = small_model(graph, vacuum=table)
    assert torch.allclose(out["energy"], reference["energy"], rtol=0, atol=1e-12)
    assert torch.allclose(out["forces"], reference["forces"], rtol=0, atol=1e-12)
    # an isolated atom is exactly e0: the table is the vacuum, not something close to it
    isolated = [case for case in small_cases if len(case) == 1][0]
    one = small_model(build_graph([isolated], small_model.cutoff, torch.float64), vacuum=table)
    assert one["energy"].item() == small_model.e0[isolated.numbers[0]].item()


@pytest.mark.parametrize("kernels", KERNELS)
def test_traced_graph_equals_eager(small_model, small_cases, kernels):
    """make_fx's symbolic graph (force autograd unrolled) on sizes it was not traced with: single structures
    (an isolated atom: 0 edges; a molecule; a crystal) and all fixture cases together. With ``ops`` the graph
    calls the geodite:: operators, forward and backward: per layer the interaction's (2 layers), per edge update
    the rejected inner products of l = 1 and 2 and the gate (1 edge update)."""
    traced = trace(small_model, "float64", kernels=kernels)
    assert "autograd" not in traced.code
    calls = Counter(str(node.target) for node in traced.graph.nodes if str(node.target).startswith("geodite."))
    if kernels == "ops":
        assert calls == {**{f"geodite.{name}.default": 2 for name in ("interaction_messages", "rejected_inner_product",
                                                                      "interaction_messages_backward",
                                                                      "rejected_inner_product_backward")},
                         "geodite.edge_gate_update.default": 1, "geodite.edge_gate_update_backward.default": 1}
    else:
        assert not calls
    singles = [[case] for case in small_cases if case.info["case"] in ("f_Cu_isolated", "e_H2_molecule", "h_Mg_triclinic")]
    assert len(singles) == 3
    for structures in singles + [small_cases]:
        graph = build_graph(structures, small_model.cutoff, torch.float64)
        reference = small_model(graph)
        energy, atomic, forces, stress, atomic_virials = traced(*graph_inputs(graph))
        assert atomic_virials.shape == (len(graph.z), 3, 3)
        assert torch.allclose(energy, reference["energy"], rtol=0, atol=1e-12)
        assert torch.allclose(forces, reference["forces"], rtol=0, atol=1e-11)
        assert torch.allclose(stress, reference["stress"], rtol=0, atol=1e-12)
        assert torch.allclose(atomic.sum(), energy.sum(), rtol=0, atol=1e-12)


def ghost_copies(atoms, shell: float):
    """The periodic ``atoms`` (orthorhombic cell) plus every image within ``shell`` Å of the cell, as one
    non-periodic structure (what a LAMMPS rank holds), and for each atom the index of its owner."""
    lengths = atoms.cell.lengths()
    reach = np.ceil(shell / lengths).astype(int)
    positions, owners = [], []
    for shift in np.ndindex(*(2 * reach + 1)):
        offset = (np.array(shift) - reach) * lengths
        moved = atoms.positions + offset
        inside = np.all((moved > -shell) & (moved < lengths + shell), axis=1)
        positions.append(moved[inside])
        owners.append(np.flatnonzero(inside))
    order = np.argsort([np.any(np.array(s) - reach) for s in np.ndindex(*(2 * reach + 1))], kind="stable")
    positions = np.concatenate([positions[k] for k in order])
    owners = np.concatenate([owners[k] for k in order])
    cluster = atoms.copy()[owners]
    cluster.positions, cluster.pbc, cluster.cell = positions, False, np.zeros((3, 3))
    return cluster, owners


def test_local_energies_of_ghost_copies_equal_periodic(small_model):
    """The domain-decomposition contract of pair_style geodite: explicit ghost copies within (layers + 1)
    cutoffs, only owned atoms' energies counted, ghost forces added to their owners, virial Σ r⊗F over all
    copies: the same energy, forces and stress as the periodic structure."""
    atoms = bulk("NaCl", "rocksalt", a=7.0, cubic=True)  # dilute: few ghost copies, still 2-3 neighbours each
    atoms.rattle(0.3, seed=3)
    periodic = Evaluator(small_model, dtype="float64").evaluate([atoms])[0]
    shell = (small_model.config.num_layers + 1) * small_model.cutoff
    cluster, owners = ghost_copies(atoms, shell)
    graph = build_graph([cluster], small_model.cutoff, torch.float64)
    local = torch.zeros(len(cluster), dtype=torch.float64)
    local[: len(atoms)] = 1.0
    out = small_model(graph, compute_stress=False, local=local)
    forces = np.zeros((len(atoms), 3))
    np.add.at(forces, owners, out["forces"].detach().numpy())
    virial = np.einsum("ni,nj->ij", cluster.positions, out["forces"].detach().numpy())
    assert out["energy"].item() == pytest.approx(periodic.energy, abs=1e-10)
    assert np.abs(forces - periodic.forces).max() < 1e-10
    assert np.abs(-virial / atoms.get_volume() - periodic.stress).max() < 1e-11
    # the comparison sees a shell that is too thin (one cutoff: only the node embedding is complete)
    cluster, _ = ghost_copies(atoms, small_model.cutoff)
    short = small_model(build_graph([cluster], small_model.cutoff, torch.float64), compute_stress=False,
                        local=torch.cat([torch.ones(len(atoms)), torch.zeros(len(cluster) - len(atoms))]).double())
    assert abs(short["energy"].item() - periodic.energy) > 1e-9


def package_outputs(module: ExportableGeodite, graph, local=None) -> dict[str, torch.Tensor]:
    """The package's function run eagerly (no tracing or compiling), its outputs by name."""
    return dict(zip(OUTPUT_NAMES, module(*graph_inputs(graph, local))))


def test_atomic_virials_sum_to_the_virial(small_model, small_cases):
    """Σ_i W_i of each fixture structure is its virial: −stress × V of the eager model's strain derivative
    (periodic ones), Σ_i x_i ⊗ F_i (molecules, an isolated atom)."""
    graph = build_graph(small_cases, small_model.cutoff, torch.float64)
    reference = small_model(graph)
    out = package_outputs(ExportableGeodite(small_model), graph)
    assert torch.allclose(out["forces"], reference["forces"], rtol=0, atol=1e-11)
    assert torch.allclose(out["stress"], reference["stress"], rtol=0, atol=1e-12)
    sums = torch.zeros(len(small_cases), 3, 3, dtype=torch.float64).index_add_(0, graph.batch, out["atomic_virials"])
    periodic = 0
    for k, atoms in enumerate(small_cases):
        if atoms.pbc.all():
            periodic += 1
            expected = -reference["stress"][k].detach() * atoms.get_volume()
        else:
            expected = torch.einsum("ni,nj->ij", graph.positions, out["forces"] * (graph.batch == k).unsqueeze(-1))
        assert torch.allclose(sums[k], expected, rtol=0, atol=1e-11), atoms.info["case"]
    assert 0 < periodic < len(small_cases)
    assert sums[graph.batch.unique()].abs().max() > 1.0  # eV: the sum rule is not checked on zeros


def test_atomic_virials_of_a_dimer_are_half_r_times_f(small_model):
    """Two atoms: each gets half of (x_1 − x_2) ⊗ F_1 (LAMMPS's sign: W = Σ r ⊗ F, positive when repulsive)."""
    dimer = Atoms("NaCl", positions=[[0.1, 0.2, 0.3], [1.5, 1.0, 1.2]])  # 1.8 Å: compressed, repulsive
    out = package_outputs(ExportableGeodite(small_model), build_graph([dimer], small_model.cutoff, torch.float64))
    half = 0.5 * torch.outer(torch.tensor(dimer.positions[0] - dimer.positions[1]), out["forces"][0])
    assert torch.allclose(out["atomic_virials"][0], half, rtol=0, atol=1e-13)
    assert torch.allclose(out["atomic_virials"][1], half, rtol=0, atol=1e-13)
    assert torch.trace(half) > 0.1


def test_atomic_virials_of_ghost_copies_fold_to_periodic(small_model):
    """The LAMMPS contract for per-atom virials: in a domain with explicit ghost copies (only owned energies
    counted), the shares of an atom's copies add up to its per-atom virial in the periodic structure (LAMMPS
    adds ghosts' shares to their owners), and all of them to −stress × V."""
    atoms = bulk("NaCl", "rocksalt", a=7.0, cubic=True)
    atoms.rattle(0.3, seed=3)
    module = ExportableGeodite(small_model)
    periodic = package_outputs(module, build_graph([atoms], small_model.cutoff, torch.float64))
    cluster, owners = ghost_copies(atoms, (small_model.config.num_layers + 1) * small_model.cutoff)
    local = torch.zeros(len(cluster), dtype=torch.float64)
    local[: len(atoms)] = 1.0
    domain = package_outputs(module, build_graph([cluster], small_model.cutoff, torch.float64), local)
    folded = torch.zeros(len(atoms), 3, 3, dtype=torch.float64).index_add_(0, torch.as_tensor(owners),
                                                                         domain["atomic_virials"])
    assert torch.allclose(folded, periodic["atomic_virials"], rtol=0, atol=1e-11)
    assert torch.allclose(folded.sum(0), -periodic["stress"][0] * atoms.get_volume(), rtol=0, atol=1e-11)
    spread = periodic["atomic_virials"] - periodic["atomic_virials"].mean(0)
    assert spread.abs().max() > 1e-2  # eV: the atoms' shares differ, so the check is per atom, not only of the sum


def test_exportable_module_is_not_the_callers_model(small_model):
    ExportableGeodite(small_model)
    assert not small_model.training
    assert all(block.attn_dropout == small_model.config.attn_dropout for block in small_model.interactions)


def test_export_refuses_bad_names(small_model, tmp_path):
    with pytest.raises(ExportError, match=".pt2"):
        export_model(small_model, tmp_path / "model.pt")
    with pytest.raises(ExportError, match="dtype"):
        trace(small_model, "float16")
    with pytest.raises(ExportError, match="kernels must be one of ops, plain, not 'fused'"):
        trace(small_model, "float64", kernels="fused")
    with pytest.raises(FileNotFoundError, match="no exported model"):
        load_exported(tmp_path / "missing.pt2")


@pytest.mark.slow
def test_package_equals_eager_on_golden_fixture(exported_small, small_cases):
    """The compiled package resolved by its path (geodite.registry.resolve) into a GeoditeCalculator (float64): the
    fixture's energies to 1e-10 eV."""
    calculator = resolve(str(exported_small)).load(dtype="float64")
    assert isinstance(calculator, GeoditeCalculator) and isinstance(calculator.evaluator.model, ExportedGeodite)
    for atoms in small_cases:
        atoms = atoms.copy()
        atoms.calc = calculator
        assert atoms.get_potential_energy() == pytest.approx(atoms.info["ref_energy"], abs=FLOAT64_ENERGY_TOL)
        assert np.abs(atoms.get_forces() - atoms.arrays["ref_forces"]).max() < 1e-8  # fixture: 8 decimals
        assert np.abs(atoms.get_stress(voigt=False) - atoms.info["ref_stress"]).max() < 1e-8


@pytest.mark.slow
def test_package_batches_like_eager(exported_small, small_model, small_cases):
    exported = Evaluator(load_exported(exported_small), dtype="float64").evaluate(small_cases)
    eager = Evaluator(small_model, dtype="float64").evaluate(small_cases)
    for a, b in zip(exported, eager):
        assert abs(a.energy - b.energy) < FLOAT64_ENERGY_TOL
        assert np.abs(a.forces - b.forces).max() < 1e-9


@pytest.mark.slow
def test_package_atomic_virials_equal_the_module(exported_small, small_model, small_cases):
    """The compiled package (format 2) returns the eager module's per-atom virials."""
    package = load_exported(exported_small)
    assert package.format == PACKAGE_FORMAT
    graph = build_graph(small_cases, small_model.cutoff, torch.float64)
    eager = package_outputs(ExportableGeodite(small_model), graph)["atomic_virials"]
    assert torch.allclose(package(graph)["atomic_virials"], eager, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_ops_package_equals_plain_package(exported_small, exported_small_plain, small_model, small_cases):
    """The two kernels' packages give the same numbers (float64 round-off); their metadata says which they call
    (both format 5: the stages are in either)."""
    assert (stored_metadata(exported_small)["kernels"], stored_metadata(exported_small)["format"]) == ("ops", "5")
    assert (stored_metadata(exported_small_plain)["kernels"], stored_metadata(exported_small_plain)["format"]) == (
        "plain", "5")
    graph = build_graph(small_cases, small_model.cutoff, torch.float64)
    ops, plain = load_exported(exported_small)(graph), load_exported(exported_small_plain)(graph)
    for key in ("energy", "forces", "stress", "atomic_virials"):
        assert torch.allclose(ops[key], plain[key], rtol=0, atol=1e-10), key


@pytest.mark.slow
def test_package_loads_the_kernels_itself(exported_small):
    """A fresh process: load_exported registers the geodite:: operators before loading a package that calls them."""
    code = ("import sys, torch; from geodite.export import load_exported; "
            "assert not hasattr(torch.ops.geodite, 'interaction_messages'); print(load_exported(sys.argv[1]).format)")
    result = subprocess.run([sys.executable, "-c", code, str(exported_small)], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == str(PACKAGE_FORMAT)


@pytest.mark.slow
def test_package_stages_exchange_like_the_whole_graph(exported_small, small_model, small_cases):
    """The compiled stages and their vector–Jacobian products (what pair_style geodite runs), driven by the
    Python exchange protocol over 1 and 3 domains, give the whole graph's energies, forces and per-atom virials."""
    stages, vjps = load_stages(exported_small)
    assert len(stages) == small_model.config.num_layers + 2
    module = ExportableGeodite(small_model)
    for atoms in small_cases:
        graph = build_graph([atoms], small_model.cutoff, torch.float64)
        reference = package_outputs(module, graph)
        for parts in (1, 3):
            result = run_domains(stages, vjps, split_domains(atoms, small_model.cutoff, parts), len(atoms),
                                 small_model.config.num_channels)
            assert abs(result.energy - reference["energy"].sum()) < FLOAT64_ENERGY_TOL
            assert torch.allclose(result.forces, reference["forces"], rtol=0, atol=1e-10)
            assert torch.allclose(result.atomic_virials, reference["atomic_virials"], rtol=0, atol=1e-10)
