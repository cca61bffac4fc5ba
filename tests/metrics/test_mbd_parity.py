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
from geodite.metrics.cps import combined_performance_score, leaderboard_cps_or_reason
from geodite.metrics.discovery import METRIC_KEYS, SUBSETS, discovery_metrics_by_subset, stable_metrics
from geodite.metrics.phonons import (
    SRME_PENALTY,
    kappa_metrics,
    kappa_scalar,
    kappa_srd,
    kappa_sre,
    kappa_srme_censored,
    phonon_spectrum_w1,
)
from geodite.metrics.rdf import matched_frame_counts, radial_distribution, rdf_error
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


def test_discovery_metrics_as_the_task_reports_them():
    """full_metrics_from_rows (the discovery task's rows → metrics.json): headline keys = unique prototypes,
    full_* = full test set, most_stable_10k_*, each MBD's; failed rows count as missing predictions."""
    from geodite.metrics.discovery import full_metrics_from_rows

    data = load("discovery")
    inp, expected = data["inputs"], data["expected"]
    pred = pd.Series(inp["e_form_pred"])
    df = pd.DataFrame({"e_form_pred": pred.fillna(0.0), "status": np.where(pred.isna(), "failed", "ok"),
                       "e_form_dft": inp["e_form_dft"], "e_above_hull_dft": inp["e_above_hull_dft"],
                       "unique_prototype": np.asarray(inp["unique_prototype"], bool), "converged": True,
                       "rmsd": 0.01})  # fmt: skip
    out = full_metrics_from_rows(df)
    for prefix, subset in (("", "unique_prototypes"), ("full_", "full_test_set"), ("most_stable_10k_", "most_stable_10k")):
        for key in METRIC_KEYS:
            assert same(float(out[prefix + key]), expected[subset][key]), (prefix, key)


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


def _task_rows(cases: list[dict]) -> pd.DataFrame:
    """The κ task's rows for the parity cases, as ``run_item`` and ``_score`` write them: a material with
    imaginary modes or broken symmetry stops before FC3 (no κ, SRME 2); a mode-κ shape mismatch leaves srme
    NaN (``srme_error``); the others carry :func:`kappa_srme_censored`'s SRME and flag."""
    rows = []
    for i, case in enumerate(cases):
        broken = case["spg_relaxed"] != case["spg_initial"]
        row = {"key": f"mp-{i}", "status": "ok", "failed": False, "imaginary_modes": case["imaginary_modes"],
               "broken_symmetry": broken, "has_mode_reference": True,
               "kappa_dft": kappa_scalar(case["kappa_dft_voigt"])}  # fmt: skip
        pred_modes, dft_modes = np.asarray(case["mode_kappa_pred"]), np.asarray(case["mode_kappa_dft"])
        if case["imaginary_modes"] or broken:
            row |= {"kappa_pred": float("nan"), "srme": SRME_PENALTY}
        elif pred_modes.shape != dft_modes.shape:
            row |= {"kappa_pred": kappa_scalar(case["kappa_pred_voigt"]), "srme": float("nan")}
        else:
            row["kappa_pred"] = kappa_scalar(case["kappa_pred_voigt"])
            row["srme"], row["srme_censored"] = kappa_srme_censored(
                pred_modes, dft_modes, case["weights_pred"], row["kappa_pred"], row["kappa_dft"])  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def test_kappa_metrics_end_to_end_as_the_leaderboard():
    """kappa_metrics on the task's rows equals MBD's evaluate_kappa_predictions: κ_SRME, κ_SRE, κ_SRD, and
    failure_rate = mean srme_censored (SRME outside [0, 2], bad weights, NaN mode κ... count as failures;
    κ_DFT = 0 scores SRME 2 without failing), imaginary_mode_rate."""
    data = load("kappa")
    cases, expected = data["inputs"]["cases"], data["expected"]
    df = _task_rows(cases)
    assert list(df["kappa_pred"].isna() & (df["imaginary_modes"] | df["broken_symmetry"])) == expected[
        "task_rows_kappa_pred_nan"]  # fmt: skip
    assert {"mixed_sign", "srme_above_2", "negative_weights", "nan_weights", "zero_dft"} <= {c["case"] for c in cases}
    out, theirs = kappa_metrics(df, "full"), expected["evaluate_kappa_predictions"]
    for ours_key, key in (("kappa_SRME", "srme"), ("kappa_SRE", "sre"), ("kappa_SRD", "srd"),
                          ("failure_rate", "failure_rate"), ("imaginary_mode_rate", "imaginary_mode_rate")):  # fmt: skip
        assert same(out[ours_key], theirs[key]), (ours_key, out[ours_key], theirs[key])


