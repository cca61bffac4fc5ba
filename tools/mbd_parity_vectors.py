"""Write the Matbench Discovery parity vectors in tests/data/mbd-parity/ with MBD's own code.

Run once, by hand, when the pinned MBD commit changes; the tests only read the JSON files
this writes (nothing is fetched or imported from MBD at test time).

    python tools/mbd_parity_vectors.py --git-dir /path/to/matbench-discovery.git \\
        [--commit 2c7f9fc4...] [--out tests/data/mbd-parity] [--node-modules /path/with/typescript]

* ``--git-dir``: a clone (bare or not) of janosh/matbench-discovery holding ``--commit``.
  ``matbench_discovery/`` and the leaderboard's ``site/src/lib/combined-scores.svelte.ts``
  are extracted with ``git archive`` into a temporary directory and imported from there;
  nothing is installed. MBD reads its WBM summary table at import time: an empty
  placeholder is written in the temporary copy so no download is attempted.
* The interpreter needs what those MBD modules import (pandas, scipy, ase, pymatgen,
  pymatviz, scikit-learn, ruamel.yaml, filelock, tqdm, moyopy) — a scratch virtualenv, not
  this project's.
* The combined scores (CPS, CDS) live in the leaderboard's TypeScript: they are transpiled
  with the ``typescript`` npm package found under ``--node-modules`` and run with ``node``.

Every vector is synthetic (seeded) except the diatomics references, which are the PBE
curves in tests/data/diatomics-dft.json.gz (MBD's own file).
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_COMMIT = "2c7f9fc4"
CPS_TS = "site/src/lib/combined-scores.svelte.ts"
LABELS_TS = "site/src/lib/labels.ts"


def extract(git_dir: str, commit: str, dest: Path) -> str:
    """``git archive`` the MBD package and the score code at ``commit`` into ``dest``; full hash."""
    full = subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", commit], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", full, "matbench_discovery", "data/datasets.yml", CPS_TS, LABELS_TS],
                             check=True, capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "x", "-C", str(dest)], input=archive, check=True)
    placeholder = dest / "data" / "wbm" / "2023-12-13-wbm-summary.csv.gz"
    placeholder.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(placeholder, "wt") as handle:
        handle.write("material_id\n")
    return full


def write(out: Path, name: str, commit: str, inputs: dict, expected: dict) -> None:
    """One vector file: the MBD commit, the inputs, and MBD's outputs (floats as written by json)."""
    payload = {"mbd_commit": commit, "generator": "tools/mbd_parity_vectors.py", "inputs": inputs, "expected": expected}
    (out / f"{name}.json").write_text(json.dumps(payload, separators=(",", ":")) + "\n")


def _floats(values) -> list:
    """JSON-ready list (NaN stays NaN; json writes it as NaN and Python reads it back)."""
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


# ----------------------------------------------------------------------------- discovery


