"""Tests for geodite.metrics.symmetry (moyopy space groups of relaxed vs DFT structures)."""

import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from geodite.metrics.symmetry import (
    geo_opt_symmetry_metrics,
    structure_symmetry,
    symmetry_comparison,
    symmetry_metrics_from_rows,
    symprec_tag,
)


def rocksalt(a: float = 5.6) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_structure_symmetry_rocksalt_and_distorted():
    assert structure_symmetry(rocksalt(), 1e-2) == (225, 192)  # conventional cell: 48 × 4 centring
    distorted = rocksalt()
    distorted.translate_sites([0], [0.003, 0.0, 0.0])  # moves one Na by 0.017 Å
    tight = structure_symmetry(distorted, 1e-5)
    assert tight[1] < 192 and tight[0] != 225


def test_symmetry_comparison_fields():
    row = symmetry_comparison(rocksalt(5.61), rocksalt())
    assert row["spg_pred_1e-2"] == row["spg_dft_1e-2"] == 225
    assert set(row) == {f"{k}_{s}_{t}" for k in ("spg", "n_sym_ops") for s in ("pred", "dft") for t in ("1e-2", "1e-5")}
    assert symprec_tag(1e-2) == "1e-2" and symprec_tag(0.1) == "1e-1"


def test_geo_opt_symmetry_metrics_hand_computed():
    # match, decrease, increase, changed with equal operations (neither), unknown (left out)
    spg_pred = pd.Series([225, 123, 225, 100, np.nan])
    spg_ref = pd.Series([225, 225, 123, 101, 225])
    ops_pred = pd.Series([192, 16, 192, 8, np.nan])
    ops_ref = pd.Series([192, 192, 16, 8, 192])
    m = geo_opt_symmetry_metrics(spg_pred, spg_ref, ops_pred, ops_ref)
    assert m["n_structures"] == 4
    assert m["n_sym_ops_mae"] == pytest.approx((0 + 176 + 176 + 0) / 4)
    assert (m["symmetry_match"], m["symmetry_decrease"], m["symmetry_increase"]) == (0.25, 0.25, 0.25)
    empty = geo_opt_symmetry_metrics(*(pd.Series([np.nan]),) * 4)
    assert empty["n_structures"] == 0 and math.isnan(empty["symmetry_match"])


def test_symmetry_metrics_from_rows_keys():
    rows = pd.DataFrame([symmetry_comparison(rocksalt(), rocksalt())] * 2)
    out = symmetry_metrics_from_rows(rows)
    assert out["symmetry_match_1e-2"] == out["symmetry_match_1e-5"] == 1.0
    assert out["n_sym_ops_mae_1e-5"] == 0.0 and out["n_structures_1e-2"] == 2
    assert symmetry_metrics_from_rows(pd.DataFrame({"x": [1]})) == {}