def test_kappa_spectrum_w1():
    data = load("kappa")
    for spectrum, w1 in zip(data["inputs"]["spectra"], data["expected"]["spectrum_w1"], strict=True):
        ours = phonon_spectrum_w1(spectrum["freqs_pred"], spectrum["freqs_ref"], spectrum["weights_pred"],
                                  spectrum["weights_ref"])  # fmt: skip
        assert same(ours, w1)


OUR_DIATOMIC_NAMES = {"pbe_vib_freq_error": "pbe_frequency_error"}


@pytest.mark.parametrize("symbol", ["H", "C", "O", "Si", "Cu", "Xe"])
def test_diatomics_per_element(symbol):
    """The diatomics task's row of a curve whose two atoms' forces are not opposite (noisy, with y/z parts):
    force flips, total variation and jump are of MBD's force (x-force on atom 0), the rest as MBD's."""
    from geodite.metrics.diatomics_scores import wall_errors
    from geodite.tasks.diatomics import DiatomicsTask, pbe_reference

    data = load("diatomics")
    r = np.asarray(data["inputs"]["distances"])
    curve = data["inputs"]["curves"][symbol]
    e, forces = np.asarray(curve["energies"]), np.asarray(curve["forces"])
    assert np.abs(forces[:, 0] + forces[:, 1]).max() > 0.05  # not opposite
    row = DiatomicsTask(elements=[symbol]).row(symbol, r, e, forces) | {"status": "ok"}
    row["pbe_wall_dist_mae"] = wall_errors(pd.DataFrame([row]), pbe_reference()).iloc[0]
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


