"""Matbench Discovery submission files, written by every ``geodite bench`` run of a task that has them.

A task with a submission format has the hook ``submission(df, summary, folder, model, date) -> (files,
yaml_blocks)`` (:class:`geodite.tasks.contract.Task`), which calls its writer here (:func:`write_discovery`,
:func:`write_kappa`, :func:`write_diatomics`); the runner hands the hook to :func:`write_submission`, which
picks the folder and the date and merges the blocks into the model YAML.
``<results>/submission/<model>/`` collects, in the formats MBD's loaders read (commit 2c7f9fc):

* ``<date>-discovery.csv.gz``: ``material_id``, ``e_form_per_atom`` (eV/atom, MP2020-corrected
  convention — the column ``load_df_wbm_with_preds`` reads) and the same values as
  ``e_form_per_atom_<model>`` (the column name of older MBD prediction files);
* ``<date>-geo-opt.jsonl.gz``: one JSON line per material with ``material_id``, ``structure``
  (pymatgen dict of the relaxed structure), ``energy`` (eV), ``converged``, ``n_steps``;
* ``<date>-phonons-kappa-103.json.gz``: a pandas-``read_json`` table with ``material_id``,
  ``kappa_tot_rta`` (Voigt W/m/K, one row per temperature), ``kappa_tot_avg``,
  ``mode_kappa_tot_avg`` (per temperature, q-point and band, weight included), ``mode_weights``
  (q-point weights), ``has_imag_ph_modes``, ``init_spg_num``, ``final_spg_num``;
* ``<date>-diatomics.json.gz``: ``{"distances": [...], "homo-nuclear": {"H-H": {"energies",
  "forces"}}}``, Cartesian forces (eV/Å) of atom 0 at the origin and atom 1 on +x,
  rebuilt from the stored bond-projected force F as (−F, 0, 0) and (F, 0, 0);
* ``<model>.yml``: model metadata with ``metrics.discovery``, ``metrics.geo_opt``,
  ``metrics.phonons.kappa_103`` and ``metrics.diatomics`` blocks keyed as in MBD's model YAMLs
  (each ``pred_file`` a FileRef with name, size and md5). Fields only the model's authors can
  fill (authors, repo, training set, openness, ...) are listed under ``todo``.

Each run replaces its own file (older dates of the same kind are removed) and its block of the YAML.
The discovery file of an ``offline`` run covers the shipped 1k WBM subset from perturbed DFT
structures, not the WBM initial structures: the YAML says so in ``metrics.discovery.note``.
"""

from __future__ import annotations

import datetime
import gzip
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from geodite.data.downloads import file_digest
from geodite.metrics.discovery import offline_key
from geodite.metrics.symmetry import SYMMETRY_KEYS, SYMPRECS, symprec_tag

SUFFIXES = {
    "discovery": "discovery.csv.gz",
    "geo_opt": "geo-opt.jsonl.gz",
    "kappa": "phonons-kappa-103.json.gz",
    "diatomics": "diatomics.json.gz",
}
DIATOMIC_MEANS = (
    "pbe_energy_mae", "pbe_force_mae", "pbe_wall_dist_mae", "pbe_bond_length_error", "pbe_well_depth_error",
    "pbe_frequency_error", "energy_jump", "energy_diff_flips", "force_flips", "force_total_variation", "force_jump",
    "tortuosity",
)  # fmt: skip
DISCOVERY_KEYS = ("F1", "DAF", "Precision", "Recall", "Accuracy", "TPR", "FPR", "TNR", "FNR", "TP", "FP", "TN", "FN",
                  "MAE", "RMSE", "R2")  # fmt: skip
AUTHOR_FIELDS = ("model_version", "authors", "repo", "doi", "paper", "training_set", "openness", "model_params",
                 "targets", "model_type", "train_task", "test_task")  # fmt: skip


def submission_dir(results_dir: str | Path, model: str) -> Path:
    """``<results>/submission/<model>``."""
    return Path(results_dir) / "submission" / model


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if "status" in df else df


def _target(folder: Path, kind: str, date: str) -> Path:
    """This run's file of ``kind``; older dates of the same kind are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"*-{SUFFIXES[kind]}"):
        old.unlink()
    return folder / f"{date}-{SUFFIXES[kind]}"


def _file_ref(path: Path) -> dict:
    """MBD FileRef: name, size (bytes), md5."""
    return {"name": path.name, "size": path.stat().st_size, "md5": file_digest(path, "md5")}


def _number(value):
    """A YAML-friendly scalar: None for missing/NaN, Python int/float otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _is_array(value) -> bool:
    """A stored list/array (absent values come back from the store as None or NaN)."""
    return isinstance(value, list | np.ndarray)