def discovery_vectors(rng: np.random.Generator) -> tuple[dict, dict]:
    """10,300 synthetic WBM rows (≈ 99 % unique prototypes, so the 10k cut applies), values on a
    1e-4 grid so rounding to 3 decimals matters; some missing and > 5 eV/atom predictions."""
    from matbench_discovery import data as mbd_data
    from matbench_discovery.enums import MbdKey, TestSubset
    from matbench_discovery.metrics import discovery

    n = 10_300
    hull = np.round(rng.normal(0.03, 0.06, n), 4)
    near = rng.random(n) < 0.2
    hull[near] = np.round(rng.uniform(-0.0009, 0.0009, near.sum()), 4)
    e_form_dft = np.round(rng.normal(-1.0, 0.6, n), 4)
    e_form_pred = np.round(e_form_dft + rng.normal(0.0, 0.04, n), 4)
    e_form_pred[rng.random(n) < 0.01] = np.nan
    e_form_pred[rng.choice(n, 12, replace=False)] += 6.0  # beyond the 5 eV/atom mask
    uniq = rng.random(n) < 0.99
    ids = [f"wbm-{i}" for i in range(n)]
    df_raw = pd.DataFrame({MbdKey.each_true: hull, MbdKey.e_form_dft: e_form_dft, MbdKey.uniq_proto: uniq,
                           "model": e_form_pred}, index=pd.Index(ids, name="material_id"))  # fmt: skip
    # load_df_wbm_with_preds: mask |pred − DFT| > 5 on raw values; load_discovery_predictions: round(3)
    bad = (df_raw["model"] - df_raw[MbdKey.e_form_dft]).abs() > mbd_data.MAX_E_FORM_ERROR_THRESHOLD
    df_raw.loc[bad, "model"] = np.nan
    df_preds = df_raw.round(3)
    mbd_data.df_wbm = df_raw  # wbm_uniq_proto_prevalence reads the (unrounded) WBM table
    prevalence = discovery.wbm_uniq_proto_prevalence()
    subsets = discovery.discovery_subset_indices(df_preds, df_preds["model"])
    metrics = discovery.calc_discovery_metrics(df_preds, df_preds["model"], subset_indices=subsets,
                                               uniq_proto_prevalence=prevalence)  # fmt: skip
    names = {TestSubset.full_test_set: "full_test_set", TestSubset.uniq_protos: "unique_prototypes",
             TestSubset.most_stable_10k: "most_stable_10k"}  # fmt: skip
    inputs = {"e_form_pred": _floats(e_form_pred), "e_form_dft": _floats(e_form_dft),
              "e_above_hull_dft": _floats(hull), "unique_prototype": [int(u) for u in uniq]}  # fmt: skip
    expected = {names[s]: {k: float(v) for k, v in m.items()} for s, m in metrics.items()}
    expected["uniq_proto_prevalence"] = prevalence
    return inputs, expected


# ----------------------------------------------------------------------------- kappa


