"""The benchmark tasks' scoring as pure functions (geodite.metrics.diatomics_scores, .md, .phonons): a curve,
a run or a material in, its scores out, with no task, model or file involved."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geodite.metrics import diatomics_scores as dimers
from geodite.metrics import md
from geodite.metrics.phonons import SRME_PENALTY, kappa_srd, material_kappa_scores

# ------------------------------------------------------------------------------------------------ diatomics


def morse(r: np.ndarray, depth: float = 5.0, width: float = 2.0, r0: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """A Morse curve: energies (eV) and bond forces F = −dE/dr (eV/Å) at separations ``r`` (Å)."""
    x = np.exp(-width * (r - r0))
    return depth * (1 - x) ** 2 - depth, -2 * depth * width * x * (1 - x)


def cartesian(bond_force: np.ndarray) -> np.ndarray:
    """Forces [n, 2, 3] (eV/Å) of atom 0 at the origin and atom 1 on +x for a bond force F (repulsive > 0)."""
    forces = np.zeros((len(bond_force), 2, 3))
    forces[:, 0, 0], forces[:, 1, 0] = -bond_force, bond_force
    return forces


def test_a_curve_equal_to_its_reference_has_no_pbe_error():
    r = np.linspace(0.65, 5.0, 300)
    e, f = morse(r)
    reference = {"distances": r.tolist(), "energies": e.tolist(), "forces": cartesian(f).tolist()}
    row = dimers.curve_metrics("O", r, e, f, cartesian(f), reference)
    assert row["pbe_reference_excluded"] is False
    for key in ("pbe_energy_mae", "pbe_force_mae", "pbe_bond_length_error"):
        assert row[key] == pytest.approx(0.0, abs=1e-9), key
    assert row["force_flips"] == 1.0  # repulsive, then attractive: one sign change of F
    wrong = dimers.curve_metrics("O", r, e, 2 * f, cartesian(2 * f), reference)  # forces not −dE/dr
    assert row["conservation_deviation"] < 0.1 * wrong["conservation_deviation"]


def test_a_deeper_curve_scores_an_energy_error_and_no_reference_scores_nothing():
    r = np.linspace(0.65, 5.0, 300)
    e, f = morse(r)
    reference = {"distances": r.tolist(), "energies": e.tolist(), "forces": cartesian(f).tolist()}
    deeper = dimers.curve_metrics("O", r, 1.1 * e, f, cartesian(f), reference)
    assert deeper["pbe_energy_mae"] > 0.01  # eV
    assert deeper["pbe_force_mae"] == pytest.approx(0.0, abs=1e-9)
    shifted = dimers.curve_metrics("O", r, e + 0.3, f, cartesian(f), reference)
    assert shifted["pbe_energy_mae"] == pytest.approx(0.0, abs=1e-9)  # curves are compared from their far ends
    alone = dimers.curve_metrics("O", r, e, f, cartesian(f), None)
    assert alone["pbe_reference_excluded"] is True and not [k for k in alone if k.startswith("pbe_") and
                                                             k != "pbe_reference_excluded"]


def test_summary_means_finite_values_over_scored_elements_and_sums_run_time():
    rows = pd.DataFrame([
        {"element": "H", "status": "ok", "tortuosity": 1.0, "item_wall_s": 2.0, "pbe_reference_excluded": True},
        {"element": "O", "status": "ok", "tortuosity": 3.0, "item_wall_s": 4.0, "pbe_reference_excluded": True},
        {"element": "N", "status": "ok", "tortuosity": np.nan, "item_wall_s": 1.0, "pbe_reference_excluded": True},
        {"element": "Po", "status": "ok", "tortuosity": 100.0, "item_wall_s": 50.0, "pbe_reference_excluded": True},
        {"element": "C", "status": "failed", "item_wall_s": 0.5},
    ])  # fmt: skip
    mbd = dimers.diatomics_summary(rows, "mbd", reference={})
    assert mbd["tortuosity"] == 2.0  # NaN and Po (not one of MBD's 87) left out
    assert (mbd["n_scored"], mbd["n_excluded"], mbd["run_time_sec"]) == (3, 1, 7.5)
    assert mbd["CDS"] is None  # no PBE errors to score
    assert dimers.diatomics_summary(rows, "arena", reference={})["tortuosity"] == pytest.approx(104 / 3)


def test_wall_error_is_nan_without_a_usable_reference():
    r = np.linspace(0.5, 5.0, 50)
    row = {"element": "O", "distances": r.tolist(), "energies": morse(r)[0].tolist()}
    rows = pd.DataFrame([row | {"pbe_reference_excluded": True}, row | {"pbe_reference_excluded": False}])
    assert dimers.wall_errors(rows, reference={}).isna().all()
    own = {"O-O": {"distances": r.tolist(), "energies": morse(r)[0].tolist()}}
    errors = dimers.wall_errors(rows, own)
    assert np.isnan(errors.iloc[0]) and errors.iloc[1] == pytest.approx(0.0)


def test_four_significant_digits_as_mbd_stores_means():
    assert dimers.four_significant(0.123456) == 0.1235 and dimers.four_significant(None) is None


# ------------------------------------------------------------------------------------------------ MD


def fcc_trajectory(frames: int = 6, noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A thermally jiggled 3×3×3 fcc Li/S lattice (a = 5 Å): positions (T, N, 3) Å, cells (T, 3, 3) Å, symbols."""
    rng = np.random.default_rng(seed)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.array([[i, j, k] for i in range(3) for j in range(3) for k in range(3)])
    sites = 5.0 * (grid[:, None, :] + basis[None]).reshape(-1, 3)
    positions = sites[None] + rng.normal(0, noise, (frames, len(sites), 3))
    symbols = ["Li" if i % 2 else "S" for i in range(len(sites))]
    return positions, np.repeat(15.0 * np.eye(3)[None], frames, axis=0), symbols


