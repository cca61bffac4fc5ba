"""Agreement of two discovery runs: energy per atom and stable/unstable class on a hull of the subset."""

from __future__ import annotations

import pandas as pd
import pytest

from geodite.tasks.engine_agreement import agreement, subset_hull_distances


def test_subset_hull_of_two_phases():
    """Na-Cl: NaCl below the line between the elements is on the hull (0); NaCl2 above the NaCl–Cl line is
    unstable by what it lies above it."""
    from pymatgen.core import Lattice, Structure

    def record(mid, species, energy):
        coords = [[0, 0, 0]] + [[0.5, 0.5, 0.5 * k] for k in range(1, len(species))]
        structure = Structure(Lattice.cubic(3), species, coords)
        return {"material_id": mid, "structure": structure.as_dict(), "energy": energy}

    refs = {"Na": -1.0, "Cl": -2.0}
    records = [record("ab", ["Na", "Cl"], -5.0), record("ab2", ["Na", "Cl", "Cl"], -6.7)]
    hull = subset_hull_distances(records, refs)
    assert hull["ab"] == pytest.approx(0.0, abs=1e-9)
    # NaCl2 against NaCl + Cl: (−6.7 − (−5.0 − 2.0)) / 3 = +0.1 eV/atom
    assert hull["ab2"] == pytest.approx(0.1, abs=1e-9)


def test_agreement_counts_energy_and_class_differences():
    base = {"status": "ok", "n_atoms": 2, "e_form_dft": -1.0, "n_steps": 10, "converged": True, "volume_ratio": 1.0}
    a = pd.DataFrame([base | {"key": k, "energy_pred": -10.0, "e_form_pred": -1.0} for k in "xyz"]).set_index("key")
    b = a.copy()
    b.loc["y", ["energy_pred", "e_form_pred"]] = [-10.004, -1.002]  # 2 meV/atom lower: same class
    b.loc["z", ["energy_pred", "e_form_pred"]] = [-9.9998, -0.9999]  # 0.1 meV/atom higher, crosses the hull
    out = agreement(a, b, {"x": -0.5, "y": -0.5, "z": 0.0})
    assert out["n_both"] == 3 and out["n_within_1meV"] == 2
    assert out["fraction_same_class"] == pytest.approx(2 / 3)
    assert [o["key"] for o in out["outliers"]] == ["y", "z"]