def kappa_vectors(rng: np.random.Generator) -> tuple[dict, dict]:
    """Per-material SRD/SRE/SRME/censoring by MBD's calc_kappa_metrics_from_dfs on edge cases, and
    spectrum W1 on random spectra with and without q-point weights."""
    from matbench_discovery.metrics import phonons

    n_q, n_b = 4, 6
    weights = [1.0, 3.0, 3.0, 1.0]

    def voigt_modes(scale: float) -> np.ndarray:
        modes = np.zeros((n_q, n_b, 6))
        modes[..., :3] = rng.uniform(0, scale, (n_q, n_b, 3))
        modes[..., 3:] = rng.normal(0, 0.1 * scale, (n_q, n_b, 3))
        return modes

    def total(modes: np.ndarray, w: list[float] = weights) -> list[float]:
        return list(modes.sum(axis=(0, 1)) / np.sum(w))

    cases: list[dict] = []
    for case in ("normal", "normal", "negative_kappa", "mixed_sign", "shape_mismatch", "zero_dft", "zero_both",
                 "nan_pred", "imaginary", "broken_symmetry", "zero_weights", "nan_modes", "srme_above_2",
                 "negative_weights", "nan_weights", "normal"):  # fmt: skip
        true_modes = np.zeros((n_q, n_b, 6)) if case in ("zero_dft", "zero_both") else voigt_modes(2.0)
        pred_modes = true_modes * rng.uniform(0.5, 1.5) + voigt_modes(0.3)
        pred_w = list(weights)
        pred_kappa = total(pred_modes)
        if case == "negative_kappa":
            pred_kappa = [-abs(x) for x in pred_kappa]
        elif case == "mixed_sign":
            pred_modes = true_modes.copy()
            pred_modes[0, 0, :3] += 40.0
            pred_modes[0, 1, :3] -= 40.0  # total unchanged, mode error huge: SRME > 2 → censored
            pred_kappa = total(pred_modes)
        elif case == "shape_mismatch":
            pred_modes = pred_modes[:3]
            pred_w = weights[:3]
            pred_kappa = total(pred_modes, pred_w)
        elif case == "zero_both":
            pred_modes = np.zeros_like(true_modes)
            pred_kappa = [0.0] * 6
        elif case == "nan_pred":
            pred_kappa = [np.nan] * 6
        elif case == "zero_weights":
            pred_w = [0.0] * n_q
        elif case == "nan_modes":
            pred_modes[1, 2, 0] = np.nan
        elif case == "srme_above_2":  # as the mode κ [11, −9] against [1, 1]: totals equal, SRME > 2
            pred_modes = true_modes.copy()
            pred_modes[0, 0, :3] += 100.0
            pred_modes[0, 1, :3] -= 100.0
            pred_kappa = total(pred_modes)
        elif case == "negative_weights":
            pred_w = [1.0, -3.0, 3.0, 1.0]
        elif case == "nan_weights":
            pred_w = [1.0, np.nan, 3.0, 1.0]
        cases.append({
            "case": case,
            "kappa_pred_voigt": _floats(pred_kappa), "mode_kappa_pred": pred_modes.tolist(), "weights_pred": _floats(pred_w),
            "kappa_dft_voigt": _floats(total(true_modes)), "mode_kappa_dft": true_modes.tolist(),
            "imaginary_modes": case == "imaginary", "spg_initial": 225,
            "spg_relaxed": 166 if case == "broken_symmetry" else 225,
        })  # fmt: skip
    ids = [f"mp-{i}" for i in range(len(cases))]
    df_pred = pd.DataFrame({
        "kappa_tot_rta": [[c["kappa_pred_voigt"]] for c in cases],
        "mode_kappa_tot_rta": [[c["mode_kappa_pred"]] for c in cases],
        "mode_weights": [c["weights_pred"] for c in cases],
        "has_imag_ph_modes": [c["imaginary_modes"] for c in cases],
        "final_spg_num": [c["spg_relaxed"] for c in cases], "init_spg_num": [c["spg_initial"] for c in cases],
    }, index=ids)  # fmt: skip
    df_true = pd.DataFrame({
        "kappa_tot_avg": [[float(np.mean(c["kappa_dft_voigt"][:3]))] for c in cases],
        "mode_kappa_tot_rta": [[c["mode_kappa_dft"]] for c in cases],
        "mode_weights": [weights] * len(cases),
    }, index=ids)  # fmt: skip
    df = phonons.calc_kappa_metrics_from_dfs(df_pred, df_true)
    expected = {
        "srd": _floats(df["srd"]), "sre": _floats(df["sre"]), "srme": _floats(df["srme"]),
        "censored": [bool(x) for x in df[phonons.SRME_CENSORED]],
        "failure_rate": float(df[phonons.SRME_CENSORED].mean()),
        "imaginary_mode_rate": float(df["has_imag_ph_modes"].eq(other=True).fillna(value=False).mean()),
    }  # fmt: skip
    # end to end (evaluate_kappa_predictions, the leaderboard's aggregates) on the rows as the κ task writes them:
    # a material with imaginary modes or broken symmetry stops before FC3, so it has no κ (NaN)
    stopped = df_pred["has_imag_ph_modes"] | (df_pred["final_spg_num"] != df_pred["init_spg_num"])
    df_task = df_pred.copy()
    df_task["kappa_tot_rta"] = [[[np.nan] * 6] if stop else k for stop, k in zip(stopped, df_pred["kappa_tot_rta"])]
    expected["task_rows_kappa_pred_nan"] = [bool(x) for x in stopped]
    expected["evaluate_kappa_predictions"] = _evaluate_kappa(phonons, df_task, df_true)
    spectra = []
    for with_weights in (True, False, True):
        freqs_pred, freqs_ref = rng.uniform(-0.5, 12, (n_q, n_b)), rng.uniform(0, 12, (5, n_b))
        w_ref = [1.0, 2.0, 2.0, 2.0, 1.0] if with_weights else None
        w1 = phonons.phonon_spectrum_w1(pd.Series({"ph_freqs": freqs_pred.tolist(), "weights": weights}),
                                        pd.Series({"ph_freqs": freqs_ref.tolist(), "weights": w_ref}))  # fmt: skip
        spectra.append({"freqs_pred": freqs_pred.tolist(), "weights_pred": weights, "freqs_ref": freqs_ref.tolist(),
                        "weights_ref": w_ref, "w1": w1})  # fmt: skip
    return {"cases": cases, "spectra": spectra}, expected | {"spectrum_w1": [s.pop("w1") for s in spectra]}