def test_a_run_against_itself_overlaps_fully_and_has_no_rdf_error():
    positions, cells, symbols = fcc_trajectory()
    table = md.rdf_table(positions, cells, symbols, r_max=7.0)
    assert list(table.columns) == ["r", "pooled", "Li-Li", "Li-S", "S-S"] and len(table) == md.RDF_BINS
    scores = md.rdf_scores(table, table)
    assert scores["rdf_overlap"] == pytest.approx(1.0)
    assert all(scores[f"overlap_{pair}"] == pytest.approx(1.0) for pair in ("Li-Li", "Li-S", "S-S"))
    assert md.matched_rdf_error(positions, cells, 10.0, positions, cells, 10.0) == pytest.approx(0.0)
    other = md.rdf_scores(table, md.rdf_table(*fcc_trajectory(noise=0.4, seed=1), r_max=7.0))
    assert 0.0 < other["rdf_overlap"] < 0.95  # a hotter lattice: broader peaks


def test_rdf_error_needs_four_matched_frames():
    positions, cells, _ = fcc_trajectory(frames=6)
    assert md.matched_rdf_error(positions, cells, 10.0, positions[:3], cells[:3], 10.0) is None
    # the model's frames every 20 fs against AIMD's every 10 fs: 3 common frames only
    assert md.matched_rdf_error(positions, cells, 10.0, positions, cells, 20.0) is None


def test_li_diffusion_of_a_random_walk():
    """Gaussian steps of σ Å per axis every dt fs: D = σ²/(2 dt) Å²/fs = 0.1 σ²/(2 dt) cm²/s."""
    rng = np.random.default_rng(3)
    sigma, dt = 0.1, 50.0
    steps = rng.normal(0, sigma, (400, 300, 3))
    positions = 500.0 + np.cumsum(steps, axis=0)  # far inside a 1000 Å box: nothing to unwrap
    cell = 1000.0 * np.eye(3)
    d = md.li_diffusion(positions, cell, ["Li"] * 300, dt)
    assert d == pytest.approx(0.1 * sigma**2 / (2 * dt), rel=0.1)
    assert md.li_diffusion(positions, cell, ["Na"] * 300, dt) is None
    assert md.li_diffusion(positions[:3], cell, ["Li"] * 300, dt) is None


def test_unstable_runs_score_zero_overlap_and_summary_means():
    assert md.unstable_overlap(True, 0.8) == {}
    assert md.unstable_overlap(False, 0.8) == {"rdf_overlap_measured": 0.8, "rdf_overlap": 0.0}
    rows = pd.DataFrame([
        {"status": "ok", "rdf_overlap": 0.9, "rdf_error": 10.0, "stable": True, "ns_per_day": 1.0},
        {"status": "ok", "rdf_overlap": 0.0, "rdf_error": None, "stable": False, "ns_per_day": 3.0},
        {"status": "failed", "rdf_overlap": 0.1},
    ])  # fmt: skip
    assert md.md_summary(rows) == {"mean_rdf_overlap": pytest.approx(0.45), "mean_rdf_error": 10.0, "n_stable": 1,
                                   "mean_ns_per_day": 2.0}
    assert md.md_summary(pd.DataFrame({"status": ["failed"]}))["mean_rdf_overlap"] is None


# ------------------------------------------------------------------------------------------------ κ


def test_material_kappa_scores():
    ok = material_kappa_scores(3.0, 1.0, penalised=False, has_mode_reference=True, srme=0.7)
    assert ok == {"srd": pytest.approx(1.0), "sre": pytest.approx(1.0), "has_mode_reference": True, "srme": 0.7}
    assert ok["srd"] == kappa_srd(3.0, 1.0)  # 2(3 − 1)/(3 + 1)
    penalised = material_kappa_scores(np.nan, 1.0, penalised=True, has_mode_reference=True, srme=0.1)
    assert (penalised["srd"], penalised["sre"], penalised["srme"]) == (-2.0, 2.0, SRME_PENALTY)
    assert material_kappa_scores(np.inf, 1.0, penalised=False, has_mode_reference=True)["srme"] == SRME_PENALTY
    assert np.isnan(material_kappa_scores(2.0, 1.0, penalised=False, has_mode_reference=True)["srme"])  # shapes differed
    assert np.isnan(material_kappa_scores(2.0, 1.0, penalised=True, has_mode_reference=False)["srme"])  # offline
    no_dft = material_kappa_scores(2.0, np.nan, penalised=False, has_mode_reference=True, srme=0.2)
    assert set(no_dft) == {"srd", "sre"} and np.isnan(no_dft["srd"]) and np.isnan(no_dft["sre"])
    assert set(material_kappa_scores(2.0, 0.0, penalised=False, has_mode_reference=False)) == {"srd", "sre"}