def _round(value, digits: int = 4):
    value = _number(value)
    return round(value, digits) if isinstance(value, float) else value


# ----------------------------------------------------------------------------- per task


def write_discovery(df: pd.DataFrame, summary: dict, folder: Path, model: str, date: str) -> tuple[list[Path], dict]:
    """Discovery csv.gz and geo-opt jsonl.gz; the YAML blocks ``discovery`` and ``geo_opt``."""
    ok = _ok(df)
    column = "e_form_pred_mp2020" if "e_form_pred_mp2020" in ok else "e_form_pred"  # offline: corrected column
    preds = pd.DataFrame({"material_id": ok["material_id"], "e_form_per_atom": ok[column].astype(float)})
    preds[f"e_form_per_atom_{model}"] = preds["e_form_per_atom"]
    csv_path = _target(folder, "discovery", date)
    preds.to_csv(csv_path, index=False, compression="gzip")
    paths = [csv_path]
    blocks: dict = {"discovery": {"pred_file": _file_ref(csv_path), "pred_col": "e_form_per_atom"}}
    if "unique_prototypes" in str(summary.get("subset", "")):
        for subset, prefix in (("unique_prototypes", ""), ("full_test_set", "full_"),
                               ("most_stable_10k", "most_stable_10k_")):  # fmt: skip
            blocks["discovery"][subset] = {k: _round(summary.get(prefix + k), 3) for k in DISCOVERY_KEYS}
    else:
        blocks["discovery"]["note"] = f"offline run: {summary.get('subset')}; not the WBM test set"
        blocks["discovery"]["offline"] = {k: _round(summary.get(k), 4) for k in map(offline_key, ("MAE", "RMSE", "R2"))}
    if "structure_pred" in ok:
        geo_path = _target(folder, "geo_opt", date)
        with gzip.open(geo_path, "wt") as handle:
            for row in ok.itertuples(index=False):
                line = {"material_id": row.material_id, "structure": json.loads(row.structure_pred),
                        "energy": _number(row.energy_pred), "converged": bool(row.converged),
                        "n_steps": _number(row.n_steps)}  # fmt: skip
                handle.write(json.dumps(line) + "\n")
        paths.append(geo_path)
        geo: dict = {"pred_file": _file_ref(geo_path)}
        for symprec in SYMPRECS:
            tag = symprec_tag(symprec)
            geo[f"symprec={tag}"] = {"rmsd": _round(summary.get("RMSD"))} | {
                key: _round(summary.get(f"{key}_{tag}")) for key in SYMMETRY_KEYS
            }
        blocks["geo_opt"] = geo
    return paths, blocks


def write_kappa(df: pd.DataFrame, summary: dict, folder: Path, model: str, date: str) -> tuple[list[Path], dict]:
    """κ json.gz (every material, missing κ as null) and the ``phonons.kappa_103`` block."""
    records = []
    for row in df.to_dict("records"):
        tensor, mode, weights = (row.get(k) for k in ("kappa_tensor", "mode_kappa", "q_weights"))
        has_tensor = _is_array(tensor) and len(tensor) == 6
        records.append({
            "material_id": row.get("material_id", row.get("key")),
            "kappa_tot_rta": [list(map(float, tensor))] if has_tensor else None,
            "kappa_tot_avg": [float(np.mean(np.asarray(tensor, float)[:3]))] if has_tensor else None,
            "mode_kappa_tot_avg": [np.asarray(mode, float).tolist()] if _is_array(mode) else None,
            "mode_weights": np.asarray(weights, float).tolist() if _is_array(weights) else None,
            "has_imag_ph_modes": bool(row.get("imaginary_modes", False)),
            "init_spg_num": _number(row.get("spg_initial")),
            "final_spg_num": _number(row.get("spg_relaxed")),
        })  # fmt: skip
    path = _target(folder, "kappa", date)
    with gzip.open(path, "wt") as handle:
        json.dump(records, handle)
    block = {
        "κ_SRME": _round(summary.get("kappa_SRME")), "κ_SRE": _round(summary.get("kappa_SRE")),
        "κ_SRD": _round(summary.get("kappa_SRD")), "κ_failure_rate": _round(summary.get("failure_rate")),
        "imaginary_mode_rate": _round(summary.get("imaginary_mode_rate")),
        "spectrum_w1": _round(summary.get("spectrum_w1")), "pred_file": _file_ref(path),
    }  # fmt: skip
    return [path], {"phonons": {"kappa_103": block}}