def _evaluate_kappa(phonons, df_pred: pd.DataFrame, df_true: pd.DataFrame) -> dict:
    """MBD's evaluate_kappa_predictions with ``df_true`` as the reference table (it reads the 103-material file
    otherwise; its DataFiles path lookup would download it)."""
    import types

    import matbench_discovery.phonons as mbd_phonons

    saved = mbd_phonons.read_kappa_json, phonons.DataFiles
    mbd_phonons.read_kappa_json = lambda path: df_true
    phonons.DataFiles = types.SimpleNamespace(phonondb_pbe_103_kappa_no_nac=types.SimpleNamespace(path="unused"))
    try:
        return phonons.evaluate_kappa_predictions(df_pred)
    finally:
        mbd_phonons.read_kappa_json, phonons.DataFiles = saved


# ----------------------------------------------------------------------------- diatomics


DIATOMIC_ELEMENTS = ("H", "C", "O", "Si", "Cu", "Xe")


def diatomic_vectors(rng: np.random.Generator) -> tuple[dict, dict]:
    """Morse-plus-wall model curves (some with noise) on the MBD grid, with Cartesian forces whose two atoms
    are not opposite, scored by MBD's calc_diatomic_metrics against the PBE curves of
    tests/data/diatomics-dft.json.gz."""
    from matbench_discovery.metrics import diatomics

    ref_path = str(REPO / "tests" / "data" / "diatomics-dft.json.gz")
    ref_curves = diatomics.load_dft_reference_curves(ref_path=ref_path)
    r = np.geomspace(0.1, 6.0, 119)
    curves = {}
    for idx, symbol in enumerate(DIATOMIC_ELEMENTS):
        ref = ref_curves.homo_nuclear[symbol]
        r_eq = float(ref.distances[np.argmin(ref.energies)]) * rng.uniform(0.95, 1.05)
        depth, width = rng.uniform(1.0, 6.0), rng.uniform(1.2, 2.2)
        x = np.exp(-width * (r - r_eq))
        energy = depth * (x**2 - 2 * x) + 30.0 * np.exp(-6.0 * r)
        d_energy = depth * (-2 * width * x**2 + 2 * width * x) - 180.0 * np.exp(-6.0 * r)
        if idx % 2:  # jitter: flips and jumps
            energy = energy + rng.normal(0, 0.02, len(r))
            d_energy = d_energy + rng.normal(0, 0.05, len(r))
        bond_force = -d_energy
        # the two atoms' forces are not opposite (as a real, noisy calculator gives them): each gets its own
        # x noise, and y/z components appear, so MBD's forces[:, 0, 0] differs from the bond projection
        forces = rng.normal(0, 0.03, (len(r), 2, 3))
        forces[:, 0, 0] += -bond_force
        forces[:, 1, 0] += bond_force
        curves[symbol] = {"energies": energy.tolist(), "forces": forces}
    pred = diatomics.DiatomicCurves(distances=r, homo_nuclear={
        s: diatomics.DiatomicCurve(r, c["energies"], c["forces"]) for s, c in curves.items()})  # fmt: skip
    metrics = diatomics.calc_diatomic_metrics(ref_curves, pred, interpolate=200)
    inputs = {"distances": r.tolist(),
              "curves": {s: {"energies": c["energies"], "forces": c["forces"].tolist()} for s, c in curves.items()}}
    return inputs, {s: {str(k): float(v) for k, v in m.items()} for s, m in metrics.items()}


# ----------------------------------------------------------------------------- rdf