@pytest.mark.parametrize("cell_name", ["hexagonal", "skewed_cube", "triclinic"])
def test_rdf_default_settings_on_non_orthogonal_cells(cell_name):
    """MBD's calc_rdf at its defaults (500 bins, r_max = half the shortest lattice vector) on skewed cells."""
    data = load("rdf")
    inp, expected = data["inputs"]["default_settings"][cell_name], data["expected"]["default_settings"][cell_name]
    r, g = radial_distribution(np.asarray(inp["positions"]), inp["cell"], ["Li"] * 12 + ["S"] * 12, n_bins=500,
                               normalisation="mbd")  # fmt: skip
    np.testing.assert_allclose(r, expected["r"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(g, expected["g"], rtol=TOL, atol=TOL)


def test_md_task_rdf_error_is_mbds(tmp_path):
    """``bench md``'s rdf_error, through the task's score() on a reference set: MBD's evaluate_md_system
    (time-matched frames, 500 bins, N², MBD's r_max) on a 64-atom jittered lattice in a skewed cell."""
    from ase import Atoms
    from ase.io import write

    from geodite.tasks.md import MDTask, score

    data = load("md")
    inp, expected = data["inputs"], data["expected"]

    def frames(positions: list) -> list[Atoms]:
        return [Atoms(inp["symbols"], positions=p, cell=inp["cell"], pbc=True) for p in positions]

    write(tmp_path / "ref.traj", frames(inp["reference"]["positions"]))
    manifest = {"name": "parity", "systems": [{"name": "lattice", "trajectory": "ref.traj", "format": "traj",
                                               "temperature_K": 300, "timestep_fs": 2.0,
                                               "frame_interval_steps": 50}]}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    task = MDTask(reference=str(tmp_path), timestep_fs=2.0, frame_interval=25)  # 100 fs and 50 fs frames
    assert list(matched_frame_counts(9, 13, 100.0, 50.0)) == expected["matched_frame_counts"]
    row = score(task._systems["lattice"], frames(inp["model"]["positions"]), task)
    assert same(row["rdf_error"], expected["rdf_error"]), (row["rdf_error"], expected["rdf_error"])


@pytest.mark.parametrize("case", ["constant_truth_perfect", "constant_truth_imperfect", "constant_truth_with_nan",
                                  "nan_truth", "one_pair", "random_with_nan", "inf_prediction",
                                  "minus_inf_prediction"])  # fmt: skip
def test_stable_metrics_edge_cases(case):
    """MBD's stable_metrics (sklearn R²): constant truth → 1.0 or 0.0, NaN truth dropped, ±inf raises."""
    data = load("r2")
    inp, expected = data["inputs"][case], data["expected"][case]
    if "raises" in expected:
        with pytest.raises(ValueError):
            stable_metrics(inp["true"], inp["pred"])
        return
    ours = stable_metrics(inp["true"], inp["pred"])
    for key in METRIC_KEYS:
        assert same(float(ours[key]), expected[key]), (case, key, ours[key], expected[key])


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


def test_geo_opt_rmsd():
    """RMSD as the discovery task computes it per structure (StructureMatcher(stol=1, scale=False), 1.0 when
    unmatched) and as its metrics average it (mean_rmsd), against MBD's pred_vs_ref_struct_symmetry and
    calc_geo_opt_metrics."""
    from pymatgen.core import Structure

    from geodite.metrics.discovery import mean_rmsd
    from geodite.tasks.discovery import structure_rmsd

    data = load("geo-opt")
    rows = []
    for name, (pred, ref) in data["inputs"]["rmsd_pairs"].items():
        ours = structure_rmsd(Structure.from_dict(pred), Structure.from_dict(ref))
        theirs = data["expected"]["rmsd"][name]
        assert same(ours, 1.0 if theirs is None else theirs), name
        rows.append({"status": "ok", "rmsd": ours})
    assert same(mean_rmsd(pd.DataFrame(rows)), data["expected"]["rmsd_mean"])


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


def test_cps_is_the_leaderboards_from_rounded_metrics(tmp_path):
    """The CPS reported under that name equals the leaderboard's: calculate_cps of F1 rounded to 3 decimals
    and κ_SRME, RMSD to 4 (as MBD's YAMLs store them), on 1,000 unrounded triples, half of them within 1e-9 of
    a rounding boundary; through cps_summary as `bench cps` and the report call it."""
    from geodite.tasks.cps import cps_summary
    from geodite.tasks.results import write_metrics

    data = load("combined-scores")
    triples, expected = data["inputs"]["cps_unrounded_metrics"], data["expected"]["cps_from_unrounded"]
    assert len(triples) == 1000
    differs = 0
    for (f1, kappa, rmsd), theirs in zip(triples, expected, strict=True):
        assert same(leaderboard_cps_or_reason(f1, kappa, rmsd)[0], theirs), (f1, kappa, rmsd)
        differs += abs(combined_performance_score(f1, kappa, rmsd) - theirs) > 1e-9
    assert differs > 500  # the unrounded CPS is not the leaderboard's
    for i, ((f1, kappa, rmsd), theirs) in enumerate(zip(triples[:20], expected[:20], strict=True)):
        write_metrics({"F1": f1, "RMSD": rmsd}, tmp_path / "discovery" / f"m{i}")
        write_metrics({"kappa_SRME": kappa}, tmp_path / "kappa" / f"m{i}")
        summary = cps_summary(f"m{i}", tmp_path)
        assert same(summary["CPS"], theirs)
        assert summary["CPS_unrounded"] == combined_performance_score(f1, kappa, rmsd)
