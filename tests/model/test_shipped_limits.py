"""The shipped model's limits, tested on the artefact itself (not on a freshly built model): an isolated atom is
exactly e0, nothing is added on top (energy_shift 0), and homonuclear dimers near the cutoff are close to twice the
isolated atom with small forces (the recipe bug of v1–v6 left them several eV off with eV/Å forces)."""

import numpy as np
import pytest
import torch
from ase.data import atomic_numbers, chemical_symbols

from geodite.calculator import GeoditeCalculator
from geodite.checkpoints import load_model
from geodite.train.pools import MPTRJ_ELEMENTS, boxed

#: the dimer benchmark's elements (MPtrj, H…Bi)
ELEMENTS = [s for s in MPTRJ_ELEMENTS if atomic_numbers[s] <= 83]
#: bounds on the medians over ELEMENTS at 4.0 and 4.5 Å that the e0 recipe bug breaks by an order of magnitude
#: (v6: |ΔE| 7.0 / 2.8 eV, |F| 0.56 / 9.4 eV/Å; v7: 0.28 / 0.07 eV, 0.47 / 0.38 eV/Å). The issue's targets
#: (0.2 eV, 0.3 eV/Å) are not met yet: see geodite/weights/MODEL_CARD.md.
MAX_MEDIAN_GAP = 0.5  # eV
MAX_MEDIAN_FORCE = 1.0  # eV/Å


@pytest.fixture(scope="module")
def calculator():
    return GeoditeCalculator(model="geodite", dtype="float64")


def _energy_forces(calculator, atoms):
    atoms.calc = calculator
    return atoms.get_potential_energy(), atoms.get_forces()


def test_isolated_atoms_are_exactly_e0_with_no_shift(calculator):
    model = load_model("geodite")
    assert float(model.energy_shift) == 0.0
    e0 = model.e0.double()
    for symbol in MPTRJ_ELEMENTS:
        z = atomic_numbers[symbol]
        energy, forces = _energy_forces(calculator, boxed([z]))
        assert energy == pytest.approx(float(e0[z]), abs=1e-9), symbol
        assert np.abs(forces).max() < 1e-9


def test_dimers_near_the_cutoff_approach_twice_the_isolated_atom(calculator):
    cutoff = load_model("geodite").config.cutoff
    gaps, forces_at = {}, {}
    for symbol in ELEMENTS:
        z = atomic_numbers[symbol]
        atom, _ = _energy_forces(calculator, boxed([z]))
        for d in (4.0, 4.5):
            energy, forces = _energy_forces(calculator, boxed([z, z], d))
            gaps[symbol, d] = abs(energy - 2 * atom)
            forces_at[symbol, d] = float(np.linalg.norm(forces[0]))
        outside, _ = _energy_forces(calculator, boxed([z, z], cutoff + 0.01))
        assert outside == pytest.approx(2 * atom, abs=1e-9), symbol  # no interaction beyond the cutoff
    for d in (4.0, 4.5):
        assert np.median([gaps[s, d] for s in ELEMENTS]) <= MAX_MEDIAN_GAP, d
        assert np.median([forces_at[s, d] for s in ELEMENTS]) <= MAX_MEDIAN_FORCE, d