def rdf_vectors(rng: np.random.Generator) -> tuple[dict, dict]:
    """MBD's calc_rdf (500 bins, N² normalisation) of two small random trajectories in a fixed
    cubic cell and calc_rdf_error between them and against an ideal-gas reference."""
    from ase import Atoms

    from matbench_discovery.metrics import md

    cell = np.eye(3) * 9.0
    trajs = [rng.uniform(0, 9.0, (3, 16, 3)) for _ in range(2)]
    symbols = ["Li"] * 8 + ["S"] * 8
    results = [md.calc_rdf([Atoms(symbols, positions=p, cell=cell, pbc=True) for p in t], n_bins=500) for t in trajs]
    radii, g_ref = results[0]
    g_pred = results[1][1]
    inputs = {"cell": cell.tolist(), "symbols": symbols, "positions": [t.tolist() for t in trajs]}
    expected = {"r": radii.tolist(), "g_ref": g_ref.tolist(), "g_pred": g_pred.tolist(),
                "rdf_error": md.calc_rdf_error(radii, g_ref, g_pred),
                "rdf_error_ideal_gas_reference": md.calc_rdf_error(radii, np.ones_like(radii), g_pred)}  # fmt: skip
    # non-orthogonal cells at MBD's default settings (n_bins=500, r_max=None): hexagonal (a = 9 Å, where half the
    # shortest lattice vector, 4.5 Å, exceeds half the plane spacing, 3.897 Å), a skewed basis of a 9 Å cube,
    # a triclinic cell
    cells = {"hexagonal": [[9.0, 0, 0], [-4.5, 9.0 * np.sqrt(3) / 2, 0], [0, 0, 10.0]],
             "skewed_cube": [[9.0, 0, 0], [9.0, 9.0, 0], [0, 0, 9.0]],
             "triclinic": [[8.0, 0, 0], [2.5, 8.5, 0], [1.5, -2.0, 9.0]]}  # fmt: skip
    inputs["default_settings"], expected["default_settings"] = {}, {}
    for name, cell_rows in cells.items():
        frac = rng.uniform(0, 1, (2, 24, 3))
        frames = [Atoms(["Li"] * 12 + ["S"] * 12, scaled_positions=f, cell=cell_rows, pbc=True) for f in frac]
        radii, g = md.calc_rdf(frames)
        inputs["default_settings"][name] = {"cell": cell_rows, "positions": [a.positions.tolist() for a in frames]}
        expected["default_settings"][name] = {"r": radii.tolist(), "g": g.tolist()}
    return inputs, expected


def md_vectors(rng: np.random.Generator) -> tuple[dict, dict]:
    """MBD's evaluate_md_system rdf_error of a 64-atom jittered lattice in a non-orthogonal cell: an AIMD-like
    reference of 9 frames every 100 fs and a model run of 13 frames every 50 fs (time matching keeps 7 and
    13), and of the same model frames against a reference of 3 frames every 20 fs (the task's own frames)."""
    from ase import Atoms

    from matbench_discovery.metrics import md

    cell = np.array([[10.0, 0, 0], [3.0, 9.5, 0], [0, 0, 10.0]])
    grid = (np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), axis=-1).reshape(-1, 3) + 0.5) / 4
    symbols = ["Li", "S"] * 32

    def trajectory(n_frames: int, jitter: float) -> list:
        frames = []
        for _ in range(n_frames):
            frac = grid + rng.normal(0, jitter, grid.shape)
            frames.append(Atoms(symbols, scaled_positions=frac, cell=cell, pbc=True))
        return frames

    ref, pred = trajectory(9, 0.02), trajectory(13, 0.035)
    inputs = {"cell": cell.tolist(), "symbols": symbols,
              "reference": {"positions": [a.positions.tolist() for a in ref], "frame_interval_fs": 100.0},
              "model": {"positions": [a.positions.tolist() for a in pred], "frame_interval_fs": 50.0}}  # fmt: skip
    expected = {"rdf_error": md.evaluate_md_system(ref, pred, ref_time_step_fs=100.0, pred_time_step_fs=50.0)["rdf_error"],
                "matched_frame_counts": list(md.matched_frame_counts(n_ref_frames=9, n_pred_frames=13,
                                                                     ref_time_step_fs=100.0, pred_time_step_fs=50.0))}  # fmt: skip
    return inputs, expected


# ----------------------------------------------------------------------------- R² edge cases


