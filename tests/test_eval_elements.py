"""`geodite eval`'s per-element force errors, relaxed-frame force error and figures (issue #27), on frames whose
answers are known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from geodite.calculator import Prediction
from geodite.evaluate import MIN_ELEMENT_ATOMS, element_errors, error_row, summarise, write_model_results


def frame(symbols: str, forces: np.ndarray, energy: float = -1.0) -> Atoms:
    atoms = Atoms(symbols, cell=[40, 40, 40], pbc=True)
    atoms.positions = np.arange(3 * len(atoms)).reshape(-1, 3) * 2.0 % 40  # 2 Å apart along a line
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=np.zeros(6))
    return atoms


def table_of(*pairs: tuple[Atoms, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame([error_row(k, atoms, Prediction(energy=-1.0, forces=pred, stress=np.zeros((3, 3))))
                         for k, (atoms, pred) in enumerate(pairs)])


def test_element_errors_against_zero_forces_by_hand():
    """OH: O's reference (1, 0, 0) predicted (0.5, 0, 0): MAE 0.5/3, zero forces 1/3 (better than zero);
    H's reference 0 predicted (0, 0.3, 0): MAE 0.1, zero forces 0 (worse than zero)."""
    ref = np.array([[1.0, 0, 0], [0, 0, 0]])
    pred = np.array([[0.5, 0, 0], [0, 0.3, 0]])
    table = table_of((frame("OH", ref), pred))
    elements = element_errors(table).set_index("element")
    assert elements.loc["O", "forces_mae"] == pytest.approx(0.5 / 3)
    assert elements.loc["O", "zero_forces_mae"] == pytest.approx(1 / 3)
    assert elements.loc["H", "forces_mae"] == pytest.approx(0.1)
    assert elements.loc["H", "zero_forces_mae"] == 0
    assert list(elements.index) == ["O", "H"]  # largest force MAE first
    assert list(elements["worse_than_zero"]) == [False, True]


def test_summary_relaxed_frames_and_elements_worse_than_zero():
    """Two Cu frames: a relaxed one (largest reference force 0.05 eV/Å < 0.1) predicted with 0.2 eV/Å errors, and
    a strained one (1 eV/Å) predicted exactly. The relaxed force MAE is that frame's alone; Cu (enough atoms)
    is worse than zero forces overall, O (too few atoms) is not listed although it is worse too."""
    n = MIN_ELEMENT_ATOMS
    relaxed_ref = np.zeros((n, 3))
    relaxed_ref[:, 0] = 0.05
    strained_ref = np.zeros((n, 3))
    strained_ref[:, 2] = 1.0
    small_ref = np.zeros((2, 3))
    table = table_of((frame("Cu" * n, relaxed_ref), relaxed_ref + 0.2),
                     (frame("Cu" * n, strained_ref), strained_ref),
                     (frame("O2", small_ref), small_ref + 0.1))
    summary = summarise(table)
    assert summary["n_relaxed"] == 2  # the Cu frame and the O2 frame (zero reference forces)
    relaxed_components = 3 * n + 6
    assert summary["relaxed_forces_mae"] == pytest.approx((0.2 * 3 * n + 0.1 * 6) / relaxed_components)
    assert summary["relaxed_zero_forces_mae"] == pytest.approx(0.05 * n / relaxed_components)
    # Cu: error 0.2·3n over 6n components = 0.1; zero forces (0.05 n + 1·n) / 6n = 0.175: better than zero
    assert summary["elements_worse_than_zero"] == []
    worse = table_of((frame("Cu" * n, strained_ref), strained_ref + 2.0))
    assert summarise(worse)["elements_worse_than_zero"] == ["Cu"]


def test_model_results_write_elements_and_figures(tmp_path):
    ref = np.array([[1.0, 0, 0], [0, 0, 0]])
    table = table_of((frame("OH", ref), ref + 0.1), (frame("CuO", ref), ref))
    write_model_results(table, summarise(table), tmp_path, "model-x", "data-0123")
    out = tmp_path / "eval" / "model-x"
    elements = pd.read_csv(out / "data-0123.elements.csv")
    assert sorted(elements["element"]) == ["Cu", "H", "O"]
    assert (out / "data-0123.parity.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "data-0123.elements.html").read_text()
    assert "force MAE per element" in page and "plotly" in page
