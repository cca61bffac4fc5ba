"""Parity with Matbench Discovery: our metrics on vectors whose expected values were computed by
MBD's own code at a pinned commit (tests/data/mbd-parity/, written by tools/mbd_parity_vectors.py;
nothing is fetched here). Agreement to 1e-9."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geodite.metrics import diatomics as dia
from geodite.metrics import diatomics_pbe as pbe
from geodite.metrics.cps import combined_performance_score
from geodite.metrics.discovery import METRIC_KEYS, SUBSETS, discovery_metrics_by_subset
from geodite.metrics.phonons import kappa_scalar, kappa_srd, kappa_sre, kappa_srme_censored, phonon_spectrum_w1
from geodite.metrics.rdf import radial_distribution, rdf_error
from geodite.metrics.symmetry import geo_opt_symmetry_metrics, structure_symmetry

PARITY = Path(__file__).resolve().parents[1] / "data" / "mbd-parity"
TOL = 1e-9


def load(name: str) -> dict:
    return json.loads((PARITY / f"{name}.json").read_text())


def same(ours, theirs) -> bool:
    """Equal to 1e-9 (absolute and relative), NaN matching NaN, None matching None."""
    if ours is None or theirs is None:
        return ours is None and theirs is None
    if math.isnan(ours) or math.isnan(theirs):
        return math.isnan(ours) and math.isnan(theirs)
    return math.isclose(ours, theirs, rel_tol=TOL, abs_tol=TOL)


def test_vectors_come_from_one_pinned_commit():
    commits = {load(p.stem)["mbd_commit"] for p in PARITY.glob("*.json")}
    assert len(commits) == 1
    assert next(iter(commits)).startswith("2c7f9fc")


def test_discovery_subsets():
    data = load("discovery")
    inp, expected = data["inputs"], data["expected"]
    out = discovery_metrics_by_subset(
        pd.Series(inp["e_form_pred"]), pd.Series(inp["e_form_dft"]), pd.Series(inp["e_above_hull_dft"]),
        pd.Series(inp["unique_prototype"]).astype(bool),
    )
    assert len(inp["e_form_pred"]) > 10_000  # the 10k cut applies
    for subset in SUBSETS:
        for key in METRIC_KEYS:
            assert same(out[subset][key], expected[subset][key]), (subset, key, out[subset][key])


def _kappa_case(case: dict) -> tuple[float, float, float, bool]:
    k_pred, k_dft = kappa_scalar(case["kappa_pred_voigt"]), kappa_scalar(case["kappa_dft_voigt"])
    srme, censored = kappa_srme_censored(
        np.asarray(case["mode_kappa_pred"]), np.asarray(case["mode_kappa_dft"]), case["weights_pred"], k_pred, k_dft,
        imaginary_modes=case["imaginary_modes"], broken_symmetry=case["spg_relaxed"] != case["spg_initial"],
    )  # fmt: skip
    return kappa_srd(k_pred, k_dft), kappa_sre(k_pred, k_dft), srme, censored


def test_kappa_srd_sre_srme_censoring():
    data = load("kappa")
    expected = data["expected"]
    results = [_kappa_case(case) for case in data["inputs"]["cases"]]
    for i, (case, (srd, sre, srme, censored)) in enumerate(zip(data["inputs"]["cases"], results, strict=True)):
        assert same(srd, expected["srd"][i]), case["case"]
        assert same(sre, expected["sre"][i]), case["case"]
        assert same(srme, expected["srme"][i]), case["case"]
        assert censored == expected["censored"][i], case["case"]
    assert same(float(np.mean([r[3] for r in results])), expected["failure_rate"])
    flags = [c["imaginary_modes"] for c in data["inputs"]["cases"]]
    assert same(float(np.mean(flags)), expected["imaginary_mode_rate"])


def test_kappa_spectrum_w1():
    data = load("kappa")
    for spectrum, w1 in zip(data["inputs"]["spectra"], data["expected"]["spectrum_w1"], strict=True):
        ours = phonon_spectrum_w1(spectrum["freqs_pred"], spectrum["freqs_ref"], spectrum["weights_pred"],
                                  spectrum["weights_ref"])  # fmt: skip
        assert same(ours, w1)


OUR_DIATOMIC_NAMES = {"pbe_vib_freq_error": "pbe_frequency_error"}


@pytest.mark.parametrize("symbol", ["H", "C", "O", "Si", "Cu", "Xe"])
def test_diatomics_per_element(symbol):
    from geodite.tasks.diatomics import curve_metrics, pbe_reference

    data = load("diatomics")
    r = np.asarray(data["inputs"]["distances"])
    curve = data["inputs"]["curves"][symbol]
    e, f = np.asarray(curve["energies"]), np.asarray(curve["bond_forces"])
    forces = np.zeros((len(r), 2, 3))
    forces[:, 0, 0], forces[:, 1, 0] = -f, f
    lo, hi = dia.evaluation_window(symbol, r.max())
    w = (r >= lo) & (r <= hi)
    row = curve_metrics(symbol, r[w], e[w], f[w], forces[w])
    ref = pbe_reference()[f"{symbol}-{symbol}"]
    row["pbe_wall_dist_mae"] = pbe.wall_distance_error_raw(symbol, ref["distances"], ref["energies"], r, e)
    expected = data["expected"][symbol]
    assert len(expected) == 12
    for key, value in expected.items():
        ours = row[OUR_DIATOMIC_NAMES.get(key, key)]
        assert same(float(ours), value), (symbol, key, ours, value)


def test_rdf_mbd_normalisation_and_error():
    data = load("rdf")
    inp, expected = data["inputs"], data["expected"]
    curves = [radial_distribution(np.asarray(p), inp["cell"], inp["symbols"], n_bins=500, normalisation="mbd")
              for p in inp["positions"]]  # fmt: skip
    np.testing.assert_allclose(curves[0][0], expected["r"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(curves[0][1], expected["g_ref"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(curves[1][1], expected["g_pred"], rtol=TOL, atol=TOL)
    r = np.asarray(expected["r"])
    assert same(rdf_error(expected["g_ref"], expected["g_pred"], r), expected["rdf_error"])
    assert same(rdf_error(np.ones_like(r), expected["g_pred"], r), expected["rdf_error_ideal_gas_reference"])


def test_geo_opt_symmetry():
    from pymatgen.core import Structure

    data = load("geo-opt")
    inp, expected = data["inputs"], data["expected"]
    for tag, symprec in (("1e-02", 1e-2), ("1e-05", 1e-5)):
        for name, struct in inp["structures"].items():
            assert list(structure_symmetry(Structure.from_dict(struct), symprec)) == expected["symmetry"][tag][name]
    ours = geo_opt_symmetry_metrics(*(pd.Series(inp[k]) for k in ("spg_pred", "spg_ref", "n_ops_pred", "n_ops_ref")))
    for key in ("n_sym_ops_mae", "symmetry_decrease", "symmetry_match", "symmetry_increase", "n_structures"):
        assert same(float(ours[key]), expected["metrics"][key]), key


def _num(value):
    return float("nan") if value == "NaN" else value


def test_cps_matches_leaderboard_on_2008_triples():
    data = load("combined-scores")
    triples, expected = data["inputs"]["cps"], data["expected"]["cps"]
    assert len(triples) == 2008 and data["expected"]["rmsd_baseline"] == 0.15
    for (f1, kappa, rmsd), theirs in zip(triples, expected, strict=True):
        assert same(combined_performance_score(_num(f1), _num(kappa), _num(rmsd)), theirs), (f1, kappa, rmsd)
    assert sum(v is not None for v in expected) > 1500  # most triples score


def test_cds_matches_leaderboard():
    data = load("combined-scores")
    for values, theirs in zip(data["inputs"]["cds"], data["expected"]["cds"], strict=True):
        excluded = len(values.pop("excluded_formula_reasons", {}))
        assert same(pbe.combined_dimer_score(values, excluded), theirs), values