def r2_vectors(rng: np.random.Generator) -> tuple[dict, dict]:
    """MBD's stable_metrics (sklearn r2_score) on constant truth (perfect and not), NaN truth, one pair, random
    pairs with NaN on either side, and ±inf predictions (MBD raises: expected ``"raises"``)."""
    from matbench_discovery.metrics import discovery

    true = np.round(rng.normal(0.05, 0.1, 200), 3)
    pred = np.round(true + rng.normal(0, 0.05, 200), 3)
    true[rng.choice(200, 15, replace=False)] = np.nan
    pred[rng.choice(200, 15, replace=False)] = np.nan
    cases = {
        "constant_truth_perfect": ([0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]),
        "constant_truth_imperfect": ([0.0, 0.0, 0.0], [0.1, 0.0, -0.1]),
        "constant_truth_with_nan": ([0.02, np.nan, 0.02, 0.02], [0.02, 0.5, 0.03, 0.01]),
        "nan_truth": ([np.nan, 0.1, -0.1, 0.2], [0.0, 0.1, -0.2, 0.3]),
        "one_pair": ([0.1, np.nan], [0.1, 0.2]),
        "random_with_nan": (true.tolist(), pred.tolist()),
        "inf_prediction": ([0.1, 0.2, 0.3], [0.1, np.inf, 0.3]),
        "minus_inf_prediction": ([0.1, -0.2, 0.3], [0.1, -np.inf, 0.3]),
    }
    inputs, expected = {}, {}
    for name, (t, p) in cases.items():
        inputs[name] = {"true": _floats(t), "pred": _floats(p)}
        try:
            expected[name] = {k: float(v) for k, v in discovery.stable_metrics(t, p).items()}
        except ValueError as exc:
            expected[name] = {"raises": type(exc).__name__}
    return inputs, expected


# ----------------------------------------------------------------------------- geometry optimisation


def geo_opt_vectors(rng: np.random.Generator) -> tuple[dict, dict]:
    """MBD's moyopy symmetry info of a few structures at symprec 1e-2 and 1e-5, and
    calc_geo_opt_metrics on synthetic space-group / operation-count pairs."""
    from pymatgen.core import Lattice, Structure

    from matbench_discovery.metrics import geo_opt
    from matbench_discovery.structure import symmetry

    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    perovskite = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])  # fmt: skip
    structures = {"rocksalt": rocksalt, "perovskite": perovskite}
    for name, base in list(structures.items()):
        shaken = base.copy()
        shaken.perturb(0.004, min_distance=0.002, seed=11)  # ≈ 3e-3 Å: symmetric at 1e-2, not at 1e-5
        structures[f"{name}-shaken"] = shaken
    info = {}
    for symprec in (1e-2, 1e-5):
        df_sym = symmetry.get_sym_info_from_structs(structures, pbar=False, symprec=symprec)
        info[f"{symprec:.0e}"] = {k: [int(df_sym.loc[k, "spg_num"]), int(df_sym.loc[k, "n_sym_ops"])]
                                  for k in structures}  # fmt: skip
    n = 40
    spg_ref = rng.choice([225, 221, 194, 62, 14, 2], n).astype(float)
    ops_ref = rng.choice([192, 48, 24, 8, 4, 2], n).astype(float)
    keep = rng.random(n) < 0.5
    spg_pred = np.where(keep, spg_ref, rng.choice([225, 166, 62, 12, 1], n)).astype(float)
    ops_pred = np.where(keep, ops_ref, rng.choice([96, 48, 24, 8, 4, 1], n)).astype(float)
    ops_pred[3] = ops_ref[3]
    spg_pred[3] = spg_ref[3] + 1  # changed group, same number of operations
    spg_pred[5] = ops_pred[5] = np.nan  # symmetry unknown
    df = pd.DataFrame({"spg_num_diff": spg_pred - spg_ref, "n_sym_ops_diff": ops_pred - ops_ref,
                       "structure_rmsd_vs_dft": rng.uniform(0, 0.1, n)})  # fmt: skip
    metrics = geo_opt.calc_geo_opt_metrics(df)
    inputs = {"structures": {k: s.as_dict() for k, s in structures.items()},
              "spg_pred": _floats(spg_pred), "spg_ref": _floats(spg_ref),
              "n_ops_pred": _floats(ops_pred), "n_ops_ref": _floats(ops_ref)}  # fmt: skip
    expected = {"symmetry": info, "metrics": {k: float(v) for k, v in metrics.items()}}
    # RMSD: pred_vs_ref_struct_symmetry (StructureMatcher(stol=1, scale=False).get_rms_dist) per pair, then
    # calc_geo_opt_metrics' mean with unmatched pairs as 1.0
    rattled, strained = rocksalt.copy(), perovskite.copy()
    rattled.perturb(0.15, seed=12)
    strained.apply_strain([0.01, -0.02, 0.015])
    strained.perturb(0.1, seed=13)
    pairs = {"rocksalt-rattled": (rattled, rocksalt), "perovskite-strained": (strained, perovskite),
             "rocksalt-shaken": (structures["rocksalt-shaken"], rocksalt),
             "unmatched": (perovskite, rocksalt)}  # fmt: skip
    index = pd.Index(list(pairs), name="material_id")
    pred_structs, ref_structs = {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}
    df_pred = symmetry.get_sym_info_from_structs(pred_structs, pbar=False).reindex(index)
    df_ref = symmetry.get_sym_info_from_structs(ref_structs, pbar=False).reindex(index)
    df_rmsd = symmetry.pred_vs_ref_struct_symmetry(df_pred, df_ref, pred_structs, ref_structs, pbar=False)
    inputs["rmsd_pairs"] = {k: [a.as_dict(), b.as_dict()] for k, (a, b) in pairs.items()}
    expected["rmsd"] = {k: (None if df_rmsd.loc[k, "structure_rmsd_vs_dft"] is None
                            else float(df_rmsd.loc[k, "structure_rmsd_vs_dft"])) for k in pairs}  # fmt: skip
    expected["rmsd_mean"] = geo_opt.calc_geo_opt_metrics(df_rmsd)["structure_rmsd_vs_dft"]
    return inputs, expected