def write_diatomics(df: pd.DataFrame, summary: dict, folder: Path, model: str, date: str) -> tuple[list[Path], dict]:
    """Dimer json.gz (every curve on its own grid, a subset of the top-level one) and the ``diatomics`` block."""
    ok = _ok(df)
    grids = [np.asarray(r, float) for r in ok["distances"]] if "distances" in ok else []
    distances = np.unique(np.concatenate(grids)) if grids else np.empty(0)
    curves = {}
    for row in ok.to_dict("records"):
        stored = row.get("forces")
        if isinstance(stored, list | np.ndarray):  # the calculator's forces, as MBD's force metrics read them
            cartesian = np.asarray([np.asarray(f, float) for f in stored], float).reshape(-1, 2, 3)
        else:  # rows written before the Cartesian forces were stored: opposite forces along the bond
            force = np.asarray(row["bond_forces"], float)
            cartesian = np.zeros((len(force), 2, 3))
            cartesian[:, 0, 0], cartesian[:, 1, 0] = -force, force
        curves[f"{row['element']}-{row['element']}"] = {
            "distances": np.asarray(row["distances"], float).tolist(),
            "energies": np.asarray(row["energies"], float).tolist(),
            "forces": cartesian.tolist(),
        }
    path = _target(folder, "diatomics", date)
    with gzip.open(path, "wt") as handle:
        json.dump({"distances": distances.tolist(), "homo-nuclear": curves}, handle)
    failed = df[df["status"] != "ok"] if "status" in df else df.iloc[:0]
    block: dict = {"pred_file": _file_ref(path), "run_time_sec": _round(summary.get("run_time_sec"), 1)}
    if len(failed) and "element" in failed:
        block["excluded_formula_reasons"] = {
            f"{el}-{el}": str(err)[:200] for el, err in zip(failed["element"], failed.get("error", [""] * len(failed)))
        }
    for key in DIATOMIC_MEANS:
        value = _number(summary.get(key))
        if value is not None:
            block[key] = float(f"{value:.4}")  # as MBD stores the means
    block["CDS"] = _round(summary.get("CDS"))
    return [path], {"diatomics": block}


# ----------------------------------------------------------------------------- the YAML and the files of a run


def update_model_yaml(folder: Path, model: str, blocks: dict, date: str) -> Path:
    """Merge ``blocks`` into ``metrics`` of ``<model>.yml`` (created with the known fields on first use)."""
    path = folder / f"{model}.yml"
    meta = yaml.safe_load(path.read_text()) if path.is_file() else None
    if not meta:
        meta = {"model_name": model, "model_key": model, "date_added": date,
                "todo": [f"fill in {field}" for field in AUTHOR_FIELDS], "metrics": {}}  # fmt: skip
    metrics = meta.setdefault("metrics", {})
    for key, block in blocks.items():
        if key == "phonons":
            metrics.setdefault("phonons", {}).update(block)
        else:
            metrics[key] = block
    path.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return path


#: a task's submission hook: (rows, summary, folder, model label, date) → (files written, model-YAML blocks)
SubmissionWriter = Callable[[pd.DataFrame, dict, Path, str, str], tuple[list[Path], dict]]


def write_submission(writer: SubmissionWriter | None, df: pd.DataFrame, summary: dict, results_dir: str | Path,
                     model: str, date: str | None = None) -> list[Path]:  # fmt: skip
    """Write the submission file(s) of one finished task run and update the model YAML.

    Args:
        writer: the task's ``submission`` hook (None: the task has no submission format; nothing is written).
        df: the run's rows (one per item).
        summary: the run's metrics (what ``--json`` prints).
        results_dir: the run's results root.
        model: model label (folder and file names).
        date: ``YYYY-MM-DD`` file prefix, default today (UTC).

    Returns:
        The files written (empty for tasks MBD takes no submission for, or without a successful row).
    """
    if writer is None or not len(_ok(df)):
        return []
    day = date or datetime.datetime.now(datetime.UTC).date().isoformat()
    folder = submission_dir(results_dir, model)
    paths, blocks = writer(df, summary, folder, model, day)
    return [*paths, update_model_yaml(folder, model, blocks, day)]
