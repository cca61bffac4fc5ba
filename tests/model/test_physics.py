"""Symmetries, limits, smoothness and derivatives of the energy surface (small reference model, float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.data import atomic_numbers

from geodite.calculator import Evaluator, GeoditeCalculator
from geodite.graph import build_graph


@pytest.fixture(scope="module")
def evaluator(small_model) -> Evaluator:
    return Evaluator(small_model, dtype="float64")


def random_orthogonal(seed: int, reflect: bool) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q @ np.diag([1, 1, -1]) if reflect else q


def nacl() -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.08, seed=3)
    return atoms


def triclinic_mg() -> Atoms:
    atoms = bulk("Mg", "hcp", a=3.21, c=5.21).repeat((2, 1, 1))
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0, 0], [0.07, 1, 0], [0.11, -0.09, 1]]), scale_atoms=True)
    atoms.rattle(0.05, seed=5)
    return atoms


def water() -> Atoms:
    atoms = molecule("H2O")
    atoms.rattle(0.05, seed=1)
    return atoms


@pytest.mark.parametrize("make", [nacl, triclinic_mg, water])
@pytest.mark.parametrize("reflect", [False, True])
def test_energy_invariant_forces_stress_equivariant_under_O3(evaluator, make, reflect):
    atoms = make()
    Q = random_orthogonal(7, reflect)
    turned = atoms.copy()
    turned.positions = atoms.positions @ Q.T
    if atoms.pbc.any():
        turned.set_cell(atoms.cell.array @ Q.T, scale_atoms=False)
    a, b = evaluator.evaluate([atoms, turned])
    assert b.energy == pytest.approx(a.energy, abs=1e-10)
    np.testing.assert_allclose(b.forces, a.forces @ Q.T, atol=1e-9)
    np.testing.assert_allclose(b.stress, Q @ a.stress @ Q.T, atol=1e-11)


@pytest.mark.parametrize("make", [nacl, water])
def test_translation_and_permutation_invariance(evaluator, make):
    atoms = make()
    shifted = atoms.copy()
    shifted.positions += np.array([0.37, -1.3, 2.9])
    order = np.random.default_rng(0).permutation(len(atoms))
    permuted = atoms[order]
    a, b, c = evaluator.evaluate([atoms, shifted, permuted])
    assert b.energy == pytest.approx(a.energy, abs=1e-10)
    assert c.energy == pytest.approx(a.energy, abs=1e-10)
    np.testing.assert_allclose(b.forces, a.forces, atol=1e-9)
    np.testing.assert_allclose(c.forces, a.forces[order], atol=1e-9)


def test_supercell_is_extensive(evaluator):
    atoms = nacl()
    big = atoms.repeat((2, 2, 2))
    a, b = evaluator.evaluate([atoms, big])
    assert b.energy == pytest.approx(8 * a.energy, rel=1e-10, abs=1e-9)
    np.testing.assert_allclose(b.stress, a.stress, atol=1e-11)
    np.testing.assert_allclose(b.forces[: len(atoms)], a.forces, atol=1e-9)


def dimer(symbol: str, r: float, direction=(0.6, 0.8, 0.0)) -> Atoms:
    return Atoms(f"{symbol}2", positions=[[0, 0, 0], np.asarray(direction) * r])


def test_isolated_atom_has_exactly_e0(evaluator, small_model):
    for symbol in ("Cu", "O", "Fe", "H"):
        prediction = evaluator.evaluate([Atoms(symbol, positions=[[1.0, 2.0, 3.0]])])[0]
        assert prediction.energy == small_model.e0[atomic_numbers[symbol]].item()
        assert np.all(prediction.forces == 0)
    # also beyond the cutoff from another atom
    far = evaluator.evaluate([dimer("Cu", small_model.cutoff + 0.5)])[0]
    assert far.energy == pytest.approx(2 * small_model.e0[29].item(), abs=1e-12)


def test_smooth_across_the_cutoff(evaluator, small_model):
    """Energy and force go continuously to their dissociated values as a neighbour leaves the cutoff."""
    rc = small_model.cutoff
    e_far = 2 * small_model.e0[atomic_numbers["Si"]].item()
    for delta in (1e-2, 1e-3, 1e-4):
        inside = evaluator.evaluate([dimer("Si", rc - delta)])[0]
        assert abs(inside.energy - e_far) < 50 * delta**3  # envelope is smooth to second order
        assert np.abs(inside.forces).max() < 50 * delta**2
    # a continuous scan through the cutoff shows no jump between neighbouring points
    distances = np.linspace(rc - 0.05, rc + 0.05, 41)
    energies = np.array([p.energy for p in evaluator.evaluate([dimer("Si", r) for r in distances])])
    assert np.abs(np.diff(energies)).max() < 1e-6


def test_dimer_repulsive_wall_is_zbl_dominated(evaluator, small_model):
    distances = np.linspace(0.1, 0.6, 26)
    energies = np.array([p.energy for p in evaluator.evaluate([dimer("O", r) for r in distances])])
    assert np.all(np.diff(energies) < 0), "energy must rise monotonically as the atoms approach"
    z = torch.tensor([8, 8])
    for r in (0.2, 0.4, 0.6):
        graph = build_graph([dimer("O", r)], small_model.cutoff)
        sender, receiver = graph.edge_index
        vectors = graph.positions[sender] - graph.positions[receiver]
        zbl = small_model.zbl(z, vectors.norm(dim=-1), graph.edge_index).sum().item()
        total = evaluator.evaluate([dimer("O", r)])[0].energy - 2 * small_model.e0[8].item()
        assert zbl * small_model.energy_scale.item() > 0.5 * total > 0


def finite_difference_forces(evaluator, atoms, h=1e-5):
    forces = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            e_plus, e_minus = evaluator.evaluate([plus, minus])
            forces[i, k] = -(e_plus.energy - e_minus.energy) / (2 * h)
    return forces


@pytest.mark.parametrize("make", [nacl, triclinic_mg, water])
def test_forces_are_minus_energy_gradient(evaluator, make):
    atoms = make()
    prediction = evaluator.evaluate([atoms])[0]
    np.testing.assert_allclose(prediction.forces, finite_difference_forces(evaluator, atoms), atol=2e-6)


@pytest.mark.parametrize("make", [nacl, triclinic_mg])
def test_stress_is_strain_derivative(evaluator, make):
    atoms = make()
    prediction = evaluator.evaluate([atoms])[0]
    h = 1e-5
    volume = atoms.get_volume()
    numeric = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            strain = np.zeros((3, 3))
            strain[a, b] = strain[b, a] = h / 2 if a != b else h
            energies = []
            for sign in (1, -1):
                deformed = atoms.copy()
                deformed.set_cell(atoms.cell.array @ (np.eye(3) + sign * strain), scale_atoms=True)
                energies.append(evaluator.evaluate([deformed])[0].energy)
            numeric[a, b] = (energies[0] - energies[1]) / (2 * h) / volume
    np.testing.assert_allclose(prediction.stress, numeric, atol=1e-8)


def test_nve_conserves_energy(small_model):
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.calc = GeoditeCalculator(small_model, dtype="float64")
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    total = []
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dynamics.attach(lambda: total.append(atoms.get_total_energy()), interval=5)
    dynamics.run(300)
    kinetic_scale = 1.5 * len(atoms) * units.kB * 300
    assert np.ptp(total) < 0.02 * kinetic_scale
    assert abs(total[-1] - total[0]) < 0.01 * kinetic_scale


def test_neighbour_skin_reuse_gives_fresh_list_results(small_model):
    atoms = nacl()
    cached = GeoditeCalculator(small_model, dtype="float64", skin=1.0)
    fresh = Evaluator(small_model, dtype="float64")
    rng = np.random.default_rng(1)
    for _ in range(12):
        atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
        atoms.calc = cached
        energy = atoms.get_potential_energy()
        reference = fresh.evaluate([atoms])[0]
        assert energy == pytest.approx(reference.energy, abs=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), reference.forces, atol=1e-9)
    assert 1 < cached.neighbours.builds < 12