# ----------------------------------------------------------------------------- combined scores (TypeScript)

NODE_DRIVER = r"""
const ts = require(process.argv[2]);
const fs = require('fs');
const src = fs.readFileSync(process.argv[3], 'utf8');
const labels = fs.readFileSync(process.argv[4], 'utf8');
const baseline = Number(/export const RMSD_BASELINE = ([0-9.]+)/.exec(labels)[1]);
const js = ts.transpileModule(src, {compilerOptions: {module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020}}).outputText;
globalThis.$state = (x) => x;
const stub = {RMSD_BASELINE: baseline, ALL_METRICS: {F1: {}, 'κ_SRME': {}, RMSD: {}},
  MD_METRICS: {md_vdos_error: {}, md_adf_error: {}, md_run_time_sec: {}, md_pressure_error: {}}};
const mod = {exports: {}};
new Function('require', 'module', 'exports', js)((name) => { if (name === '$lib/labels') return stub; return {}; }, mod, mod.exports);
const m = mod.exports;
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const num = (v) => (v === null ? undefined : (v === 'NaN' ? NaN : v));
const cps = input.cps.map(([f1, kappa, rmsd]) => m.calculate_cps(num(f1), num(rmsd), num(kappa), m.DEFAULT_CPS_CONFIG));
const cds = input.cds.map((values) => {
  const v = {}; for (const [k, x] of Object.entries(values)) v[k] = num(x);
  return m.calculate_cds(v, m.DEFAULT_CDS_CONFIG);
});
process.stdout.write(JSON.stringify({rmsd_baseline: baseline, cps, cds}));
"""


def score_vectors(rng: np.random.Generator, src: Path, node_modules: Path) -> tuple[dict, dict]:
    """The leaderboard's calculate_cps on 2,008 (F1, κ_SRME, RMSD) triples — a grid with
    boundary, out-of-range, NaN and missing values plus random ones — and calculate_cds on
    random component values, some with missing or invalid components and exclusions."""
    grid_f1 = [None, "NaN", -0.1, 0.0, 0.5, 0.771, 1.0, 1.2]
    grid_kappa = [None, "NaN", -0.5, 0.0, 0.499, 1.0, 2.0, 2.5]
    grid_rmsd = [None, "NaN", -0.01, 0.0, 0.05, 0.086, 0.15, 0.3]
    triples = [[f, k, r] for f in grid_f1 for k in grid_kappa for r in grid_rmsd]  # 512
    while len(triples) < 2008:
        triples.append([round(float(rng.uniform(lo, hi)), 6) for lo, hi in ((0, 1), (0, 2), (0, 0.2))])
    keys = ("pbe_energy_mae", "pbe_force_mae", "pbe_wall_dist_mae", "pbe_bond_length_error", "pbe_well_depth_error",
            "run_time_sec", "energy_jump", "force_flips", "tortuosity")  # fmt: skip
    scale = (6, 7, 0.8, 1.0, 4, 8000, 4, 5, 2.5)
    cds_inputs = []
    for i in range(60):
        values = {k: round(float(rng.uniform(0, s)), 6) for k, s in zip(keys, scale, strict=True)}
        values["force_flips"] += 0.5
        values["tortuosity"] += 0.8
        values["run_time_sec"] += 10.0
        if i % 10 == 1:
            values["pbe_force_mae"] = None
        if i % 10 == 2:
            values["run_time_sec"] = 0.0  # log scale needs > 0
        if i % 10 == 3:
            values["excluded_formula_reasons"] = {f"X{j}": "failed" for j in range(int(rng.integers(1, 9)))}
        cds_inputs.append(values)
    # CPS through rounding: unrounded metrics as a run measures them, rounded as MBD writes its model YAMLs
    # (write_all_metrics_to_yaml: round(F1, 3); kappa_103 κ_SRME and geo_opt rmsd: round(·, 4)), then the site's
    # calculate_cps on the rounded values. Half of them sit within 1e-9 of a rounding boundary.
    unrounded = []
    for i in range(1000):
        f1, kappa, rmsd = rng.uniform(0, 1), rng.uniform(0, 2), rng.uniform(0, 0.2)
        if i % 2:
            f1 = round(f1, 3) + 5e-4 + rng.choice([-1, 1]) * rng.uniform(0, 1e-9)
            kappa = round(kappa, 4) + 5e-5 + rng.choice([-1, 1]) * rng.uniform(0, 1e-9)
            rmsd = round(rmsd, 4) + 5e-5 + rng.choice([-1, 1]) * rng.uniform(0, 1e-9)
        unrounded.append([float(f1), float(kappa), float(rmsd)])
    rounded = [[round(f1, 3), round(kappa, 4), round(rmsd, 4)] for f1, kappa, rmsd in unrounded]
    driver = Path(tempfile.mkstemp(suffix=".js")[1])
    driver.write_text(NODE_DRIVER)
    proc = subprocess.run(["node", str(driver), str(node_modules / "typescript"), str(src / CPS_TS), str(src / LABELS_TS)],
                          input=json.dumps({"cps": triples + rounded, "cds": cds_inputs}), capture_output=True,
                          text=True, check=True)  # fmt: skip
    driver.unlink()
    out = json.loads(proc.stdout)
    out["cps_from_unrounded"] = out["cps"][len(triples):]
    out["cps"] = out["cps"][: len(triples)]
    return {"cps": triples, "cds": cds_inputs, "cps_unrounded_metrics": unrounded}, out


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--git-dir", required=True)
    parser.add_argument("--commit", default=DEFAULT_COMMIT)
    parser.add_argument("--out", default=str(REPO / "tests" / "data" / "mbd-parity"))
    parser.add_argument("--node-modules", default=None, help="folder holding node_modules/typescript")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        commit = extract(args.git_dir, args.commit, src)
        sys.path.insert(0, str(src))
        for name, make, seed in (("discovery", discovery_vectors, 0), ("kappa", kappa_vectors, 1),
                                 ("diatomics", diatomic_vectors, 2), ("rdf", rdf_vectors, 3),
                                 ("geo-opt", geo_opt_vectors, 4), ("md", md_vectors, 6), ("r2", r2_vectors, 7)):  # fmt: skip
            write(out, name, commit, *make(np.random.default_rng(seed)))
            print(f"wrote {out / name}.json")
        if args.node_modules:
            write(out, "combined-scores", commit,
                  *score_vectors(np.random.default_rng(5), src, Path(args.node_modules) / "node_modules"))
            print(f"wrote {out / 'combined-scores'}.json")


if __name__ == "__main__":
    main()
